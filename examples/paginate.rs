//! Walks a local paginated API in the three styles and prints progress per
//! page, then walks a flaky one, resuming from the checkpoint after each
//! failed page.
//!
//! ```text
//! cargo run --example paginate
//! ```

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tower::{service_fn, BoxError, ServiceBuilder};
use tower_patterns::paginate::{
    self, Cursor, CursorRequest, JsonPages, PageNumber, PageRequest, PageResponse, Paginator,
};
use tower_patterns::upstream::{Upstream, UpstreamConfig};

#[derive(Deserialize)]
struct Item {
    name: String,
}

/// The cursor endpoint's body, as its API defines it. The page service
/// answers it as is: the walk takes the items from it and the cursor
/// strategy reads `next_cursor` from it.
#[derive(Deserialize)]
struct CursorBody {
    items: Vec<Item>,
    next_cursor: Option<String>,
}

impl PageResponse for CursorBody {
    type Item = Item;

    fn items(&self) -> &[Item] {
        &self.items
    }

    fn items_mut(&mut self) -> &mut Vec<Item> {
        &mut self.items
    }
}

fn describe(page: &impl PageResponse<Item = Item>) -> String {
    let items = page.items();
    match (items.first(), items.last()) {
        (Some(first), Some(last)) => {
            format!("{} items, {} .. {}", items.len(), first.name, last.name)
        }
        _ => "empty: end of the walk".to_owned(),
    }
}

/// Walks a local paginated API in three styles, then a flaky one with resume.
///
/// Takes no flags; `--help` prints this.
#[derive(Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    Args::parse();
    let server = Upstream::start(UpstreamConfig {
        items: 1_000,
        ..UpstreamConfig::default()
    })
    .await?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    // 1. Link headers: `paginate::json_link_paginator` follows rel="next".
    println!(
        "== Link headers: {}",
        server.url("/items/link?per_page=250")
    );
    let mut pages = paginate::json_link_paginator::<Item>(
        client.clone(),
        server.url("/items/link?per_page=250"),
    )
    .prefetch(1)
    .pages();
    while let Some(page) = pages.next().await {
        let page = page?;
        let stats = pages.stats();
        println!(
            "page {:>2}: {} ({} items so far)",
            stats.pages,
            describe(&page),
            stats.items
        );
    }

    // 2. Cursors: a page service written with `service_fn` answering the
    //    API's own body type; the cursor strategy reads the token from it.
    println!("\n== Cursors: {}", server.url("/items/cursor?limit=300"));
    let base = server.url("/items/cursor?limit=300");
    let http = client.clone();
    let cursor_pages = service_fn(move |req: CursorRequest| {
        let http = http.clone();
        let uri = match req.cursor {
            Some(cursor) => format!("{base}&cursor={cursor}"),
            None => base.clone(),
        };
        async move {
            let response = http.get(uri.parse::<Uri>()?).await?;
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>(serde_json::from_slice::<CursorBody>(&body)?)
        }
    });
    let next_cursor = Cursor::from_response(|body: &CursorBody| body.next_cursor.clone());
    let mut pages = Paginator::new(cursor_pages, next_cursor).pages();
    while let Some(page) = pages.next().await {
        let page = page?;
        println!(
            "page {:>2}: {} (next cursor {:?})",
            pages.stats().pages,
            describe(&page),
            page.next_cursor
        );
    }

    // 3. Page numbers against a flaky server: each failed page ends the
    //    stream; resume from its checkpoint instead of starting over.
    println!(
        "\n== Page numbers, 30% of requests failing: {}",
        server.url("/items?per_page=100")
    );
    server.set_fail_rate(0.3);
    let base = server.url("/items");
    let page_service = ServiceBuilder::new()
        .map_request(move |r: PageRequest| -> Uri {
            format!("{base}?page={}&per_page={}", r.page, r.per_page)
                .parse()
                .expect("a valid URI")
        })
        .service(JsonPages::<Item>::new(client));
    let mut checkpoint = PageRequest {
        page: 1,
        per_page: 100,
    };
    let mut total = 0;
    for _attempt in 0..50 {
        let mut pages = Paginator::new(page_service.clone(), PageNumber::new(1, 100))
            .resume(checkpoint)
            .pages();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => {
                    total += page.len();
                    let number = checkpoint.page + pages.stats().pages - 1;
                    println!(
                        "page {number:>2}: {} ({total} items so far)",
                        describe(&page)
                    );
                }
                Err(e) => println!("page failed: {e}"),
            }
        }
        match pages.checkpoint() {
            Some(next) => {
                checkpoint = *next;
                println!("          resuming at page {}", checkpoint.page);
            }
            None => break,
        }
    }
    assert_eq!(total, 1_000, "gave up after 50 resumes");
    println!(
        "\nwalked {total} items; the server answered {} requests",
        server.requests()
    );
    server.shutdown().await;
    Ok(())
}
