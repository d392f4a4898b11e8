//! The statements the queue runs, written once per table name.
//!
//! Every write a worker makes to a claimed row is guarded by
//! `status = 'running' AND worker_id = $2 AND attempts = $3`: a worker that
//! lost its lease (its row was reclaimed, so the attempt number moved on, or
//! cancelled) changes nothing. Times come from the server's clock (`now()`),
//! never from a worker's. Notifications are sent by the statements
//! themselves (`pg_notify`), so they go out exactly when the change commits.

/// The table's row status values.
pub(super) const PENDING: &str = "pending";
pub(super) const RUNNING: &str = "running";
pub(super) const COMPLETED: &str = "completed";
pub(super) const DEAD: &str = "dead";
pub(super) const CANCELLED: &str = "cancelled";

/// `$n` milliseconds as an interval.
macro_rules! ms {
    ($n:literal) => {
        concat!("($", $n, "::float8 * interval '1 millisecond')")
    };
}

/// The statements for one table.
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) table: String,
    /// Channel woken when a task may be ready to claim.
    pub(super) new_channel: String,
    /// Channel carrying the id of a task that reached a terminal status.
    pub(super) done_channel: String,
    pub(super) insert: String,
    pub(super) by_key: String,
    pub(super) claim: String,
    pub(super) heartbeat: String,
    pub(super) complete: String,
    pub(super) complete_claim: String,
    pub(super) fail: String,
    pub(super) bury: String,
    pub(super) release: String,
    pub(super) reap: String,
    pub(super) status: String,
    pub(super) record: String,
    pub(super) outcome: String,
    pub(super) cancel: String,
    pub(super) dead: String,
    pub(super) requeue: String,
    pub(super) cleanup: String,
    /// Pending tasks that are due (the depth gauge, feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(super) depth: String,
}

