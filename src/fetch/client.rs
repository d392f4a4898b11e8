//! [`HttpClient`]: a pooled hyper-util client (HTTP/1 and HTTP/2, HTTPS
//! with rustls under the `tls` feature) as a `tower::Service`, and its
//! builder.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::body::Body;
use super::error::FetchError;
use super::future::{InFlight, ResponseFuture};
use super::shared::{
    Config, Counters, FetchStats, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_MAX_IDLE_PER_HOST, DEFAULT_TIMEOUT, DEFAULT_USER_AGENT,
};
use super::uri::check_uri;
use crate::error::check;
use crate::time;
use crate::ConfigError;

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

/// The component named by this module's [`ConfigError`]s.
const C: &str = "fetch";

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
    /// Behind one `Arc`: hyper's client holds several (pool, connector,
    /// executor, timers), and tower's idiom clones a service per call
    /// (`svc.clone().oneshot(req)`; a cache or a retry clones its inner
    /// service per miss or attempt).
    client: Arc<Client<Connector, Full<Bytes>>>,
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
        ResponseFuture::waiting(
            self.client.request(req),
            uri,
            deadline,
            InFlight(Arc::clone(&self.config)),
        )
    }

    /// A snapshot of this client's counters, shared by all its clones.
    pub fn stats(&self) -> FetchStats {
        self.config.counters.snapshot()
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

/// Configures an [`HttpClient`]; made by [`HttpClient::builder`].
#[derive(Clone)]
#[must_use]
pub struct HttpClientBuilder {
    connect_timeout: Duration,
    timeout: Duration,
    max_body_bytes: u64,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    user_agent: Option<String>,
    #[cfg(feature = "tls")]
    roots: Option<rustls::RootCertStore>,
    name: crate::trace::Name,
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
            name: crate::trace::Name::Borrowed("fetch"),
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
    /// The instance name every metric of this client carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"fetch"`.
    #[must_use = "call .build() to get an HttpClient"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Deadline for each TCP connection attempt (default 10 s; must be
    /// non-zero; `Duration::MAX` means no limit). Reported as
    /// [`FetchError::Timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline for a whole exchange, from the call until the last body
    /// byte (default 30 s; must be non-zero; `Duration::MAX` means no
    /// limit). For [`stream_body`](super::stream_body) it bounds the wait
    /// for the response head and then each wait for more data.
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

    /// How long an idle pooled connection is kept (default 90 s; non-zero;
    /// `Duration::MAX` means no limit).
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
        check::nonzero(C, "connect_timeout", self.connect_timeout)?;
        check::nonzero(C, "timeout", self.timeout)?;
        check::nonzero(C, "pool_idle_timeout", self.pool_idle_timeout)?;
        check::at_least(C, "max_body_bytes", self.max_body_bytes, 1)?;
        let user_agent = match &self.user_agent {
            None => HeaderValue::from_static(DEFAULT_USER_AGENT),
            Some(ua) => HeaderValue::from_str(ua).map_err(|_| {
                ConfigError::new(
                    C,
                    "user_agent",
                    format!("{ua:?}"),
                    "must be visible ASCII without control characters",
                )
            })?,
        };

        let mut http = HttpConnector::new();
        // hyper-util adds these to the clock itself (the pool's idle timer with
        // a plain `+`): hand it durations the clock can take.
        http.set_connect_timeout(Some(time::capped(self.connect_timeout)));
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
                    ConfigError::new(C, "tls", e.to_string(), "a TLS setup rustls supports")
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
            .pool_idle_timeout(time::capped(self.pool_idle_timeout))
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .build(connector);
        Ok(HttpClient {
            client: Arc::new(client),
            config: Arc::new(Config {
                connect_timeout: self.connect_timeout,
                timeout: self.timeout,
                max_body_bytes: self.max_body_bytes,
                user_agent,
                counters: Counters::default(),
                #[cfg(feature = "metrics")]
                metrics: crate::metrics::Instruments::new(self.name),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clone (one per call in tower's idiom, one per miss or attempt in
    /// a cache or retry above) is two reference counts, not hyper's
    /// several.
    #[test]
    fn a_clone_is_two_reference_counts() {
        assert_eq!(
            std::mem::size_of::<HttpClient>(),
            2 * std::mem::size_of::<usize>()
        );
    }

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
