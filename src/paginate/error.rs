//! [`PaginateError`] (an HTTP page walk failed) and [`WalkError`] (a
//! strategy stopped the walk).

use std::fmt;

use http::{StatusCode, Uri};
use tower::BoxError;

use crate::classify::{Classify, HttpClassify, Outcome};
use crate::fetch::FetchError;

/// Why a [`Strategy`](super::Strategy) stopped a walk with an error rather
/// than a page.
///
/// It reaches the caller through the page service's error type, which must
/// implement `From<WalkError>` (as `tower::BoxError` and [`PaginateError`]
/// do); with `BoxError`, `err.downcast_ref::<WalkError>()` finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalkError {
    /// The server sent a cursor or `next` link that this walk had already
    /// followed: following it again would loop forever.
    LoopDetected {
        /// What repeated: `"cursor"` or `"link"`.
        kind: &'static str,
        /// The repeated cursor token or URL.
        repeated: String,
    },
    /// The `rel="next"` link could not be turned into a request URI.
    InvalidNextLink {
        /// The link as the server sent it.
        link: String,
        /// Why it was refused.
        reason: String,
    },
    /// A prefetched page request's task was cancelled from outside (the
    /// tokio runtime is shutting down).
    TaskCancelled,
}

impl WalkError {
    /// `true` for [`WalkError::LoopDetected`].
    pub fn is_loop(&self) -> bool {
        matches!(self, WalkError::LoopDetected { .. })
    }
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::LoopDetected { kind, repeated } => write!(
                f,
                "pagination loop detected: the server sent {kind} {repeated:?} again, which \
                 this walk already followed; stopping instead of looping forever (the API is \
                 returning a stale {kind})"
            ),
            WalkError::InvalidNextLink { link, reason } => write!(
                f,
                "pagination stopped: the rel=\"next\" link {link:?} is not a usable URI \
                 ({reason})"
            ),
            WalkError::TaskCancelled => f.write_str(
                "pagination stopped: a prefetched page request was cancelled because the tokio \
                 runtime is shutting down",
            ),
        }
    }
}

impl std::error::Error for WalkError {}

/// Why an HTTP page walk ([`json_link_paginator`](super::json_link_paginator),
/// [`JsonPages`](super::JsonPages)) failed.
///
/// What went wrong fetching a page (a non-2xx status, a body over the limit,
/// JSON of another shape, a body cut short, an unusable start URL) is a
/// [`FetchError`], decided by the same code as [`fetch::Json`](crate::fetch::Json).
#[derive(Debug)]
#[non_exhaustive]
pub enum PaginateError {
    /// The HTTP client failed (connect, I/O, timeout, a layer's error...).
    Service {
        /// The page requested.
        uri: Uri,
        /// The client's error.
        source: BoxError,
    },
    /// The HTTP client refused to take requests (its `poll_ready` failed).
    Unavailable {
        /// The client's error.
        source: BoxError,
    },
    /// The page's answer was not what a page must be: [`FetchError::Status`]
    /// (not 2xx), [`FetchError::BodyTooLarge`] (over
    /// [`JsonPages::max_body_bytes`](super::JsonPages::max_body_bytes)),
    /// [`FetchError::Decode`] (not a JSON array of items, or not the shape
    /// set with [`JsonPages::items_at`](super::JsonPages::items_at)),
    /// [`FetchError::Transport`] or [`FetchError::Timeout`] (reading the
    /// body failed), or [`FetchError::InvalidUri`] (the start URL).
    Fetch(FetchError),
    /// The walk itself stopped: a loop, or a bad `next` link.
    Walk(WalkError),
}

impl PaginateError {
    /// The HTTP status, for a [`FetchError::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            PaginateError::Fetch(e) => e.status(),
            _ => None,
        }
    }

    /// `true` when trying the same page again may succeed: a client or body
    /// error, or a status [`HttpClassify`] counts as a failure (5xx, 429,
    /// 408). Useful in a retry policy; `HttpClassify` itself classifies page
    /// results this way.
    pub fn is_transient(&self) -> bool {
        match self {
            PaginateError::Service { .. } | PaginateError::Unavailable { .. } => true,
            PaginateError::Fetch(FetchError::Status { status, .. }) => {
                HttpClassify::classify_status(*status).is_failure()
            }
            PaginateError::Fetch(FetchError::Transport { .. } | FetchError::Timeout { .. }) => true,
            _ => false,
        }
    }
}

/// Page results over HTTP: a page is a success, a
/// [transient](PaginateError::is_transient) error a failure (retry it,
/// count it against the server), any other error neither.
impl<T> Classify<super::Page<T>, PaginateError> for HttpClassify {
    fn classify(&self, result: &Result<super::Page<T>, PaginateError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) if e.is_transient() => Outcome::Failure,
            Err(_) => Outcome::Ignored,
        }
    }
}

impl fmt::Display for PaginateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaginateError::Service { uri, source } => {
                write!(f, "page request to {uri} failed: {source}")
            }
            PaginateError::Unavailable { source } => {
                write!(f, "the HTTP client cannot take page requests: {source}")
            }
            PaginateError::Fetch(e) => write!(f, "fetching a page failed: {e}"),
            PaginateError::Walk(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PaginateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PaginateError::Service { source, .. } | PaginateError::Unavailable { source } => {
                Some(&**source)
            }
            PaginateError::Fetch(e) => Some(e),
            PaginateError::Walk(e) => Some(e),
        }
    }
}

impl From<WalkError> for PaginateError {
    fn from(e: WalkError) -> Self {
        PaginateError::Walk(e)
    }
}

impl From<FetchError> for PaginateError {
    fn from(e: FetchError) -> Self {
        PaginateError::Fetch(e)
    }
}
