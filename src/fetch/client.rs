//! [`HttpClient`]: a pooled hyper-util client (HTTP/1 and HTTP/2, HTTPS
//! with rustls under the `tls` feature) as a `tower::Service`.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Sleep;
use tower_service::Service;

use super::body::Body;
use super::error::FetchError;
use crate::trace::trace_event;
use crate::ConfigError;

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BODY_BYTES: u64 = 10 << 20;
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 32;
const DEFAULT_USER_AGENT: &str = concat!("tower-patterns/", env!("CARGO_PKG_VERSION"));

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_body_bytes: u64,
    user_agent: HeaderValue,
    pub(crate) counters: Counters,
}

/// Shared by every clone of a client; relaxed atomics, one cache line of
/// traffic per event.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    finished: AtomicU64,
    responses: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) transport_errors: AtomicU64,
    pub(crate) bodies_too_large: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of an [`HttpClient`]'s counters (shared by all its clones),
/// from [`HttpClient::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchStats {
    /// Requests sent (not counting ones refused for an invalid URI).
    pub requests: u64,
    /// Requests waiting for their response head right now.
    pub in_flight: u64,
    /// Response heads received, whatever their status.
    pub responses: u64,
    /// Requests and bodies that ran out of time (connect timeouts included).
    pub timeouts: u64,
    /// Connect, TLS and I/O failures.
    pub transport_errors: u64,
    /// Bodies cut at `max_body_bytes`.
    pub bodies_too_large: u64,
}

/// Counts a request as finished when its future completes or is dropped.
struct InFlight(Arc<Config>);

impl Drop for InFlight {
    fn drop(&mut self) {
        Counters::bump(&self.0.counters.finished);
    }
}

/// A pooled HTTP client as a [`Service`]: `http::Request<Full<Bytes>>` in,
/// `http::Response<`[`Body`]`>` out, [`FetchError`] on failure.
///
/// Built on `hyper_util`'s pooled client: HTTP/1.1 and HTTP/2 (negotiated by
/// ALPN over TLS), keep-alive connections reused per host. With the `tls`
/// feature (on by default) it speaks `https` with rustls (`ring` provider)
/// and the Mozilla root store from `webpki-roots`; a custom root store can be
/// given with [`HttpClientBuilder::root_certificates`].
///
/// - **Clones share the connection pool** (and the configuration and
///   [`stats`](HttpClient::stats)): clone it freely, per task or per layer stack.
/// - **Any status is a response.** The service answers 404 and 503 with
///   `Ok(response)` so that [`HttpClassify`](crate::classify::HttpClassify)
///   can tell retryable failures from definite answers; the helpers
///   [`fetch_json`](super::fetch_json) and [`stream_body`](super::stream_body)
///   turn non-2xx answers into [`FetchError::Status`].
/// - **Deadlines.** `timeout` bounds the whole exchange, from the call to the
///   last body byte; `connect_timeout` bounds each connection attempt.
/// - **Body limit.** The response [`Body`] fails with
///   [`FetchError::BodyTooLarge`] past `max_body_bytes`, while streaming.
/// - A request whose URI is relative, has no host, or has another scheme
///   fails with [`FetchError::InvalidUri`] without touching the network.
///
/// Its error type converts into [`BoxError`](crate::BoxError), so the
/// crate's layers (and tower's) stack on it.
///
/// ```no_run
/// # async fn run() -> Result<(), tower_patterns::BoxError> {
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower::{Service, ServiceExt};
/// use tower_patterns::fetch::HttpClient;
///
/// let client = HttpClient::builder()
///     .connect_timeout(Duration::from_secs(2))
///     .timeout(Duration::from_secs(10))
///     .max_body_bytes(1 << 20)
///     .build()?;
/// let req = http::Request::get("http://127.0.0.1:8080/users/1").body(Full::new(Bytes::new()))?;
/// let resp = client.clone().oneshot(req).await?;
/// let body = resp.into_body().collect().await?.to_bytes();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    config: Arc<Config>,
}

impl HttpClient {
    /// A client with the defaults: 10 s connect timeout, 30 s timeout,
    /// 10 MiB body limit, and (with `tls`) the `webpki-roots` root store.
    pub fn new() -> Self {
        match HttpClientBuilder::default().build() {
            Ok(client) => client,
            // The defaults are valid and ring supports rustls' default
            // protocol versions, so this cannot happen.
            Err(e) => unreachable!("default HttpClient config is valid: {e}"),
        }
    }

    /// A builder to set timeouts, the body limit and the TLS roots.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }

    /// Sends `req` without needing `&mut self` (what [`Service::call`] does).
    pub fn request(&self, mut req: Request<Full<Bytes>>) -> ResponseFuture {
        if let Err(reason) = check_uri(req.uri()) {
            return ResponseFuture::failed(FetchError::InvalidUri {
                url: req.uri().to_string(),
                reason,
            });
        }
        if !req.headers().contains_key(USER_AGENT) {
            req.headers_mut()
                .insert(USER_AGENT, self.config.user_agent.clone());
        }
        let uri = req.uri().clone();
        let deadline = Box::pin(tokio::time::sleep(self.config.timeout));
        Counters::bump(&self.config.counters.requests);
        ResponseFuture {
            state: State::Waiting {
                fut: self.client.request(req),
                uri,
                deadline,
                in_flight: InFlight(Arc::clone(&self.config)),
            },
        }
    }

