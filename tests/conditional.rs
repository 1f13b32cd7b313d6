//! Conditional GET (`http` feature) in front of a cached axum handler, as
//! a client sees it: tags, 304s, and a new tag once an invalidation
//! changed what the handler answers; streams, uploads and server-sent
//! events that go through untouched and unbuffered.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::routing::{any, get, post};
use axum::Router;
use cache_runtime::conditional::ConditionalGetLayer;
use cache_runtime::{cached, invalidates, Cache};
use http_body_util::channel::{Channel, Sender};
use http_body_util::BodyExt;
use tower::ServiceExt;

static VERSION: AtomicU64 = AtomicU64::new(1);

#[cached(ttl = "1h", key = "order:<id>")]
async fn order(id: u64) -> String {
    format!(
        r#"{{"id":{id},"version":{}}}"#,
        VERSION.load(Ordering::SeqCst)
    )
}

#[invalidates("order:<id>")]
async fn update(id: u64) {
    let _ = id;
    VERSION.fetch_add(1, Ordering::SeqCst);
}

fn app() -> Router {
    Router::new()
        .route(
            "/orders/1",
            get(|| async { order(1).await }).post(|| async { "posted" }),
        )
        .route(
            "/tagged",
            get(|| async {
                (
                    [
                        (header::ETAG, "\"mine\""),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    "x",
                )
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such order") }),
        )
        .layer(ConditionalGetLayer::new().cache_control("private, max-age=60"))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

fn get_with(uri: &str, if_none_match: Option<&HeaderValue>) -> Request<Body> {
    let mut request = Request::get(uri);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_matching_tag_gets_304_until_the_data_changes() {
    let cache = Cache::builder().build().unwrap();
    cache
        .scope(async {
            let (a, b) = (app(), app());
            let (status, headers, body) = send(&a, get_with("/orders/1", None)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body.contains("\"version\":1"), "{body}");
            let etag = headers[header::ETAG].clone();
            assert_eq!(headers[header::CACHE_CONTROL], "private, max-age=60");

            // The same body has the same tag on another instance.
            let (_, headers_b, _) = send(&b, get_with("/orders/1", None)).await;
            assert_eq!(headers_b[header::ETAG], etag);

            let (status, headers, body) = send(&a, get_with("/orders/1", Some(&etag))).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED);
            assert_eq!(body, "");
            assert_eq!(headers[header::ETAG], etag);
            let weak =
                HeaderValue::from_str(&format!("\"other\", W/{}", etag.to_str().unwrap())).unwrap();
            assert_eq!(
                send(&a, get_with("/orders/1", Some(&weak))).await.0,
                StatusCode::NOT_MODIFIED
            );

            update(1).await;
            let (status, headers, body) = send(&a, get_with("/orders/1", Some(&etag))).await;
            assert_eq!(status, StatusCode::OK, "the order changed: a full answer");
            assert!(body.contains("\"version\":2"), "{body}");
            assert_ne!(headers[header::ETAG], etag);

            let head = Request::head("/orders/1")
                .header(header::IF_NONE_MATCH, &headers[header::ETAG])
                .body(Body::empty())
                .unwrap();
            assert_eq!(send(&a, head).await.0, StatusCode::NOT_MODIFIED);
        })
        .await;
}

#[tokio::test]
async fn only_successful_reads_are_tagged_and_the_service_s_own_headers_win() {
    let app = app();
    let post = Request::post("/orders/1").body(Body::empty()).unwrap();
    let (status, headers, body) = send(&app, post).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "posted"));
    assert!(headers.get(header::ETAG).is_none());

    let (status, headers, _) = send(&app, get_with("/missing", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.get(header::ETAG).is_none());
    assert!(headers.get(header::CACHE_CONTROL).is_none());

    let (_, headers, _) = send(&app, get_with("/tagged", None)).await;
    assert_eq!(headers[header::ETAG], "\"mine\"");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let mine = HeaderValue::from_static("\"mine\"");
    assert_eq!(
        send(&app, get_with("/tagged", Some(&mine))).await.0,
        StatusCode::NOT_MODIFIED
    );
}

// What the layer does not hold back. Every wait is bounded: a layer that
// held a body back fails these tests instead of hanging them.

const PATIENCE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}, the layer held it back"))
}

/// A router whose one route (`/stream`, for every method) answers with
/// `headers` and a body that the test feeds through the returned sender.
fn streaming(
    layer: ConditionalGetLayer,
    headers: &'static [(&'static str, &'static str)],
) -> (Router, Sender<Bytes, std::io::Error>) {
    let (sender, body) = Channel::<Bytes, std::io::Error>::new(1);
    let body = Arc::new(Mutex::new(Some(Body::new(body))));
    let answer = move || {
        let body = body.lock().unwrap().take().expect("one request per router");
        let mut response = Response::new(body);
        for (name, value) in headers {
            response
                .headers_mut()
                .insert(*name, HeaderValue::from_static(value));
        }
        async move { response }
    };
    let app = Router::new().route("/stream", any(answer)).layer(layer);
    (app, sender)
}

/// Reads `expected.len()` bytes of `body` and checks them.
async fn receive(body: &mut Body, expected: &[u8], what: &str) {
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let frame = within(what, body.frame())
            .await
            .unwrap_or_else(|| panic!("{what}: the body ended after {} bytes", got.len()))
            .unwrap();
        got.extend_from_slice(&frame.into_data().expect("data, not trailers"));
    }
    assert!(got == expected, "{what}: other bytes than were sent");
}

