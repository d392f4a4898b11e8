//! Where a request carries its deadline besides the task: [`Carry`], with
//! [`TaskLocal`] (nowhere: any request type) and [`HttpExtensions`] (the
//! `http::Request` extensions, and optionally an incoming `grpc-timeout`).

use super::grpc::{parse_grpc_timeout, GRPC_TIMEOUT};
use super::shared::{earliest, Deadline};

/// How a [`Timeout`](super::Timeout) finds a deadline a request already
/// carries, and records the one in force on it.
///
/// The deadline always travels with the task ([`current`](super::current)),
/// which works for every request type but not across tasks. A `Carry` adds
/// the request itself as a second carrier, so the deadline survives a
/// hand-off to another task (`tower::buffer`, a spawned task) and a caller
/// can set one by hand:
///
/// - [`TaskLocal`] (the default): the request carries nothing; any `Req`.
/// - [`HttpExtensions`]: `http::Request<B>`; the [`Deadline`] in its
///   extensions, and optionally an incoming `grpc-timeout` header.
///
/// Implement it for your own request type to carry a deadline in it.
pub trait Carry<Req> {
    /// A deadline `req` already carries, if any.
    fn deadline(&self, req: &Req) -> Option<Deadline>;

    /// Records `deadline`, the one in force, on `req` before it is passed
    /// to the inner service.
    fn attach(&self, req: &mut Req, deadline: Deadline);
}

/// The request carries no deadline: only the task does (see
/// [`current`](super::current)). Works for every request type; the default
/// of [`TimeoutLayer`](super::TimeoutLayer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskLocal;

impl<Req> Carry<Req> for TaskLocal {
    #[inline]
    fn deadline(&self, _: &Req) -> Option<Deadline> {
        None
    }

    #[inline]
    fn attach(&self, _: &mut Req, _: Deadline) {}
}

/// `http::Request`s carry their deadline as a [`Deadline`] in their
/// extensions: one found there is honoured, and the one in force is put
/// there (so it crosses into other tasks with the request, and handlers
/// can read it). With [`read_grpc_timeout`](Self::read_grpc_timeout), an
/// incoming `grpc-timeout` header counts too (a gRPC server gets its
/// caller's deadline).
///
/// ```
/// use tower_patterns::deadline::{Carry, Deadline, HttpExtensions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut req = http::Request::builder()
///     .header("grpc-timeout", "250m")
///     .body(())
///     .unwrap();
/// assert_eq!(HttpExtensions::new().deadline(&req), None);
/// let grpc = HttpExtensions::new().read_grpc_timeout();
/// let deadline = grpc.deadline(&req).unwrap();
/// assert!(deadline.remaining() <= std::time::Duration::from_millis(250));
/// grpc.attach(&mut req, deadline);
/// assert_eq!(req.extensions().get::<Deadline>(), Some(&deadline));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpExtensions {
    grpc_timeout: bool,
}

impl HttpExtensions {
    /// The extensions only; an incoming `grpc-timeout` is not read.
    pub fn new() -> Self {
        HttpExtensions::default()
    }

    /// Also honours an incoming `grpc-timeout` header (the first one, when
    /// there are several), counted from the moment the request is received.
    /// A value that does not parse (see
    /// [`parse_grpc_timeout`](super::parse_grpc_timeout)) is ignored: the
    /// call goes on under the other deadlines. Turn it on for servers whose
    /// callers are trusted to send it: any client can shorten its own call
    /// with it.
    #[must_use]
    pub fn read_grpc_timeout(mut self) -> Self {
        self.grpc_timeout = true;
        self
    }

    /// Whether an incoming `grpc-timeout` header is honoured.
    pub fn reads_grpc_timeout(&self) -> bool {
        self.grpc_timeout
    }
}

impl<B> Carry<http::Request<B>> for HttpExtensions {
    fn deadline(&self, req: &http::Request<B>) -> Option<Deadline> {
        let carried = req.extensions().get::<Deadline>().copied();
        if !self.grpc_timeout {
            return carried;
        }
        let sent = req
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| parse_grpc_timeout(v).ok())
            .map(Deadline::after);
        earliest(carried, sent)
    }

    fn attach(&self, req: &mut http::Request<B>, deadline: Deadline) {
        req.extensions_mut().insert(deadline);
    }
}
