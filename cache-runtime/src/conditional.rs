//! HTTP conditional GET as a tower layer (the `http` feature): an `ETag`
//! on successful `GET` and `HEAD` answers, `304 Not Modified` when the
//! client's `If-None-Match` names it, and a `Cache-Control` header.
//!
//! The tag is a hash of the body (64-bit FNV-1a, the same on every
//! instance however the body was cut into chunks, so a client's tag holds
//! across a fleet), unless the service set an `ETag` itself.
//!
//! # What is held back, what streams
//!
//! The layer reads a body only to tag it: a `200` answer to a `GET` or
//! `HEAD`, without an `ETag` of its own, whose body is at most
//! [`max_body_bytes`](ConditionalGetLayer::max_body_bytes) long
//! ([`DEFAULT_MAX_BODY_BYTES`], 1 MiB, by default). Everything else reaches
//! the client as the service sends it, chunk by chunk, untagged:
//!
//! - other methods (a `POST` streams both ways) and other statuses;
//! - server-sent events (`Content-Type: text/event-stream`);
//! - a body whose `Content-Length` or size hint is above the limit;
//! - a body of unknown length that turns out to be longer: the layer reads
//!   it up to the limit, then sends what it read followed by the rest.
//!
//! An answer with the service's own `ETag` gets its `304` without its body
//! being read. So the layer holds at most the limit, plus the chunk that
//! crossed it, of each answer in flight. A body that fails while it is
//! read is sent as far as it got, then fails as it would without the
//! layer. A stream of unknown length that is not server-sent events (say,
//! newline-delimited JSON) reaches its client only once the limit is read
//! or it ends: give it a `Content-Length`, or keep it out of the layer.
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

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// The longest body [`ConditionalGetLayer`] tags unless told otherwise:
/// 1 MiB, enough for the JSON of an entity or a page.
///
/// ```
/// assert_eq!(cache_runtime::conditional::DEFAULT_MAX_BODY_BYTES, 1 << 20);
/// ```
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Adds conditional GET to a service; see the [module](self) docs.
#[derive(Clone, Debug)]
#[must_use]
pub struct ConditionalGetLayer {
    cache_control: Option<HeaderValue>,
    max_body_bytes: usize,
}

