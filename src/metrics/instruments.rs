//! Internal: per-instance metric handles, registered once per recorder.
//!
//! An [`Instruments`] holds the instance's name and the handles
//! ([`::metrics::Counter`], [`::metrics::Gauge`], [`::metrics::Histogram`])
//! of one layer or service. The handles are registered lazily, on the first
//! recording, with the recorder in force then, and kept: recording is a
//! look at the current recorder (a thread-local and an atomic load), a
//! comparison, and the handle's own call. No key is built and no registry
//! is searched per call.
//!
//! A recorder installed after the instance was built, or after it has
//! already recorded into the no-op recorder, is picked up at the next
//! recording: the handles are kept per recorder (by its address), two sets
//! at most; a third recorder (only seen with per-test local recorders) is
//! served by registering per recording, which is slow but never silent.

use std::borrow::Cow;
use std::sync::OnceLock;

use ::metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString,
};

use super::table::{Kind, Metric};

/// An instance name as the builders take it.
pub(crate) use crate::trace::Name;

/// A set of handles for one instance.
pub(crate) trait Set: Send + Sync + Sized + 'static {
    /// Registers (and describes) every handle with `rec`.
    fn register(rec: &dyn Recorder, name: &SharedString) -> Self;
}

/// One instance's handles, resolved per recorder.
pub(crate) struct Instruments<H> {
    name: SharedString,
    slots: [OnceLock<(usize, H)>; 2],
}

impl<H> std::fmt::Debug for Instruments<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments")
            .field("name", &&*self.name)
            .finish_non_exhaustive()
    }
}

