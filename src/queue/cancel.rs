//! Cancelling tasks: one by id or through its handle, a job a worker took
//! and will not start, and everything unfinished at a shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use super::cell::{Cancel, Cell};
use super::handle::Table;
use super::shared::Shared;
use super::task::TaskId;
use crate::sync::lock;
use crate::trace::{record, trace_event};

impl<Req, Res, E> Shared<Req, Res, E> {
    /// Whether a shutdown is cancelling everything unfinished (see
    /// [`cancel_all`](Self::cancel_all)).
    pub(crate) fn cancelling(&self) -> bool {
        self.cancelling.load(Ordering::SeqCst)
    }

    /// Cancels a claimed job its worker will not run (the worker stopped,
    /// or a shutdown is cancelling everything); true if this cancelled it.
    pub(crate) fn cancel_claimed(&self, cell: &Cell<Res, E>) -> bool {
        match cell.cancel() {
            Cancel::Pending { park, wake } => {
                self.unclaim();
                self.cancelled_pending(cell.id, park, wake);
                true
            }
            Cancel::Running | Cancel::NotActive => false,
        }
    }

    /// A cancelled pending task, counted, parked if nobody waits, then its
    /// waiter woken.
    pub(crate) fn cancelled_pending(&self, id: TaskId, park: bool, wake: Option<Waker>) {
        self.counters.cancelled.fetch_add(1, Ordering::Release);
        record!(self.metrics, |m| {
            m.depth.decrement(1);
            m.cancelled.increment(1)
        });
        self.counters
            .cancelled_pending
            .fetch_add(1, Ordering::Relaxed);
        if park {
            self.table.park(id);
        }
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Cancels every task still waiting in the queue.
    pub(crate) fn cancel_queued(&self) -> Vec<TaskId> {
        let drained: Vec<_> = {
            let mut jobs = lock(&self.jobs);
            let drained = jobs.queue.drain(..).collect();
            jobs.space.notify_all();
            drained
        };
        let mut ids = Vec::with_capacity(drained.len());
        for job in drained {
            if let Cancel::Pending { park, wake } = job.cell.cancel() {
                self.cancelled_pending(job.cell.id, park, wake);
                ids.push(job.cell.id);
            }
        }
        ids
    }

    /// Cancels every unfinished task, pending or running; returns their ids
    /// in order. A task only its handle names (see `Cell::list`) is found
    /// in the queue, or among the tasks the workers run that wait; the
    /// workers cancel the rest themselves as they see the flag set here,
    /// and report them in [`Active::take_late`](super::active::Active::take_late).
    pub(crate) fn cancel_all(&self) -> Vec<TaskId> {
        // Before the table is read: a task listed after this point is
        // cancelled by its submitter (see `track`).
        self.cancelling.store(true, Ordering::SeqCst);
        let mut ids = self.cancel_queued();
        for active in self.table.unfinished() {
            for cell in active {
                match cell.cancel() {
                    Cancel::NotActive => {}
                    Cancel::Running => ids.push(cell.id),
                    Cancel::Pending { park, wake } => {
                        // The queue was drained above: a pending task
                        // left is one a worker claimed.
                        self.unclaim();
                        self.cancelled_pending(cell.id, park, wake);
                        ids.push(cell.id);
                    }
                }
            }
        }
        ids.extend(self.active.cancel_waiting());
        ids.sort_unstable();
        if !ids.is_empty() {
            trace_event!(
                WARN,
                cancelled = ids.len(),
                "task queue deadline passed: tasks cancelled"
            );
        }
        ids
    }

    /// Cancels the task of `cell` (see [`TaskQueue::cancel`](super::TaskQueue::cancel)).
    pub(crate) fn cancel_tracked(&self, cell: &Cell<Res, E>) -> bool {
        let id = cell.id;
        match cell.cancel() {
            Cancel::NotActive => false,
            Cancel::Running => {
                trace_event!(DEBUG, task = %id, "running task cancelled");
                true
            }
            Cancel::Pending { park, wake } => {
                let queued = {
                    let mut jobs = lock(&self.jobs);
                    match jobs.queue.iter().position(|j| j.cell.id == id) {
                        Some(pos) => {
                            jobs.queue.remove(pos);
                            Ok(jobs.space.notify_one())
                        }
                        None => Err(()),
                    }
                };
                match queued {
                    Ok(Some(w)) => w.wake(),
                    Ok(None) => {}
                    // Not in the queue: a worker claimed it (and will skip it).
                    Err(()) => self.unclaim(),
                }
                self.cancelled_pending(id, park, wake);
                trace_event!(DEBUG, task = %id, "pending task cancelled");
                true
            }
        }
    }
}

impl<Req, Res, E> Table<Res, E> for Shared<Req, Res, E>
where
    Req: Send,
    Res: Send,
    E: Send,
{
    fn taken(&self, id: TaskId) {
        self.table.taken(id);
    }

    fn park(&self, id: TaskId) {
        self.table.park(id);
    }

    fn cancel(&self, id: TaskId) -> bool {
        let Some(cell) = self.table.lookup(id) else {
            return false;
        };
        self.cancel_tracked(&cell)
    }

    fn cancel_cell(&self, cell: &Cell<Res, E>) -> bool {
        self.cancel_tracked(cell)
    }

    fn list(&self, cell: &Arc<Cell<Res, E>>) {
        if cell.list() {
            self.table.insert(cell.id.0, cell.clone());
        }
    }
}
