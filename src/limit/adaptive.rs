//! The adaptive concurrency limit: layer, builder, service, response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::algorithm::{Aimd, AimdConfig, Algorithm, Bounds, Gradient2, GradientConfig, Sample};
use super::gate::{Acquire, Gate, LimitStats, Wait};
use super::Overloaded;
use crate::classify::{Classify, DefaultClassify};
use crate::trace::trace_event;
use crate::{BoxError, ConfigError};

/// State shared by every clone of one adaptive limiter.
struct Shared {
    gate: Arc<Gate>,
    /// Permits held right now.
    in_flight: AtomicUsize,
    /// Permits to retire as they come back: the limit fell while they were
    /// out, so they could not be taken from the semaphore at once.
    debt: AtomicUsize,
    algorithm: Mutex<Box<dyn Algorithm>>,
}

impl Shared {
    fn new(algorithm: Box<dyn Algorithm>) -> Self {
        Shared {
            gate: Arc::new(Gate::new(algorithm.limit())),
            in_flight: AtomicUsize::new(0),
            debt: AtomicUsize::new(0),
            algorithm: Mutex::new(algorithm),
        }
    }

    fn stats(&self) -> LimitStats {
        LimitStats {
            limit: self.gate.limit.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            waiting: self.gate.waiting.load(Ordering::Relaxed),
            rejected: self.gate.rejected.load(Ordering::Relaxed),
        }
    }

    fn on_sample(&self, sample: &Sample) {
        // Never wait for the lock: if another call is updating the
        // algorithm right now, this sample is skipped. Under that much
        // traffic one sample more or less changes nothing, and no call
        // ever queues behind another on the success path. A panic cannot
        // poison the state in a harmful way (each update is a few float
        // operations), so a poisoned lock is used as is.
        let mut algorithm = match self.algorithm.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let new = algorithm.update(sample);
        let old = self.gate.limit.load(Ordering::Relaxed);
        if new != old {
            // Under the lock, so resizes never interleave.
            self.resize(old, new);
            self.gate.limit.store(new, Ordering::Relaxed);
            trace_event!(
                DEBUG,
                from = old,
                to = new,
                "adaptive concurrency limit changed"
            );
        }
    }

    /// Moves the semaphore from `old` to `new` permits. Invariant:
    /// permits in the semaphore (free or held) minus `debt` equals the limit.
    fn resize(&self, old: usize, new: usize) {
        let sem = &self.gate.semaphore;
        if new > old {
            let mut grow = new - old;
            let paid = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d - d.min(grow))
                })
                .map_or(0, |d| d.min(grow));
            grow -= paid;
            if grow > 0 {
                sem.add_permits(grow);
            }
        } else {
            let shrink = old - new;
            let forgotten = sem.forget_permits(shrink);
            if forgotten < shrink {
                self.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
            }
        }
    }
}

/// A held permit of the adaptive limiter.
struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    /// Permits held when this one was granted, itself included.
    in_flight: usize,
}

impl Permit {
    fn new(permit: OwnedSemaphorePermit, shared: Arc<Shared>) -> Self {
        let in_flight = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        Permit {
            permit: Some(permit),
            shared,
            in_flight,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(permit) = self.permit.take() {
            let debt = &self.shared.debt;
            let owed = debt.load(Ordering::Acquire) > 0
                && debt
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                    .is_ok();
            if owed {
                permit.forget();
            }
        }
    }
}

/// Which algorithm moves the limit.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Gradient(GradientConfig),
    Aimd(AimdConfig),
}