    /// A snapshot of this client's counters, shared by all its clones.
    pub fn stats(&self) -> FetchStats {
        let c = &self.config.counters;
        // `finished` is read first so `in_flight` never underflows.
        let finished = c.finished.load(Ordering::Relaxed);
        let requests = c.requests.load(Ordering::Relaxed);
        FetchStats {
            requests,
            in_flight: requests.saturating_sub(finished),
            responses: c.responses.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            transport_errors: c.transport_errors.load(Ordering::Relaxed),
            bodies_too_large: c.bodies_too_large.load(Ordering::Relaxed),
        }
    }

    /// The body limit in bytes.
    pub fn max_body_bytes(&self) -> u64 {
        self.config.max_body_bytes
    }

    /// The deadline for a whole exchange.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The deadline for each connection attempt.
    pub fn connect_timeout(&self) -> Duration {
        self.config.connect_timeout
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.config.connect_timeout)
            .field("timeout", &self.config.timeout)
            .field("max_body_bytes", &self.config.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Service<Request<Full<Bytes>>> for HttpClient {
    type Response = Response<Body>;
    type Error = FetchError;
    type Future = ResponseFuture;

    /// Always ready: the pool opens connections on demand.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FetchError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> ResponseFuture {
        self.request(req)
    }
}

/// Checks that hyper-util can send to `uri` (absolute, with a host, and a
/// scheme we speak).
fn check_uri(uri: &Uri) -> Result<(), Cow<'static, str>> {
    let scheme = match uri.scheme_str() {
        Some(s) => s,
        None => return Err("it has no scheme (expected http:// or https://)".into()),
    };
    match scheme {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => return Err("https needs the `tls` feature of tower-patterns".into()),
        other => {
            return Err(format!("unsupported scheme `{other}` (expected http or https)").into())
        }
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err("it has no host".into()),
    }
}

/// A `GET` request for `url`, or [`FetchError::InvalidUri`].
pub(crate) fn get_request(
    url: &str,
    accept: Option<&'static str>,
) -> Result<Request<Full<Bytes>>, FetchError> {
    let invalid = |reason: Cow<'static, str>| FetchError::InvalidUri {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(e.to_string().into()))?;
    check_uri(&uri).map_err(invalid)?;
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri;
    if let Some(accept) = accept {
        req.headers_mut()
            .insert(http::header::ACCEPT, HeaderValue::from_static(accept));
    }
    Ok(req)
}

/// The future of [`HttpClient`]'s `call`: the response head, or a
/// [`FetchError`].
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    state: State,
}

enum State {
    Failed(FetchError),
    Waiting {
        fut: hyper_util::client::legacy::ResponseFuture,
        uri: Uri,
        deadline: Pin<Box<Sleep>>,
        in_flight: InFlight,
    },
    Done,
}

impl ResponseFuture {
    fn failed(err: FetchError) -> Self {
        ResponseFuture {
            state: State::Failed(err),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Failed(_) => "failed",
            State::Waiting { .. } => "waiting",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, FetchError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (fut, deadline, config) = match &mut this.state {
            State::Waiting {
                fut,
                deadline,
                in_flight,
                ..
            } => (fut, deadline, &in_flight.0),
            State::Failed(_) => match std::mem::replace(&mut this.state, State::Done) {
                State::Failed(err) => return Poll::Ready(Err(err)),
                _ => unreachable!(),
            },
            State::Done => panic!("fetch::ResponseFuture polled after completion"),
        };
        let result = match Pin::new(fut).poll(cx) {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Err(config.timeout),
                Poll::Pending => return Poll::Pending,
            },
        };
        let State::Waiting {
            uri,
            deadline,
            in_flight,
            ..
        } = std::mem::replace(&mut this.state, State::Done)
        else {
            unreachable!()
        };
        // The request is finished (dropping the guard counts it); the body
        // keeps the config for its own limit, deadline and counters.
        let config = Arc::clone(&in_flight.0);
        drop(in_flight);
        Poll::Ready(match result {
            Ok(Ok(resp)) => {
                Counters::bump(&config.counters.responses);
                let (parts, incoming) = resp.into_parts();
                let body = Body::new(incoming, uri, Some(deadline), config);
                Ok(Response::from_parts(parts, body))
            }
            Ok(Err(err)) => {
                let err =
                    FetchError::transport(uri.to_string(), Box::new(err), config.connect_timeout);
                Counters::bump(if err.is_timeout() {
                    &config.counters.timeouts
                } else {
                    &config.counters.transport_errors
                });
                Err(err)
            }
            Err(after) => {
                Counters::bump(&config.counters.timeouts);
                trace_event!(DEBUG, url = %uri, timeout = ?after, "fetch: no response in time");
                Err(FetchError::Timeout {
                    url: uri.to_string(),
                    after,
                })
            }
        })
    }
}

