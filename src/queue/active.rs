//! What a shutdown must reach that the task table may not list: the task
//! each worker runs while it waits, and the ids of tasks the workers
//! cancelled for a shutdown after its `cancel_all` had run.
//!
//! A task submitted with a handle is not listed until its id is read (see
//! `Cell::list`), so `cancel_all` finds it in the queue while it is
//! pending, here while a worker runs it and it waits, and otherwise the
//! workers cancel it themselves once they see the shutdown (a job they
//! took and had not started, or a task that had not waited yet).

use std::sync::{Arc, Mutex};

use super::cell::{Cancel, Cell};
use super::task::TaskId;
use crate::sync::{lock, Padded};

/// A worker's slot: the task it runs, once that task has waited.
type Slot<Res, E> = Padded<Mutex<Option<Arc<Cell<Res, E>>>>>;

/// One slot per worker, and the ids cancelled late.
pub(crate) struct Active<Res, E> {
    /// By worker index: the task it runs, once that task has waited.
    waiting: Box<[Slot<Res, E>]>,
    /// Tasks the workers cancelled because a shutdown was cancelling
    /// everything, for its summary.
    late: Mutex<Vec<TaskId>>,
}

impl<Res, E> Active<Res, E> {
    /// Empty slots for `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        Active {
            waiting: (0..workers).map(|_| Padded(Mutex::new(None))).collect(),
            late: Mutex::new(Vec::new()),
        }
    }

    /// The worker at `index` runs the task of `cell`, which now waits.
    pub(crate) fn set(&self, index: usize, cell: &Arc<Cell<Res, E>>) {
        *lock(&self.waiting[index]) = Some(cell.clone());
    }

    /// The worker at `index` is done with the task it had set.
    pub(crate) fn clear(&self, index: usize) {
        let done = lock(&self.waiting[index]).take();
        drop(done);
    }

    /// Asks every task a worker runs and that waits to stop; their ids.
    pub(crate) fn cancel_waiting(&self) -> Vec<TaskId> {
        let mut ids = Vec::new();
        for slot in self.waiting.iter() {
            let cell = lock(slot).clone();
            if let Some(cell) = cell {
                if let Cancel::Running = cell.cancel() {
                    ids.push(cell.id);
                }
            }
        }
        ids
    }

    /// A worker cancelled the task `id` for a shutdown.
    pub(crate) fn cancelled_late(&self, id: TaskId) {
        lock(&self.late).push(id);
    }

    /// The ids the workers cancelled for a shutdown, once they stopped.
    pub(crate) fn take_late(&self) -> Vec<TaskId> {
        std::mem::take(&mut *lock(&self.late))
    }
}