/// A concurrency limit that moves with the latency and failures it
/// observes, as Netflix's concurrency-limits does.
///
/// - [`gradient`](Self::gradient): Gradient2. Compares each call's latency
///   with a long-term average; grows the limit while latency stays flat and
///   shrinks it as queueing makes latency rise. Finds a server's
///   concurrency knee without being told about it.
/// - [`aimd`](Self::aimd): additive increase (+1 per successful call while
///   busy), multiplicative decrease (halving by default) on a failure or a
///   call slower than a timeout.
///
/// Failures are decided by a [`Classify`] ([`DefaultClassify`]: every `Err`;
/// set another with [`classify`](Self::classify), e.g.
/// [`HttpClassify`](crate::classify::HttpClassify) so 503s count). Calls
/// whose future is dropped before it completes are not samples: place a
/// timeout *inside* this layer so that timeouts reach it as errors.
///
/// Permits are taken in `poll_ready` and queued first come, first served,
/// as with [`ConcurrencyLimitLayer`](super::ConcurrencyLimitLayer), including
/// [`max_wait`](Self::max_wait) and [`reject_when_full`](Self::reject_when_full).
/// The limit lives in the layer: every service it makes, and their clones,
/// share it.
pub struct AdaptiveLimitLayer<C = DefaultClassify> {
    shared: Arc<Shared>,
    wait: Wait,
    classify: C,
}

impl<C: Clone> Clone for AdaptiveLimitLayer<C> {
    fn clone(&self) -> Self {
        AdaptiveLimitLayer {
            shared: self.shared.clone(),
            wait: self.wait,
            classify: self.classify.clone(),
        }
    }
}

impl<C> fmt::Debug for AdaptiveLimitLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitLayer")
            .field("stats", &self.shared.stats())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimitLayer {
    /// Gradient2 with the defaults: limit starts at 20 and moves within
    /// 1..=200. See [`builder`](Self::builder) to change them.
    pub fn gradient() -> Self {
        AdaptiveLimitBuilder::new().build_unchecked()
    }

    /// AIMD with the defaults: limit starts at 20 and moves within 1..=200;
    /// halves on a failure or a call slower than 5 s.
    pub fn aimd() -> Self {
        AdaptiveLimitBuilder::new().aimd().build_unchecked()
    }

    /// A builder for the limits and tuning (Gradient2 unless
    /// [`aimd`](AdaptiveLimitBuilder::aimd) is chosen).
    ///
    /// ```
    /// use tower_patterns::limit::AdaptiveLimitLayer;
    ///
    /// let layer = AdaptiveLimitLayer::builder()
    ///     .aimd()
    ///     .initial_limit(8)
    ///     .min_limit(2)
    ///     .max_limit(64)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.stats().limit, 8);
    ///
    /// let err = AdaptiveLimitLayer::builder().min_limit(10).max_limit(5).build();
    /// assert_eq!(err.unwrap_err().field(), "max_limit");
    /// ```
    pub fn builder() -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder::new()
    }
}

impl<C> AdaptiveLimitLayer<C> {
    /// Uses `classify` to decide which calls failed (failures shrink the
    /// limit).
    pub fn classify<C2>(self, classify: C2) -> AdaptiveLimitLayer<C2> {
        AdaptiveLimitLayer {
            shared: self.shared,
            wait: self.wait,
            classify,
        }
    }

    /// Waits at most `max_wait` for a permit, then fails with [`Overloaded`].
    /// Zero means [`reject_when_full`](Self::reject_when_full).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// Never waits: fails at once with [`Overloaded`] when the limit is
    /// reached (Netflix's server-side behaviour).
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// A snapshot: the current limit, permits in flight, callers waiting,
    /// calls rejected.
    pub fn stats(&self) -> LimitStats {
        self.shared.stats()
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveLimitLayer<C> {
    type Service = AdaptiveLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit {
            inner,
            shared: self.shared.clone(),
            wait: self.wait,
            classify: self.classify.clone(),
            permit: None,
            rejected: None,
            acquire: Acquire::Idle,
        }
    }
}

/// Builds an [`AdaptiveLimitLayer`]; [`build`](Self::build) validates.
#[derive(Clone, Debug)]
pub struct AdaptiveLimitBuilder {
    kind: Kind,
    initial: Option<usize>,
    min: usize,
    max: usize,
    wait: Wait,
}

const DEFAULT_INITIAL: usize = 20;

impl AdaptiveLimitBuilder {
    fn new() -> Self {
        AdaptiveLimitBuilder {
            kind: Kind::Gradient(GradientConfig::default()),
            initial: None,
            min: 1,
            max: 200,
            wait: Wait::Forever,
        }
    }