/// Configures an [`HttpClient`]; made by [`HttpClient::builder`].
#[derive(Clone)]
pub struct HttpClientBuilder {
    connect_timeout: Duration,
    timeout: Duration,
    max_body_bytes: u64,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    user_agent: Option<String>,
    #[cfg(feature = "tls")]
    roots: Option<rustls::RootCertStore>,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        HttpClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            user_agent: None,
            #[cfg(feature = "tls")]
            roots: None,
        }
    }
}

impl fmt::Debug for HttpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

impl HttpClientBuilder {
    /// Deadline for each TCP connection attempt (default 10 s; must be
    /// non-zero). Reported as [`FetchError::Timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline for a whole exchange, from the call until the last body
    /// byte (default 30 s; must be non-zero). For
    /// [`stream_body`](super::stream_body) it bounds the wait for the
    /// response head and then each wait for more data.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest response body accepted, in bytes (default 10 MiB; at least
    /// 1). Enforced while the body streams in: [`FetchError::BodyTooLarge`].
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s; non-zero).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept per host (default 32; 0 turns
    /// connection reuse off).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// The `User-Agent` sent when a request has none (default
    /// `tower-patterns/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Trust exactly these roots for `https` instead of the `webpki-roots`
    /// Mozilla store: for private CAs, and for tests against a local server
    /// with a self-signed certificate.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn root_certificates(mut self, roots: rustls::RootCertStore) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when a timeout is zero,
    /// `max_body_bytes` is 0, or the user agent is not a valid header value.
    pub fn build(self) -> Result<HttpClient, ConfigError> {
        if self.connect_timeout.is_zero() {
            return Err(zero("connect_timeout"));
        }
        if self.timeout.is_zero() {
            return Err(zero("timeout"));
        }
        if self.pool_idle_timeout.is_zero() {
            return Err(zero("pool_idle_timeout"));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new(
                "fetch",
                "max_body_bytes",
                "0",
                "must be at least 1",
            ));
        }
        let user_agent = match &self.user_agent {
            None => HeaderValue::from_static(DEFAULT_USER_AGENT),
            Some(ua) => HeaderValue::from_str(ua).map_err(|_| {
                ConfigError::new(
                    "fetch",
                    "user_agent",
                    format!("{ua:?}"),
                    "must be visible ASCII without control characters",
                )
            })?,
        };

        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(self.connect_timeout));
        http.set_nodelay(true);
        #[cfg(feature = "tls")]
        let connector = {
            // The TLS wrapper handles the scheme check itself.
            http.enforce_http(false);
            let roots = self.roots.unwrap_or_else(|| rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| {
                    ConfigError::new("fetch", "tls", e.to_string(), "a TLS setup rustls supports")
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "tls"))]
        let connector = http;

        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .build(connector);
        Ok(HttpClient {
            client,
            config: Arc::new(Config {
                connect_timeout: self.connect_timeout,
                timeout: self.timeout,
                max_body_bytes: self.max_body_bytes,
                user_agent,
                counters: Counters::default(),
            }),
        })
    }
}

fn zero(field: &'static str) -> ConfigError {
    ConfigError::new("fetch", field, "0s", "must be greater than zero")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        let e = HttpClient::builder()
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "timeout");
        let e = HttpClient::builder()
            .connect_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "connect_timeout");
        let e = HttpClient::builder().max_body_bytes(0).build().unwrap_err();
        assert_eq!(e.field(), "max_body_bytes");
        let e = HttpClient::builder()
            .user_agent("bad\nagent")
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "user_agent");
        let c = HttpClient::builder().max_body_bytes(5).build().unwrap();
        assert_eq!(c.max_body_bytes(), 5);
    }

    #[test]
    fn check_uri_refuses_what_hyper_cannot_send() {
        assert!(check_uri(&"http://h/x".parse().unwrap()).is_ok());
        assert!(check_uri(&"/relative".parse().unwrap()).is_err());
        assert!(check_uri(&"ftp://h/x".parse().unwrap()).is_err());
        assert_eq!(
            check_uri(&"https://h/".parse().unwrap()).is_ok(),
            cfg!(feature = "tls")
        );
        for bad in [
            "",
            "not a url",
            "http://",
            "http://exa mple.com/",
            "ftp://h/",
        ] {
            let e = get_request(bad, None).unwrap_err();
            assert!(matches!(e, FetchError::InvalidUri { .. }), "{bad:?}: {e:?}");
            assert_eq!(e.url(), bad);
        }
    }

    #[tokio::test]
    async fn invalid_uri_fails_without_network() {
        let client = HttpClient::new();
        let req = Request::get("/only/a/path")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let e = client.request(req).await.unwrap_err();
        assert!(matches!(e, FetchError::InvalidUri { .. }), "{e:?}");
        assert!(e.to_string().contains("/only/a/path"), "{e}");
    }
}
