//! Runtime behaviour reached through the macros, the way a user's code
//! reaches it: expiry, jitter, `l1_ttl`, stale-while-revalidate on borrowed
//! arguments, pass-through, single flight and recursion for plain `fn`s.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::testing::ManualClock;
use cache_runtime::{cached, Cache};
use tokio::sync::Notify;

static EXPIRY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "10s", key = "expiry:<n>")]
fn expiring(n: u32) -> u32 {
    EXPIRY_CALLS.fetch_add(1, Ordering::SeqCst);
    n
}

#[test]
fn values_expire_after_ttl() {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    cache.scope_sync(|| {
        expiring(1);
        expiring(1);
        assert_eq!(EXPIRY_CALLS.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(9));
        expiring(1);
        assert_eq!(EXPIRY_CALLS.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(2));
        expiring(1);
        assert_eq!(EXPIRY_CALLS.load(Ordering::SeqCst), 2);
    });
}

static JITTER_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "100s", jitter = "50%", key = "jitter:<n>")]
fn jittered(n: u32) -> u32 {
    JITTER_CALLS.fetch_add(1, Ordering::SeqCst);
    n
}

#[test]
fn jitter_spreads_expiries_within_the_ttl() {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    cache.scope_sync(|| {
        (0..200).for_each(|n| {
            jittered(n);
        });
        assert_eq!(JITTER_CALLS.load(Ordering::SeqCst), 200);
        // Before half the TTL nothing has expired (jitter only shortens).
        clock.advance(Duration::from_secs(49));
        (0..200).for_each(|n| {
            jittered(n);
        });
        assert_eq!(JITTER_CALLS.load(Ordering::SeqCst), 200);
        // At three quarters, some have expired and some have not.
        clock.advance(Duration::from_secs(26));
        (0..200).for_each(|n| {
            jittered(n);
        });
        let refilled = JITTER_CALLS.load(Ordering::SeqCst) - 200;
        assert!(refilled > 0 && refilled < 200, "{refilled} of 200 expired");
    });
}

static L1_TTL_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", l1_ttl = "10s", key = "short-l1:<n>")]
fn short_in_process(n: u32) -> u32 {
    L1_TTL_CALLS.fetch_add(1, Ordering::SeqCst);
    n
}

#[test]
fn l1_ttl_shortens_the_in_process_life() {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    cache.scope_sync(|| {
        short_in_process(1);
        clock.advance(Duration::from_secs(11));
        short_in_process(1);
        assert_eq!(L1_TTL_CALLS.load(Ordering::SeqCst), 2);
    });
}

static PASS_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1h", key = "pass:<n>")]
async fn passed_through(n: u32) -> u32 {
    PASS_CALLS.fetch_add(1, Ordering::SeqCst);
    n
}

#[tokio::test]
async fn a_disabled_cache_passes_every_call_through() {
    let cache = Cache::builder().enabled(false).build().unwrap();
    cache
        .scope(async {
            for _ in 0..3 {
                assert_eq!(passed_through(4).await, 4);
            }
        })
        .await;
    assert_eq!(PASS_CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(cache.stats().sets, 0);
}

/// A repository whose lookups take `&self` and `&str`.
struct Repo {
    tenant: String,
    calls: AtomicUsize,
    release: Notify,
}

impl Repo {
    #[cached(ttl = "10s", stale = "1m", key = "swr:<self.tenant>:<name>")]
    async fn lookup(&self, name: &str) -> String {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call > 0 {
            // Refreshes wait until the test lets them finish.
            self.release.notified().await;
        }
        format!("{name}@{call}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_with_borrowed_arguments() {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    let repo = Arc::new(Repo {
        tenant: "acme".into(),
        calls: AtomicUsize::new(0),
        release: Notify::new(),
    });
    assert_eq!(cache.scope(repo.lookup("x")).await, "x@0");
    clock.advance(Duration::from_secs(11));

    // The first caller to find the value stale refreshes it...
    let refresher = {
        let (repo, cache) = (repo.clone(), cache.clone());
        tokio::spawn(async move { cache.scope(repo.lookup("x")).await })
    };
    while repo.calls.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    // ...while everybody else gets the stale value at once.
    for _ in 0..10 {
        assert_eq!(cache.scope(repo.lookup("x")).await, "x@0");
    }
    assert!(!refresher.is_finished());
    repo.release.notify_one();
    assert_eq!(refresher.await.unwrap(), "x@1");
    assert_eq!(cache.scope(repo.lookup("x")).await, "x@1");
    assert_eq!(repo.calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.stats().stale_served, 10);
}

static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1h", key = "slow:<n>")]
fn slow_square(n: u64) -> u64 {
    SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    n * n
}

#[test]
fn plain_fns_on_many_threads_make_one_origin_call() {
    let cache = Cache::builder().build().unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                cache.scope_sync(|| slow_square(9))
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 81);
    }
    assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);
}

