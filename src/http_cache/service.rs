//! [`HttpCache`]: the service an [`HttpCacheLayer`](super::HttpCacheLayer)
//! makes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::HttpCacheBody;
use super::flow;
use super::future::ResponseFuture;
use super::lookup::{self, Plan, Revalidate, Step};
use super::shared::Shared;
use super::stats::HttpCacheStats;
use crate::BoxError;

/// An RFC 9111 HTTP cache in front of an HTTP service; see the
/// [module docs](super).
///
/// `poll_ready` is always ready: an answer from the store does not wait
/// for the inner service; a request that needs the inner service waits for
/// the readiness of a clone of it.
pub struct HttpCache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> HttpCache<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        HttpCache { inner, shared }
    }

    /// A snapshot of the cache's counters (shared with every clone and
    /// with the layer).
    pub fn stats(&self) -> HttpCacheStats {
        self.shared.stats()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> Clone for HttpCache<S> {
    fn clone(&self) -> Self {
        HttpCache {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for HttpCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S, B, ResB> Service<Request<B>> for HttpCache<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Default + Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<HttpCacheBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<ResB>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let step = lookup::lookup(&self.shared, req.method(), req.uri(), req.headers(), true);
        match step {
            Step::Answer(res) => ResponseFuture::ready(res),
            Step::AnswerAndRefresh(res, plan) => {
                self.refresh(&req, plan);
                ResponseFuture::ready(res)
            }
            Step::Forward(plan) => {
                let clone = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, clone);
                let shared = self.shared.clone();
                ResponseFuture::inner(Box::pin(flow::forward(shared, svc, req, plan)))
            }
        }
    }
}

impl<S> HttpCache<S> {
    /// Revalidates a stale response in the background, once per key at a
    /// time (`stale-while-revalidate`).
    fn refresh<B, ResB>(&mut self, req: &Request<B>, plan: Revalidate)
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: Default + Send + 'static,
        ResB: Body<Data = Bytes> + Send + 'static,
        ResB::Error: Into<BoxError>,
    {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.shared.start_refresh(&plan.key) {
            return;
        }
        let mut bg = Request::new(B::default());
        *bg.method_mut() = plan.method.clone();
        *bg.uri_mut() = req.uri().clone();
        *bg.version_mut() = req.version();
        *bg.headers_mut() = req.headers().clone();
        let shared = self.shared.clone();
        let svc = self.inner.clone();
        rt.spawn(async move {
            let key = plan.key.clone();
            // Ends the refresh however the task ends (even if dropped).
            let _done = RefreshDone(shared.clone(), key);
            let _ = flow::forward(shared, svc, bg, Plan::Revalidate(plan)).await;
        });
    }
}

/// Marks a key's background refresh as over when dropped.
struct RefreshDone(Arc<Shared>, String);

impl Drop for RefreshDone {
    fn drop(&mut self) {
        self.0.end_refresh(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::{service_fn, BoxError, Layer};

    use super::super::lookup::Plan;
    use super::*;
    use crate::http_cache::HttpCacheLayer;

    #[test]
    fn a_miss_future_holds_little_beyond_the_inner_service_and_request() {
        // Every miss boxes this future, and moves it while it runs: its size
        // is what a miss allocates and copies. The rare paths (revalidation,
        // a POST answer stored as a GET's) are boxed on their own so they
        // do not set it. (1,328 bytes in a debug build now; 3,688 before
        // they were boxed and `forward` / `finish` kept their arguments
        // once.)
        let origin = service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::new())))
        });
        let cache = HttpCacheLayer::builder().build().unwrap().layer(origin);
        let req = Request::get("http://a.test/")
            .body(Full::default())
            .unwrap();
        let plan = Plan::Miss {
            key: "//a.test/".into(),
            why: "uri-miss",
        };
        let arguments = std::mem::size_of_val(&cache.inner) + std::mem::size_of_val(&req);
        let fut = flow::forward(cache.shared.clone(), cache.inner, req, plan);
        let ours = std::mem::size_of_val(&fut) - arguments;
        assert!(
            ours <= 1_500,
            "the miss future holds {ours} bytes beyond its service and request"
        );
    }
}
