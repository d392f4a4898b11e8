//! The main job: every pattern of the crate, working together against a
//! flaky server, through an outage and its recovery, with a report.
//!
//! ```sh
//! cargo run --example demo            # about 10-15 s
//! cargo run --example demo -- --quick # a few seconds, for CI
//! cargo run --example demo -- --chart outage.svg # also draws the outage scenario
//! cargo run --example demo -- --help
//! ```
//!
//! It starts `tower_patterns::upstream` on 127.0.0.1:0, builds one client
//! stack (cache -> retry -> circuit breaker -> concurrency limit ->
//! HttpClient, see `examples/support/demo_stack.rs`; the demo's settings
//! are in `examples/support/demo_setup.rs`) and runs the everyday
//! scenarios through it, one function each: fetch one, fetch many with
//! per-URL errors, stream a large body, walk a paginated API on a flaky
//! server, run jobs through a task queue that writes into a pooled
//! in-memory "database" (`examples/support/memory_db.rs`), and keep
//! traffic flowing through an outage until the breaker has opened, failed
//! fast, probed and closed again; then hedge GETs against a long-tailed
//! server (`examples/support/tail.rs` measures the tail). Every scenario
//! checks its own result;
//! the process exits with status 1 if any check fails.

#[path = "support/chart.rs"]
mod chart;
#[path = "support/demo_setup.rs"]
mod demo_setup;
#[path = "support/demo_stack.rs"]
mod demo_stack;
#[path = "support/memory_db.rs"]
mod memory_db;
#[path = "support/report.rs"]
mod report;
#[path = "support/tail.rs"]
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use tokio::time::Instant;
use tower::{service_fn, BoxError, ServiceExt};
use tower_patterns::circuit_breaker::{Open, State};
use tower_patterns::fetch::{self, FetchError};
use tower_patterns::limit;
use tower_patterns::paginate;
use tower_patterns::pool::Pool;
use tower_patterns::queue::{Shutdown, TaskError, TaskQueue, TaskStatus};

use chart::OutageData;
use demo_setup::{Demo, Item, Plan};
use demo_stack::get;
use memory_db::Database;
use report::{describe, find_open, heading, print_totals, secs, Report, Scenario, Timeline};