impl<H: Set> Instruments<H> {
    /// Handles for the instance called `name`; nothing is registered yet.
    pub(crate) fn new(name: Name) -> Self {
        let name = match name {
            Cow::Borrowed(s) => SharedString::const_str(s),
            Cow::Owned(s) => SharedString::from(s),
        };
        Instruments {
            name,
            slots: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The instance name every metric carries.
    #[allow(dead_code)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` with the handles for the recorder in force.
    #[inline]
    pub(crate) fn with(&self, f: impl FnOnce(&H)) {
        self.with_init(f, |_| {});
    }

    /// Runs `f` with the handles for the recorder in force; when they were
    /// registered just now, runs `init` on them first (to set a gauge to
    /// the instance's present value).
    #[inline]
    pub(crate) fn with_init(&self, f: impl FnOnce(&H), init: impl FnOnce(&H)) {
        ::metrics::with_recorder(|rec| {
            let id = (rec as *const dyn Recorder).cast::<()>().addr();
            for slot in &self.slots {
                if let Some((seen, h)) = slot.get() {
                    if *seen == id {
                        return f(h);
                    }
                }
            }
            self.resolve(rec, id, f, init);
        });
    }

    #[cold]
    #[inline(never)]
    fn resolve(&self, rec: &dyn Recorder, id: usize, f: impl FnOnce(&H), init: impl FnOnce(&H)) {
        for slot in &self.slots {
            let mut fresh = false;
            let (seen, h) = slot.get_or_init(|| {
                fresh = true;
                (id, H::register(rec, &self.name))
            });
            if *seen == id {
                if fresh {
                    init(h);
                }
                return f(h);
            }
        }
        let h = H::register(rec, &self.name);
        init(&h);
        f(&h);
    }
}

static METADATA: Metadata<'static> =
    Metadata::new("tower_patterns", Level::INFO, Some("tower_patterns"));

fn key(metric: &Metric, name: &SharedString, extra: &[(&'static str, &'static str)]) -> Key {
    let mut labels = Vec::with_capacity(1 + extra.len());
    labels.push(Label::new("name", name.clone()));
    labels.extend(extra.iter().map(|&(k, v)| Label::from_static_parts(k, v)));
    Key::from_parts(metric.name, labels)
}

fn describe(rec: &dyn Recorder, metric: &Metric) {
    let name = KeyName::from_const_str(metric.name);
    let help = SharedString::const_str(metric.help);
    let unit = Some(metric.unit);
    match metric.kind {
        Kind::Counter => rec.describe_counter(name, unit, help),
        Kind::Gauge => rec.describe_gauge(name, unit, help),
        Kind::Histogram => rec.describe_histogram(name, unit, help),
    }
}

/// Describes and registers a counter.
pub(crate) fn counter(
    rec: &dyn Recorder,
    metric: &Metric,
    name: &SharedString,
    extra: &[(&'static str, &'static str)],
) -> Counter {
    debug_assert!(metric.kind == Kind::Counter);
    describe(rec, metric);
    rec.register_counter(&key(metric, name, extra), &METADATA)
}

/// Describes and registers a gauge.
pub(crate) fn gauge(
    rec: &dyn Recorder,
    metric: &Metric,
    name: &SharedString,
    extra: &[(&'static str, &'static str)],
) -> Gauge {
    debug_assert!(metric.kind == Kind::Gauge);
    describe(rec, metric);
    rec.register_gauge(&key(metric, name, extra), &METADATA)
}

/// Describes and registers a histogram.
pub(crate) fn histogram(
    rec: &dyn Recorder,
    metric: &Metric,
    name: &SharedString,
    extra: &[(&'static str, &'static str)],
) -> Histogram {
    debug_assert!(metric.kind == Kind::Histogram);
    describe(rec, metric);
    rec.register_histogram(&key(metric, name, extra), &METADATA)
}

/// Declares a [`Set`] of handles: each field is a counter, gauge or
/// histogram of a [`Metric`] of the table, with fixed extra labels.
macro_rules! instruments {
    ($(#[$doc:meta])* pub(crate) struct $S:ident {
        $( $field:ident: $kind:ident($metric:expr $(, $k:literal = $v:literal)* $(,)?), )*
    }) => {
        $(#[$doc])*
        pub(crate) struct $S {
            $( pub(crate) $field: instruments!(@ty $kind), )*
        }
        impl $crate::metrics::instruments::Set for $S {
            fn register(
                rec: &dyn ::metrics::Recorder,
                name: &::metrics::SharedString,
            ) -> Self {
                $S {
                    $( $field: $crate::metrics::instruments::$kind(
                        rec, &$metric, name, &[$(($k, $v)),*],
                    ), )*
                }
            }
        }
    };
    (@ty counter) => { ::metrics::Counter };
    (@ty gauge) => { ::metrics::Gauge };
    (@ty histogram) => { ::metrics::Histogram };
}
pub(crate) use instruments;

/// A duration a histogram reads only if it records: the time since an
/// instant, or zero.
///
/// [`::metrics::Histogram::record`] converts its value only when the handle
/// has a recorder behind it, so with no recorder installed (the no-op
/// handles) recording an `Elapsed` reads no clock. A clock read is most of
/// what a histogram of waits would otherwise cost an uninstrumented pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Elapsed(pub(crate) Option<tokio::time::Instant>);

impl ::metrics::IntoF64 for Elapsed {
    fn into_f64(self) -> f64 {
        self.0.map_or(0.0, |since| since.elapsed().as_secs_f64())
    }
}

/// The one `Instruments` of type `H` named `name`, for `Copy` layers that
/// cannot hold an `Arc`: made once per distinct name and kept for the
/// life of the process (memory is bounded by the names used, not by the
/// layers built).
pub(crate) fn interned<H: Set>(name: Name) -> &'static Instruments<H> {
    use std::any::{Any, TypeId};
    use std::collections::HashMap;
    use std::sync::Mutex;

    type Interned = HashMap<(TypeId, Name), &'static (dyn Any + Send + Sync)>;
    static INTERNED: Mutex<Option<Interned>> = Mutex::new(None);

    let mut map = crate::sync::lock(&INTERNED);
    let map = map.get_or_insert_with(HashMap::new);
    let entry = map
        .entry((TypeId::of::<H>(), name.clone()))
        .or_insert_with(|| {
            let leaked: &'static Instruments<H> = Box::leak(Box::new(Instruments::new(name)));
            leaked
        });
    match entry.downcast_ref::<Instruments<H>>() {
        Some(instruments) => instruments,
        None => unreachable!("entries are keyed by their type"),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use ::metrics::{Histogram, HistogramFn, IntoF64};

    /// Counts its conversions into `f64`.
    struct Counted<'a>(&'a Cell<u32>);

    impl IntoF64 for Counted<'_> {
        fn into_f64(self) -> f64 {
            self.0.set(self.0.get() + 1);
            1.0
        }
    }

    struct Sink;

    impl HistogramFn for Sink {
        fn record(&self, _: f64) {}
    }

    /// What [`super::Elapsed`] relies on: a histogram with no recorder
    /// behind it never converts the value, so the clock is not read.
    #[test]
    fn only_a_live_histogram_converts_its_value() {
        let conversions = Cell::new(0);
        Histogram::noop().record(Counted(&conversions));
        assert_eq!(conversions.get(), 0, "the no-op handle converted");
        Histogram::from_arc(Arc::new(Sink)).record(Counted(&conversions));
        assert_eq!(conversions.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn elapsed_is_the_time_since_its_instant_or_zero() {
        let since = tokio::time::Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(1500)).await;
        assert_eq!(super::Elapsed(Some(since)).into_f64(), 1.5);
        assert_eq!(super::Elapsed(None).into_f64(), 0.0);
    }
}
