//! Internal: `tracing` events that cost nothing when the `tracing` feature is off.

/// Emits a `tracing` event when the `tracing` feature is on; expands to
/// nothing otherwise, so its arguments are not even evaluated.
///
/// Usage mirrors `tracing::event!`:
/// `trace_event!(INFO, from = ?old, to = ?new, "circuit breaker state changed");`
#[cfg(feature = "tracing")]
macro_rules! trace_event {
    ($lvl:ident, $($arg:tt)+) => {
        ::tracing::event!(::tracing::Level::$lvl, $($arg)+)
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! trace_event {
    ($lvl:ident, $($arg:tt)+) => {{}};
}

pub(crate) use trace_event;
