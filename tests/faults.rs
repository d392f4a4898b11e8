//! Network faults between a client and its server, through a real TCP proxy
//! on loopback (`tests/common/fault_proxy.rs`): connection refused, reset
//! mid-response, stalled reads, a slow drip, a truncated body and a
//! half-closed socket.
//!
//! For each fault, the patterns in front of the client must not hang (a
//! deadline always fires), must not leak (permits, probe slots and pool
//! slots all come back, and the client lets go of the connection), and must
//! report the error the classifier expects.
//!
//! The PostgreSQL and Redis tests need the `postgres` and `redis` features
//! (`cargo test --all-features`, as CI runs them); the HTTP one runs with
//! the default features too.
//!
//! These run on real sockets and real time: the client's deadlines are
//! short, and every wait is bounded by an outer deadline that fails the test
//! (a hang) rather than sleeping.

mod common;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use fault_proxy::{refused_addr, Fault, FaultProxy};
use http_body_util::Full;
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_patterns::circuit_breaker::CircuitBreakerLayer;
use tower_patterns::fetch::{CollectLayer, FetchError, HttpClient, JsonLayer};
use tower_patterns::limit::ConcurrencyLimitLayer;
#[cfg(feature = "postgres")]
use tower_patterns::pool::postgres::PgManager;
#[cfg(feature = "postgres")]
use tower_patterns::pool::Pool;
use tower_patterns::upstream::UpstreamConfig;

/// The client's deadline for a whole exchange: short, so faults are quick.
const DEADLINE: Duration = Duration::from_millis(400);
/// What "no hang" means: far past every deadline in play.
const HANG: Duration = Duration::from_secs(10);

/// `fut`, or a failure naming `what` if it outlives [`HANG`].
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {HANG:?}: a hang"))
}

/// Waits until `cond` holds, up to [`HANG`].
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A proxy in front of `server` applying `fault`, and where to connect;
/// `None`: no proxy, and an address where connecting is refused.
async fn proxy_or_refused(
    server: std::net::SocketAddr,
    fault: Option<Fault>,
) -> (Option<FaultProxy>, std::net::SocketAddr) {
    match fault {
        Some(fault) => {
            let proxy = FaultProxy::start(server, fault).await;
            let addr = proxy.addr();
            (Some(proxy), addr)
        }
        None => (None, refused_addr().await),
    }
}

/// What a call through the HTTP stack ended with.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Ok,
    Timeout,
    Transport,
    Other(String),
}

fn ended(result: Result<serde_json::Value, BoxError>) -> Ended {
    match result {
        Ok(_) => Ended::Ok,
        Err(e) => match e.downcast_ref::<FetchError>() {
            Some(FetchError::Timeout { .. }) => Ended::Timeout,
            Some(FetchError::Transport { .. }) => Ended::Transport,
            _ => Ended::Other(e.to_string()),
        },
    }
}

