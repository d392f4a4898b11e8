//! Per-page overhead of the pagination stream against a hand-written loop
//! (fetch a page, yield its items, stop at an empty page) over the same
//! in-memory page service.
//!
//! No peer crate paginates tower services, so the baseline is the loop a
//! user would write by hand: `ready().await`, `call().await`, stop on a
//! short page.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::{StreamExt, TryStreamExt};
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_patterns::paginate::{
    Cursor, CursorRequest, Page, PageNumber, PageRequest, PageResponse, Paginator,
};

const PAGES: u64 = 100;
const PER_PAGE: u64 = 10;

fn page_service(
) -> impl Service<PageRequest, Response = Page<u64>, Error = BoxError, Future: Send + 'static> + Clone
{
    service_fn(|r: PageRequest| async move {
        let items = if r.page <= PAGES {
            let first = (r.page - 1) * r.per_page;
            (first..first + r.per_page).collect()
        } else {
            Vec::new()
        };
        Ok::<_, BoxError>(Page::new(items))
    })
}

fn cursor_service(
) -> impl Service<CursorRequest, Response = Page<u64>, Error = BoxError, Future: Send + 'static> + Clone
{
    service_fn(|r: CursorRequest| async move {
        let page: u64 = r.cursor.as_deref().map_or(0, |c| c.parse().unwrap_or(0));
        let first = page * PER_PAGE;
        let next = (page + 1 < PAGES).then(|| (page + 1).to_string());
        Ok::<_, BoxError>(Page::new((first..first + PER_PAGE).collect()).with_next(next))
    })
}

/// A page as an API answers it, walked without building a `Page`.
struct OwnPage {
    items: Vec<u64>,
    next_cursor: Option<String>,
}

impl PageResponse for OwnPage {
    type Item = u64;

    fn items(&self) -> &[u64] {
        &self.items
    }

    fn items_mut(&mut self) -> &mut Vec<u64> {
        &mut self.items
    }
}

fn own_response_service(
) -> impl Service<CursorRequest, Response = OwnPage, Error = BoxError, Future: Send + 'static> + Clone
{
    service_fn(|r: CursorRequest| async move {
        let page: u64 = r.cursor.as_deref().map_or(0, |c| c.parse().unwrap_or(0));
        let first = page * PER_PAGE;
        let next_cursor = (page + 1 < PAGES).then(|| (page + 1).to_string());
        Ok::<_, BoxError>(OwnPage {
            items: (first..first + PER_PAGE).collect(),
            next_cursor,
        })
    })
}

/// The loop a user writes by hand.
async fn hand_loop() -> u64 {
    let mut svc = page_service();
    let mut sum = 0;
    let mut page = 1;
    loop {
        let p = svc
            .ready()
            .await
            .unwrap()
            .call(PageRequest {
                page,
                per_page: PER_PAGE,
            })
            .await
            .unwrap();
        let short = (p.len() as u64) < PER_PAGE;
        sum += p.into_items().into_iter().sum::<u64>();
        if short {
            return sum;
        }
        page += 1;
    }
}

async fn ours_pages(prefetch: usize) -> u64 {
    let mut pages = Paginator::new(page_service(), PageNumber::new(1, PER_PAGE))
        .prefetch(prefetch)
        .pages();
    let mut sum = 0;
    while let Some(page) = pages.next().await {
        sum += page.unwrap().into_items().into_iter().sum::<u64>();
    }
    sum
}

async fn ours(prefetch: usize) -> u64 {
    Paginator::new(page_service(), PageNumber::new(1, PER_PAGE))
        .prefetch(prefetch)
        .items()
        .try_fold(0u64, |acc, x| async move { Ok(acc + x) })
        .await
        .unwrap()
}

async fn ours_cursor() -> u64 {
    let mut items = Paginator::new(cursor_service(), Cursor::from_page()).items();
    let mut sum = 0;
    while let Some(x) = items.next().await {
        sum += x.unwrap();
    }
    sum
}

async fn ours_cursor_own_response() -> u64 {
    let next = Cursor::from_response(|r: &OwnPage| r.next_cursor.clone());
    let mut items = Paginator::new(own_response_service(), next).items();
    let mut sum = 0;
    while let Some(x) = items.next().await {
        sum += x.unwrap();
    }
    sum
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let expected = (0..PAGES * PER_PAGE).sum::<u64>();
    assert_eq!(rt.block_on(hand_loop()), expected);
    assert_eq!(rt.block_on(ours(0)), expected);
    assert_eq!(rt.block_on(ours_pages(0)), expected);
    assert_eq!(rt.block_on(ours(2)), expected);
    assert_eq!(rt.block_on(ours_cursor()), expected);
    assert_eq!(rt.block_on(ours_cursor_own_response()), expected);

    let mut group = c.benchmark_group("paginate/100 pages of 10");
    group.bench_function("hand-written loop (baseline)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(hand_loop().await) })
    });
    group.bench_function("ours pages()", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours_pages(0).await) })
    });
    for prefetch in [0usize, 2] {
        group.bench_with_input(
            BenchmarkId::new("ours items(), prefetch", prefetch),
            &prefetch,
            |b, &prefetch| {
                b.to_async(&rt)
                    .iter(|| async move { black_box(ours(prefetch).await) })
            },
        );
    }
    group.bench_function("ours cursor", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours_cursor().await) })
    });
    group.bench_function("ours cursor, own response type", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours_cursor_own_response().await) })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
