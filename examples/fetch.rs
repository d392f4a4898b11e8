//! `tower_patterns::fetch` end to end, against a local server this example
//! starts on 127.0.0.1:0 (no network needed):
//!
//! - `fetch_json` into a struct and into `serde_json::Value`;
//! - `fetch_all` over a mix of good, failing, malformed, slow and invalid
//!   URLs, 4 at a time, printed as a per-URL table in input order;
//! - `stream_body` over a 5 MiB body in 64 KiB chunks, with the total.
//!
//! Run with `cargo run --example fetch`.

use clap::Parser;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tower_patterns::fetch::{self, FetchError, HttpClient};

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // fields are shown through Debug
struct User {
    id: u64,
    name: String,
    email: String,
}

type Body = BoxBody<Bytes, Infallible>;

fn json(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("valid response")
}

/// The demo server: `/users/{id}` (ids above 100 are 404s, id 13 is a 500,
/// id 7 is malformed JSON), `/slow` (answers after 3 s) and `/big` (5 MiB).
async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    if let Some(id) = path.strip_prefix("/users/") {
        let id: u64 = id.parse().unwrap_or(0);
        return Ok(match id {
            7 => json(200, r#"{"id": 7, "name": "#.into()),
            13 => json(500, r#"{"error":"database on fire"}"#.into()),
            1..=100 => json(
                200,
                format!(r#"{{"id":{id},"name":"user {id}","email":"u{id}@example.com"}}"#),
            ),
            _ => json(404, format!(r#"{{"error":"no user {id}"}}"#)),
        });
    }
    Ok(match path {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json(
                200,
                r#"{"id":0,"name":"slowpoke","email":"s@example.com"}"#.into(),
            )
        }
        "/big" => {
            static CHUNK: [u8; 100_000] = [b'.'; 100_000];
            let frames = futures::stream::iter(0..(5 << 20) / CHUNK.len() + 1).map(|i| {
                let n = if i == (5 << 20) / CHUNK.len() {
                    (5 << 20) % CHUNK.len()
                } else {
                    CHUNK.len()
                };
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK[..n])))
            });
            Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
        _ => json(404, r#"{"error":"no route"}"#.into()),
    })
}

async fn start_server() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(handle)),
            );
        }
    });
    Ok(format!("http://{addr}"))
}

/// A short description of one `fetch_all` result.
fn describe(result: &Result<User, FetchError>) -> (String, String) {
    match result {
        Ok(user) => ("ok".into(), format!("{} <{}>", user.name, user.email)),
        Err(FetchError::Status { status, body, .. }) => (
            format!("status {}", status.as_u16()),
            String::from_utf8_lossy(body).into_owned(),
        ),
        Err(FetchError::Decode { line, column, .. }) => (
            "bad json".into(),
            format!("at line {line}, column {column}"),
        ),
        Err(FetchError::Timeout { after, .. }) => ("timeout".into(), format!("after {after:?}")),
        Err(FetchError::InvalidUri { reason, .. }) => ("invalid url".into(), reason.to_string()),
        Err(FetchError::Transport { .. }) => ("transport".into(), "connection failed".into()),
        Err(other) => ("error".into(), other.to_string()),
    }
}

/// fetch_json, fetch_all and stream_body against a local server.
///
/// Takes no flags; `--help` prints this.
#[derive(Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Args::parse();
    let base = start_server().await?;
    println!("demo server on {base}\n");

    let client = HttpClient::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(1))
        .max_body_bytes(1 << 20)
        .build()?;

    // 1. One JSON document, typed and untyped.
    let user: User = fetch::fetch_json(&client, format!("{base}/users/1")).await?;
    println!("fetch_json::<User>   -> {user:?}");
    let value: serde_json::Value = fetch::fetch_json(&client, format!("{base}/users/2")).await?;
    println!("fetch_json::<Value>  -> {value}");
    let err = fetch::fetch_json::<User, _, _>(&client, format!("{base}/users/404"))
        .await
        .unwrap_err();
    println!("fetch_json (missing) -> error: {err}\n");

    // 2. Many URLs, at most 4 in flight, results in input order.
    let mut urls: Vec<String> = (1..=10).map(|id| format!("{base}/users/{id}")).collect();
    urls.insert(2, format!("{base}/slow"));
    urls.push(format!("{base}/users/13"));
    urls.push(format!("{base}/users/999"));
    urls.push("not a url".into());
    let started = Instant::now();
    let results: Vec<Result<User, FetchError>> = fetch::fetch_all(&client, &urls, 4).await;
    println!(
        "fetch_all: {} URLs, 4 at a time, {:?} in all (the slow one timed out after 1 s without holding the others back)",
        urls.len(),
        started.elapsed()
    );
    let width = urls.iter().map(|u| u.len()).max().unwrap_or(3);
    println!("  {:>2}  {:<width$}  {:<12}  detail", "#", "url", "result");
    println!("  {:->2}  {:-<width$}  {:-<12}  {:-<30}", "", "", "", "");
    for (i, (url, result)) in urls.iter().zip(&results).enumerate() {
        let (kind, detail) = describe(result);
        println!("  {i:>2}  {url:<width$}  {kind:<12}  {detail}");
    }
    let ok = results.iter().filter(|r| r.is_ok()).count();
    println!("  {ok} ok, {} failed\n", results.len() - ok);

    // 3. A 5 MiB body in 64 KiB chunks: memory stays flat, the total comes at the end.
    let mut chunks = fetch::stream_body(&client, format!("{base}/big"), 64 * 1024).await?;
    let (mut count, mut largest) = (0usize, 0usize);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        count += 1;
        largest = largest.max(chunk.len());
    }
    println!(
        "stream_body: {} bytes in {count} chunks (largest {largest} bytes; 5 MiB is over this client's 1 MiB max_body_bytes, but streams are not buffered)",
        chunks.total().unwrap_or_default()
    );
    Ok(())
}