/// The bytes of one `GET /users/1` answer from the test upstream to our
/// client, as the proxy forwards them.
async fn answer_len(upstream: std::net::SocketAddr) -> usize {
    let proxy = FaultProxy::start(upstream, Fault::Pass).await;
    let client = HttpClient::builder().timeout(DEADLINE).build().unwrap();
    let svc = JsonLayer::<serde_json::Value>::new().layer(client);
    let req = http::Request::get(format!("http://{}/users/1", proxy.addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    bounded("one answer", svc.oneshot(req)).await.unwrap();
    proxy.forwarded()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_stack_ends_every_fault_in_time_and_gives_everything_back() {
    let upstream = common::upstream(UpstreamConfig::default()).await;
    let len = answer_len(upstream.addr()).await;
    assert!(len > 60, "a whole answer is {len} bytes");

    let cases: Vec<(&str, Option<Fault>, Ended)> = vec![
        ("pass", Some(Fault::Pass), Ended::Ok),
        ("refused", None, Ended::Transport),
        (
            "reset in the status line",
            Some(Fault::ResetAfter(5)),
            Ended::Transport,
        ),
        (
            "reset mid-body",
            Some(Fault::ResetAfter(len - 3)),
            Ended::Transport,
        ),
        (
            "stalled before answering",
            Some(Fault::Stall),
            Ended::Timeout,
        ),
        (
            "stalled mid-body",
            Some(Fault::StallAfter(len - 3)),
            Ended::Timeout,
        ),
        (
            "a slow drip",
            Some(Fault::Drip {
                every: Duration::from_millis(25),
            }),
            Ended::Timeout,
        ),
        (
            "truncated body",
            Some(Fault::TruncateAfter(len - 3)),
            Ended::Transport,
        ),
        ("half-closed", Some(Fault::HalfClose), Ended::Transport),
    ];

    for (name, fault, want) in cases {
        let (proxy, addr) = proxy_or_refused(upstream.addr(), fault).await;
        let breaker = CircuitBreakerLayer::consecutive(100, Duration::from_secs(60));
        let limit = ConcurrencyLimitLayer::new(4);
        let client = HttpClient::builder()
            .timeout(DEADLINE)
            .connect_timeout(DEADLINE)
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(JsonLayer::<serde_json::Value>::new())
            .layer(breaker.clone())
            .layer(limit.clone())
            // Bodies are read inside the breaker and the limit (as
            // `layer_order` says): a cut-off body is a failed call.
            .layer(CollectLayer::new())
            .service(client);

        // Three calls at once, then one more: the limit and the breaker
        // see every one.
        let req = || {
            http::Request::get(format!("http://{addr}/users/1"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let results = bounded(
            name,
            futures::future::join_all((0..3).map(|_| svc.clone().oneshot(req()))),
        )
        .await;
        let last = bounded(name, svc.clone().oneshot(req())).await;
        for result in results.into_iter().chain([last]) {
            assert_eq!(ended(result), want, "{name}");
        }

        // Nothing held: no permit, every call counted by the breaker as
        // the classifier says.
        assert_eq!(limit.stats().in_flight, 0, "{name}: a permit leaked");
        let stats = breaker.handle().stats();
        let failed = if want == Ended::Ok { 0 } else { 4 };
        assert_eq!(stats.failures, failed, "{name}: {stats:?}");
        assert_eq!(stats.successes, 4 - failed, "{name}: {stats:?}");

        // The client lets go of every faulty connection.
        drop(svc);
        if let Some(proxy) = &proxy {
            if want != Ended::Ok {
                until(&format!("{name}: the proxy's connections close"), || {
                    proxy.open() == 0
                })
                .await;
            }
        }
    }
    upstream.shutdown().await;
}

/// `url` with its host and port replaced by `addr`.
#[cfg(any(feature = "postgres", feature = "redis"))]
fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
    let creds = auth.rsplit_once('@').map(|(c, _)| format!("{c}@"));
    format!("{scheme}://{}{addr}/{path}", creds.unwrap_or_default())
}

#[cfg(any(feature = "postgres", feature = "redis"))]
fn server_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let auth = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    host.parse()
        .expect("the PostgreSQL URL names 127.0.0.1:PORT")
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_pool_ends_every_fault_in_time_and_keeps_no_slot() {
    let Some(url) = common::pg_url() else { return };
    let server = server_addr(&url);
    let faults = [
        ("refused", None),
        ("stalled handshake", Some(Fault::Stall)),
        ("reset in the handshake", Some(Fault::ResetAfter(3))),
        ("half-closed", Some(Fault::HalfClose)),
        (
            "a slow drip",
            Some(Fault::Drip {
                every: Duration::from_millis(50),
            }),
        ),
    ];
    for (name, fault) in faults {
        let (proxy, addr) = proxy_or_refused(server, fault).await;
        let pool = Pool::builder()
            .max_size(2)
            .acquire_timeout(DEADLINE)
            .build(PgManager::from_url(&via(&url, addr)).unwrap())
            .unwrap();
        // Four callers on two slots: each ends in time with an error.
        let results = bounded(
            name,
            futures::future::join_all((0..4).map(|_| async {
                let conn = pool.acquire().await.map_err(|e| e.to_string())?;
                conn.simple_query("SELECT 1")
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })),
        )
        .await;
        for r in &results {
            assert!(r.is_err(), "{name}: {r:?}");
        }
        let stats = pool.stats();
        assert_eq!(stats.in_use, 0, "{name}: {stats:?}");
        // The pool recovers once the network does: the same pool, with the
        // fault lifted, serves queries.
        if let Some(proxy) = &proxy {
            proxy.set(Fault::Pass);
            // A handshake (SCRAM, in a debug build, on a busy machine) may
            // take longer than the short acquire timeout: try until one
            // lands, within the hang bound.
            let conn = bounded(
                &format!("{name}: a connection once the fault is gone"),
                async {
                    loop {
                        if let Ok(conn) = pool.acquire().await {
                            break conn;
                        }
                    }
                },
            )
            .await;
            bounded(name, conn.simple_query("SELECT 1")).await.unwrap();
            drop(conn);
            assert_eq!(pool.stats().in_use, 0, "{name}");
        }
        bounded(name, pool.close()).await;
        if let Some(proxy) = &proxy {
            until(&format!("{name}: the proxy's connections close"), || {
                proxy.open() == 0
            })
            .await;
        }
    }
}
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_rate_limit_keeps_answering_through_every_fault_and_recovers() {
    use tower::Service;
    use tower_patterns::rate_limit::{RateLimitLayer, RedisStore};
    let Some(url) = redis_url() else { return };
    let server = server_addr(&url);
    let faults = [
        ("refused", None),
        ("stalled", Some(Fault::Stall)),
        ("reset at once", Some(Fault::ResetAfter(0))),
        ("reset mid-answer", Some(Fault::ResetAfter(2))),
        ("half-closed", Some(Fault::HalfClose)),
        (
            "a slow drip",
            Some(Fault::Drip {
                every: Duration::from_millis(50),
            }),
        ),
    ];
    for (name, fault) in faults {
        let (proxy, addr) = proxy_or_refused(server, fault).await;
        let store = RedisStore::builder(via(&url, addr))
            .key_prefix(format!("faults:{}:{name}:", std::process::id()))
            .timeout(Duration::from_millis(100))
            .circuit_breaker(CircuitBreakerLayer::consecutive(
                3,
                Duration::from_millis(200),
            ))
            .build()
            .unwrap();
        let layer = RateLimitLayer::builder()
            .rate(1_000, Duration::from_secs(1))
            .reject()
            .key_fn(|k: &u64| *k)
            .store(store.clone())
            .build()
            .unwrap();
        let mut svc = layer.layer(tower::service_fn(
            |k: u64| async move { Ok::<_, BoxError>(k) },
        ));
        // Failing open: every call goes through, each one a store error
        // (a Redis error, a timeout, or the breaker's fast refusal).
        for i in 0..10 {
            let got = bounded(name, async {
                svc.ready().await?;
                svc.call(i).await
            })
            .await;
            assert_eq!(got.unwrap(), i, "{name}");
        }
        assert_eq!(
            layer.stats().store_errors,
            10,
            "{name}: {:?}",
            layer.stats()
        );
        let stats = store.stats();
        assert_eq!(stats.errors, 10, "{name}: {stats:?}");
        assert!(
            stats.rejected_by_breaker > 0,
            "{name}: the breaker opened: {stats:?}"
        );

        // The network heals: Redis decides again, by itself.
        if let Some(proxy) = &proxy {
            proxy.set(Fault::Pass);
            bounded(&format!("{name}: Redis decides again"), async {
                let mut i = 100;
                while store.stats().admitted == 0 {
                    svc.ready().await.unwrap();
                    svc.call(i).await.unwrap();
                    i += 1;

                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
        }
        drop(svc);
        drop(layer);
        drop(store);
        if let Some(proxy) = &proxy {
            until(&format!("{name}: the proxy's connections close"), || {
                proxy.open() == 0
            })
            .await;
        }
    }
}

/// The Redis URL, or `None` (skipped, with the reason) outside CI.
#[cfg(feature = "redis")]
fn redis_url() -> Option<String> {
    common::service_url(
        "TOWER_PATTERNS_REDIS_URL",
        "start Redis with `eval \"$(bash .ci/redis.sh | tail -1)\"`",
    )
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cache_tier_keeps_answering_through_every_fault_and_recovers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tower_patterns::cache::{CacheLayer, JsonCodec, RedisStore};
    let Some(url) = redis_url() else { return };
    let server = server_addr(&url);
    let faults = [
        ("refused", None),
        ("stalled", Some(Fault::Stall)),
        ("reset mid-answer", Some(Fault::ResetAfter(2))),
        ("half-closed", Some(Fault::HalfClose)),
        (
            "a slow drip",
            Some(Fault::Drip {
                every: Duration::from_millis(50),
            }),
        ),
        ("frozen mid-session", Some(Fault::Pass)),
    ];
    for (name, fault) in faults {
        let prefix = format!("faults:{}:{}:", std::process::id(), name.replace(' ', "-"));
        let (proxy, addr) = proxy_or_refused(server, fault).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let replica = |url: String| {
            let calls = calls.clone();
            let store = RedisStore::builder(url)
                .key_prefix(prefix.clone())
                .timeout(Duration::from_millis(100))
                .circuit_breaker(CircuitBreakerLayer::consecutive(
                    3,
                    Duration::from_millis(200),
                ))
                .build()
                .unwrap();
            let layer = CacheLayer::<u64, String>::builder()
                .key_fn(|k: &u64| *k)
                .ttl(Duration::from_secs(60))
                .build_with_remote(store.clone(), JsonCodec)
                .unwrap();
            let handle = layer.handle();
            let svc = layer.layer(tower::service_fn(move |k: u64| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, BoxError>(format!("value {k}")) }
            }));
            (svc, handle, store)
        };
        // One replica straight to Redis, one through the proxy.
        let (healthy, _, _) = replica(url.clone());
        let (faulty, faulty_cache, faulty_store) = replica(via(&url, addr));
        if name == "frozen mid-session" {
            // Connected and working first, then the server stops answering
            // in the middle of the session.
            let got = bounded(name, faulty.clone().oneshot(1_000)).await.unwrap();
            assert_eq!(got, "value 1000");
            proxy.as_ref().unwrap().freeze();
        }
        // The faulty replica answers every call through its inner service.
        for k in 0..10u64 {
            let got = bounded(name, faulty.clone().oneshot(k)).await;
            assert_eq!(got.unwrap(), format!("value {k}"), "{name}");
        }
        let stats = faulty_cache.stats();
        assert!(stats.remote_fallbacks > 0, "{name}: {stats:?}");
        assert!(
            faulty_store.stats().errors > 0,
            "{name}: {:?}",
            faulty_store.stats()
        );

        // The network heals: the faulty replica reads what the healthy one
        // stored, without calling its inner service.
        if let Some(proxy) = &proxy {
            proxy.thaw();
            proxy.set(Fault::Pass);
            bounded(&format!("{name}: the tier is back"), async {
                let mut k = 100u64;
                loop {
                    healthy.clone().oneshot(k).await.unwrap();
                    let before = calls.load(Ordering::SeqCst);
                    faulty.clone().oneshot(k).await.unwrap();
                    if calls.load(Ordering::SeqCst) == before {
                        break; // served from Redis
                    }
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(faulty_cache.stats().remote_hits > 0, "{name}");
        }
        drop((faulty, faulty_cache, faulty_store));
        if let Some(proxy) = &proxy {
            until(&format!("{name}: the proxy's connections close"), || {
                proxy.open() == 0
            })
            .await;
        }
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_queue_ends_every_fault_in_time_and_recovers() {
    use tower_patterns::queue::backend::postgres::PgQueue;
    use tower_patterns::queue::Shutdown;
    let Some(url) = common::pg_url() else { return };
    let server = server_addr(&url);
    let table = common::unique_name("faults_queue");
    // The schema first, straight to the server.
    {
        let pool = Pool::builder()
            .max_size(2)
            .build(PgManager::from_url(&url).unwrap())
            .unwrap();
        let queue: PgQueue<u64, u64> = PgQueue::builder().table(&table).build(pool).unwrap();
        bounded("migrate", queue.migrate()).await.unwrap();
    }
    let faults = [
        ("refused", None),
        ("stalled", Some(Fault::Stall)),
        ("reset in the handshake", Some(Fault::ResetAfter(3))),
        ("half-closed", Some(Fault::HalfClose)),
        ("frozen mid-session", Some(Fault::Pass)),
    ];
    for (name, fault) in faults {
        let (proxy, addr) = proxy_or_refused(server, fault).await;
        let pool = Pool::builder()
            .max_size(4)
            .acquire_timeout(DEADLINE)
            .build(PgManager::from_url(&via(&url, addr)).unwrap())
            .unwrap();
        let queue: PgQueue<u64, u64> = PgQueue::builder()
            .table(&table)
            .workers(2)
            .lease(Duration::from_secs(2))
            .poll_interval(Duration::from_millis(200))
            .statement_timeout(DEADLINE)
            .build(pool.clone())
            .unwrap();
        if name == "frozen mid-session" {
            bounded(
                name,
                queue.start(tower::service_fn(|n: u64| async move {
                    Ok::<_, BoxError>(n * 2)
                })),
            )
            .await
            .unwrap();
            let id = bounded(name, queue.submit(21)).await.unwrap();
            assert_eq!(bounded(name, queue.result(id)).await.unwrap(), 42);
            proxy.as_ref().unwrap().freeze();
        }
        // Submitting ends, with an error, in bounded time (mid-session:
        // at the statement timeout).
        let got = bounded(&format!("{name}: submit"), queue.submit(1)).await;
        assert!(got.is_err(), "{name}: {got:?}");
        if name == "frozen mid-session" {
            assert!(
                matches!(
                    got,
                    Err(tower_patterns::queue::backend::postgres::PgQueueError::Timeout(_))
                ),
                "{name}: {got:?}"
            );
        }
        // The network heals: the same queue submits and runs tasks again.
        if let Some(proxy) = &proxy {
            proxy.thaw();
            proxy.set(Fault::Pass);
            if name != "frozen mid-session" {
                bounded(
                    name,
                    queue.start(tower::service_fn(|n: u64| async move {
                        Ok::<_, BoxError>(n * 2)
                    })),
                )
                .await
                .unwrap();
            }
            let id = bounded(&format!("{name}: submit after"), async {
                loop {
                    match queue.submit(5).await {
                        Ok(id) => break id,
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
            .await;
            assert_eq!(bounded(name, queue.result(id)).await.unwrap(), 10, "{name}");
        }
        bounded(
            &format!("{name}: shutdown"),
            queue.shutdown(Shutdown::Graceful(Duration::from_secs(5))),
        )
        .await;
        drop(queue);
        bounded(&format!("{name}: pool close"), pool.close()).await;
        if let Some(proxy) = &proxy {
            until(&format!("{name}: the proxy's connections close"), || {
                proxy.open() == 0
            })
            .await;
        }
    }
}
