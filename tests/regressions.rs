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
    now(cache.local().set("chatty", Chatty(1), TTL));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = cache.clone();
    std::thread::spawn(move || {
        let _ = now(reader.local().get::<Chatty>("chatty"));
        tx.send(()).unwrap();
    });
    std::thread::sleep(Duration::from_millis(5));
    let writer = cache.clone();
    std::thread::spawn(move || now(writer.local().set("chatty", Chatty(2), TTL)));
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

/// A value heavier than the in-process tier can hold is not kept, and is
/// not counted as stored; the call still returns it.
#[test]
fn a_value_heavier_than_the_tier_is_not_counted_as_stored() {
    #[cached(ttl = "1h", key = "huge:<n>")]
    fn huge(n: u8) -> Vec<u8> {
        vec![n; 600 * 1024]
    }
    let cache = Cache::builder().l1_max_bytes(1 << 20).build().unwrap();
    cache.scope_sync(|| {
        assert_eq!(huge(1).len(), 600 * 1024);
        assert_eq!(huge(1).len(), 600 * 1024);
    });
    let stats = cache.stats();
    assert_eq!(
        (stats.sets, stats.entries, stats.loads),
        (0, 0, 2),
        "{stats:?}"
    );
}

#[derive(Clone, Debug, PartialEq)]
struct Unavailable(u8);

static NAME_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static AGE_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cached(ttl = "1m", key = "user:<id>", skip(release))]
async fn user_name(id: u64, release: Arc<tokio::sync::Notify>) -> Result<String, Unavailable> {
    NAME_CALLS.fetch_add(1, Ordering::SeqCst);
    release.notified().await;
    let _ = id;
    Err(Unavailable(1))
}

#[cached(ttl = "1m", key = "user:<id>")]
async fn user_age(id: u64) -> Result<u32, Unavailable> {
    AGE_CALLS.fetch_add(1, Ordering::SeqCst);
    let _ = id;
    Ok(42)
}

/// A shared error reaches only waiters of the same value type: a function
/// that shares the key but returns another type calls its own origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_error_does_not_cross_into_another_value_type() {
    let cache = Cache::builder().build().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let (cache, release) = (cache.clone(), release.clone());
        tokio::spawn(async move { cache.scope(user_name(7, release)).await })
    };
    while NAME_CALLS.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.scope(user_age(7)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    assert_eq!(leader.await.unwrap(), Err(Unavailable(1)));
    assert_eq!(waiter.await.unwrap(), Ok(42));
    assert_eq!(AGE_CALLS.load(Ordering::SeqCst), 1);
}

/// Errors that borrow or are generic compile (they are not shared).
#[cached(ttl = "1m", key = "borrowed:<id>", skip(name))]
fn borrowed_error<'a>(id: u64, name: &'a str) -> Result<u64, &'a str> {
    if id == 0 {
        Err(name)
    } else {
        Ok(id)
    }
}

#[cached(ttl = "1m", key = "generic-error:<id>", skip(err))]
fn generic_error<E: Clone + Send + Sync>(id: u64, err: E) -> Result<u64, E> {
    if id == 0 {
        Err(err)
    } else {
        Ok(id)
    }
}

mod user_trait_in_scope {
    //! A user trait with methods named like common words, implemented for
    //! every type, does not capture the expansion's method calls.
    use cache_runtime::cached;

    pub trait Describe {
        fn kind(&self) -> &'static str {
            "anything"
        }
        fn weigher(&self) -> u8 {
            0
        }
    }
    impl<T: ?Sized> Describe for T {}

    #[cached(ttl = "1m", key = "describe:<n>")]
    pub fn twice(n: u32) -> u32 {
        n * 2 + u32::from(n.weigher()) + u32::from(n.kind().is_empty())
    }
}

#[test]
fn unusual_error_types_and_user_traits_compile_and_work() {
    let cache = Cache::builder().build().unwrap();
    cache.scope_sync(|| {
        assert_eq!(borrowed_error(0, "nobody"), Err("nobody"));
        assert_eq!(borrowed_error(3, "x"), Ok(3));
        assert_eq!(generic_error(0, 'e'), Err('e'));
        assert_eq!(generic_error::<char>(4, 'e'), Ok(4));
        assert_eq!(user_trait_in_scope::twice(21), 42);
    });
}

/// A `Serialize` that panics costs the weight measure, not the value.
#[derive(Clone)]
struct Fragile(u32);

impl serde::Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("this value refuses to be serialized");
    }
}

#[cached(ttl = "1m", key = "fragile:<n>")]
fn fragile(n: u32) -> Fragile {
    Fragile(n)
}

#[test]
fn a_panicking_serialize_does_not_fail_the_call() {
    let cache = Cache::builder().build().unwrap();
    let value = cache.scope_sync(|| fragile(5));
    assert_eq!(value.0, 5);
    let stats = cache.stats();
    assert_eq!((stats.sets, stats.errors), (1, 1), "{stats:?}");
    assert_eq!(cache.scope_sync(|| fragile(5)).0, 5);
    assert_eq!(cache.stats().hits, 1);
}

/// A generic function under the default key: each instantiation keys
/// apart, so one whose value depends on its type parameter alone never
/// answers with another's.
#[tokio::test]
async fn instantiations_of_a_generic_function_under_the_default_key_key_apart() {
    #[cache_runtime::cached(ttl = "1h")]
    fn size_of<T: 'static>(id: u32) -> usize {
        let _ = id;
        std::mem::size_of::<T>()
    }
    #[cache_runtime::cached(ttl = "1h")]
    async fn name_of<K: cache_runtime::KeyPart + Sync>(k: &K) -> String {
        std::any::type_name::<K>().to_owned()
    }

    let cache = cache_runtime::Cache::builder().build().unwrap();
    cache
        .scope(async {
            assert_eq!(size_of::<u8>(1), 1);
            assert_eq!(size_of::<u64>(1), 8);
            assert_eq!(size_of::<u8>(1), 1);
            assert_eq!(name_of(&5u32).await, "u32");
            assert_eq!(name_of(&5u64).await, "u64");
        })
        .await;
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.hits), (4, 1));
}