/// Every pattern of tower-patterns against a flaky local server, through
/// an outage and its recovery, with a report (exit status 1 if a check
/// fails).
#[derive(Parser)]
struct Args {
    /// Run in a few seconds instead of 10-15: shorter waits and a smaller
    /// body (for CI).
    #[arg(long)]
    quick: bool,
    /// Also write the outage scenario as an SVG chart to PATH: requests per
    /// outcome over time, with the breaker's state as a band beneath.
    #[arg(long, value_name = "PATH")]
    chart: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(Plan::new(args.quick), args.chart).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed to run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenarios in order and prints the report; `Ok(false)` if any
/// check failed.
async fn run(plan: Plan, chart: Option<PathBuf>) -> Result<bool, BoxError> {
    let started = Instant::now();
    let demo = Demo::start(plan).await?;
    let mut report = Report::default();
    report.add(fetch_one(&demo).await?);
    report.add(fetch_many(&demo).await?);
    report.add(stream_large_body(&demo).await?);
    report.add(paginate_flaky(&demo).await?);
    report.add(queue_and_pool(&demo).await?);
    let mut outage_data = OutageData::default();
    report.add(outage(&demo, &mut outage_data).await?);
    if let Some(path) = &chart {
        chart::write(path, &outage_data)?;
    }
    report.add(tail::hedging(&demo).await?);

    heading("report");
    report.print_table();
    print_totals(&demo.stack.stats(), &demo.upstream);
    println!("  total {:.2?}", started.elapsed());
    demo.upstream.shutdown().await;
    Ok(report.print_outcome())
}

/// Scenario 1: One user through the stack, then the same user from the cache.
async fn fetch_one(demo: &Demo) -> Result<Scenario, BoxError> {
    heading("1. fetch one (JSON through the stack, then from the cache)");
    let (upstream, users) = (&demo.upstream, &demo.users);
    let mut s = Scenario::new("fetch one");
    let t = Instant::now();
    let before = upstream.requests();
    let first = users.clone().oneshot(get(&upstream.url("/users/1"))).await;
    let miss = t.elapsed();
    let t2 = Instant::now();
    let again = users.clone().oneshot(get(&upstream.url("/users/1"))).await;
    let hit = t2.elapsed();
    let sent = upstream.requests() - before;
    match (&first, &again) {
        (Ok(a), Ok(_)) => {
            println!("  GET /users/1 -> {a:?}  ({miss:.2?}, cache miss)");
            println!("  GET /users/1 -> same user            ({hit:.2?}, cache hit)");
        }
        _ => println!("  unexpected: {first:?} / {again:?}"),
    }
    println!("  upstream saw {sent} request(s)");
    let ok_user = matches!(&first, Ok(u) if u.id == 1 && u.name == "user-1");
    s.check(ok_user, "GET /users/1 decodes user 1");
    s.check(
        first.as_ref().ok() == again.as_ref().ok(),
        "second GET returns the same user",
    );
    s.check(
        sent == 1,
        format!("the second GET is a cache hit (upstream saw {sent})"),
    );
    Ok(s.finish(
        format!("user 1 decoded; second call from cache ({hit:.0?})"),
        t.elapsed(),
    ))
}

/// Scenario 2: Fifteen URLs, four at a time: one `Result` per URL, in input order.
async fn fetch_many(demo: &Demo) -> Result<Scenario, BoxError> {
    heading("2. fetch many (bounded gather, one Result per URL, in order)");
    let (upstream, users) = (&demo.upstream, &demo.users);
    let mut s = Scenario::new("fetch many");
    let t = Instant::now();
    let mut paths: Vec<String> = (1..=12).map(|id| format!("/users/{id}")).collect();
    paths.insert(4, "/users/0".into()); // 404
    paths.insert(9, "/users/4242".into()); // 404
    paths.push("/items?page=1&per_page=2".into()); // an array, not a user
    let results = limit::gather(
        users.clone(),
        paths.iter().map(|p| get(&upstream.url(p))),
        4,
    )
    .await;
    let mut ok = 0;
    let mut errors = 0;
    for (path, result) in paths.iter().zip(&results) {
        match result {
            Ok(u) => {
                ok += 1;
                println!("  {path:<26} ok    {} <{}>", u.name, u.email);
            }
            Err(e) => {
                errors += 1;
                println!("  {path:<26} error {}", describe(e));
            }
        }
    }
    let in_order = paths.iter().zip(&results).all(|(p, r)| match r {
        Ok(u) => *p == format!("/users/{}", u.id),
        Err(_) => true,
    });
    let fetch_error = |i: usize| {
        results[i]
            .as_ref()
            .err()
            .and_then(|e| e.downcast_ref::<FetchError>())
    };
    let status_of = |i: usize| fetch_error(i).and_then(|f| f.status()).map(|s| s.as_u16());
    s.check(
        ok == 12 && errors == 3,
        format!("12 ok and 3 errors (got {ok} / {errors})"),
    );
    s.check(in_order, "results come back in input order");
    s.check(
        status_of(4) == Some(404) && status_of(9) == Some(404),
        "unknown users are 404 errors in their own slots",
    );
    s.check(
        matches!(fetch_error(14), Some(FetchError::Decode { .. })),
        "the non-user body is a decode error",
    );
    Ok(s.finish(
        format!("{ok} ok, {errors} per-URL errors, input order kept"),
        t.elapsed(),
    ))
}

/// Scenario 3: A large body read in bounded chunks, never held whole.
async fn stream_large_body(demo: &Demo) -> Result<Scenario, BoxError> {
    heading("3. stream a large body (bounded chunks, flat memory)");
    let (plan, upstream, stack) = (&demo.plan, &demo.upstream, &demo.stack);
    let mut s = Scenario::new("stream body");
    let t = Instant::now();
    let chunk = 64 * 1024;
    let url = upstream.url(&format!("/stream?bytes={}", plan.stream_bytes));
    let mut body = fetch::stream_body(&stack.client, &url, chunk).await?;
    let (mut chunks, mut largest, mut total) = (0u64, 0usize, 0u64);
    while let Some(piece) = body.next().await {
        let piece = piece?;
        chunks += 1;
        largest = largest.max(piece.len());
        total += piece.len() as u64;
    }
    let took = t.elapsed();
    let mib = total as f64 / (1 << 20) as f64;
    println!(
        "  {mib:.0} MiB in {chunks} chunks of at most {largest} bytes, {took:.2?} ({:.0} MiB/s)",
        mib / took.as_secs_f64().max(1e-9)
    );
    s.check(
        total == plan.stream_bytes,
        format!("read {total} of {} bytes", plan.stream_bytes),
    );
    s.check(
        body.total() == Some(total),
        "the stream reports a clean end",
    );
    s.check(largest <= chunk, "no chunk is larger than the chunk size");
    Ok(s.finish(format!("{mib:.0} MiB in {chunks} chunks"), took))
}

/// Scenario 4: A paginated API (Link headers) walked while 20% of requests fail:
/// retry absorbs most failures, the walk resumes from its checkpoint after
/// the rest; a second walk comes from the cache.
async fn paginate_flaky(demo: &Demo) -> Result<Scenario, BoxError> {
    heading("4. walk a paginated API (Link headers) while 20% of requests fail");
    let (upstream, stack) = (&demo.upstream, &demo.stack);
    let mut s = Scenario::new("paginate");
    let t = Instant::now();
    upstream.set_fail_rate(0.2);
    let (fail_before, retry_before) = (upstream.failures_sent(), stack.retry.stats());
    let first_page = upstream.url("/items/link?page=1&per_page=50");
    let mut items: Vec<Item> = Vec::new();
    let mut checkpoint: Option<http::Uri> = None;
    let mut resumes = 0;
    loop {
        let mut walk = paginate::json_link_paginator::<Item>(stack.svc.clone(), &first_page);
        if let Some(at) = checkpoint.take() {
            walk = walk.resume(at);
        }
        let mut stream = walk.items();
        match (&mut stream)
            .try_for_each(|item| {
                items.push(item);
                futures::future::ready(Ok(()))
            })
            .await
        {
            Ok(()) => break,
            Err(e) => {
                resumes += 1;
                checkpoint = stream.checkpoint().cloned();
                let wait = find_open(&e).and_then(Open::retry_after);
                println!(
                    "  walk stopped after {} items: {e}; resuming at {}{}",
                    items.len(),
                    checkpoint
                        .as_ref()
                        .map_or_else(|| "nothing".into(), |u| u.to_string()),
                    wait.map(|w| format!(" after the breaker's {w:?}"))
                        .unwrap_or_default()
                );
                if let Some(w) = wait {
                    tokio::time::sleep(w).await;
                }
                if resumes > 20 || checkpoint.is_none() {
                    break;
                }
            }
        }
    }
    upstream.set_fail_rate(0.0);
    let retried = stack.retry.stats().retries - retry_before.retries;
    let failed = upstream.failures_sent() - fail_before;
    println!(
        "  {} items in {:.2?}: the server failed {failed} requests, retry absorbed them with {retried} retries, {resumes} resume(s)",
        items.len(),
        t.elapsed()
    );
    let exact = items.len() == 1000
        && items
            .iter()
            .enumerate()
            .all(|(i, it)| it.id == i as u64 + 1);
    s.check(
        exact,
        format!("every item once, in order (got {})", items.len()),
    );
    // A second walk comes from the cache: no request reaches the server.
    let before = upstream.requests();
    let again: Vec<Item> = paginate::json_link_paginator::<Item>(stack.svc.clone(), &first_page)
        .items()
        .try_collect()
        .await?;
    let sent = upstream.requests() - before;
    println!(
        "  walked again: {} items, {sent} requests reached the server (pages are cached)",
        again.len()
    );
    s.check(again == items, "the cached walk yields the same items");
    s.check(
        sent == 0,
        format!("the cached walk sends nothing (sent {sent})"),
    );
    Ok(s.finish(
        format!(
            "1000 items through {failed} injected failures ({retried} retries, {resumes} resumes)"
        ),
        t.elapsed(),
    ))
}

/// Scenario 5: Sixteen jobs on a task queue with five workers; each fetches a user
/// through the stack and saves it over a pooled database connection.
async fn queue_and_pool(demo: &Demo) -> Result<Scenario, BoxError> {
    heading("5. task queue (5 workers) fetching users into a pooled in-memory database");
    let (upstream, users) = (&demo.upstream, &demo.users);
    let mut s = Scenario::new("queue + pool");
    let t = Instant::now();
    let db = Database::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(3)
        .acquire_timeout(Duration::from_secs(5))
        .build(db.manager())?;
    let job = {
        let users = users.clone();
        let pool = pool.clone();
        let upstream_url = upstream.url("");
        service_fn(move |id: u64| {
            let users = users.clone();
            let pool = pool.clone();
            let url = format!("{upstream_url}/users/{id}");
            async move {
                let user = users.oneshot(get(&url)).await?;
                let mut conn = pool.acquire().await?;
                conn.save(user.id, user.name.clone()).await;
                Ok::<_, BoxError>(format!("saved {} via conn #{}", user.name, conn.id))
            }
        })
    };
    let queue: TaskQueue<u64, String, BoxError> =
        TaskQueue::builder().workers(5).capacity(64).build(job)?;
    let ids: Vec<u64> = (20..=33).chain([0, 7777]).collect();
    let mut handles = Vec::new();
    for id in &ids {
        handles.push((*id, queue.submit_with_handle(*id).await?));
    }
    println!("  {:<8} {:<6} {:<10} result", "task", "user", "status");
    let (mut completed, mut failed_jobs) = (0, 0);
    for (id, handle) in handles {
        let task = handle.id();
        let result = handle.await;
        let (status, text) = match &result {
            Ok(saved) => {
                completed += 1;
                (TaskStatus::Completed, saved.clone())
            }
            Err(e) => {
                failed_jobs += 1;
                let text = match e {
                    TaskError::Failed(inner) => describe(inner),
                    other => other.to_string(),
                };
                (e.status().unwrap_or(TaskStatus::Failed), text)
            }
        };
        let status = status.to_string();
        println!("  {:<8} {id:<6} {status:<10} {text}", task.to_string());
    }
    let summary = queue
        .shutdown(Shutdown::Graceful(Duration::from_secs(5)))
        .await;
    let qs = queue.stats();
    let ps = pool.stats();
    let rows = db.rows();
    println!(
        "  queue: submitted {}, completed {}, failed {}; pool: {} connection(s) open (max {}), {} created; database rows: {rows}",
        qs.submitted, qs.completed, qs.failed, ps.size, ps.max_size, ps.created
    );
    s.check(
        completed == 14 && failed_jobs == 2,
        format!("14 jobs done, 2 failed (got {completed} / {failed_jobs})"),
    );
    s.check(rows == 14, format!("14 rows written (got {rows})"));
    s.check(
        ps.created <= 3 && ps.in_use == 0,
        "the pool stayed within 3 connections and got them all back",
    );
    s.check(
        summary.cancelled.is_empty(),
        "graceful shutdown cancelled nothing",
    );
    pool.close().await;
    Ok(s.finish(
        format!(
            "{completed} jobs saved, {failed_jobs} failed (404), pool max {}",
            ps.max_size
        ),
        t.elapsed(),
    ))
}

/// Scenario 6: Steady traffic while the server is down: the breaker opens, fails
/// fast, probes once the open duration has passed, and closes again after
/// the server is back.
async fn outage(demo: &Demo, data: &mut OutageData) -> Result<Scenario, BoxError> {
    heading("6. outage and recovery (steady traffic; breaker opens, fails fast, probes, closes)");
    let Demo {
        plan,
        upstream,
        stack,
        users,
    } = demo;
    let mut s = Scenario::new("outage");
    let t = Instant::now();
    let acct_before = (upstream.requests(), stack.stats());
    upstream.set_down(true);
    let down_at = stack.started.elapsed();
    println!(
        "  {} upstream goes down (every request: 503, Retry-After: 1)",
        secs(down_at)
    );
    let mut up_at: Option<Duration> = None;
    let mut opened_at: Option<Instant> = None;
    let mut fail_fast = 0u64;
    let mut successes_after_recovery = 0;
    let mut timeline = Timeline::default();
    let mut cached_ok_during_outage = false;
    let mut n = 0u64;
    loop {
        n += 1;
        if n > 2_000 {
            s.check(false, "the breaker closed again within 2,000 requests");
            break;
        }
        // Bring the server back once the breaker has been open for 1.5x
        // its open duration: the first probe fails, the next one closes.
        if let (None, Some(at)) = (up_at, opened_at) {
            if at.elapsed() >= plan.open_duration * 3 / 2 {
                upstream.set_down(false);
                let now = stack.started.elapsed();
                up_at = Some(now);
                data.down = Some(now.saturating_sub(down_at));
                timeline.push(now, "upstream is back");
            }
        }
        if n == 3 {
            // A cached user is still served while the server is down.
            let r = users.clone().oneshot(get(&upstream.url("/users/1"))).await;
            cached_ok_during_outage = r.is_ok();
            let answer = if r.is_ok() {
                "ok, from the cache"
            } else {
                "error"
            };
            let now = stack.started.elapsed();
            timeline.push(now, format!("/users/1 (cached)  -> {answer}"));
        }
        let path = format!("/users/{}", 100 + n);
        let before = upstream.requests();
        let at = stack.started.elapsed();
        let result = users.clone().oneshot(get(&upstream.url(&path))).await;
        let sent = upstream.requests() - before;
        let open = result.as_ref().err().and_then(|e| find_open(e.as_ref()));
        data.push(
            at.saturating_sub(down_at),
            result.is_ok(),
            sent == 0 && open.is_some(),
        );
        let outcome = match &result {
            Ok(_) => {
                if up_at.is_some() && stack.breaker.state() == State::Closed {
                    successes_after_recovery += 1;
                }
                "ok".to_string()
            }
            Err(e) if find_open(e.as_ref()).is_some() => {
                opened_at.get_or_insert_with(Instant::now);
                if sent == 0 {
                    fail_fast += 1;
                    describe(e)
                } else {
                    // Attempts that reached the server failed and
                    // (re)opened the breaker; the next one was refused.
                    format!("HTTP 503 x{sent}, breaker (re)opened, then {}", describe(e))
                }
            }
            Err(e) => describe(e),
        };
        timeline.push(
            at,
            format!("{path:<18} -> {outcome}  [{sent} upstream request(s)]"),
        );
        if successes_after_recovery >= 3 {
            break;
        }
        tokio::time::sleep(plan.tick).await;
    }
    timeline.print();

    let transitions = stack.transitions();
    let since_down = transitions.iter().filter(|tr| tr.at >= down_at);
    data.states = since_down
        .map(|tr| (tr.at - down_at, tr.to.into()))
        .collect();
    println!("  breaker transitions:");
    for tr in &transitions {
        println!("    {} {} -> {}", secs(tr.at), tr.from, tr.to);
    }
    let seq: Vec<(State, State)> = transitions.iter().map(|t| (t.from, t.to)).collect();
    let opened = seq.iter().position(|s| *s == (State::Closed, State::Open));
    let closed = seq
        .iter()
        .rposition(|s| *s == (State::HalfOpen, State::Closed));
    s.check(opened.is_some(), "the breaker opened during the outage");
    s.check(
        closed.is_some() && closed > opened,
        "the breaker closed again after recovery",
    );
    if let (Some(o), Some(h)) = (
        transitions.iter().find(|t| t.to == State::Open),
        transitions.iter().find(|t| t.to == State::HalfOpen),
    ) {
        s.check(
            h.at + Duration::from_millis(5) >= o.at + plan.open_duration,
            "the first probe waited the open duration",
        );
    }
    s.check(
        fail_fast >= 3,
        format!("calls failed fast while open (got {fail_fast})"),
    );
    s.check(
        cached_ok_during_outage,
        "a cached user was served during the outage",
    );
    // Accounting: every attempt that passed the breaker reached the server once.
    let after = stack.stats();
    let upstream_sent = upstream.requests() - acct_before.0;
    let attempts = after.retry.attempts - acct_before.1.retry.attempts;
    let rejected = after.breaker_rejected - acct_before.1.breaker_rejected;
    println!(
        "  accounting: {attempts} attempts - {rejected} rejected by the open breaker = {} = {upstream_sent} requests at the server",
        attempts - rejected
    );
    s.check(
        attempts - rejected == upstream_sent,
        "no request lost or doubled",
    );
    Ok(s.finish(
        format!(
            "opened, {fail_fast} failed fast, {} transitions, recovered",
            transitions.len()
        ),
        t.elapsed(),
    ))
}
