//! Guarantee 1 (single flight) and guarantee 2 (no stale fill) in one
//! process, through the public `Cache` handle.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::testing::ManualClock;
use cache_runtime::{Cache, Engine};
use tokio::sync::{Barrier, Notify};

const TTL: Duration = Duration::from_secs(600);

fn caches() -> Vec<Cache> {
    [Engine::QuickCache, Engine::Moka]
        .into_iter()
        .map(|engine| Cache::builder().engine(engine).build().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_cold_callers_make_one_origin_call() {
    for cache in caches() {
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(1000));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (cache, calls, barrier) = (cache.clone(), calls.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .get_or_insert_with("cold", TTL, || async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            42u64
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 42);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{cache:?}");
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.loads), (1000, 1), "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_take_over_when_the_leader_is_cancelled() {
    let cache = Cache::builder().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());

    let leader = {
        let (cache, calls, started) = (cache.clone(), calls.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_with("k", TTL, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    std::future::pending::<u64>().await
                })
                .await
        })
    };
    started.notified().await;
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("k", TTL, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        7u64
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), 7);
    }
    // The cancelled call, then exactly one call that took over.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get::<u64>("k").await, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_finish_when_the_leader_panics() {
    let cache = Cache::builder().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());

    let leader = {
        let (cache, calls, started, release) = (
            cache.clone(),
            calls.clone(),
            started.clone(),
            release.clone(),
        );
        tokio::spawn(async move {
            cache
                .get_or_insert_with("p", TTL, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    release.notified().await;
                    panic!("origin exploded");
                    #[allow(unreachable_code)]
                    0u64
                })
                .await
        })
    };
    started.notified().await;
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("p", TTL, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        9u64
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    assert!(leader.await.unwrap_err().is_panic());
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), 9);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A later call is served from the cache.
    let later = cache.get_or_insert_with("p", TTL, || async { 0u64 }).await;
    assert_eq!(later, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_keys_proceed_while_an_origin_call_runs() {
    let cache = Cache::builder().build().unwrap();
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let slow = {
        let (cache, release, started) = (cache.clone(), release.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_with("slow", TTL, || async move {
                    started.notify_one();
                    release.notified().await;
                    1u64
                })
                .await
        })
    };
    started.notified().await;
    // Every flight shard sees a key while "slow" is running.
    for i in 0..200u64 {
        let key = format!("other:{i}");
        assert_eq!(
            cache
                .get_or_insert_with(&key, TTL, || async move { i })
                .await,
            i
        );
    }
    assert!(!slow.is_finished());
    release.notify_one();
    assert_eq!(slow.await.unwrap(), 1);
}

#[tokio::test]
async fn asking_for_the_key_being_computed_is_detected() {
    let cache = Cache::builder().build().unwrap();
    let inner = cache.clone();
    let task = tokio::spawn(async move {
        cache
            .get_or_insert_with("self", TTL, || async move {
                inner
                    .get_or_insert_with("self", TTL, || async { 1u64 })
                    .await
                    + 1
            })
            .await
    });
    let err = task.await.unwrap_err();
    let message = err.into_panic();
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(message.contains("`self`"), "{message}");
    assert!(message.contains("wait for itself"), "{message}");
}

