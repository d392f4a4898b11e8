//! Single-flight: one load per key, shared by every caller that asks for
//! the key while it runs.
//!
//! A lone miss loads inline: the load is a boxed future that its first
//! caller (the leader) polls from its own response future, so a miss costs
//! no task and no cross-task wake. Between the leader's polls the load is
//! parked in the [`Flight`]; when a second caller joins, it takes the
//! parked load and spawns it as a tokio task (or, if the leader is polling
//! it at that moment, asks the leader to spawn it as soon as its poll
//! returns). From then on the load runs on its own, so no caller waits on
//! another caller being polled, and it finishes (and fills the cache) even
//! if every caller is dropped. A leader dropped before its load finished
//! hands the load to a task too, as does a leader that got its answer
//! while the load still has work left (writing to a remote tier).
//!
//! Waiters are [`Waiter`] futures registered on a [`Flight`]; dropping one
//! just takes its waker off the list.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use hashbrown::HashTable;

use super::error::{LoadAbandoned, SharedError};
use super::store::hash::FoldState;
use crate::sync::lock;
use crate::BoxError;

/// A load: calls the inner service (and the remote tier), stores what may
/// be stored and completes its [`Flight`] on every path, drop included.
pub(crate) type BoxLoad = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The loads in flight, by key. A miss hashes its key once, with the
/// memory store's fast seeded hasher (not SipHash: keys such as URIs hash
/// byte by byte), for the store and this table, and keeps the hash for
/// taking the load off again.
pub(crate) struct Flights<K, Res> {
    hasher: FoldState,
    table: HashTable<(K, Arc<Flight<Res>>)>,
}

impl<K: Hash + Eq, Res> Flights<K, Res> {
    /// An empty table whose keys are hashed by `hasher` (the memory
    /// store's, so a miss hashes its key once for both).
    pub(crate) fn new(hasher: FoldState) -> Self {
        Flights {
            hasher,
            table: HashTable::new(),
        }
    }

    /// The load in flight for `key` (hashed to `hash`).
    pub(crate) fn get(&self, hash: u64, key: &K) -> Option<&Arc<Flight<Res>>> {
        self.table.find(hash, |(k, _)| k == key).map(|(_, f)| f)
    }

    /// Registers `flight` as the load for `key`; there must be none.
    pub(crate) fn insert(&mut self, hash: u64, key: K, flight: Arc<Flight<Res>>) {
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, (key, flight), |(k, _)| hasher.hash_one(k));
    }

    /// Takes `flight` (registered under `hash`) off, if it is still there.
    /// A flight is registered once, so its identity finds it: no key
    /// comparison (a URI's compares its host byte by byte).
    pub(crate) fn remove(&mut self, hash: u64, flight: &Arc<Flight<Res>>) {
        if let Ok(entry) = self.table.find_entry(hash, |(_, f)| Arc::ptr_eq(f, flight)) {
            entry.remove();
        }
    }
}

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

/// Where a flight's load is.
enum Load {
    /// With its leader: being set up or polled. `hand_off`: a second caller
    /// joined meanwhile, so the leader spawns it as soon as it lets go.
    Held { hand_off: bool },
    /// Between its leader's polls: whoever joins next may take it.
    Parked(BoxLoad),
    /// In a task of its own, finished, or dropped.
    Away,
}

struct State<Res> {
    output: Option<Output<Res>>,
    /// The leader's waker (slot [`LEAD`]); the others' in `wakers`.
    lead: Option<Waker>,
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
    waiters: usize,
    /// The output is final and nobody can join any more.
    sealed: bool,
    load: Load,
}

/// The leader's slot: a lone miss allocates no waker list.
const LEAD: usize = usize::MAX;

/// One load in progress.
pub(crate) struct Flight<Res> {
    state: Mutex<State<Res>>,
}

impl<Res> Flight<Res> {
    /// A flight whose load runs as a task of its own (spawned by the caller).
    pub(crate) fn new() -> Arc<Self> {
        Self::with(Load::Away)
    }

    /// A flight whose load will run inline in its leader (see
    /// [`lead`](Self::lead) and [`park`](Self::park)).
    pub(crate) fn leading() -> Arc<Self> {
        Self::with(Load::Held { hand_off: false })
    }

