//! `MetricsHooks` (`metrics` feature) recording through a `metrics`
//! recorder: the names and labels a dashboard reads, by cache and key
//! template, never by key.

use std::time::Duration;

use cache_runtime::{cached, Cache, MetricsHooks};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

#[cached(ttl = "1h", key = "user:<id>")]
async fn user(id: u64) -> u64 {
    id
}

#[cached(ttl = "1h", key = "team:<id>", cache = "teams")]
async fn team(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(1)).await;
    id
}

#[test]
fn events_reach_the_recorder_by_cache_and_template() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let cache = Cache::builder().hooks(MetricsHooks::new()).build().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cache.scope(async {
            for id in 0..50 {
                user(id).await;
                user(id).await;
            }
            team(1).await;
            team(1).await;
            cache.invalidate("user:*").await.unwrap();
        }));
    });

    let mut found = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let mut labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
        assert!(!name.contains("user:7"), "a key in a label: {name}");
        let value = match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => n as f64,
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => samples.len() as f64,
            (_, DebugValue::Gauge(g)) => g.into_inner(),
            other => panic!("{other:?}"),
        };
        found.insert(name, value);
    }
    let at = |name: &str| {
        *found
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {found:#?}"))
    };
    assert_eq!(
        at("cache_hits_total{cache=default,template=user:<id>,tier=l1}"),
        50.0
    );
    assert_eq!(
        at("cache_misses_total{cache=default,template=user:<id>}"),
        50.0
    );
    assert_eq!(
        at("cache_sets_total{cache=default,template=user:<id>}"),
        50.0
    );
    assert_eq!(
        at("cache_origin_calls_total{cache=default,template=user:<id>}"),
        50.0
    );
    assert_eq!(
        at("cache_hits_total{cache=teams,template=team:<id>,tier=l1}"),
        1.0
    );
    assert_eq!(
        at("cache_operation_duration_seconds{cache=teams,operation=origin,template=team:<id>}"),
        1.0,
        "one origin call timed"
    );
    assert_eq!(at("cache_deletes_total{cache=default}"), 50.0);
}
