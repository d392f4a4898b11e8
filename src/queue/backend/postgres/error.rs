//! [`PgQueueError`]: why a call on a [`PgQueue`](super::PgQueue) failed.

use std::fmt;

use crate::pool::PoolError;
use crate::queue::QueueClosed;

/// Why a [`PgQueue`](super::PgQueue) call failed. Task outcomes are not
/// errors of this kind: a failed task is a
/// [`TaskError`](crate::queue::TaskError) from `result`.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgQueueError {
    /// No connection could be had from the pool (timeout, closed pool, or
    /// the server refused the connection).
    Pool(PoolError<tokio_postgres::Error>),
    /// The database refused or failed a statement.
    Db(tokio_postgres::Error),
    /// A request could not be written as JSON.
    Encode(serde_json::Error),
    /// The table's schema is newer than this version of the crate knows:
    /// upgrade the crate, or use another table name.
    SchemaTooNew {
        /// The table.
        table: String,
        /// The version found in `<table>_schema`.
        found: i32,
        /// The newest version this crate knows.
        known: i32,
    },
    /// The queue was shut down through this handle (or a clone).
    Closed(QueueClosed),
    /// [`PgQueue::start`](super::PgQueue::start) was called on a queue whose
    /// workers are already running.
    AlreadyStarted,
    /// A statement got no answer within the
    /// [`statement_timeout`](super::PgQueueBuilder::statement_timeout); its
    /// connection was given up and the next call uses a fresh one.
    Timeout(std::time::Duration),
}

impl fmt::Display for PgQueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgQueueError::Pool(e) => write!(f, "task queue: no database connection: {e}"),
            PgQueueError::Db(e) => {
                write!(f, "task queue: database error: {e}")?;
                if let Some(db) = e.as_db_error() {
                    write!(f, ": {}", db.message())?;
                }
                Ok(())
            }
            PgQueueError::Encode(e) => write!(f, "task queue: request is not valid JSON: {e}"),
            PgQueueError::SchemaTooNew {
                table,
                found,
                known,
            } => write!(
                f,
                "task queue table {table} has schema version {found}, this crate knows up to \
                 {known}: upgrade tower-patterns or use another table name"
            ),
            PgQueueError::Closed(e) => e.fmt(f),
            PgQueueError::AlreadyStarted => {
                f.write_str("task queue workers already started on this queue")
            }
            PgQueueError::Timeout(d) => write!(
                f,
                "task queue: the database gave no answer within {d:?}; the connection was \
                 replaced (raise PgQueueBuilder::statement_timeout if the database is slow but up)"
            ),
        }
    }
}

impl std::error::Error for PgQueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgQueueError::Pool(e) => Some(e),
            PgQueueError::Db(e) => Some(e),
            PgQueueError::Encode(e) => Some(e),
            PgQueueError::Closed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for PgQueueError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgQueueError::Db(e)
    }
}

impl From<PoolError<tokio_postgres::Error>> for PgQueueError {
    fn from(e: PoolError<tokio_postgres::Error>) -> Self {
        PgQueueError::Pool(e)
    }
}
