//! A mixed load on several cache instances sharing one redis-server, with
//! the checks the resilience tests and the soak example (`examples/chaos`)
//! make of every call: no error the cache caused, no stale read.
//!
//! Which invalidations a read must respect (docs/when-redis-fails.md):
//! on the instance that made it, every invalidation that returned before
//! the read started; on an instance without an in-process tier
//! (`Backend::Redis`), every invalidation that reached Redis before the
//! read started: at once when it went through, or, when it was queued
//! because Redis was away, once the invalidating instance replayed it, and
//! at the latest the replay's bound after Redis is back (when the test
//! says so, [`Load::redis_back`]) or after the invalidation, whichever is
//! later; on the other instance with an in-process tier, which learns of
//! it through the backplane (or stops trusting its in-process tier when it
//! cannot), every invalidation that reached Redis more than the instances'
//! `stale_bound` before the read started (with `degraded_l1_ttl` set,
//! that long more: the staleness it allows, by design).
//!
//! Each of those bounds gets a margin that is not guessed: the harness
//! measures this machine's scheduling delay in the same run ([`Noise`]: how
//! late a timer of the load's runtime fires), and an invalidation binds
//! only once its bound has passed plus the worst delay seen since it was
//! made, plus the 5 ms at which the harness raises its floors.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_runtime::{cached, invalidates, Backend, BreakerState, Cache, Event, Hooks};
use serde::{Deserialize, Serialize};

use super::Target;

pub const KEYS: u64 = 8;

/// How often the harness raises its floors, and its noise probe fires.
const POLL: Duration = Duration::from_millis(5);

/// How often, while invalidations wait because Redis was away, Redis is
/// pinged (docs/when-redis-fails.md): once back, the queue is replayed
/// within this, plus a ping sent while it was away failing (the command
/// timeout), plus the replay itself (a command within the timeout).
const REPLAY_PING_EVERY: Duration = Duration::from_millis(50);

/// This machine's scheduling delay, measured in the run: a task of the
/// load's runtime sleeps `POLL` again and again, and records how late it
/// wakes. The worst delay seen over a window is the margin a bound of that
/// window gets: the library's own tasks (the subscriber, the replay) and
/// this harness's wait on the same cores.
#[derive(Default)]
pub struct Noise {
    /// When each wake-up came, and how late; the last minute's.
    late: Mutex<VecDeque<(Instant, Duration)>>,
    worst: AtomicU64,
}

impl Noise {
    async fn probe(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let asleep = Instant::now();
            tokio::time::sleep(POLL).await;
            let late = asleep.elapsed().saturating_sub(POLL);
            self.worst
                .fetch_max(late.as_micros() as u64, Ordering::SeqCst);
            let mut samples = self.late.lock().unwrap();
            samples.push_back((Instant::now(), late));
            while samples
                .front()
                .is_some_and(|(at, _)| at.elapsed() > Duration::from_secs(60))
            {
                samples.pop_front();
            }
        }
    }

    /// The worst delay since `from`: of a wake-up since, or of the one
    /// still due (the probe itself held up now).
    fn since(&self, from: Instant) -> Duration {
        let samples = self.late.lock().unwrap();
        let overdue = samples
            .back()
            .map_or(Duration::ZERO, |(at, _)| at.elapsed().saturating_sub(POLL));
        samples
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= from)
            .map(|(_, late)| *late)
            .fold(overdue, Duration::max)
    }

    /// The worst delay seen in the run.
    pub fn worst(&self) -> Duration {
        Duration::from_micros(self.worst.load(Ordering::SeqCst))
    }
}

/// How many tasks read.
const READERS: usize = 16;

/// The origin: a version per key; it fails while `failing` is set.
pub struct Db {
    pub versions: Vec<AtomicU64>,
    pub reads: AtomicU64,
    pub failing: AtomicBool,
}

impl Db {
    pub fn new() -> Db {
        Db {
            versions: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            reads: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    pub fn read(&self, id: u64) -> Result<Item, DbError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(DbError(format!("database down while reading {id}")));
        }
        let version = self.versions[id as usize].load(Ordering::SeqCst);
        Ok(Item { id, version })
    }