    fn with(load: Load) -> Arc<Self> {
        Arc::new(Flight {
            state: Mutex::new(State {
                output: None,
                lead: None,
                wakers: Vec::new(),
                free: Vec::new(),
                waiters: 0,
                sealed: false,
                load,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<Res>> {
        lock(&self.state)
    }

    fn register(st: &mut State<Res>) -> usize {
        st.waiters += 1;
        match st.free.pop() {
            Some(i) => i,
            None => {
                st.wakers.push(None);
                st.wakers.len() - 1
            }
        }
    }

    /// A new waiter for this load's output. If the load is parked in its
    /// leader, it is spawned now: the joiner must not depend on the leader
    /// being polled. (Outside a runtime it stays with its leader.)
    pub(crate) fn join(self: &Arc<Self>) -> Waiter<Res> {
        let rt = tokio::runtime::Handle::try_current().ok();
        let mut st = self.lock();
        let slot = Self::register(&mut st);
        let mut parked = None;
        match &mut st.load {
            Load::Held { hand_off } => *hand_off = true,
            Load::Parked(_) if rt.is_some() => {
                if let Load::Parked(load) = mem::replace(&mut st.load, Load::Away) {
                    parked = Some(load);
                }
            }
            Load::Parked(_) | Load::Away => {}
        }
        drop(st);
        if let (Some(load), Some(rt)) = (parked, rt) {
            drop(rt.spawn(load));
        }
        Waiter {
            flight: Some(self.clone()),
            slot,
            leads: false,
        }
    }

    /// The leader's waiter, for a flight made with [`leading`](Self::leading):
    /// it drives the load [`park`](Self::park)ed here while it is alone.
    pub(crate) fn lead(self: &Arc<Self>) -> Waiter<Res> {
        self.lock().waiters += 1;
        Waiter {
            flight: Some(self.clone()),
            slot: LEAD,
            leads: true,
        }
    }

    /// Hands the leader's new load to the flight; spawns it at once if a
    /// second caller joined while it was being made.
    pub(crate) fn park(&self, load: BoxLoad) {
        self.let_go(self.lock(), load);
    }

    /// The leader lets go of `load` (its state `Held`): parked for the next
    /// poll, or spawned if a second caller joined meanwhile (outside a
    /// runtime it stays parked: the leader keeps driving it). Parked, the
    /// lock is handed back, still held; spawned, it was let go first.
    fn let_go<'a>(
        &self,
        mut st: MutexGuard<'a, State<Res>>,
        load: BoxLoad,
    ) -> Option<MutexGuard<'a, State<Res>>> {
        if let Load::Held { hand_off: true } = st.load {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                st.load = Load::Away;
                drop(st);
                drop(rt.spawn(load));
                return None;
            }
        }
        st.load = Load::Parked(load);
        Some(st)
    }

    /// A leader leaves (answered, or dropped): a load still parked is
    /// spawned, so it finishes for the cache and for the callers that
    /// joined; outside a runtime it is dropped (which completes the flight
    /// as abandoned).
    fn leave_lead(&self, st: &mut State<Res>) -> Option<BoxLoad> {
        match mem::replace(&mut st.load, Load::Away) {
            Load::Parked(load) => Some(load),
            other => {
                st.load = other;
                None
            }
        }
    }

    /// Finishes the load, taken off the map of loads in flight already:
    /// `make` gets the number of waiters and builds the output they share;
    /// every waiter is woken. (The last waiter to read the output takes
    /// it instead of cloning it: nobody can join any more.)
    pub(crate) fn complete(&self, make: impl FnOnce(usize) -> Output<Res>) {
        self.complete_as(true, make);
    }

    /// Answers the waiters while the load goes on (stale-while-revalidate
    /// from the remote tier): callers may still join and read the output.
    pub(crate) fn answer_early(&self, make: impl FnOnce(usize) -> Output<Res>) {
        self.complete_as(false, make);
    }

    fn complete_as(&self, sealed: bool, make: impl FnOnce(usize) -> Output<Res>) {
        let lead_waker;
        let wakers: Vec<Waker> = {
            let mut st = self.lock();
            if st.output.is_some() {
                return;
            }
            let out = make(st.waiters);
            st.output = Some(out);
            st.sealed = sealed;
            // A leader polling its load inline reads the output when the
            // poll returns: waking it would only poll it once more.
            let lead = st.lead.take();
            lead_waker = lead.filter(|_| !matches!(st.load, Load::Held { .. }));
            st.wakers.iter_mut().filter_map(Option::take).collect()
        };
        if let Some(w) = lead_waker {
            w.wake();
        }
        for w in wakers {
            w.wake();
        }
    }
}

/// Waits for a [`Flight`]'s output; the leader's also drives the load
/// while it is parked in the flight.
pub(crate) struct Waiter<Res> {
    flight: Option<Arc<Flight<Res>>>,
    slot: usize,
    leads: bool,
}

impl<Res> Waiter<Res> {
    /// Takes the waiter off the flight; a leader's load still parked
    /// there is returned, to be run away from it.
    fn leave(
        flight: &Flight<Res>,
        st: &mut State<Res>,
        slot: usize,
        leads: bool,
    ) -> Option<BoxLoad> {
        st.waiters -= 1;
        if slot == LEAD {
            st.lead = None;
        } else {
            st.wakers[slot] = None;
            st.free.push(slot);
        }
        if leads {
            flight.leave_lead(st)
        } else {
            None
        }
    }

    /// Runs a load its leader left behind as a task; outside a runtime it
    /// is dropped, which completes its flight as abandoned.
    fn run_away(load: Option<BoxLoad>) {
        if let Some(load) = load {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                drop(rt.spawn(load));
            }
        }
    }
}

impl<Res: Clone> Future for Waiter<Res> {
    type Output = Result<Res, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (slot, leads) = (self.slot, self.leads);
        let Some(flight) = self.flight.as_ref() else {
            return Poll::Ready(Err(Box::new(LoadAbandoned)));
        };
        let mut st = flight.lock();
        if leads && st.output.is_none() && matches!(st.load, Load::Parked(_)) {
            // Alone so far: drive the load here, without the lock.
            if let Load::Parked(mut load) =
                mem::replace(&mut st.load, Load::Held { hand_off: false })
            {
                drop(st);
                // A panic ends the load as it would end its task: the
                // load's guard answers "abandoned", here and to any joiner.
                let polled = panic::catch_unwind(AssertUnwindSafe(|| load.as_mut().poll(cx)));
                if !matches!(polled, Ok(Poll::Pending)) {
                    drop(load);
                    st = flight.lock();
                    st.load = Load::Away;
                } else {
                    st = match flight.let_go(flight.lock(), load) {
                        Some(st) => st,
                        None => flight.lock(),
                    };
                }
            }
        }
        let last = st.sealed && st.waiters == 1;
        let result = match &mut st.output {
            None => {
                // Also for a leader whose load is parked: a joiner may take
                // the load to a task, which then wakes us here.
                let w = if slot == LEAD {
                    &mut st.lead
                } else {
                    &mut st.wakers[slot]
                };
                match w {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            Some(Output::Value { value }) if !last => Ok(value.clone()),
            Some(out @ Output::Value { .. }) => match mem::replace(out, Output::Abandoned) {
                Output::Value { value } => Ok(value),
                _ => Err(Box::new(LoadAbandoned) as BoxError),
            },
            Some(Output::Shared(e)) => Err(Box::new(e.clone()) as BoxError),
            Some(Output::Solo(e)) => Err(e
                .take()
                .unwrap_or_else(|| Box::new(LoadAbandoned) as BoxError)),
            Some(Output::Abandoned) => Err(Box::new(LoadAbandoned) as BoxError),
        };
        let left = Self::leave(flight, &mut st, slot, leads);
        drop(st);
        self.flight = None;
        Self::run_away(left);
        Poll::Ready(result)
    }
}

impl<Res> Drop for Waiter<Res> {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            let left = Self::leave(&flight, &mut flight.lock(), self.slot, self.leads);
            Self::run_away(left);
        }
    }
}

