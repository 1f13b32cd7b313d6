//! Conditional GET (`http` feature) in front of a cached axum handler, as
//! a client sees it: tags, 304s, and a new tag once an invalidation
//! changed what the handler answers.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_runtime::conditional::ConditionalGetLayer;
use cache_runtime::{cached, invalidates, Cache};
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
