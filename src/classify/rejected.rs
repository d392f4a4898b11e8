//! Seeing a call's error type as an error chain, to find the crate's own
//! rejections (and any type a combinator asks about) inside it.

use std::any::Any;
use std::error::Error;

use crate::rejection::{self, Elapsed, Open, Overloaded, QueueFull, RateLimited};
use crate::BoxError;

/// `err` as a `dyn Error`, when its type allows it to be seen as one:
/// a [`BoxError`] (what tower layers return) or another boxed error.
///
/// A concrete error type is matched by [`is`] directly instead: without an
/// `Error` bound on `E` there is no way to read its source chain.
pub(crate) fn as_dyn_error<E: 'static>(err: &E) -> Option<&(dyn Error + 'static)> {
    let any: &dyn Any = err;
    if let Some(b) = any.downcast_ref::<BoxError>() {
        return Some(&**b);
    }
    if let Some(b) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return Some(&**b);
    }
    any.downcast_ref::<Box<dyn Error>>().map(|b| &**b)
}

/// The `T` that `err` is, or that a boxed `err` holds in its chain.
pub(crate) fn find<T: Error + 'static, E: 'static>(err: &E) -> Option<&T> {
    let any: &dyn Any = err;
    if let Some(t) = any.downcast_ref::<T>() {
        return Some(t);
    }
    let mut next = as_dyn_error(err);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        next = e.source();
    }
    None
}

/// Whether `err` is a `T`, or a boxed error holding a `T` in its chain.
pub(crate) fn is<T: Error + 'static, E: 'static>(err: &E) -> bool {
    find::<T, E>(err).is_some()
}

/// Whether `err` is one of the crate's own rejections ([`Open`],
/// [`Overloaded`], [`QueueFull`], [`RateLimited`], an [`Elapsed`] that was
/// not sent): a call a layer refused to send, which says nothing about the
/// service behind it.
#[inline]
pub(crate) fn is_rejection<E: 'static>(err: &E) -> bool {
    let any: &dyn Any = err;
    if any.is::<Open>()
        || any.is::<Overloaded>()
        || any.is::<QueueFull>()
        || any.is::<RateLimited>()
        || any.downcast_ref::<Elapsed>().is_some_and(|e| !e.sent())
    {
        return true;
    }
    as_dyn_error(err).is_some_and(rejection::is_rejection)
}

/// How long an open breaker in `err` said to wait, if `err` holds one.
pub(crate) fn open_retry_after<E: 'static>(err: &E) -> Option<std::time::Duration> {
    find::<Open, E>(err)?.retry_after()
}