impl Sql {
    pub(super) fn new(table: &str) -> Sql {
        let t = table;
        let new = format!("{t}_new");
        let done = format!("{t}_done");
        let guard = "id = $1 AND status = 'running' AND worker_id = $2 AND attempts = $3";
        // The claim shared by `claim` and `complete_claim`: `picked` (up to
        // `n` due pending tasks, `SKIP LOCKED`) and `claimed` (them, now
        // running for `worker` with a lease of `lease`), with `waited`:
        // seconds since each was due.
        let claim_ctes = |worker: &str, lease: &str, n: &str| {
            format!(
                "picked AS (
                   SELECT id FROM {t}
                   WHERE status = 'pending' AND run_at <= now()
                   ORDER BY run_at, id
                   LIMIT {n}
                   FOR UPDATE SKIP LOCKED),
                 claimed AS (
                   UPDATE {t} AS t
                   SET status = 'running', attempts = t.attempts + 1, worker_id = {worker},
                       lease_until = now() + {lease}, started_at = now()
                   FROM picked WHERE t.id = picked.id
                   RETURNING t.id, t.payload::text AS payload, t.attempts,
                       EXTRACT(EPOCH FROM now() - t.run_at)::float8 AS waited)"
            )
        };
        Sql {
            // $1 payload, $2 max_attempts, $3 run_at (absolute) or NULL,
            // $4 delay ms or NULL, $5 idempotency key or NULL.
            insert: format!(
                "WITH ins AS (
                   INSERT INTO {t} (payload, max_attempts, run_at, idempotency_key)
                   VALUES ($1::text::jsonb, $2, COALESCE($3, now() + {d}), $5)
                   ON CONFLICT (idempotency_key) DO NOTHING
                   RETURNING id)
                 SELECT id, pg_notify('{new}', '')::text FROM ins",
                d = "(COALESCE($4::float8, 0) * interval '1 millisecond')",
            ),
            by_key: format!("SELECT id FROM {t} WHERE idempotency_key = $1"),
            // $1 worker id, $2 lease ms, $3 how many. The claimed rows (with
            // `waited`: seconds since each was due), then one row with only
            // `due`: milliseconds until the next pending task is due or the
            // next lease runs out (NULL if none), so an idle worker knows how
            // long it may sleep without asking again. That row is only worked
            // out when the claim came up short: a full claim looks again at
            // once, and skips the two scans.
            claim: format!(
                "WITH {claim}
                 SELECT id, payload, attempts, NULL::float8 AS due, waited FROM claimed
                 UNION ALL
                 SELECT NULL, NULL, NULL, (EXTRACT(EPOCH FROM LEAST(
                     (SELECT min(run_at) FROM {t}
                      WHERE status = 'pending' AND id NOT IN (SELECT id FROM claimed)),
                     (SELECT min(lease_until) FROM {t} WHERE status = 'running')) - now())
                   * 1000)::float8, NULL
                 WHERE (SELECT count(*) FROM claimed) < $3",
                claim = claim_ctes("$1", ms!(2), "$3"),
            ),
            // $4 lease ms.
            heartbeat: format!(
                "UPDATE {t} SET lease_until = now() + {lease} WHERE {guard} RETURNING id",
                lease = ms!(4),
            ),
            // $4 result JSON.
            complete: format!(
                "WITH done AS (
                   UPDATE {t} SET status = 'completed', result = $4::text::jsonb,
                       last_error = NULL, worker_id = NULL, lease_until = NULL,
                       finished_at = now()
                   WHERE {guard}
                   RETURNING id)
                 SELECT id, pg_notify('{done}', id::text)::text FROM done"
            ),
            // `complete` and a claim in one round trip, for a worker that
            // goes on with its next task: $4 result JSON, $5 lease ms, $6 how
            // many to claim. The stored outcome's row (kind 0), then the
            // claimed rows (kind 1) as `claim` returns them, without `due`.
            complete_claim: format!(
                "WITH done AS (
                   UPDATE {t} SET status = 'completed', result = $4::text::jsonb,
                       last_error = NULL, worker_id = NULL, lease_until = NULL,
                       finished_at = now()
                   WHERE {guard}
                   RETURNING id),
                 {claim}
                 SELECT 0 AS kind, id, NULL::text AS payload, NULL::int4 AS attempts,
                     NULL::float8 AS waited, pg_notify('{done}', id::text)::text
                 FROM done
                 UNION ALL
                 SELECT 1, id, payload, attempts, waited, NULL FROM claimed",
                claim = claim_ctes("$2", ms!(5), "$6"),
            ),
            // $4 error text, $5 backoff ms. Dead once attempts reach max_attempts.
            fail: format!(
                "WITH f AS (
                   UPDATE {t} SET
                       status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
                       last_error = $4,
                       run_at = now() + {backoff},
                       worker_id = NULL, lease_until = NULL,
                       finished_at = CASE WHEN attempts >= max_attempts THEN now() END
                   WHERE {guard}
                   RETURNING id, status)
                 SELECT id, status, pg_notify(
                     CASE WHEN status = 'dead' THEN '{done}' ELSE '{new}' END, id::text)::text
                 FROM f",
                backoff = ms!(5),
            ),
            // $4 error text: dead at once (a row that cannot be decoded).
            bury: format!(
                "WITH f AS (
                   UPDATE {t} SET status = 'dead', last_error = $4, worker_id = NULL,
                       lease_until = NULL, finished_at = now()
                   WHERE {guard}
                   RETURNING id)
                 SELECT id, pg_notify('{done}', id::text)::text FROM f"
            ),
            // $4 true if the attempt never started (it is then not counted).
            release: format!(
                "WITH r AS (
                   UPDATE {t} SET status = 'pending', worker_id = NULL, lease_until = NULL,
                       attempts = CASE WHEN $4 THEN attempts - 1 ELSE attempts END,
                       run_at = now()
                   WHERE {guard}
                   RETURNING id)
                 SELECT id, pg_notify('{new}', '')::text FROM r"
            ),
            // Leases that ran out: back to pending, or dead if that was the last attempt.
            reap: format!(
                "WITH r AS (
                   UPDATE {t} SET
                       status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
                       last_error = 'lease expired: worker ' || coalesce(worker_id, '?')
                           || ' stopped heartbeating during attempt ' || attempts,
                       finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
                       worker_id = NULL, lease_until = NULL, run_at = now()
                   WHERE id IN (SELECT id FROM {t}
                                WHERE status = 'running' AND lease_until < now()
                                FOR UPDATE SKIP LOCKED)
                     AND status = 'running' AND lease_until < now()
                   RETURNING id, status)
                 SELECT id, status, pg_notify(
                     CASE WHEN status = 'dead' THEN '{done}' ELSE '{new}' END, id::text)::text
                 FROM r"
            ),
            status: format!("SELECT status FROM {t} WHERE id = $1"),
            record: format!(
                "SELECT status, attempts, max_attempts, last_error, worker_id, payload::text
                 FROM {t} WHERE id = $1"
            ),
            outcome: format!("SELECT status, result::text, last_error FROM {t} WHERE id = $1"),
            cancel: format!(
                "WITH c AS (
                   UPDATE {t} SET status = 'cancelled', worker_id = NULL, lease_until = NULL,
                       finished_at = now()
                   WHERE id = $1 AND status IN ('pending', 'running')
                   RETURNING id)
                 SELECT id, pg_notify('{done}', id::text)::text FROM c"
            ),
            dead: format!(
                "SELECT id, attempts, last_error, payload::text FROM {t}
                 WHERE status = 'dead' ORDER BY id LIMIT $1"
            ),
            requeue: format!(
                "WITH r AS (
                   UPDATE {t} SET status = 'pending', attempts = 0, run_at = now(),
                       finished_at = NULL, worker_id = NULL, lease_until = NULL
                   WHERE id = $1 AND status = 'dead'
                   RETURNING id)
                 SELECT id, pg_notify('{new}', '')::text FROM r"
            ),
            // $1 keep finished results this many ms, $2 keep dead tasks this many ms.
            cleanup: format!(
                "DELETE FROM {t}
                 WHERE (status IN ('completed', 'cancelled') AND finished_at < now() - {r})
                    OR (status = 'dead' AND finished_at < now() - {d})
                 RETURNING id",
                r = ms!(1),
                d = ms!(2),
            ),
            #[cfg(feature = "metrics")]
            depth: format!("SELECT count(*) FROM {t} WHERE status = 'pending' AND run_at <= now()"),
            table: t.to_owned(),
            new_channel: new,
            done_channel: done,
        }
    }
}
