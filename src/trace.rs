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

/// Records into an instance's metric handles when the `metrics` feature is
/// on; expands to nothing otherwise, so neither the handles nor the
/// arguments are touched.
///
/// `record!(core.metrics, |m| m.hits.increment(1));` and, to set gauges to
/// the present value when the handles are first registered with a
/// recorder, `record!(core.metrics, |m| ..., init = |m| ...)`.
#[cfg(feature = "metrics")]
macro_rules! record {
    ($inst:expr, |$m:ident| $body:expr) => {
        $inst.with(|$m| {
            $body;
        })
    };
    ($inst:expr, |$m:ident| $body:expr, init = |$i:ident| $ibody:expr) => {
        $inst.with_init(
            |$m| {
                $body;
            },
            |$i| {
                $ibody;
            },
        )
    };
}

#[cfg(not(feature = "metrics"))]
macro_rules! record {
    ($($t:tt)*) => {{}};
}

pub(crate) use record;

/// An instance name as the builders' `.name(..)` takes it: labels every
/// metric of the instance (feature `metrics`).
pub(crate) type Name = std::borrow::Cow<'static, str>;