impl<Res> fmt::Debug for Waiter<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("done", &self.flight.is_none())
            .field("leads", &self.leads)
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

    /// A load that waits for `go`, then completes `flight` with 7.
    fn load(flight: &Arc<Flight<u32>>, go: futures::channel::oneshot::Receiver<()>) -> BoxLoad {
        let flight = flight.clone();
        Box::pin(async move {
            let _ = go.await;
            flight.complete(|_| Output::Value { value: 7 });
        })
    }

    #[test]
    fn a_lone_leader_drives_its_load_inline() {
        // No runtime: nothing could run a task.
        let f = Flight::<u32>::leading();
        let mut lead = f.lead();
        let (tx, rx) = futures::channel::oneshot::channel();
        f.park(load(&f, rx));
        assert!((&mut lead).now_or_never().is_none());
        tx.send(()).unwrap();
        assert_eq!(lead.now_or_never().unwrap().unwrap(), 7);
        assert!(matches!(f.lock().load, Load::Away));
    }

    #[tokio::test]
    async fn a_joiner_takes_the_parked_load_to_a_task() {
        let f = Flight::<u32>::leading();
        let mut lead = f.lead();
        let (tx, rx) = futures::channel::oneshot::channel();
        f.park(load(&f, rx));
        assert!((&mut lead).now_or_never().is_none());
        // The leader is never polled again: the joiner must not need it.
        let joiner = f.join();
        assert!(matches!(f.lock().load, Load::Away));
        tx.send(()).unwrap();
        assert_eq!(joiner.await.unwrap(), 7);
        assert_eq!(lead.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_join_during_the_leaders_poll_hands_the_load_off_after_it() {
        let f = Flight::<u32>::leading();
        let mut lead = f.lead();
        let (tx, rx) = futures::channel::oneshot::channel();
        let joined = Arc::new(Mutex::new(None));
        let flight = f.clone();
        let slot = joined.clone();
        f.park(Box::pin(async move {
            // A second caller joins while the leader polls the load.
            *slot.lock().unwrap() = Some(flight.join());
            let _ = rx.await;
            flight.complete(|_| Output::Value { value: 7 });
        }));
        assert!((&mut lead).now_or_never().is_none());
        assert!(
            matches!(f.lock().load, Load::Away),
            "spawned after the poll"
        );
        let joiner = joined.lock().unwrap().take().unwrap();
        tx.send(()).unwrap();
        assert_eq!(joiner.await.unwrap(), 7);
        drop(lead);
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_its_load_to_a_task() {
        let f = Flight::<u32>::leading();
        let mut lead = f.lead();
        let (tx, rx) = futures::channel::oneshot::channel();
        f.park(load(&f, rx));
        assert!((&mut lead).now_or_never().is_none());
        drop(lead);
        assert!(matches!(f.lock().load, Load::Away));
        tx.send(()).unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            f.lock().output.is_some(),
            "the load finished without its leader"
        );
    }
}
