//! Which requests may be sent twice: [`Eligible`] and its two built-in
//! rules, [`Idempotent`] (HTTP, the default) and [`AnyRequest`].

use http::Method;

/// Decides whether a request may be hedged (sent more than once).
///
/// Implemented by [`Idempotent`] (the default: HTTP requests with an
/// idempotent method), [`AnyRequest`] (every request) and any closure
/// `Fn(&Req) -> bool`.
///
/// A request that is not eligible is sent once and never timed: it costs
/// what the inner service costs plus a counter
/// ([`HedgeStats::ineligible`](super::HedgeStats::ineligible)).
#[diagnostic::on_unimplemented(
    message = "the hedge layer cannot tell whether `{Req}` is safe to send twice",
    label = "no hedging rule for `{Req}` in `{Self}`",
    note = "the default rule, `Idempotent`, knows only `http::Request`s; for other requests pass \
            `.eligible(AnyRequest)` if every request is safe to send twice, or a closure \
            `|req: &Req| -> bool`"
)]
pub trait Eligible<Req> {
    /// Whether `req` may be sent more than once.
    fn eligible(&self, req: &Req) -> bool;
}

impl<F, Req> Eligible<Req> for F
where
    F: Fn(&Req) -> bool,
{
    #[inline]
    fn eligible(&self, req: &Req) -> bool {
        self(req)
    }
}

/// The default rule: an `http::Request` may be hedged only when its method
/// is idempotent (RFC 9110, section 9.2.2): `GET`, `HEAD`, `OPTIONS`,
/// `TRACE`, `PUT` and `DELETE`. `POST`, `PATCH`, `CONNECT` and extension
/// methods are sent once.
///
/// It is implemented for `http::Request<B>` only, on purpose: for any other
/// request type the layer does not compile until you say which requests
/// are safe to send twice ([`AnyRequest`] or a closure), so no request is
/// duplicated by accident:
///
/// ```compile_fail
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_patterns::hedge::HedgeLayer;
///
/// # async fn f() {
/// let svc = service_fn(|s: String| async move { Ok::<_, std::convert::Infallible>(s) });
/// let hedged = HedgeLayer::builder().build().unwrap().layer(svc);
/// // Does not compile: `Idempotent`, the default rule, knows only `http::Request`s.
/// hedged.oneshot("charge the card".to_string()).await;
/// # }
/// ```
///
/// ```
/// use tower_patterns::hedge::{Eligible, Idempotent};
///
/// let get = http::Request::get("/users/1").body(()).unwrap();
/// let post = http::Request::post("/users").body(()).unwrap();
/// assert!(Idempotent.eligible(&get));
/// assert!(!Idempotent.eligible(&post));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Idempotent;

impl<B> Eligible<http::Request<B>> for Idempotent {
    #[inline]
    fn eligible(&self, req: &http::Request<B>) -> bool {
        is_idempotent(req.method())
    }
}

/// `true` for the methods RFC 9110 calls idempotent.
#[inline]
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Every request may be hedged: for services whose calls are all safe to
/// send twice (reads, idempotent RPCs).
///
/// ```
/// use tower_patterns::hedge::{AnyRequest, Eligible};
///
/// assert!(AnyRequest.eligible(&"any request"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnyRequest;

impl<Req> Eligible<Req> for AnyRequest {
    #[inline]
    fn eligible(&self, _req: &Req) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_methods_only() {
        for (m, ok) in [
            (Method::GET, true),
            (Method::HEAD, true),
            (Method::OPTIONS, true),
            (Method::TRACE, true),
            (Method::PUT, true),
            (Method::DELETE, true),
            (Method::POST, false),
            (Method::PATCH, false),
            (Method::CONNECT, false),
            (Method::from_bytes(b"PURGE").unwrap(), false),
        ] {
            let req = http::Request::builder().method(m.clone()).body(()).unwrap();
            assert_eq!(Idempotent.eligible(&req), ok, "{m}");
        }
    }

    #[test]
    fn closures_decide() {
        let even = |n: &u32| n.is_multiple_of(2);
        assert!(even.eligible(&2));
        assert!(!even.eligible(&3));
    }
}
