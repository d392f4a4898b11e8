//! Rate limit behaviour, with paused tokio time: exact to the nanosecond.

use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_patterns::classify::{Classify, HttpClassify, Outcome};
use tower_patterns::rate_limit::{
    Admission, ByKey, Quota, RateLimitLayer, RateLimitStore, RateLimited, StoreFuture,
};

const MS: Duration = Duration::from_millis(1);

fn echo() -> impl Service<u32, Response = u32, Error = BoxError, Future = impl Send> + Clone {
    service_fn(|n: u32| async move { Ok::<_, BoxError>(n) })
}

fn limited(r: &Result<u32, BoxError>) -> Option<RateLimited> {
    r.as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<RateLimited>())
        .copied()
}

#[tokio::test(start_paused = true)]
async fn a_burst_then_exactly_the_steady_rate() {
    // 10 a second, 3 at once; callers wait as long as needed.
    let layer = RateLimitLayer::builder()
        .rate(10, Duration::from_secs(1))
        .burst(3)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut svc = layer.layer(echo());
    let start = Instant::now();
    let mut starts = Vec::new();
    for n in 0..7 {
        svc.ready().await.unwrap();
        starts.push(start.elapsed());
        svc.call(n).await.unwrap();
    }
    assert_eq!(
        starts,
        [0, 0, 0, 100, 200, 300, 400].map(|ms| ms * MS),
        "a burst of 3, then one every 100 ms"
    );
    let s = layer.stats();
    assert_eq!((s.allowed, s.waited, s.limited), (7, 4, 0));
}

#[tokio::test(start_paused = true)]
async fn reject_mode_says_exactly_when_to_retry() {
    let layer = RateLimitLayer::builder()
        .rate(4, Duration::from_secs(1))
        .burst(2)
        .reject()
        .build()
        .unwrap();
    let svc = layer.layer(echo());
    let results = join_all((0..3).map(|n| svc.clone().oneshot(n))).await;
    assert!(results[0].is_ok() && results[1].is_ok());
    let err = limited(&results[2]).expect("the third is over the burst");
    assert_eq!(err.retry_after(), 250 * MS);
    assert_eq!((err.count(), err.period()), (4, Duration::from_secs(1)));

    tokio::time::advance(249 * MS).await;
    let early = svc.clone().oneshot(9).await;
    assert_eq!(limited(&early).unwrap().retry_after(), MS);
    tokio::time::advance(MS).await;
    assert_eq!(svc.clone().oneshot(10).await.unwrap(), 10);
    // The built-in classifiers never count it as a failure.
    let boxed: Result<http::Response<()>, BoxError> = Err(Box::new(err));
    assert_eq!(HttpClassify.classify(&boxed), Outcome::Ignored);
}