impl Default for ConditionalGetLayer {
    fn default() -> Self {
        ConditionalGetLayer {
            cache_control: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl ConditionalGetLayer {
    /// ETags and `304`s for bodies up to [`DEFAULT_MAX_BODY_BYTES`], no
    /// `Cache-Control`.
    ///
    /// ```
    /// let layer = cache_runtime::conditional::ConditionalGetLayer::new();
    /// # drop(layer);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Also sets `Cache-Control: value` on the answers the layer tags and
    /// on `304`s, unless the service set one.
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

    /// Tags bodies of at most `bytes` bytes (by default
    /// [`DEFAULT_MAX_BODY_BYTES`]); a longer one passes untagged, streaming.
    /// It is also the most the layer holds of one answer, plus the chunk
    /// that crossed it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use axum::body::Body;
    /// use axum::http::{header, Request};
    /// use axum::routing::get;
    /// use cache_runtime::conditional::ConditionalGetLayer;
    /// use tower::ServiceExt;
    ///
    /// let app = axum::Router::new()
    ///     .route("/small", get(|| async { "x".repeat(1024) }))
    ///     .route("/large", get(|| async { "x".repeat(1025) }))
    ///     .layer(ConditionalGetLayer::new().max_body_bytes(1024));
    /// let get = |uri| Request::get(uri).body(Body::empty()).unwrap();
    /// let small = app.clone().oneshot(get("/small")).await.unwrap();
    /// assert!(small.headers().contains_key(header::ETAG));
    /// let large = app.oneshot(get("/large")).await.unwrap();
    /// assert!(!large.headers().contains_key(header::ETAG));
    /// # });
    /// ```
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

impl<S> tower_layer::Layer<S> for ConditionalGetLayer {
    type Service = ConditionalGet<S>;

    fn layer(&self, inner: S) -> ConditionalGet<S> {
        ConditionalGet {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ConditionalGetLayer`].
#[derive(Clone, Debug)]
pub struct ConditionalGet<S> {
    inner: S,
    layer: ConditionalGetLayer,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for ConditionalGet<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Response<ConditionalBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let get_or_head = matches!(*request.method(), Method::GET | Method::HEAD);
        let if_none_match = request.headers().get(IF_NONE_MATCH).cloned();
        let layer = self.layer.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let (mut parts, body) = answer.await?.into_parts();
            if !get_or_head || parts.status != StatusCode::OK || is_event_stream(&parts.headers) {
                return Ok(Response::from_parts(parts, ConditionalBody::streamed(body)));
            }
            let (etag, body) = match parts.headers.get(ETAG) {
                Some(tag) => (tag.clone(), ConditionalBody::streamed(body)),
                None => match read_ahead(body, &parts.headers, layer.max_body_bytes).await {
                    ReadAhead::Whole(body) => {
                        let tag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(&body.head)))
                            .expect("hex in quotes is a header value");
                        parts.headers.insert(ETAG, tag.clone());
                        (tag, body)
                    }
                    ReadAhead::Untagged(body) => return Ok(Response::from_parts(parts, body)),
                },
            };
            if let Some(value) = layer.cache_control {
                parts.headers.entry(CACHE_CONTROL).or_insert(value);
            }
            if if_none_match.is_some_and(|given| matches(&given, &etag)) {
                parts.status = StatusCode::NOT_MODIFIED;
                parts.headers.remove(CONTENT_LENGTH);
                return Ok(Response::from_parts(parts, ConditionalBody::empty()));
            }
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// The body of an answer through [`ConditionalGet`]: the service's body
/// as it streams, what the layer read of it followed by the rest, or
/// nothing (a `304`).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use bytes::Bytes;
/// use cache_runtime::conditional::{ConditionalBody, ConditionalGetLayer};
/// use http_body_util::{BodyExt, Full};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let hello = service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
/// });
/// let service = ConditionalGetLayer::new().layer(hello);
/// let response = service.oneshot(http::Request::get("/").body(()).unwrap()).await.unwrap();
/// assert!(response.headers().contains_key(http::header::ETAG));
/// let body: ConditionalBody<Full<Bytes>> = response.into_body();
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
/// # });
/// ```
pub struct ConditionalBody<B: Body> {
    /// Chunks read ahead of the client, sent first.
    head: VecDeque<Bytes>,
    /// The rest of the service's body, after `head`.
    rest: Option<Pin<Box<B>>>,
    /// The last item read ahead, when it ended the body: trailers, or the
    /// body's error.
    tail: Option<Result<Frame<Bytes>, B::Error>>,
}

// No field is ever pinned in place: the service's body is pinned in its box.
impl<B: Body> Unpin for ConditionalBody<B> {}

impl<B: Body> ConditionalBody<B> {
    fn streamed(body: B) -> Self {
        Self::boxed(Box::pin(body))
    }

    fn boxed(body: Pin<Box<B>>) -> Self {
        ConditionalBody {
            head: VecDeque::new(),
            rest: Some(body),
            tail: None,
        }
    }

    fn empty() -> Self {
        ConditionalBody {
            head: VecDeque::new(),
            rest: None,
            tail: None,
        }
    }

    fn head_len(&self) -> u64 {
        self.head.iter().map(|chunk| chunk.len() as u64).sum()
    }
}

impl<B: Body> std::fmt::Debug for ConditionalBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionalBody")
            .field("read_ahead_bytes", &self.head_len())
            .field("streaming", &self.rest.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Body for ConditionalBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.head.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(rest) = &mut this.rest {
            match ready!(rest.as_mut().poll_frame(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None => this.rest = None,
            }
        }
        Poll::Ready(this.tail.take())
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty()
            && self.tail.is_none()
            && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head_len();
        let Some(rest) = &self.rest else {
            return SizeHint::with_exact(head);
        };
        let rest = rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(head));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint
    }
}

/// A body read ahead: whole within the limit, or to be sent untagged.
enum ReadAhead<B: Body> {
    Whole(ConditionalBody<B>),
    Untagged(ConditionalBody<B>),
}

/// Reads `body` while it stays within `limit` bytes; one whose
/// `Content-Length` or size hint says it is longer is not read at all.
async fn read_ahead<B>(body: B, headers: &HeaderMap, limit: usize) -> ReadAhead<B>
where
    B: Body<Data = Bytes>,
{
    let limit = limit as u64;
    let mut body = Box::pin(body);
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) || body.size_hint().lower() > limit {
        return ReadAhead::Untagged(ConditionalBody::boxed(body));
    }
    let mut read = ConditionalBody::empty();
    let mut length = 0u64;
    loop {
        match body.frame().await {
            None => return ReadAhead::Whole(read),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => {
                    length += chunk.len() as u64;
                    read.head.push_back(chunk);
                    if length > limit {
                        read.rest = Some(body);
                        return ReadAhead::Untagged(read);
                    }
                }
                // Trailers: the body's last frame.
                Err(trailers) => {
                    read.tail = Some(Ok(trailers));
                    return ReadAhead::Whole(read);
                }
            },
            Some(Err(error)) => {
                read.tail = Some(Err(error));
                return ReadAhead::Untagged(read);
            }
        }
    }
}

/// Whether the answer is a stream of server-sent events.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/event-stream"))
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

/// 64-bit FNV-1a of the chunks one after the other: stable across
/// processes and builds, and however the body was cut.
fn fnv1a<'a>(chunks: impl IntoIterator<Item = &'a Bytes>) -> u64 {
    chunks
        .into_iter()
        .flat_map(|chunk| chunk.iter())
        .fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
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
    fn the_tag_is_stable_and_does_not_depend_on_the_chunks() {
        let chunks = |parts: &[&'static str]| -> Vec<Bytes> {
            parts
                .iter()
                .map(|part| Bytes::from_static(part.as_bytes()))
                .collect()
        };
        assert_eq!(fnv1a(&chunks(&[])), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&chunks(&["a"])), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            fnv1a(&chunks(&["{\"id\"", ":1}"])),
            fnv1a(&chunks(&["{\"id\":1}"]))
        );
    }
}
