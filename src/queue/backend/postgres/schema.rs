//! The versioned schema: `<table>_schema` holds the version; each migration
//! runs once, in order, under an advisory lock so that processes starting
//! together do not race.

use tokio_postgres::Client;

use super::error::PgQueueError;

/// Migration `i` takes the schema from version `i` to `i + 1`. `{t}` is the
/// table name. Never edit a released migration: add one.
const MIGRATIONS: &[&str] = &[
    // 1: tasks with status, JSON payload and result, attempts, run-at,
    // lease, idempotency key.
    "CREATE TABLE {t} (
        id bigserial PRIMARY KEY,
        status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'running', 'completed', 'dead', 'cancelled')),
        payload jsonb NOT NULL,
        result jsonb,
        last_error text,
        attempts integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL,
        run_at timestamptz NOT NULL DEFAULT now(),
        worker_id text,
        lease_until timestamptz,
        idempotency_key text UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz
    );
    CREATE INDEX {t}_ready ON {t} (run_at, id) WHERE status = 'pending';
    CREATE INDEX {t}_leased ON {t} (lease_until) WHERE status = 'running';
    CREATE INDEX {t}_finished ON {t} (finished_at)
        WHERE status IN ('completed', 'cancelled', 'dead');",
];

/// The schema version this crate writes.
pub(super) const VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings `table` to [`VERSION`]; returns the version it found.
pub(super) async fn migrate(client: &mut Client, table: &str) -> Result<i32, PgQueueError> {
    let tx = client.transaction().await?;
    // One migrator per table at a time; released at commit.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("tower_patterns.queue.{table}")],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table}_schema (version integer NOT NULL)"
    ))
    .await?;
    let found: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {table}_schema"),
            &[],
        )
        .await?
        .get(0);
    if found > VERSION {
        return Err(PgQueueError::SchemaTooNew {
            table: table.to_owned(),
            found,
            known: VERSION,
        });
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.batch_execute(&step.replace("{t}", table)).await?;
    }
    if found < VERSION {
        tx.execute(&format!("DELETE FROM {table}_schema"), &[])
            .await?;
        tx.execute(
            &format!("INSERT INTO {table}_schema (version) VALUES ($1)"),
            &[&VERSION],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}