    pub fn write(&self, id: u64) -> u64 {
        self.versions[id as usize].fetch_add(1, Ordering::SeqCst) + 1
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DbError(pub String);

#[cached(ttl = "1m", key = "item:<id>", skip(db))]
pub async fn item(db: &Db, id: u64) -> Result<Item, DbError> {
    db.read(id)
}

/// The same records under a template that prefix patterns invalidate.
#[cached(ttl = "1m", key = "group:<group>:<id>", skip(db))]
pub async fn grouped(db: &Db, group: u64, id: u64) -> Result<Item, DbError> {
    let _ = group;
    db.read(id)
}

#[invalidates("item:<id>")]
pub async fn update(db: &Db, id: u64) -> Result<u64, DbError> {
    Ok(db.write(id))
}

/// A cache on `server` for these tests: short timeouts and cool-down, so
/// that faults show quickly.
pub fn cache(server: &impl Target, backend: Backend) -> Cache {
    builder(server, backend).build().expect("a cache")
}

/// The builder of [`cache`].
pub fn builder(server: &impl Target, backend: Backend) -> cache_runtime::CacheBuilder {
    Cache::builder()
        .backend(backend)
        .redis_url(server.url())
        .key_prefix("chaos")
        .redis_timeout(Duration::from_millis(100))
        .breaker(3, Duration::from_millis(200))
}

/// Waits until `done` holds, for at most 30 s; returns whether it did.
pub async fn until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..3000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Whether every cache's breaker is closed with nothing left to replay.
pub fn recovered(caches: &[&Cache]) -> bool {
    caches.iter().all(|c| {
        let s = c.stats();
        s.breaker == BreakerState::Closed && s.invalidations_pending == 0
    })
}

/// Hooks that record every change of the circuit breaker.
#[derive(Default)]
pub struct BreakerChanges(Mutex<Vec<(BreakerState, BreakerState)>>);

impl BreakerChanges {
    /// The changes so far, `(from, to)`, in order.
    pub fn seen(&self) -> Vec<(BreakerState, BreakerState)> {
        self.0.lock().unwrap().clone()
    }
}

impl Hooks for BreakerChanges {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Breaker { from, to } = event {
            self.0.lock().unwrap().push((*from, *to));
        }
    }
}

/// The version below which a read of a key is stale, per key.
pub struct Floors(Vec<AtomicU64>);

impl Floors {
    fn new() -> Floors {
        Floors((0..KEYS).map(|_| AtomicU64::new(0)).collect())
    }
    fn raise(&self, id: u64, version: u64) {
        self.0[id as usize].fetch_max(version, Ordering::SeqCst);
    }
    fn of(&self, id: u64) -> u64 {
        self.0[id as usize].load(Ordering::SeqCst)
    }
}

/// What the load saw.
pub struct Tally {
    /// Calls completed by each reading task.
    per_task: Vec<AtomicU64>,
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub stale: AtomicU64,
    pub first_problem: Mutex<Option<String>>,
    /// What the run is doing now (for the report of a problem).
    pub phase: Mutex<&'static str>,
    /// The longest a read on an instance with an in-process tier returned
    /// a value that an invalidation elsewhere had removed from Redis, in
    /// microseconds from when it reached Redis to when the read started:
    /// within `tolerance`, or the read counts as stale.
    longest_tolerated_us: AtomicU64,
    /// How long the other instance's invalidations may take to bind,
    /// before the margin measured by `noise`.
    pub tolerance: Duration,
    /// This machine's scheduling delay in the run.
    pub noise: Noise,
}

impl Tally {
    fn new(tasks: usize, tolerance: Duration) -> Tally {
        Tally {
            per_task: (0..tasks).map(|_| AtomicU64::new(0)).collect(),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            first_problem: Mutex::new(None),
            phase: Mutex::new("starting"),
            longest_tolerated_us: AtomicU64::new(0),
            tolerance,
            noise: Noise::default(),
        }
    }