    /// Use Gradient2 (the default), with its default tuning.
    pub fn gradient(mut self) -> Self {
        if !matches!(self.kind, Kind::Gradient(_)) {
            self.kind = Kind::Gradient(GradientConfig::default());
        }
        self
    }

    /// Use AIMD, with its default tuning.
    pub fn aimd(mut self) -> Self {
        if !matches!(self.kind, Kind::Aimd(_)) {
            self.kind = Kind::Aimd(AimdConfig::default());
        }
        self
    }

    /// The limit to start from (default 20, kept within min..=max when not
    /// set explicitly).
    pub fn initial_limit(mut self, limit: usize) -> Self {
        self.initial = Some(limit);
        self
    }

    /// The lowest the limit may go (default 1; at least 1).
    pub fn min_limit(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The highest the limit may go (default 200).
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }

    /// Gradient2 only: the weight of each new estimate, in (0, 1]. Lower is
    /// steadier, higher reacts faster. Default 0.1 (Netflix uses 0.2 with
    /// windowed samples; this limiter updates on every call).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        if let Kind::Gradient(c) = &mut self.kind {
            c.smoothing = smoothing;
        }
        self
    }

    /// Gradient2 only: how far the limit may grow per call while latency
    /// is flat (before smoothing). Default 1.
    pub fn queue_size(mut self, queue_size: usize) -> Self {
        if let Kind::Gradient(c) = &mut self.kind {
            c.queue_size = queue_size;
        }
        self
    }

    /// Gradient2 only: how many calls the long-term latency average spans.
    /// Default 600.
    pub fn long_window(mut self, calls: u32) -> Self {
        if let Kind::Gradient(c) = &mut self.kind {
            c.long_window = calls;
        }
        self
    }

    /// AIMD only: the factor applied to the limit on a failure, in (0, 1).
    /// Default 0.5.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        if let Kind::Aimd(c) = &mut self.kind {
            c.backoff_ratio = ratio;
        }
        self
    }

    /// AIMD only: a call slower than this counts as a failure. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if let Kind::Aimd(c) = &mut self.kind {
            c.timeout = timeout;
        }
        self
    }

    /// See [`AdaptiveLimitLayer::max_wait`].
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// See [`AdaptiveLimitLayer::reject_when_full`].
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// The layer, or a [`ConfigError`] naming the first field out of range.
    pub fn build(self) -> Result<AdaptiveLimitLayer, ConfigError> {
        const C: &str = "adaptive_limit";
        let err =
            |field, value: String, allowed: String| Err(ConfigError::new(C, field, value, allowed));
        if self.min == 0 || self.min > Semaphore::MAX_PERMITS {
            return err(
                "min_limit",
                self.min.to_string(),
                format!("must be between 1 and {}", Semaphore::MAX_PERMITS),
            );
        }
        if self.max < self.min || self.max > Semaphore::MAX_PERMITS {
            return err(
                "max_limit",
                self.max.to_string(),
                format!(
                    "must be between min_limit ({}) and {}",
                    self.min,
                    Semaphore::MAX_PERMITS
                ),
            );
        }
        if let Some(initial) = self.initial {
            if initial < self.min || initial > self.max {
                return err(
                    "initial_limit",
                    initial.to_string(),
                    format!(
                        "must be between min_limit ({}) and max_limit ({})",
                        self.min, self.max
                    ),
                );
            }
        }
        match self.kind {
            Kind::Gradient(c) => {
                if !(c.smoothing > 0.0 && c.smoothing <= 1.0) {
                    return err(
                        "smoothing",
                        c.smoothing.to_string(),
                        "must be in (0, 1]".into(),
                    );
                }
                if c.queue_size == 0 || c.queue_size > self.max {
                    return err(
                        "queue_size",
                        c.queue_size.to_string(),
                        format!("must be between 1 and max_limit ({})", self.max),
                    );
                }
                if c.long_window == 0 {
                    return err("long_window", "0".into(), "must be at least 1".into());
                }
            }
            Kind::Aimd(c) => {
                if !(c.backoff_ratio > 0.0 && c.backoff_ratio < 1.0) {
                    return err(
                        "backoff_ratio",
                        c.backoff_ratio.to_string(),
                        "must be in (0, 1)".into(),
                    );
                }
                if c.timeout.is_zero() {
                    return err("timeout", "0s".into(), "must be more than zero".into());
                }
            }
        }
        Ok(self.build_unchecked())
    }

    fn build_unchecked(self) -> AdaptiveLimitLayer {
        let bounds = Bounds {
            initial: self
                .initial
                .unwrap_or(DEFAULT_INITIAL)
                .clamp(self.min, self.max),
            min: self.min,
            max: self.max,
        };
        let algorithm: Box<dyn Algorithm> = match self.kind {
            Kind::Gradient(c) => Box::new(Gradient2::new(bounds, c)),
            Kind::Aimd(c) => Box::new(Aimd::new(bounds, c)),
        };
        AdaptiveLimitLayer {
            shared: Arc::new(Shared::new(algorithm)),
            wait: self.wait,
            classify: DefaultClassify,
        }
    }
}