#[tokio::test(start_paused = true)]
async fn max_wait_is_honoured() {
    let layer = RateLimitLayer::builder()
        .rate(10, Duration::from_secs(1))
        .burst(1)
        .max_wait(150 * MS)
        .build()
        .unwrap();
    let svc = layer.layer(echo());
    let start = Instant::now();
    let timed = |n: u32| {
        let svc = svc.clone();
        async move {
            let r = svc.oneshot(n).await;
            (start.elapsed(), r)
        }
    };
    let out = join_all((0..3).map(timed)).await;
    assert_eq!(out[0].0, Duration::ZERO);
    assert_eq!(out[1].0, 100 * MS, "waited its slot");
    // The third would have waited 200 ms: refused at once.
    assert_eq!(out[2].0, Duration::ZERO);
    assert_eq!(limited(&out[2].1).unwrap().retry_after(), 200 * MS);
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_quota_and_new_layers_do_not() {
    let layer = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(1))
        .reject()
        .build()
        .unwrap();
    let a = layer.layer(echo());
    let b = a.clone();
    assert!(a.oneshot(1).await.is_ok());
    assert!(limited(&b.oneshot(2).await).is_some());
    let fresh = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(1))
        .reject()
        .build()
        .unwrap();
    assert!(fresh.layer(echo()).oneshot(3).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_gives_its_slot_back() {
    let layer = RateLimitLayer::builder()
        .rate(10, Duration::from_secs(1))
        .burst(1)
        .build()
        .unwrap();
    let mut first = layer.layer(echo());
    first.ready().await.unwrap();
    first.call(1).await.unwrap();
    // A second caller takes the next slot (100 ms) and gives up waiting.
    let mut quitter = layer.layer(echo());
    let waited = tokio::time::timeout(10 * MS, quitter.ready()).await;
    assert!(waited.is_err());
    drop(quitter);
    // Its slot is free again: the next caller waits 100 ms, not 200.
    let start = Instant::now();
    let mut next = layer.layer(echo());
    next.ready().await.unwrap();
    assert_eq!(start.elapsed(), 90 * MS);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Req {
    client: u32,
}

fn keyed_echo() -> impl Service<Req, Response = u32, Error = BoxError, Future = impl Send> + Clone {
    service_fn(|r: Req| async move { Ok::<_, BoxError>(r.client) })
}

#[tokio::test(start_paused = true)]
async fn keys_are_isolated() {
    let layer = RateLimitLayer::builder()
        .rate(2, Duration::from_secs(1))
        .reject()
        .key_fn(|r: &Req| r.client)
        .build()
        .unwrap();
    let svc = layer.layer(keyed_echo());
    // Client 1 floods: two through, the rest refused.
    let flood = join_all((0..10).map(|_| svc.clone().oneshot(Req { client: 1 }))).await;
    assert_eq!(flood.iter().filter(|r| r.is_ok()).count(), 2);
    assert_eq!(limited(&flood[9]).unwrap().retry_after(), 500 * MS);
    // Client 2 has its whole quota.
    for _ in 0..2 {
        assert_eq!(svc.clone().oneshot(Req { client: 2 }).await.unwrap(), 2);
    }
    let s = layer.stats();
    assert_eq!((s.allowed, s.limited, s.keys), (4, 8, 2));
}

#[tokio::test(start_paused = true)]
async fn a_keys_waiters_never_delay_another_key() {
    let layer = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(1))
        .max_wait(Duration::from_secs(10))
        .key_fn(|r: &Req| r.client)
        .build()
        .unwrap();
    let svc = layer.layer(keyed_echo());
    let start = Instant::now();
    let timed = |client: u32| {
        let svc = svc.clone();
        async move {
            svc.oneshot(Req { client }).await.unwrap();
            start.elapsed()
        }
    };
    let done = join_all([1, 1, 1, 2].map(timed)).await;
    assert_eq!(done, [0, 1_000, 2_000, 0].map(|ms| ms * MS));

    // A waiting call that is dropped gives its key's slot back.
    svc.clone().oneshot(Req { client: 3 }).await.unwrap();
    let waiting = svc.clone().oneshot(Req { client: 3 });
    assert!(tokio::time::timeout(10 * MS, waiting).await.is_err());
    let again = Instant::now();
    svc.clone().oneshot(Req { client: 3 }).await.unwrap();
    assert_eq!(
        again.elapsed(),
        990 * MS,
        "the next slot, not the one after"
    );
}

#[tokio::test(start_paused = true)]
async fn a_million_distinct_keys_stay_within_the_bound() {
    let layer = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(60))
        .reject()
        .key_fn(|r: &Req| r.client)
        .max_keys(10_000)
        .build()
        .unwrap();
    let mut svc = layer.layer(keyed_echo());
    for client in 0..1_000_000 {
        svc.ready().await.unwrap();
        svc.call(Req { client }).await.unwrap();
    }
    let s = layer.stats();
    assert!(s.keys <= 10_000 + 16, "{s:?}");
    assert_eq!(s.allowed, 1_000_000, "every new key has its own quota");
    assert!(s.evicted >= 1_000_000 - 10_016);
}