    /// The longest stale read tolerated (see `longest_tolerated_us`).
    pub fn longest_tolerated(&self) -> Duration {
        Duration::from_micros(self.longest_tolerated_us.load(Ordering::SeqCst))
    }

    fn problem(&self, what: String) {
        let phase = *self.phase.lock().unwrap();
        self.first_problem
            .lock()
            .unwrap()
            .get_or_insert(format!("{what} ({phase})"));
    }

    fn check(&self, task: usize, got: Result<Item, DbError>, floor: u64, who: &str) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.per_task[task].fetch_add(1, Ordering::SeqCst);
        match got {
            Ok(item) if item.version < floor => {
                self.stale.fetch_add(1, Ordering::SeqCst);
                self.problem(format!(
                    "{who} read version {} of {} after the invalidation of version {floor}",
                    item.version, item.id
                ));
            }
            Ok(_) => {}
            Err(e) => {
                self.errors.fetch_add(1, Ordering::SeqCst);
                self.problem(format!("{who} got {e:?}"));
            }
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn assert_clean(&self) {
        let (calls, errors, stale) = (
            self.calls(),
            self.errors.load(Ordering::SeqCst),
            self.stale.load(Ordering::SeqCst),
        );
        assert!(
            errors == 0 && stale == 0,
            "{calls} calls, {errors} errors, {stale} stale reads; first: {:?}",
            self.first_problem.lock().unwrap()
        );
        println!(
            "{calls} calls, 0 errors, 0 stale reads; the longest stale read tolerated: {:?} after the invalidation reached Redis (bound {:?}, plus the scheduling delay measured meanwhile: at worst {:?} in the run)",
            self.longest_tolerated(),
            self.tolerance,
            self.noise.worst()
        );
    }
}

/// Two hybrid instances that write and read, and one without an
/// in-process tier that reads, all on one redis-server, with 16 reading
/// tasks and 2 writing ones, until stopped.
pub struct Load {
    pub a: Cache,
    pub b: Cache,
    /// Instances without an in-process tier, one per reading task, so that
    /// no call of theirs joins another's (see `Load::start`).
    pub remotes: Vec<Cache>,
    pub db: Arc<Db>,
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    /// When the test said Redis is back.
    back: Arc<Mutex<Option<Instant>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub async fn start(server: &impl Target) -> Load {
        Load::start_with(server, |b| b).await
    }

