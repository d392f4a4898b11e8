//! A recorder for the `metrics` tests: it keeps every value (no reset on
//! read), so a test reads counters, gauges and whole histograms by name and
//! labels after driving traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tower_patterns::metrics::Kind;

#[derive(Default)]
pub struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A metric's name and its labels, sorted.
pub type SlotKey = (String, Vec<(String, String)>);

#[derive(Clone)]
pub enum Slot {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<AtomicU64>),
    Histogram(Arc<Values>),
}

#[derive(Default)]
pub struct TestRecorder {
    pub slots: Mutex<BTreeMap<SlotKey, Slot>>,
    pub described: Mutex<BTreeMap<String, Option<Unit>>>,
}

pub fn parts(key: &Key) -> SlotKey {
    let mut labels: Vec<(String, String)> = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

impl TestRecorder {
    pub fn slot(&self, key: &Key, make: impl FnOnce() -> Slot) -> Slot {
        self.slots
            .lock()
            .unwrap()
            .entry(parts(key))
            .or_insert_with(make)
            .clone()
    }

    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<Slot> {
        let slots = self.slots.lock().unwrap();
        slots
            .iter()
            .find(|((n, ls), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, s)| s.clone())
    }

    /// The counter's value (0 if never registered).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(name, labels) {
            Some(Slot::Counter(c)) => c.load(Ordering::Relaxed),
            None => 0,
            Some(_) => panic!("{name} is not a counter"),
        }
    }

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels)? {
            Slot::Gauge(g) => Some(f64::from_bits(g.load(Ordering::Relaxed))),
            _ => panic!("{name} is not a gauge"),
        }
    }

    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.find(name, labels) {
            Some(Slot::Histogram(h)) => h.0.lock().unwrap().clone(),
            None => Vec::new(),
            Some(_) => panic!("{name} is not a histogram"),
        }
    }

    /// Every registered metric: name -> (kind, label keys).
    pub fn registered(&self) -> BTreeMap<String, (Kind, BTreeSet<String>)> {
        let slots = self.slots.lock().unwrap();
        let mut out = BTreeMap::new();
        for ((name, labels), slot) in slots.iter() {
            let kind = match slot {
                Slot::Counter(_) => Kind::Counter,
                Slot::Gauge(_) => Kind::Gauge,
                Slot::Histogram(_) => Kind::Histogram,
            };
            let keys = labels.iter().map(|(k, _)| k.clone()).collect();
            out.insert(name.clone(), (kind, keys));
        }
        out
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), unit);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe_counter(key, unit, SharedString::const_str(""));
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe_counter(key, unit, SharedString::const_str(""));
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.slot(key, || Slot::Counter(Arc::default())) {
            Slot::Counter(c) => Counter::from_arc(c),
            _ => panic!("{} registered as two kinds", key.name()),
        }
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.slot(key, || Slot::Gauge(Arc::default())) {
            Slot::Gauge(g) => Gauge::from_arc(g),
            _ => panic!("{} registered as two kinds", key.name()),
        }
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.slot(key, || Slot::Histogram(Arc::default())) {
            Slot::Histogram(h) => Histogram::from_arc(h),
            _ => panic!("{} registered as two kinds", key.name()),
        }
    }
}
