//! axum glue: [`IntoResponse`] for [`ErrorResponse`] and [`handle_error`]
//! for `HandleErrorLayer`.

use axum::response::{IntoResponse, Response};

use super::{error_response, ErrorResponse};
#[cfg(feature = "tracing")]
use crate::trace::trace_event;
use crate::BoxError;

#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl IntoResponse for ErrorResponse {
    /// [`ErrorResponse::into_http`] with an axum body.
    fn into_response(self) -> Response {
        self.into_http::<axum::body::Body>()
    }
}

/// Turns an error from our layers into a response, for
/// [`axum::error_handling::HandleErrorLayer`]:
///
/// ```
/// use axum::error_handling::HandleErrorLayer;
/// use axum::{routing::get, Router};
/// use tower::ServiceBuilder;
/// use tower_patterns::{limit::ConcurrencyLimitLayer, respond};
///
/// let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
///     ServiceBuilder::new()
///         .layer(HandleErrorLayer::new(respond::handle_error))
///         .layer(ConcurrencyLimitLayer::new(64).reject_when_full()),
/// );
/// # let _ = app;
/// ```
///
/// axum requires every service in a router to be infallible; this is the
/// function that makes a stack of our (fallible) layers so, choosing the
/// status with [`error_response`]. With the `tracing` feature, an error
/// that maps to 500 is logged at `ERROR` with its full text (the client
/// sees only a generic message); the others at `DEBUG`.
pub async fn handle_error(err: BoxError) -> Response {
    let answer = error_response(&err);
    #[cfg(feature = "tracing")]
    if answer.kind() == super::ErrorKind::Internal {
        trace_event!(ERROR, error = %err, "unrecognised error answered with 500");
    } else {
        trace_event!(DEBUG, error = %err, status = answer.status().as_u16(), "error answered");
    }
    answer.into_response()
}