#[test]
fn bad_settings_are_config_errors() {
    let field = |r: Result<RateLimitLayer, tower_patterns::ConfigError>| r.unwrap_err().field();
    assert_eq!(field(RateLimitLayer::builder().build()), "rate");
    assert_eq!(
        field(
            RateLimitLayer::builder()
                .rate(0, Duration::from_secs(1))
                .build()
        ),
        "rate.count"
    );
    assert_eq!(
        field(RateLimitLayer::builder().rate(1, Duration::ZERO).build()),
        "rate.period"
    );
    assert_eq!(
        field(
            RateLimitLayer::builder()
                .rate(1, Duration::from_secs(1))
                .burst(0)
                .build()
        ),
        "burst"
    );
    assert_eq!(
        field(
            RateLimitLayer::builder()
                .rate(1, Duration::from_secs(1))
                .max_keys(5)
                .build()
        ),
        "max_keys"
    );
    let keyed = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(1))
        .key_fn(|r: &Req| r.client)
        .max_keys(0)
        .build();
    assert_eq!(keyed.unwrap_err().field(), "max_keys");
}

/// A store that answers from a fixed rule: the layer's side of the
/// `RateLimitStore` contract (the Redis store has tests of its own against
/// a real server).
struct Rule(fn(u32) -> Result<Admission, BoxError>);

impl RateLimitStore<u32> for Rule {
    fn acquire(&self, key: &u32, quota: Quota, max_wait: Duration) -> StoreFuture {
        assert_eq!((quota.count(), quota.period()), (5, Duration::from_secs(1)));
        assert_eq!(max_wait, 200 * MS);
        Box::pin(std::future::ready((self.0)(*key)))
    }
}

impl RateLimitStore<()> for Rule {
    fn acquire(&self, _: &(), _: Quota, _: Duration) -> StoreFuture {
        Box::pin(std::future::ready((self.0)(0)))
    }
}

type ClientKey = fn(&Req) -> u32;

fn by_store(rule: Rule, fail_open: bool) -> RateLimitLayer<u32, ByKey<ClientKey>> {
    let b = RateLimitLayer::builder()
        .rate(5, Duration::from_secs(1))
        .max_wait(200 * MS)
        .key_fn((|r: &Req| r.client) as ClientKey)
        .store(rule);
    if fail_open {
        b.fail_open()
    } else {
        b.fail_closed()
    }
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_store_decides_keyed_calls() {
    let layer = by_store(
        Rule(|key| {
            Ok(match key {
                1 => Admission::Go {
                    wait: Duration::ZERO,
                },
                2 => Admission::Go { wait: 40 * MS },
                _ => Admission::Refused {
                    retry_after: 700 * MS,
                },
            })
        }),
        true,
    );
    let svc = layer.layer(keyed_echo());
    let start = Instant::now();
    assert_eq!(svc.clone().oneshot(Req { client: 1 }).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(svc.clone().oneshot(Req { client: 2 }).await.unwrap(), 2);
    assert_eq!(start.elapsed(), 40 * MS, "waited as the store said");
    let refused = svc.clone().oneshot(Req { client: 3 }).await;
    assert_eq!(limited(&refused).unwrap().retry_after(), 700 * MS);
    let s = layer.stats();
    assert_eq!(
        (s.allowed, s.waited, s.limited, s.store_errors),
        (2, 1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_fails_open_or_closed_as_built() {
    let down = || Rule(|_| Err("store unreachable".into()));
    let open = by_store(down(), true);
    assert_eq!(
        open.layer(keyed_echo())
            .oneshot(Req { client: 1 })
            .await
            .unwrap(),
        1
    );
    assert_eq!(open.stats().store_errors, 1);

    let closed = by_store(down(), false);
    let err = closed
        .layer(keyed_echo())
        .oneshot(Req { client: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "store unreachable");
    assert_eq!(
        (closed.stats().store_errors, closed.stats().allowed),
        (1, 0)
    );

    let unkeyed = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(1))
        .store(Rule(|_| {
            Ok(Admission::Go {
                wait: Duration::ZERO,
            })
        }))
        .build();
    assert_eq!(unkeyed.unwrap_err().field(), "store");
}