fn chunk(i: usize, len: usize) -> Bytes {
    Bytes::from(vec![b'a' + (i % 26) as u8; len])
}

#[tokio::test]
async fn server_sent_events_reach_the_client_one_by_one() {
    let (app, mut events) = streaming(
        ConditionalGetLayer::new(),
        &[("content-type", "text/event-stream")],
    );
    let first = Bytes::from_static(b"data: 0\n\n");
    events.send_data(first.clone()).await.unwrap();
    let response = within("the answer", app.oneshot(get_with("/stream", None))).await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(header::ETAG).is_none());
    let mut body = response.into_body();
    receive(&mut body, &first, "event 0").await;
    // Each event is sent only once the client has the one before.
    for i in 1..5 {
        let event = Bytes::from(format!("data: {i}\n\n"));
        within("room for an event", events.send_data(event.clone()))
            .await
            .unwrap();
        receive(&mut body, &event, &format!("event {i}")).await;
    }
    drop(events);
    assert!(within("the end", body.frame()).await.is_none());
}

#[tokio::test]
async fn a_post_streams_both_ways_however_long() {
    let echo = |request: axum::extract::Request| async move { Body::new(request.into_body()) };
    let app = Router::new()
        .route("/echo", post(echo))
        .layer(ConditionalGetLayer::new());
    let (mut upload, request_body) = Channel::<Bytes, std::io::Error>::new(1);
    let chunk_len = 256 << 10;
    upload.send_data(chunk(0, chunk_len)).await.unwrap();
    let request = Request::post("/echo")
        .body(Body::new(request_body))
        .unwrap();
    let response = within("the answer", app.oneshot(request)).await.unwrap();
    let mut body = response.into_body();
    // 8 chunks, 2 MiB, twice the default limit: each chunk goes up only
    // once the one before came back down.
    receive(&mut body, &chunk(0, chunk_len), "chunk 0").await;
    for i in 1..8 {
        within("room for a chunk", upload.send_data(chunk(i, chunk_len)))
            .await
            .unwrap();
        receive(&mut body, &chunk(i, chunk_len), &format!("chunk {i}")).await;
    }
    drop(upload);
    assert!(within("the end", body.frame()).await.is_none());
}

#[tokio::test]
async fn a_stream_longer_than_the_limit_arrives_whole_and_untagged() {
    let layer = ConditionalGetLayer::new().max_body_bytes(1024);
    for (chunks, tagged) in [(3, true), (10, false)] {
        let (app, mut sender) = streaming(layer.clone(), &[]);
        let sent: Vec<Bytes> = (0..chunks).map(|i| chunk(i, 300)).collect();
        let feed = sent.clone();
        tokio::spawn(async move {
            for chunk in feed {
                sender.send_data(chunk).await.unwrap();
            }
        });
        let response = within("the answer", app.oneshot(get_with("/stream", None)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().contains_key(header::ETAG),
            tagged,
            "{} bytes",
            chunks * 300
        );
        let got = within("the body", response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            got == sent.concat(),
            "{} bytes: other bytes than were sent",
            chunks * 300
        );
    }
}

#[tokio::test]
async fn a_body_declared_longer_than_the_limit_is_not_read_ahead() {
    let (app, mut sender) = streaming(
        ConditionalGetLayer::new().max_body_bytes(1024),
        &[("content-length", "2048")],
    );
    // Within the limit so far: a layer that read ahead would wait for more.
    sender.send_data(chunk(0, 1024)).await.unwrap();
    let response = within("the answer", app.oneshot(get_with("/stream", None)))
        .await
        .unwrap();
    assert!(response.headers().get(header::ETAG).is_none());
    let mut body = response.into_body();
    receive(&mut body, &chunk(0, 1024), "the first half").await;
    within("room", sender.send_data(chunk(1, 1024)))
        .await
        .unwrap();
    receive(&mut body, &chunk(1, 1024), "the second half").await;
}

#[tokio::test]
async fn a_service_s_own_tag_is_compared_without_reading_the_body() {
    let own = &[("etag", "\"v7\"")];
    let (app, _never_sent) = streaming(ConditionalGetLayer::new(), own);
    let tag = HeaderValue::from_static("\"v7\"");
    let response = within("the 304", app.oneshot(get_with("/stream", Some(&tag))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    let (app, mut sender) = streaming(ConditionalGetLayer::new(), own);
    sender.send_data(chunk(0, 10)).await.unwrap();
    let response = within("the answer", app.oneshot(get_with("/stream", None)))
        .await
        .unwrap();
    assert_eq!(response.headers()[header::ETAG], "\"v7\"");
    receive(&mut response.into_body(), &chunk(0, 10), "the body").await;
}

#[tokio::test]
async fn a_body_failing_while_read_ahead_is_sent_as_far_as_it_got_then_fails() {
    let (app, mut sender) = streaming(ConditionalGetLayer::new(), &[]);
    sender.send_data(chunk(0, 100)).await.unwrap();
    sender.abort(std::io::Error::other("the origin went away"));
    let response = within("the answer", app.oneshot(get_with("/stream", None)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(header::ETAG).is_none());
    let mut body = response.into_body();
    receive(&mut body, &chunk(0, 100), "what was sent").await;
    let end = within("the error", body.frame()).await;
    assert!(matches!(end, Some(Err(_))), "the error reaches the client");
}
