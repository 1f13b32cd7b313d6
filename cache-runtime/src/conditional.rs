//! HTTP conditional GET as a tower layer (the `http` feature): an `ETag`
//! on every successful `GET` or `HEAD` answer, `304 Not Modified` when the
//! client's `If-None-Match` names it, and a `Cache-Control` header.
//!
//! The tag is a hash of the body (64-bit FNV-1a, the same on every
//! instance, so a client's tag holds across a fleet), unless the service
//! set an `ETag` itself. The body is read whole to hash it, so use the
//! layer on routes that answer with bounded bodies (JSON of an entity or a
//! page), not on streams.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use axum::body::Body;
//! use axum::http::{header, Request, StatusCode};
//! use axum::routing::get;
//! use cache_runtime::conditional::ConditionalGetLayer;
//! use tower::ServiceExt;
//!
//! let app = axum::Router::new()
//!     .route("/orders/1", get(|| async { r#"{"id":1}"# }))
//!     .layer(ConditionalGetLayer::new().cache_control("private, max-age=60"));
//!
//! let first = app.clone().oneshot(Request::get("/orders/1").body(Body::empty()).unwrap()).await.unwrap();
//! let etag = first.headers()[header::ETAG].clone();
//! assert_eq!(first.headers()[header::CACHE_CONTROL], "private, max-age=60");
//!
//! let again = Request::get("/orders/1").header(header::IF_NONE_MATCH, etag).body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(again).await.unwrap().status(), StatusCode::NOT_MODIFIED);
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, ETAG, IF_NONE_MATCH};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};

/// Adds conditional GET to a service; see the [module](self) docs.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ConditionalGetLayer {
    cache_control: Option<HeaderValue>,
}

impl ConditionalGetLayer {
    /// ETags and `304`s, no `Cache-Control`.
    ///
    /// ```
    /// let layer = cache_runtime::conditional::ConditionalGetLayer::new();
    /// # drop(layer);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Also sets `Cache-Control: value` on successful `GET`/`HEAD` answers
    /// and on `304`s, unless the service set one.
    ///
    /// # Panics
    /// When `value` is not a valid header value (a control character).
    ///
    /// ```
    /// let layer = cache_runtime::conditional::ConditionalGetLayer::new().cache_control("no-cache");
    /// # drop(layer);
    /// ```
    pub fn cache_control(mut self, value: &str) -> Self {
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|_| panic!("`{value}` is not a valid Cache-Control value"));
        self.cache_control = Some(value);
        self
    }
}

impl<S> tower_layer::Layer<S> for ConditionalGetLayer {
    type Service = ConditionalGet<S>;

    fn layer(&self, inner: S) -> ConditionalGet<S> {
        ConditionalGet {
            inner,
            cache_control: self.cache_control.clone(),
        }
    }
}

/// The service of [`ConditionalGetLayer`].
#[derive(Clone, Debug)]
pub struct ConditionalGet<S> {
    inner: S,
    cache_control: Option<HeaderValue>,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for ConditionalGet<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let conditional = matches!(*request.method(), Method::GET | Method::HEAD);
        let if_none_match = request.headers().get(IF_NONE_MATCH).cloned();
        let cache_control = self.cache_control.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let (mut parts, body) = response.into_parts();
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                // The body failed midway: what was sent cannot be tagged.
                Err(_) => {
                    let mut failed = Response::new(Full::new(Bytes::new()));
                    *failed.status_mut() = StatusCode::BAD_GATEWAY;
                    return Ok(failed);
                }
            };
            if !conditional || parts.status != StatusCode::OK {
                return Ok(Response::from_parts(parts, Full::new(bytes)));
            }
            let etag = match parts.headers.get(ETAG) {
                Some(tag) => tag.clone(),
                None => {
                    let tag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(&bytes)))
                        .expect("hex in quotes is a header value");
                    parts.headers.insert(ETAG, tag.clone());
                    tag
                }
            };
            if let Some(value) = cache_control {
                parts.headers.entry(CACHE_CONTROL).or_insert(value);
            }
            if if_none_match.is_some_and(|given| matches(&given, &etag)) {
                parts.status = StatusCode::NOT_MODIFIED;
                parts.headers.remove(CONTENT_LENGTH);
                return Ok(Response::from_parts(parts, Full::new(Bytes::new())));
            }
            Ok(Response::from_parts(parts, Full::new(bytes)))
        })
    }
}

/// Whether an `If-None-Match` header names `etag` (weak comparison, as
/// RFC 9110 asks for `If-None-Match`; `*` matches any).
fn matches(given: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(given) = given.to_str() else {
        return false;
    };
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    given
        .split(',')
        .any(|tag| tag.trim() == "*" || opaque(tag) == ours)
}

/// 64-bit FNV-1a: stable across processes and builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let etag = HeaderValue::from_static("\"abc\"");
        for given in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(matches(&HeaderValue::from_static(given), &etag), "{given}");
        }
        for given in ["\"abcd\"", "\"x\"", "abc"] {
            assert!(!matches(&HeaderValue::from_static(given), &etag), "{given}");
        }
    }

    #[test]
    fn the_tag_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
