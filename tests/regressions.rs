//! Defects found in review, each kept as a test of the behaviour users rely
//! on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cache_runtime::{cached, Cache, Engine, Event, Hooks};

const TTL: Duration = Duration::from_secs(60);

/// Polls a future that must complete at once.
fn now<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("expected to complete at once"),
    }
}

fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// `clear()` must stop a load that was running when it was called from
/// storing what that load read.
#[test]
fn a_load_running_across_clear_does_not_survive_it() {
    for _ in 0..2_000 {
        let cache = Cache::builder().build().unwrap();
        let started = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let leader = {
            let (cache, started, go) = (cache.clone(), started.clone(), go.clone());
            std::thread::spawn(move || {
                block(cache.get_or_insert_with("k", TTL, || async move {
                    started.store(true, Ordering::Release);
                    while !go.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    "old".to_string()
                }))
            })
        };
        while !started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        // The load finishes while `clear` runs, before or after its steps.
        go.store(true, Ordering::Release);
        now(cache.clear());
        leader.join().unwrap();
        assert_eq!(block(cache.get::<String>("k")), None);
    }
}

/// A hook may call back into the cache, even the key being stored.
#[test]
fn hooks_may_invalidate_from_a_set_event() {
    struct InvalidateOnSet(Arc<OnceLock<Cache>>);
    impl Hooks for InvalidateOnSet {
        fn on_event(&self, event: &Event<'_>) {
            if let (Event::Set { .. }, Some(cache)) = (event, self.0.get()) {
                now(cache.invalidate("k*")).unwrap();
            }
        }
    }
    let slot = Arc::new(OnceLock::new());
    let cache = Cache::builder()
        .hooks(InvalidateOnSet(slot.clone()))
        .build()
        .unwrap();
    slot.set(cache.clone()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        block(cache.get_or_insert_with("k1", TTL, || async { 1u8 }));
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a load hung: a hook ran under the flight's lock");
}

/// A small byte bound still caches (a shard must hold a real value).
#[test]
fn a_small_byte_bound_still_caches() {
    for engine in [Engine::QuickCache, Engine::Moka] {
        let cache = Cache::builder()
            .engine(engine)
            .l1_max_bytes(4096)
            .build()
            .unwrap();
        block(cache.set("user:1", 1u64, TTL));
        assert_eq!(block(cache.get::<u64>("user:1")), Some(1), "{engine:?}");
    }
}

/// Counters never lose an increment, however many threads count.
#[test]
fn counters_are_exact_beyond_the_stripe_count() {
    let cache = Cache::builder().build().unwrap();
    // More threads than owned stripes: some share the overflow stripe.
    let barrier = Arc::new(std::sync::Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..5_000 {
                    now(cache.get::<u8>("absent"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cache.stats().misses, 100 * 5_000);
}

mod m {
    use super::cached;

    pub mod f {
        use super::cached;

        #[cached(ttl = "1m")]
        pub fn g() -> String {
            "g()".into()
        }
    }

    #[cached(ttl = "1m")]
    pub fn f(a: &str, b: &str) -> String {
        format!("f({a:?},{b:?})")
    }
}

/// Default keys of two functions never meet, whatever the arguments.
#[test]
fn default_keys_of_different_functions_never_collide() {
    let cache = Cache::builder().build().unwrap();
    cache.scope_sync(|| {
        assert_eq!(m::f::g(), "g()");
        assert_eq!(m::f("", "g"), "f(\"\",\"g\")");
    });
}

/// A value whose `Clone` reads the cache (on the key being read).
struct Chatty(u8);

static CHATTY_CACHE: OnceLock<Cache> = OnceLock::new();

impl Clone for Chatty {
    fn clone(&self) -> Self {
        if let Some(cache) = CHATTY_CACHE.get() {
            std::thread::sleep(Duration::from_millis(20));
            let _ = now(cache.exists("chatty"));
        }
        Chatty(self.0)
    }
}

/// A `Clone` that reads the cache must not deadlock behind a waiting writer.
#[test]
fn a_clone_that_reads_the_cache_does_not_deadlock() {
    let cache = CHATTY_CACHE
        .get_or_init(|| Cache::builder().build().unwrap())
        .clone();
    now(cache.set("chatty", Chatty(1), TTL));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = cache.clone();
    std::thread::spawn(move || {
        let _ = now(reader.get::<Chatty>("chatty"));
        tx.send(()).unwrap();
    });
    std::thread::sleep(Duration::from_millis(5));
    let writer = cache.clone();
    std::thread::spawn(move || now(writer.set("chatty", Chatty(2), TTL)));
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a read deadlocked behind a queued writer");
}

#[derive(Clone, Debug, PartialEq)]
struct DbError;

type DbResult<T> = Result<T, DbError>;
type Maybe<T> = Option<T>;

static ALIAS_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cached(ttl = "1m", key = "alias:<id>")]
fn load_aliased(id: u64) -> DbResult<u64> {
    ALIAS_CALLS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        Err(DbError)
    } else {
        Ok(id)
    }
}

#[cached(ttl = "1m", key = "maybe:<id>")]
async fn find_aliased(id: u64) -> Maybe<u64> {
    ALIAS_CALLS.fetch_add(1, Ordering::SeqCst);
    (id != 0).then_some(id)
}

#[cache_runtime::invalidates("alias:*")]
fn write_aliased(ok: bool) -> DbResult<()> {
    if ok {
        Ok(())
    } else {
        Err(DbError)
    }
}

/// The kind of a return type comes from the type, not its spelling: an
/// `Err` behind an alias is never cached, a `None` behind one only with
/// `none = true`, and `#[invalidates]` skips an aliased `Err`.
#[test]
fn aliases_of_result_and_option_behave_as_result_and_option() {
    let cache = Cache::builder().build().unwrap();
    cache.scope_sync(|| {
        assert_eq!(load_aliased(0), Err(DbError));
        assert_eq!(load_aliased(0), Err(DbError));
        assert_eq!(ALIAS_CALLS.load(Ordering::SeqCst), 2, "an Err was cached");
        assert_eq!(load_aliased(1), Ok(1));
        assert_eq!(load_aliased(1), Ok(1));
        assert_eq!(ALIAS_CALLS.load(Ordering::SeqCst), 3);
        write_aliased(false).unwrap_err();
        assert_eq!(load_aliased(1), Ok(1));
        assert_eq!(ALIAS_CALLS.load(Ordering::SeqCst), 3, "an Err invalidated");
        write_aliased(true).unwrap();
        assert_eq!(load_aliased(1), Ok(1));
        assert_eq!(ALIAS_CALLS.load(Ordering::SeqCst), 4);
    });
    block(cache.scope(async {
        assert_eq!(find_aliased(0).await, None);
        assert_eq!(find_aliased(0).await, None);
    }));
    assert_eq!(ALIAS_CALLS.load(Ordering::SeqCst), 6, "a None was cached");
}