#[tokio::test]
async fn a_load_may_ask_for_other_keys() {
    let cache = Cache::builder().build().unwrap();
    let inner = cache.clone();
    let v = cache
        .get_or_insert_with("outer", TTL, || async move {
            inner
                .get_or_insert_with("inner", TTL, || async { 20u64 })
                .await
                + 1
        })
        .await;
    assert_eq!(v, 21);
    assert_eq!(cache.get::<u64>("inner").await, Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_values_are_served_while_exactly_one_refresh_runs() {
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .clock(clock.clone())
        .stale_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_insert_with("s", Duration::from_secs(10), || async { 1u64 })
        .await;
    clock.advance(Duration::from_secs(11));

    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let refresher = {
        let (cache, calls, release, started) = (
            cache.clone(),
            calls.clone(),
            release.clone(),
            started.clone(),
        );
        tokio::spawn(async move {
            cache
                .get_or_insert_with("s", Duration::from_secs(10), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    release.notified().await;
                    2u64
                })
                .await
        })
    };
    started.notified().await;
    // While the refresh is held back, everybody else gets the old value.
    for _ in 0..100 {
        let v = cache
            .get_or_insert_with("s", Duration::from_secs(10), || async {
                panic!("a second refresh ran");
                #[allow(unreachable_code)]
                0u64
            })
            .await;
        assert_eq!(v, 1u64);
    }
    assert!(!refresher.is_finished());
    assert_eq!(cache.stats().stale_served, 100);
    release.notify_one();
    assert_eq!(refresher.await.unwrap(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get::<u64>("s").await, Some(2));

    // Past the stale window, the value is gone.
    clock.advance(Duration::from_secs(80));
    assert_eq!(cache.get::<u64>("s").await, None);
}

/// Guarantee 2: readers race a writer that updates the origin, then
/// invalidates. A read that starts after an invalidation returned must see
/// the version written before it, or a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_after_an_invalidation_sees_the_older_value() {
    for cache in caches() {
        for by_pattern in [false, true] {
            let origin = Arc::new(AtomicU64::new(0));
            let invalidated = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

            let readers: Vec<_> = (0..8)
                .map(|_| {
                    let (cache, origin, invalidated, stop) = (
                        cache.clone(),
                        origin.clone(),
                        invalidated.clone(),
                        stop.clone(),
                    );
                    tokio::spawn(async move {
                        let mut reads = 0u64;
                        while !stop.load(Ordering::SeqCst) {
                            let floor = invalidated.load(Ordering::SeqCst);
                            let origin = origin.clone();
                            let seen = cache
                                .get_or_insert_with("item:1", TTL, || async move {
                                    let v = origin.load(Ordering::SeqCst);
                                    // Widen the window between the origin read and the fill.
                                    tokio::task::yield_now().await;
                                    tokio::time::sleep(Duration::from_micros(200)).await;
                                    v
                                })
                                .await;
                            assert!(
                                seen >= floor,
                                "read started after invalidation {floor} returned, saw {seen}"
                            );
                            reads += 1;
                            // Hits never yield; let the timer and the writer run.
                            tokio::task::yield_now().await;
                        }
                        reads
                    })
                })
                .collect();

            for version in 1..=300u64 {
                origin.store(version, Ordering::SeqCst);
                if by_pattern {
                    cache.invalidate("item:*").await.unwrap();
                } else {
                    cache.delete("item:1").await;
                }
                invalidated.store(version, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
            stop.store(true, Ordering::SeqCst);
            let mut reads = 0;
            for reader in readers {
                reads += reader.await.unwrap();
            }
            assert!(reads > 300, "only {reads} reads raced the writer");
        }
    }
}

#[test]
fn callers_on_many_runtimes_share_one_call() {
    let cache = Cache::builder().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (cache, calls, barrier) = (cache.clone(), calls.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                rt.block_on(cache.get_or_insert_with("t", TTL, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    5u8
                }))
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 5);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A failed origin call is not a queue: its waiters each call the origin at
/// once (all 20 calls are inside the origin together, or the barrier never
/// opens), and what they get is returned but not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_a_failed_call_call_the_origin_concurrently() {
    let cache = Cache::builder().build().unwrap();
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let leader = {
        let (cache, started, release) = (cache.clone(), started.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .try_get_or_insert_with("f", TTL, || async move {
                    started.notify_one();
                    release.notified().await;
                    Err::<u64, String>("database down".into())
                })
                .await
        })
    };
    started.notified().await;
    let barrier = Arc::new(Barrier::new(20));
    let calls = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let (cache, barrier, calls) = (cache.clone(), barrier.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .try_get_or_insert_with("f", TTL, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        barrier.wait().await;
                        Ok::<u64, String>(5)
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    assert_eq!(leader.await.unwrap(), Err("database down".to_string()));
    let all = async {
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(5));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("waiters of a failed call queued behind each other");
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    assert_eq!(cache.get::<u64>("f").await, None);
}

/// Callers that join a flight just as its leader finishes are woken (the
/// leader wakes the waiters only when some are listening): thousands of
/// short flights, each joined by callers racing its end, all answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_joining_as_the_leader_finishes_all_answer() {
    const ROUNDS: u64 = 3_000;
    const CALLERS: usize = 4;
    let cache = Cache::builder().build().unwrap();
    let rounds = async {
        for round in 0..ROUNDS {
            let key = format!("short:{round}");
            let barrier = Arc::new(Barrier::new(CALLERS));
            let callers: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let (cache, key, barrier) = (cache.clone(), key.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        cache
                            .get_or_insert_with(&key, TTL, || async move {
                                tokio::task::yield_now().await;
                                round
                            })
                            .await
                    })
                })
                .collect();
            for caller in callers {
                assert_eq!(caller.await.unwrap(), round);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), rounds)
        .await
        .expect("a caller waited for a flight that had ended");
    let stats = cache.stats();
    assert_eq!(stats.loads, ROUNDS, "one origin call a round: {stats:?}");
    // Most callers came while a flight was on, and waited on it.
    assert!(stats.misses > 2 * stats.loads, "{stats:?}");
}
