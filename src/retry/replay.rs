//! Requests that can be sent more than once.

/// A request that can be sent again.
///
/// A service consumes its request, so to retry, [`Retry`](super::Retry)
/// keeps a copy made with [`Replay::replay`] before each attempt that may
/// be followed by another one (never when `max_attempts` is 1, and never
/// before the last attempt).
///
/// # Which types are `Replay`
///
/// Every `Clone` type, through a blanket impl. That includes
/// `http::Request<B>` for every cloneable body `B`, since `http` 1.x
/// derives `Clone` for `Request<B: Clone>`: `Full<Bytes>`, `String`,
/// `Bytes`, `Vec<u8>`, `Empty<Bytes>`, `()`, ... So HTTP requests with
/// in-memory bodies retry without any policy code:
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{Empty, Full};
/// use tower_patterns::retry::Replay;
///
/// fn replayable<R: Replay>() {}
/// replayable::<http::Request<Full<Bytes>>>();
/// replayable::<http::Request<Empty<Bytes>>>();
/// replayable::<http::Request<String>>();
/// replayable::<http::Request<Bytes>>();
/// replayable::<String>();
/// ```
///
/// ## Why a blanket impl and not a `ReplayBody` trait
///
/// A separate `impl<B: ReplayBody> Replay for http::Request<B>` would
/// overlap with the blanket `Clone` impl (a `Request` with a cloneable
/// body is both), and Rust's coherence rules forbid that. The blanket impl
/// already covers every body that can be copied cheaply, so it wins.
///
/// For a request type that is **not** `Clone`, implement `Replay`
/// yourself (allowed because your type does not implement `Clone`);
/// return `None` when this particular request cannot be sent again (a
/// body that was streamed, a non-idempotent call). The retry then stops
/// and the caller gets the last result. For `http::Request` with a
/// streaming body, buffer the body into `Full<Bytes>` first, or wrap the
/// request in your own type:
///
/// ```
/// use tower_patterns::retry::Replay;
///
/// /// A command that must not be sent twice once it has started to stream.
/// struct Upload {
///     chunks: Vec<Vec<u8>>,
///     streamed: bool,
/// }
///
/// impl Replay for Upload {
///     fn replay(&self) -> Option<Self> {
///         (!self.streamed).then(|| Upload { chunks: self.chunks.clone(), streamed: false })
///     }
/// }
/// # let u = Upload { chunks: vec![vec![1]], streamed: false };
/// # assert!(u.replay().is_some());
/// ```
pub trait Replay: Sized {
    /// A copy of this request to send on a later attempt, or `None` if it
    /// cannot be sent again.
    fn replay(&self) -> Option<Self>;
}

impl<T: Clone> Replay for T {
    #[inline]
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}
