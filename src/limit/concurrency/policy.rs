//! When a call gives its permit back.

use crate::limit::gate::Permit;

use crate::limit::body::LimitBody;

mod sealed {
    pub trait Sealed {}
}

/// When a call gives its permit back. Implemented by [`ReleaseOnResponse`]
/// (the default) and [`HoldUntilBodyEnd`]; sealed.
pub trait ReleasePolicy<Res>: sealed::Sealed {
    /// The response type the limited service returns.
    type Response;

    /// Pairs the inner service's response with the call's permit.
    #[doc(hidden)]
    fn attach(response: Res, permit: Option<Permit>) -> Self::Response;
}

/// The default [`ReleasePolicy`]: the permit is released as soon as the
/// response future completes (or is dropped).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReleaseOnResponse;

/// [`ReleasePolicy`] for `http::Response<B>`: the permit travels with the
/// response body ([`LimitBody`]) and is released when the body has been read
/// to its end, fails, or is dropped. Chosen with
/// [`ConcurrencyLimitLayer::hold_until_body_end`](super::ConcurrencyLimitLayer::hold_until_body_end).
#[derive(Clone, Copy, Debug, Default)]
pub struct HoldUntilBodyEnd;

impl sealed::Sealed for ReleaseOnResponse {}
impl sealed::Sealed for HoldUntilBodyEnd {}

impl<Res> ReleasePolicy<Res> for ReleaseOnResponse {
    type Response = Res;

    #[inline]
    fn attach(response: Res, permit: Option<Permit>) -> Res {
        drop(permit);
        response
    }
}

impl<B: http_body::Body> ReleasePolicy<http::Response<B>> for HoldUntilBodyEnd {
    type Response = http::Response<LimitBody<B>>;

    fn attach(response: http::Response<B>, permit: Option<Permit>) -> http::Response<LimitBody<B>> {
        response.map(|body| LimitBody::new(body, permit))
    }
}