/// A service under an adaptive concurrency limit; made by
/// [`AdaptiveLimitLayer`]. Clones share the limit.
pub struct AdaptiveLimit<S, C = DefaultClassify> {
    inner: S,
    shared: Arc<Shared>,
    wait: Wait,
    classify: C,
    permit: Option<Permit>,
    rejected: Option<Overloaded>,
    acquire: Acquire,
}

impl<S, C> AdaptiveLimit<S, C> {
    /// A snapshot of the shared counters and the current limit.
    pub fn stats(&self) -> LimitStats {
        self.shared.stats()
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service (releasing any reserved permit).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for AdaptiveLimit<S, C> {
    /// A clone shares the limit but holds no permit of its own.
    fn clone(&self) -> Self {
        AdaptiveLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            wait: self.wait,
            classify: self.classify.clone(),
            permit: None,
            rejected: None,
            acquire: Acquire::Idle,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveLimit<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("inner", &self.inner)
            .field("stats", &self.shared.stats())
            .field("has_permit", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveLimit<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.permit.is_none() {
            if self.rejected.is_some() {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.acquire.poll_acquire(&self.shared.gate, self.wait, cx)) {
                Ok(permit) => self.permit = Some(Permit::new(permit, self.shared.clone())),
                Err(overloaded) => {
                    self.rejected = Some(overloaded);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.permit = None;
                Poll::Ready(Err(e.into()))
            }
            other => other.map_err(Into::into),
        }
    }

    /// # Panics
    ///
    /// When called without a successful `poll_ready` first (the `Service`
    /// contract).
    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(permit) = self.permit.take() {
            let future = self.inner.call(req);
            return ResponseFuture {
                kind: FutureKind::Called {
                    future,
                    permit: Some(permit),
                    started: Instant::now(),
                    classify: self.classify.clone(),
                },
            };
        }
        let overloaded = self.rejected.take().expect(
            "AdaptiveLimit::call without poll_ready: poll_ready must return Ready(Ok) first",
        );
        ResponseFuture {
            kind: FutureKind::Overloaded {
                error: Some(overloaded),
            },
        }
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F, C> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
            started: Instant,
            classify: C,
        },
        Overloaded {
            error: Option<Overloaded>,
        },
    }
}

pin_project! {
    /// The response future of [`AdaptiveLimit`]: holds the permit, and on
    /// completion reports the call's latency and outcome to the algorithm.
    /// Dropped before completion, it releases the permit and reports nothing.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: FutureKind<F, C>,
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res, E>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Called {
                future,
                permit,
                started,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    let sample = Sample {
                        started: *started,
                        rtt: started.elapsed(),
                        in_flight: permit.in_flight,
                        dropped: classify.classify(&result).is_failure(),
                    };
                    permit.shared.on_sample(&sample);
                    // Released after the resize, so a lower limit can
                    // retire this very permit.
                    drop(permit);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            FutureKindProj::Overloaded { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
