//! [`Pooled`], the RAII guard an acquire hands out, and the internal slot guard.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::manager::Manager;
use super::shared::{Inner, Live};
use super::stats::Reason;

/// A resource checked out of a [`Pool`](super::Pool).
///
/// Derefs to the resource. Dropping the guard returns the resource to the
/// pool (or hands it straight to the longest-waiting acquirer); a resource
/// past its `max_lifetime`, or returned after [`Pool::close`](super::Pool::close),
/// is closed instead. [`Pooled::detach`] takes the resource out of the pool
/// for good.
pub struct Pooled<M: Manager> {
    pool: Arc<Inner<M>>,
    // `Some` from construction until `Drop` or `detach` consume the guard.
    live: Option<Live<M::Resource>>,
}

impl<M: Manager> Pooled<M> {
    pub(super) fn new(pool: Arc<Inner<M>>, live: Live<M::Resource>) -> Self {
        Pooled {
            pool,
            live: Some(live),
        }
    }

    /// Takes the resource out of the pool for good and returns it.
    ///
    /// The pool forgets the resource: its slot is freed at once (a waiting
    /// acquirer may create a replacement) and it is counted in
    /// [`ClosedByReason::detached`](super::ClosedByReason::detached).
    /// Written `Pooled::detach(conn)`, like `Box::leak`, so it cannot be
    /// confused with a method of the resource.
    pub fn detach(mut this: Self) -> M::Resource {
        let live = this
            .live
            .take()
            .expect("a Pooled guard holds its resource until it is consumed");
        this.pool.free_slot(Some(Reason::Detached));
        live.resource
    }

    fn live(&self) -> &Live<M::Resource> {
        self.live
            .as_ref()
            .expect("a Pooled guard holds its resource until it is consumed")
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Resource;

    fn deref(&self) -> &M::Resource {
        &self.live().resource
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        &mut self
            .live
            .as_mut()
            .expect("a Pooled guard holds its resource until it is consumed")
            .resource
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            self.pool.release(live);
        }
    }
}

impl<M: Manager> fmt::Debug for Pooled<M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("resource", &self.live().resource)
            .finish()
    }
}

/// Owns one unit of the pool's size while a resource is being created or
/// checked. Dropping it (an acquire was cancelled, a create failed) frees
/// the unit: the next waiter may create, or the pool shrinks.
pub(super) struct SlotGuard<'a, M: Manager> {
    pool: &'a Inner<M>,
    armed: bool,
    /// Counted as a closed resource when the guard frees its slot.
    pub(super) reason: Option<Reason>,
}

impl<'a, M: Manager> SlotGuard<'a, M> {
    pub(super) fn new(pool: &'a Inner<M>) -> Self {
        SlotGuard {
            pool,
            armed: true,
            reason: None,
        }
    }

    /// The slot now belongs to a live resource.
    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl<M: Manager> Drop for SlotGuard<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.free_slot(self.reason);
        }
    }
}
