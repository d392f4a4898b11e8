//! A connection kept out of the pool and shared by many statements at once
//! (tokio-postgres pipelines concurrent queries on one connection), with
//! its statements prepared once. A handle keeps one for submitters and
//! waiters and up to four for its workers. So a statement costs one round
//! trip: no pool checkout, no recycle check, no parse or plan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use super::error::PgQueueError;
use crate::pool::postgres::PgManager;
use crate::pool::{Pool, Pooled};
use crate::sync::lock;

/// One connection in use, with its prepared statements.
#[derive(Debug)]
struct LaneConn {
    conn: Pooled<PgManager>,
    /// Keyed by the address of the statement's text, which lives in the
    /// handle's settings for as long as the handle.
    prepared: Mutex<HashMap<usize, Statement>>,
}

/// A lane: its connection, taken from the pool when first needed and again
/// after the last one closed.
#[derive(Debug, Default)]
pub(super) struct Lane {
    slot: Mutex<Option<Arc<LaneConn>>>,
}

impl Lane {
    /// Runs `sql` with `params` (value and type each) on this lane.
    pub(super) async fn query(
        &self,
        pool: &Pool<PgManager>,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        timeout: Duration,
    ) -> Result<Vec<Row>, PgQueueError> {
        let lane = self.conn(pool).await?;
        let key = sql.as_ptr() as usize;
        let known = lock(&lane.prepared).get(&key).cloned();
        let result = async {
            let stmt = match known {
                Some(stmt) => stmt,
                None => {
                    let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
                    let stmt = lane.conn.prepare_typed(sql, &types).await?;
                    lock(&lane.prepared).insert(key, stmt.clone());
                    stmt
                }
            };
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
            lane.conn.query(&stmt, &values).await
        };
        let Ok(result) = tokio::time::timeout(crate::time::capped(timeout), result).await else {
            // No answer: the connection may be wedged (a server or network
            // that stopped mid-session). Give it up; the next statement
            // takes a fresh one. The pool checks it before lending it again.
            lock(&lane.prepared).remove(&key);
            let mut slot = lock(&self.slot);
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &lane)) {
                *slot = None;
            }
            return Err(PgQueueError::Timeout(timeout));
        };
        result.map_err(|e| {
            // Prepare afresh next time; a closed connection is replaced.
            lock(&lane.prepared).remove(&key);
            if lane.conn.is_closed() {
                let mut slot = lock(&self.slot);
                if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &lane)) {
                    *slot = None;
                }
            }
            PgQueueError::Db(e)
        })
    }

    async fn conn(&self, pool: &Pool<PgManager>) -> Result<Arc<LaneConn>, PgQueueError> {
        if let Some(c) = lock(&self.slot).as_ref() {
            if !c.conn.is_closed() {
                return Ok(c.clone());
            }
        }
        let fresh = Arc::new(LaneConn {
            conn: pool.acquire().await?,
            prepared: Mutex::new(HashMap::new()),
        });
        let mut slot = lock(&self.slot);
        match slot.as_ref() {
            // Another caller got there first: use theirs, ours goes back.
            Some(c) if !c.conn.is_closed() => Ok(c.clone()),
            _ => {
                *slot = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }
}
