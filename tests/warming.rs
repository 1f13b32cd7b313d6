//! Warming at scale: `Cache::warm_ids` (batches through a loader, a bound
//! on concurrent calls, a report, progress to the hooks), periodic
//! warmers (health, never two runs at once, `POST /warm`), on the
//! in-memory default and across two instances on a real redis-server.

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cache_runtime::{admin, Backend, Cache, Event, Hooks, WarmOptions};
use futures_util::StreamExt;
use support::Target;
use tower::ServiceExt;

const HOUR: Duration = Duration::from_secs(3600);

/// Records the progress events.
#[derive(Default)]
struct Progress(Mutex<Vec<(u64, u64, u64)>>);

impl Hooks for Progress {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Warmed {
            stored,
            skipped,
            failed,
        } = *event
        {
            self.0.lock().unwrap().push((stored, skipped, failed));
        }
    }
}

/// A loader that answers every id but the multiples of 10, fails any
/// batch holding 999, and records how many calls run at once.
struct Loader {
    calls: AtomicU64,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Loader {
    fn new() -> Arc<Loader> {
        Arc::new(Loader {
            calls: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        })
    }

    async fn load(&self, ids: Vec<u32>) -> Result<Vec<(u32, String)>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if ids.contains(&999) {
            return Err("the database refused".into());
        }
        Ok(ids
            .into_iter()
            .filter(|id| id % 10 != 0)
            .map(|id| (id, format!("row {id}")))
            .collect())
    }
}

fn key(id: &u32) -> String {
    format!("country:{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_loaded_in_bounded_batches_with_a_report_and_progress() {
    let progress = Arc::new(Progress::default());
    let cache = Cache::builder()
        .hooks(Arc::clone(&progress))
        .build()
        .unwrap();
    cache.set("country:5", "newer".to_string(), HOUR).await;
    let loader = Loader::new();
    let options = WarmOptions::default().batch(50).concurrency(3);
    let load = |ids| {
        let loader = Arc::clone(&loader);
        async move { loader.load(ids).await }
    };
    let report = cache.warm_ids(1..=500u32, key, HOUR, options, load).await;

    // 500 ids, 1 cached (not overwritten), 50 multiples of 10 without a row.
    assert_eq!((report.stored, report.skipped, report.failed), (449, 1, 50));
    assert_eq!(loader.calls.load(Ordering::SeqCst), 10);
    assert!(loader.most.load(Ordering::SeqCst) <= 3);
    assert!(loader.most.load(Ordering::SeqCst) >= 2, "batches overlap");
    assert_eq!(
        cache.get::<String>("country:5").await.as_deref(),
        Some("newer")
    );
    assert_eq!(
        cache.get::<String>("country:7").await.as_deref(),
        Some("row 7")
    );
    assert_eq!(cache.stats().warmed, 449);
    let events = progress.0.lock().unwrap().clone();
    assert_eq!(events.len(), 10, "one progress event per batch");
    let stored: u64 = events.iter().map(|e| e.0).sum();
    assert_eq!(stored, 449);

    // A failed batch is counted, and nothing of it stored.
    let report = cache.warm_ids([998, 999], key, HOUR, options, load).await;
    assert_eq!((report.stored, report.failed), (0, 2));
    assert_eq!(cache.get::<String>("country:998").await, None);
}

#[tokio::test]
async fn ids_from_a_stream_are_batched_as_they_arrive() {
    let cache = Cache::builder().build().unwrap();
    let loader = Loader::new();
    let load = |ids| {
        let loader = Arc::clone(&loader);
        async move { loader.load(ids).await }
    };
    // Ids that arrive one by one, with pauses, as rows of a query would.
    let ids = futures_util::stream::iter(1..=25u32).then(|id| async move {
        tokio::task::yield_now().await;
        id
    });
    let options = WarmOptions::default().batch(10).concurrency(1);
    let report = cache.warm_stream(ids, key, HOUR, options, load).await;
    assert_eq!((report.stored, report.skipped, report.failed), (23, 0, 2));
    assert_eq!(
        loader.calls.load(Ordering::SeqCst),
        3,
        "batches of 10, 10 and 5"
    );
    assert_eq!(
        cache.get::<String>("country:25").await.as_deref(),
        Some("row 25")
    );
}

#[tokio::test]
async fn a_warmer_runs_periodically_shows_in_health_and_runs_on_demand() {
    let cache = Cache::builder().build().unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&runs);
    cache.add_warmer("lookups", Duration::from_millis(50), 20, move |cache| {
        let counted = Arc::clone(&counted);
        async move {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            let load = |ids: Vec<u32>| async move {
                Ok::<_, String>(ids.into_iter().map(|id| (id, run)).collect())
            };
            cache
                .warm_ids(1..=3u32, key, HOUR, WarmOptions::default(), load)
                .await
        }
    });
    for _ in 0..2_000 {
        if runs.load(Ordering::SeqCst) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(runs.load(Ordering::SeqCst) >= 3, "it runs again and again");
    assert_eq!(
        cache.get::<u64>("country:2").await,
        Some(0),
        "the first run's value stays"
    );

    let health = cache.health().await;
    assert_eq!(health.warmers.len(), 1);
    let warmer = &health.warmers[0];
    assert_eq!(
        (warmer.name.as_str(), warmer.every),
        ("lookups", Duration::from_millis(50))
    );
    assert!(warmer.runs >= 2);
    assert_eq!(
        warmer.last.map(|r| r.skipped),
        Some(3),
        "later runs find the values cached"
    );

    // On demand, through the admin router: one run at a time.
    let app = admin::router(cache.clone(), "s3cret");
    let post = |uri: &str| {
        Request::post(uri)
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap()
    };
    let (first, second) = tokio::join!(
        app.clone().oneshot(post("/warm?warmer=lookups")),
        app.clone().oneshot(post("/warm?warmer=lookups")),
    );
    // The second finds a run going (the first's, or the periodic one).
    let statuses = [first.unwrap().status(), second.unwrap().status()];
    assert!(statuses.contains(&StatusCode::CONFLICT), "{statuses:?}");
    let unknown = app
        .clone()
        .oneshot(post("/warm?warmer=nope"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let unauthorised = Request::post("/warm").body(Body::empty()).unwrap();
    assert_eq!(
        app.oneshot(unauthorised).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

on_server_and_cluster! {
#[tokio::test]
async fn what_one_instance_warms_another_reads_from_redis(server: &Redis) {
    let hybrid = || {
        Cache::builder()
            .backend(Backend::Hybrid)
            .redis_url(server.url())
            .key_prefix("warming")
            .redis_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let (a, b) = (hybrid(), hybrid());
    assert!(a.wait_in_sync(Duration::from_secs(10)).await);
    assert!(b.wait_in_sync(Duration::from_secs(10)).await);
    let load = |ids: Vec<u32>| async move {
        Ok::<_, String>(ids.into_iter().map(|id| (id, u64::from(id) * 3)).collect())
    };
    let options = WarmOptions::default().batch(64).concurrency(2);
    let report = a.warm_ids(0..300u32, key, HOUR, options, load).await;
    assert_eq!(report.stored, 300);
    let keys: Vec<String> = (0..300u32).map(|id| key(&id)).collect();
    let found = b.get_many::<u64, _>(&keys).await;
    assert_eq!(found, (0..300u64).map(|id| Some(id * 3)).collect::<Vec<_>>());
    // A second warm on b finds them all.
    assert_eq!(b.warm_ids(0..300u32, key, HOUR, options, load).await.skipped, 300);
}
}
