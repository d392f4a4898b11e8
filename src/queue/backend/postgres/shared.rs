//! The state a [`PgQueue`](super::PgQueue) handle, its clones and its
//! workers share: settings, pool, notification hub, counters.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, OnceCell};
use tokio::task::JoinHandle;

use super::config::Config;
use super::error::PgQueueError;
use super::listen::{self, Hub, Listener};
use super::stats::Counters;
use crate::pool::postgres::PgManager;
use crate::pool::{Pool, Pooled};
use crate::queue::TaskId;
use crate::sync::lock;

/// Where the workers are in a shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Claiming and running.
    Running,
    /// No more claims; tasks not started yet are handed back; running ones
    /// finish.
    Draining,
    /// The deadline passed: running tasks are dropped and handed back too.
    Abort,
}

/// The running workers of one handle.
#[derive(Debug)]
pub(super) struct Workers {
    pub(super) phase: watch::Sender<Phase>,
    pub(super) dispatcher: JoinHandle<()>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) cfg: Config,
    pub(super) pool: Pool<PgManager>,
    pub(super) hub: Arc<Hub>,
    listener: OnceCell<Listener>,
    pub(super) counters: Counters,
    pub(super) closed: AtomicBool,
    pub(super) workers: Mutex<Option<Workers>>,
    /// Tasks handed back since the last shutdown summary.
    pub(super) released: Mutex<Vec<TaskId>>,
    /// Connections kept checked out between statements (at most
    /// `workers + 1`), so a statement does not pay the pool's recycle
    /// round trip; see [`Conn`].
    stash: Mutex<Vec<Pooled<PgManager>>>,
}

/// A connection for one or a few statements: from the handle's stash if
/// one is there, else from the pool; back to the stash afterwards unless
/// its connection has closed (a closed one goes back to the pool, which
/// replaces it). A connection the server dropped unnoticed fails its next
/// statement, which every caller handles, and is then closed.
pub(super) struct Conn<'a> {
    shared: &'a Shared,
    conn: Option<Pooled<PgManager>>,
}

impl Deref for Conn<'_> {
    type Target = tokio_postgres::Client;

    fn deref(&self) -> &tokio_postgres::Client {
        self.conn.as_ref().expect("present until drop")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Client {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.is_closed() {
                let mut stash = lock(&self.shared.stash);
                if stash.len() <= self.shared.cfg.workers {
                    stash.push(conn);
                }
            }
        }
    }
}

impl Shared {
    pub(super) fn new(cfg: Config, pool: Pool<PgManager>) -> Shared {
        Shared {
            cfg,
            pool,
            hub: Arc::new(Hub::new()),
            listener: OnceCell::new(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            workers: Mutex::new(None),
            released: Mutex::new(Vec::new()),
            stash: Mutex::new(Vec::new()),
        }
    }

    /// A connection (see [`Conn`]).
    pub(super) async fn conn(&self) -> Result<Conn<'_>, PgQueueError> {
        loop {
            let Some(conn) = lock(&self.stash).pop() else {
                break;
            };
            if !conn.is_closed() {
                return Ok(Conn {
                    shared: self,
                    conn: Some(conn),
                });
            }
        }
        Ok(Conn {
            shared: self,
            conn: Some(self.pool.acquire().await?),
        })
    }

    /// Starts the `LISTEN` connection if it is not running yet.
    pub(super) async fn listen(&self) {
        self.listener
            .get_or_init(|| {
                listen::start(
                    self.pool.manager().config().clone(),
                    [
                        self.cfg.sql.new_channel.clone(),
                        self.cfg.sql.done_channel.clone(),
                    ],
                    self.hub.clone(),
                    Duration::from_secs(5),
                )
            })
            .await;
    }
}