    /// As `start`, with `configure` applied to each instance's builder.
    pub async fn start_with(
        server: &impl Target,
        configure: impl Fn(cache_runtime::CacheBuilder) -> cache_runtime::CacheBuilder,
    ) -> Load {
        let build = |backend| {
            configure(builder(server, backend))
                .build()
                .expect("a cache")
        };
        let (a, b) = (build(Backend::Hybrid), build(Backend::Hybrid));
        let remotes: Vec<Cache> = (0..8).map(|_| build(Backend::Redis)).collect();
        for c in remotes.iter().chain([&a, &b]) {
            assert!(c.wait_in_sync(Duration::from_secs(10)).await);
        }
        let db = Arc::new(Db::new());
        let config = a.config();
        let tolerance = config.stale_bound + config.degraded_l1_ttl + POLL;
        let replayed_within = REPLAY_PING_EVERY + config.redis_timeout * 2 + POLL;
        let tally = Arc::new(Tally::new(READERS, tolerance));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        {
            let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move { tally.noise.probe(&stop).await }));
        }
        // Floors of each writing instance's own reads, and of reads through
        // Redis only; writes whose invalidation was queued wait in
        // `replayed` until their instance's queue is empty.
        let own = [Arc::new(Floors::new()), Arc::new(Floors::new())];
        let remote_floors = Arc::new(Floors::new());
        // Invalidations that reached Redis, and when; `settled` has those
        // older than `tolerance` (the stale bound, plus the instances'
        // degraded mode, when they have one: the staleness it allows) and
        // the scheduling delay measured since, which bind every instance.
        let reached: Arc<Mutex<VecDeque<(Instant, u64, u64)>>> = Arc::default();
        let settled = Arc::new(Floors::new());
        let reached_redis = {
            let (remote_floors, reached) = (Arc::clone(&remote_floors), Arc::clone(&reached));
            move |id: u64, version: u64| {
                remote_floors.raise(id, version);
                reached
                    .lock()
                    .unwrap()
                    .push_back((Instant::now(), id, version));
            }
        };
        let queued: Arc<Mutex<Vec<(Instant, u64, u64)>>> = Arc::default();
        let back: Arc<Mutex<Option<Instant>>> = Arc::default();
        for (n, cache) in [&a, &b].into_iter().enumerate() {
            let (cache, db, stop, floors) = (
                cache.clone(),
                Arc::clone(&db),
                Arc::clone(&stop),
                Arc::clone(&own[n]),
            );
            let (reached_redis, queued) = (reached_redis.clone(), Arc::clone(&queued));
            tasks.push(tokio::spawn(async move {
                // Each instance writes its own half of the keys, so that the
                // versions of a key grow with its invalidations.
                let mut id = n as u64;
                while !stop.load(Ordering::SeqCst) {
                    let version = db.write(id);
                    let exact = cache
                        .invalidate_report(&format!("item:{id}"))
                        .await
                        .unwrap();
                    let group = cache
                        .invalidate_report(&format!("group:{}:*", id % 2))
                        .await
                        .unwrap();
                    floors.raise(id, version);
                    let queued_somewhere = [exact.shared, group.shared]
                        .iter()
                        .any(|s| matches!(s, cache_runtime::SharedInvalidation::Queued(_)));
                    if queued_somewhere {
                        queued.lock().unwrap().push((Instant::now(), id, version));
                    } else {
                        reached_redis(id, version);
                    }
                    id = (id + 2) % KEYS;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
        // Queued invalidations bind the remote reads once replayed, and
        // `replayed_within` (and the scheduling delay since) after Redis is
        // back (or after they were made, if later) at the latest.
        {
            let (a, b, stop, tally) = (a.clone(), b.clone(), Arc::clone(&stop), Arc::clone(&tally));
            let (reached_redis, queued, back) = (
                reached_redis.clone(),
                Arc::clone(&queued),
                Arc::clone(&back),
            );
            tasks.push(tokio::spawn(async move {
                let mut waiting: Vec<(Instant, u64, u64)> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    waiting.append(&mut queued.lock().unwrap());
                    let back = *back.lock().unwrap();
                    let replayed = recovered(&[&a, &b]);
                    waiting.retain(|&(at, id, version)| {
                        let due = back.is_some_and(|back| {
                            let from = back.max(at);
                            from.elapsed() >= replayed_within + tally.noise.since(from)
                        });
                        if replayed || due {
                            reached_redis(id, version);
                        }
                        !(replayed || due)
                    });
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        // Invalidations settle.
        {
            let (reached, settled, stop, tally) = (
                Arc::clone(&reached),
                Arc::clone(&settled),
                Arc::clone(&stop),
                Arc::clone(&tally),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    {
                        let mut reached = reached.lock().unwrap();
                        while reached.front().is_some_and(|(at, _, _)| {
                            at.elapsed() >= tolerance + tally.noise.since(*at)
                        }) {
                            let (_, id, version) = reached.pop_front().unwrap();
                            settled.raise(id, version);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        // Calls on one instance join each other's origin calls (single
        // flight): a call that joins, on another instance than the one that
        // invalidated, a call that started before the invalidation gets
        // what that call read, until the backplane brings the invalidation
        // (as with the in-process tier). So each redis-only reader has an
        // instance of its own, and its reads must respect every
        // invalidation that reached Redis.
        for reader in 0..READERS as u64 {
            let (cache, floors, who) = match reader % 4 {
                0 => (a.clone(), Arc::clone(&own[0]), "instance A"),
                1 => (b.clone(), Arc::clone(&own[1]), "instance B"),
                _ => (
                    remotes[(reader / 4 * 2 + reader % 4 - 2) as usize].clone(),
                    Arc::clone(&remote_floors),
                    "a redis-only instance",
                ),
            };
            // The other instance's invalidations bind a hybrid instance once
            // settled; a redis-only one's floors are raised sooner anyway.
            let (settled, reached, remote_floors) = (
                Arc::clone(&settled),
                Arc::clone(&reached),
                Arc::clone(&remote_floors),
            );
            let (db, tally, stop) = (Arc::clone(&db), Arc::clone(&tally), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let mut n = reader;
                while !stop.load(Ordering::SeqCst) {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let id = (n >> 33) % KEYS;
                    let floor = floors.of(id).max(settled.of(id));
                    let started = Instant::now();
                    let got = if n & 1 == 0 {
                        cache.scope(item(&db, id)).await
                    } else {
                        cache.scope(grouped(&db, id % 2, id)).await
                    };
                    // Older than what reached Redis, yet not stale: how
                    // long after the first invalidation it missed.
                    if let Ok(got) = &got {
                        if got.version >= floor && got.version < remote_floors.of(id) {
                            let reached = reached.lock().unwrap();
                            let missed = reached
                                .iter()
                                .find(|(at, i, v)| *i == id && *v > got.version && *at <= started);
                            if let Some((at, ..)) = missed {
                                let us = started.duration_since(*at).as_micros() as u64;
                                tally.longest_tolerated_us.fetch_max(us, Ordering::SeqCst);
                            }
                        }
                    }
                    tally.check(reader as usize, got, floor, who);
                    tokio::task::yield_now().await;
                }
            }));
        }
        Load {
            a,
            b,
            remotes,
            db,
            tally,
            stop,
            back,
            tasks,
        }
    }

    /// Says that Redis is back (resumed, restarted): from now on an
    /// invalidation queued while it was away must be replayed within the
    /// replay's bound (see the top of this file), or the reads after that
    /// see it as stale. Until
    /// [`redis_away`](Load::redis_away).
    pub fn redis_back(&self) {
        *self.back.lock().unwrap() = Some(Instant::now());
    }

    /// Says that Redis is away again (before a fault that follows one
    /// [`redis_back`](Load::redis_back) ended).
    pub fn redis_away(&self) {
        *self.back.lock().unwrap() = None;
    }

    /// Waits until `n` more calls completed; panics after 30 s without.
    pub async fn progresses(&self, n: u64, while_: &str) {
        let from = self.tally.calls();
        assert!(
            until(|| self.tally.calls() >= from + n).await,
            "calls stopped completing {while_}: {} of {n}",
            self.tally.calls() - from
        );
    }

    /// Waits until every reading task completed `n` more calls; panics
    /// after 30 s without: a task whose call waits (for a stopped Redis,
    /// say) stops this.
    pub async fn every_task_progresses(&self, n: u64, while_: &str) {
        let counts = || -> Vec<u64> {
            self.tally
                .per_task
                .iter()
                .map(|c| c.load(Ordering::SeqCst))
                .collect()
        };
        let from = counts();
        let done = || {
            counts()
                .iter()
                .zip(&from)
                .all(|(now, then)| *now >= then + n)
        };
        assert!(
            until(done).await,
            "a task stopped completing calls {while_}: {:?} since {:?}",
            counts(),
            from
        );
    }

    /// Waits until every instance's breaker is closed and nothing is left
    /// to replay.
    pub async fn recovers(&self) {
        let caches: Vec<&Cache> = self.remotes.iter().chain([&self.a, &self.b]).collect();
        assert!(
            until(|| recovered(&caches)).await,
            "no recovery within 30 s: {:?}",
            caches.iter().map(|c| c.stats()).collect::<Vec<_>>()
        );
    }

    /// Stops the load; returns what it saw and every instance (A, B, then
    /// the redis-only ones).
    pub async fn stop(self) -> (Arc<Tally>, Vec<Cache>) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a load task panicked");
        }
        let caches = [self.a, self.b].into_iter().chain(self.remotes).collect();
        (self.tally, caches)
    }
}