#[cached(ttl = "1h", key = "fact:<n>")]
fn factorial(n: u64) -> u64 {
    if n <= 1 {
        1
    } else {
        n * factorial(n - 1)
    }
}

#[cached(ttl = "1h", key = "loop:<n>")]
fn asks_for_itself(n: u64) -> u64 {
    asks_for_itself(n) + 1
}

#[cached(ttl = "1h", key = "aloop:<n>")]
async fn asks_for_itself_async(n: u64) -> u64 {
    Box::pin(asks_for_itself_async(n)).await + 1
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn recursion_on_other_keys_works_and_on_the_same_key_is_detected() {
    let cache = Cache::builder().build().unwrap();
    assert_eq!(cache.scope_sync(|| factorial(10)), 3_628_800);
    assert_eq!(cache.stats().sets, 10);

    let err = catch_unwind(AssertUnwindSafe(|| cache.scope_sync(|| asks_for_itself(3))))
        .expect_err("asking for the key being computed must not hang");
    let text = panic_text(err);
    assert!(text.contains("asks_for_itself"), "{text}");
    assert!(text.contains("loop:3"), "{text}");
    // The flight was released: a later call leads again (and panics again),
    // it does not hang on the abandoned one.
    assert!(catch_unwind(AssertUnwindSafe(|| cache.scope_sync(|| asks_for_itself(3)))).is_err());
}

#[tokio::test]
async fn async_recursion_on_the_same_key_is_detected() {
    let cache = Cache::builder().build().unwrap();
    let task = tokio::spawn(async move { cache.scope(asks_for_itself_async(5)).await });
    let text = panic_text(task.await.unwrap_err().into_panic());
    assert!(text.contains("aloop:5"), "{text}");
    assert!(text.contains("wait for itself"), "{text}");
}

#[derive(Clone, Debug, PartialEq)]
struct Down;

static SHARED_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "shared-error:<n>", skip(release))]
async fn fails_once_for_all(n: u32, release: Arc<Notify>) -> Result<u32, Down> {
    SHARED_CALLS.fetch_add(1, Ordering::SeqCst);
    release.notified().await;
    let _ = n;
    Err(Down)
}

/// An error that is `Clone` is shared with the callers that waited on the
/// failed call: one origin call, failure or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_error_reaches_every_waiter_from_one_call() {
    let cache = Cache::builder().build().unwrap();
    let release = Arc::new(Notify::new());
    let spawn = |release: Arc<Notify>| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.scope(fails_once_for_all(1, release)).await })
    };
    let leader = spawn(release.clone());
    while SHARED_CALLS.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..20).map(|_| spawn(release.clone())).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    let all = async {
        assert_eq!(leader.await.unwrap(), Err(Down));
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Err(Down));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("a waiter called the origin instead of sharing the error");
    assert_eq!(SHARED_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().sets, 0);
}

#[cached(ttl = "1h", key = "blob:<n>")]
fn blob(n: u64) -> Vec<u64> {
    vec![n; 10_000]
}

#[cached(ttl = "1h", key = "text:<n>")]
async fn text(n: u64) -> Result<String, std::io::Error> {
    Ok("x".repeat(50_000 + n as usize))
}

/// A value that is `Serialize` weighs what it holds, not its inline size:
/// 200 vectors of 80 KB do not fit in 1 MiB, and the bound holds.
#[tokio::test]
async fn values_are_weighed_by_their_contents() {
    let cache = Cache::builder().l1_max_bytes(1 << 20).build().unwrap();
    cache.scope_sync(|| {
        for n in 0..200 {
            blob(n);
        }
    });
    let stats = cache.stats();
    assert!(stats.l1_bytes <= 1 << 20, "{stats:?}");
    assert!((1..=13).contains(&stats.entries), "{stats:?}");
    assert!(stats.l1_bytes > 80_000, "{stats:?}");

    let cache = Cache::builder().l1_max_bytes(1 << 20).build().unwrap();
    cache
        .scope(async {
            for n in 0..100 {
                text(n).await.unwrap();
            }
        })
        .await;
    let stats = cache.stats();
    assert!(stats.l1_bytes <= 1 << 20, "{stats:?}");
    assert!((1..=21).contains(&stats.entries), "{stats:?}");
}
