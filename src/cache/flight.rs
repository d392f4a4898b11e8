//! Single-flight: one load per key, shared by every caller that asks for
//! the key while it runs.
//!
//! A load runs as its own tokio task, so it finishes for the callers
//! still waiting (and fills the cache) even when the caller that started
//! it is dropped. Waiters are [`Waiter`] futures registered on a
//! [`Flight`]; dropping one just takes its waker off the list.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::error::{LoadAbandoned, SharedError};
use crate::sync::lock;
use crate::BoxError;

/// What a finished load hands its waiters.
pub(crate) enum Output<Res> {
    /// A response, fresh or (stale-if-error) stale.
    Value { value: Res },
    /// An error shared by several waiters.
    Shared(SharedError),
    /// An error for the only waiter, handed over as is.
    Solo(Option<BoxError>),
    /// The load task went away without finishing.
    Abandoned,
}

struct State<Res> {
    output: Option<Output<Res>>,
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
    waiters: usize,
}

/// One load in progress.
pub(crate) struct Flight<Res> {
    state: Mutex<State<Res>>,
}

impl<Res> Flight<Res> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Flight {
            state: Mutex::new(State {
                output: None,
                wakers: Vec::new(),
                free: Vec::new(),
                waiters: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<Res>> {
        lock(&self.state)
    }

    /// A new waiter for this load's output.
    pub(crate) fn join(self: &Arc<Self>) -> Waiter<Res> {
        let mut st = self.lock();
        let slot = match st.free.pop() {
            Some(i) => i,
            None => {
                st.wakers.push(None);
                st.wakers.len() - 1
            }
        };
        st.waiters += 1;
        Waiter {
            flight: Some(self.clone()),
            slot,
        }
    }

    /// Finishes the load: `make` gets the number of waiters and builds the
    /// output they share; every waiter is woken.
    pub(crate) fn complete(&self, make: impl FnOnce(usize) -> Output<Res>) {
        let wakers: Vec<Waker> = {
            let mut st = self.lock();
            if st.output.is_some() {
                return;
            }
            let out = make(st.waiters);
            st.output = Some(out);
            st.wakers.iter_mut().filter_map(Option::take).collect()
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// Waits for a [`Flight`]'s output.
pub(crate) struct Waiter<Res> {
    flight: Option<Arc<Flight<Res>>>,
    slot: usize,
}

impl<Res> Waiter<Res> {
    fn leave(st: &mut State<Res>, slot: usize) {
        st.wakers[slot] = None;
        st.free.push(slot);
        st.waiters -= 1;
    }
}

impl<Res: Clone> Future for Waiter<Res> {
    type Output = Result<Res, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = self.slot;
        let Some(flight) = self.flight.as_ref() else {
            return Poll::Ready(Err(Box::new(LoadAbandoned)));
        };
        let mut st = flight.lock();
        let result = match &mut st.output {
            None => {
                match &mut st.wakers[slot] {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            Some(Output::Value { value }) => Ok(value.clone()),
            Some(Output::Shared(e)) => Err(Box::new(e.clone()) as BoxError),
            Some(Output::Solo(e)) => Err(e
                .take()
                .unwrap_or_else(|| Box::new(LoadAbandoned) as BoxError)),
            Some(Output::Abandoned) => Err(Box::new(LoadAbandoned) as BoxError),
        };
        Self::leave(&mut st, slot);
        drop(st);
        self.flight = None;
        Poll::Ready(result)
    }
}

impl<Res> Drop for Waiter<Res> {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            Self::leave(&mut flight.lock(), self.slot);
        }
    }
}

impl<Res> fmt::Debug for Waiter<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("done", &self.flight.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn waiters_get_clones_and_dropped_waiters_leave() {
        let f = Flight::<u32>::new();
        let mut a = f.join();
        let b = f.join();
        let mut c = f.join();
        assert!((&mut a).now_or_never().is_none());
        drop(b);
        f.complete(|n| {
            assert_eq!(n, 2);
            Output::Value { value: 7 }
        });
        assert_eq!(a.now_or_never().unwrap().unwrap(), 7);
        assert_eq!((&mut c).now_or_never().unwrap().unwrap(), 7);
        assert_eq!(f.lock().waiters, 0);
    }

    #[test]
    fn solo_error_is_handed_over_unchanged() {
        let f = Flight::<u32>::new();
        let w = f.join();
        f.complete(|n| {
            assert_eq!(n, 1);
            Output::Solo(Some("boom".into()))
        });
        let err = w.now_or_never().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "boom");
        assert!(err.downcast_ref::<SharedError>().is_none());
    }
}
