//! `tracing` events of the `tracing` feature, caught by a subscriber of
//! the test's own: what a service's logs show, and that they show no
//! value.

use std::sync::{Arc, Mutex};

use cache_runtime::{cached, invalidates, Cache};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Clone, Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    spans: Arc<Mutex<Vec<String>>>,
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "cache_runtime"
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = Line(span.metadata().name().to_owned());
        span.record(&mut line);
        let mut spans = self.spans.lock().unwrap();
        spans.push(line.0);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(format!("{}", event.metadata().level()));
        event.record(&mut line);
        self.lines.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[cached(ttl = "1h", key = "secret:<id>")]
async fn secret(id: u64) -> String {
    format!("value-{id}-do-not-log")
}

#[invalidates("secret:<id>")]
async fn rotate(id: u64) {
    let _ = id;
}

#[test]
fn misses_origin_calls_and_invalidations_are_traced_without_values() {
    let recorder = Recorder::default();
    let cache = Cache::builder().build().unwrap();
    tracing::subscriber::with_default(recorder.clone(), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cache.scope(async {
            secret(1).await;
            secret(1).await;
            rotate(1).await;
        }));
    });
    let lines = recorder.lines.lock().unwrap().clone();
    let all = lines.join("\n");
    assert!(!all.contains("do-not-log"), "a value in the logs:\n{all}");
    let has = |level: &str, message: &str| {
        lines.iter().any(|l| {
            l.starts_with(level)
                && l.contains(&format!("message={message}"))
                && l.contains("cache=\"default\"")
        })
    };
    assert!(has("TRACE", "miss"), "{all}");
    assert!(has("DEBUG", "origin call"), "{all}");
    assert!(has("TRACE", "set"), "{all}");
    assert!(has("DEBUG", "invalidated"), "{all}");
    assert!(
        lines.iter().any(|l| l.contains("template=\"secret:<id>\"")),
        "{all}"
    );
    let spans = recorder.spans.lock().unwrap().clone();
    assert_eq!(
        spans,
        ["cache.origin cache=default template=\"secret:<id>\""],
        "one origin call, in its span"
    );
}
