//! [`Injected`]: the error a [`ChaosLayer`](super::ChaosLayer) returns
//! instead of calling its inner service.

use std::fmt;

use crate::fetch::FetchError;

/// A fault injected by a [`Chaos`](super::Chaos) service: the inner
/// service was not called.
///
/// Unlike the crate's own rejections (an open breaker's `Open`, a full
/// limit's `Overloaded`), it stands for a failure of the service behind
/// the chaos layer, so every built-in classifier calls it an
/// [`Outcome::Failure`](crate::classify::Outcome::Failure): retry retries
/// it, a circuit breaker counts it, a fallback answers it. That is the
/// point of injecting it.
///
/// It reaches the caller as the service's error type through
/// `From<Injected>` (a [`BoxError`](crate::BoxError) holds it; get it back
/// with `downcast_ref`). [`fetch::HttpClient`](crate::fetch::HttpClient)'s
/// [`FetchError`] takes it too, as a
/// [`Transport`](FetchError::Transport) error (the fault a chaos layer right
/// above the client stands for: the connection failed) whose `source` is
/// the `Injected`, so a `ChaosLayer` wraps the client directly:
///
/// ```
/// use tower_patterns::chaos::Injected;
/// use tower_patterns::BoxError;
///
/// fn was_injected(err: &BoxError) -> Option<u64> {
///     err.downcast_ref::<Injected>().map(|i| i.call_index())
/// }
/// # let _ = was_injected;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Injected {
    pub(crate) call: u64,
}

impl Injected {
    /// The call's index in the layer's sequence (0 for the first call
    /// seen while injection was active). With a seed, the same index gets
    /// the same fault on every run.
    pub fn call_index(&self) -> u64 {
        self.call
    }
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chaos: injected error on call #{} (a ChaosLayer is on; the service was not called; \
             turn it off with ChaosHandle::disable)",
            self.call
        )
    }
}

impl std::error::Error for Injected {}

/// An injected fault as the HTTP client's error: a transport failure (the
/// request never reached a server), with the [`Injected`] as its source.
/// The URL is not known here; it reads `(injected by a ChaosLayer)`.
impl From<Injected> for FetchError {
    fn from(injected: Injected) -> Self {
        FetchError::Transport {
            url: String::from("(injected by a ChaosLayer)"),
            source: Box::new(injected),
        }
    }
}
