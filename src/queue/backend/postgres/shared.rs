//! The state a [`PgQueue`](super::PgQueue) handle, its clones and its
//! workers share: settings, pool, notification hub, counters.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, OnceCell};
use tokio::task::JoinHandle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::config::Config;
use super::error::PgQueueError;
use super::lane::Lane;
use super::listen::{self, Hub, Listener};
use super::stats::Counters;
use crate::pool::postgres::PgManager;
use crate::pool::Pool;
use crate::queue::TaskId;

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
    /// Statements of submitters and waiters.
    pub(super) client_lane: Lane,
    /// Statements of the workers: the claiming loop uses the first, a
    /// task the one its id picks (`min(workers, 4)` lanes).
    pub(super) worker_lanes: Vec<Lane>,
    #[cfg(feature = "metrics")]
    pub(super) metrics: crate::metrics::Instruments<crate::metrics::PgQueueMetrics>,
}

impl Shared {
    pub(super) fn new(cfg: Config, pool: Pool<PgManager>) -> Shared {
        let lanes = cfg.workers.clamp(1, 4);
        Shared {
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new(cfg.name.clone()),
            cfg,
            pool,
            hub: Arc::new(Hub::new()),
            listener: OnceCell::new(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            workers: Mutex::new(None),
            released: Mutex::new(Vec::new()),
            client_lane: Lane::default(),
            worker_lanes: (0..lanes).map(|_| Lane::default()).collect(),
        }
    }

    /// Runs a submitter's or waiter's statement.
    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, PgQueueError> {
        self.client_lane
            .query(&self.pool, sql, params, self.cfg.statement_timeout)
            .await
    }

    /// Runs a worker's statement on the lane `key` picks.
    pub(super) async fn work(
        &self,
        key: u64,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, PgQueueError> {
        let lane = &self.worker_lanes[(key % self.worker_lanes.len() as u64) as usize];
        lane.query(&self.pool, sql, params, self.cfg.statement_timeout)
            .await
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
