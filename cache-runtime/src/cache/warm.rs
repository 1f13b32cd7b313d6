//! Warming at scale: ids loaded in batches through a loader, several
//! batches at a time, into both tiers with the coherence of any fill (an
//! invalidation after the loader's read wins; a key already cached or
//! being loaded is skipped, never overwritten), with progress and a
//! report; and warmers that run periodically on the runtime.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use parking_lot::Mutex;

use super::{Cache, Inner, Policy, Shareable};
use crate::hooks::Event;
use crate::outcome::Plain;
use crate::stats::Counter;

/// How [`Cache::warm_ids`] runs: ids per loader call, and loader calls at
/// a time.
///
/// ```
/// let options = cache_runtime::WarmOptions::default().batch(500).concurrency(2);
/// assert_eq!((options.batch_size(), options.max_concurrency()), (500, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmOptions {
    batch: usize,
    concurrency: usize,
}

impl Default for WarmOptions {
    /// Batches of 100 ids, 4 at a time.
    fn default() -> Self {
        WarmOptions {
            batch: 100,
            concurrency: 4,
        }
    }
}

impl WarmOptions {
    /// Ids per loader call (at least 1).
    ///
    /// ```
    /// assert_eq!(cache_runtime::WarmOptions::default().batch(0).batch_size(), 1);
    /// ```
    pub fn batch(mut self, ids: usize) -> Self {
        self.batch = ids.max(1);
        self
    }

    /// Loader calls at a time (at least 1).
    ///
    /// ```
    /// assert_eq!(cache_runtime::WarmOptions::default().concurrency(8).max_concurrency(), 8);
    /// ```
    pub fn concurrency(mut self, calls: usize) -> Self {
        self.concurrency = calls.max(1);
        self
    }

    /// Ids per loader call (100 by default).
    ///
    /// ```
    /// assert_eq!(cache_runtime::WarmOptions::default().batch_size(), 100);
    /// ```
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Loader calls at a time (4 by default).
    ///
    /// ```
    /// assert_eq!(cache_runtime::WarmOptions::default().max_concurrency(), 4);
    /// ```
    pub fn max_concurrency(&self) -> usize {
        self.concurrency
    }
}

/// What a warm did, id by id.
///
/// ```
/// let report = cache_runtime::WarmReport::default();
/// assert_eq!(report.stored + report.skipped + report.failed, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmReport {
    /// Ids the loader returned a value for, written to both tiers: an
    /// invalidation after the loader's read keeps a value out, as does a
    /// key longer than [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES), and an
    /// instance out of step with the others keeps it in Redis only (or
    /// for `degraded_l1_ttl` in process).
    pub stored: u64,
    /// Ids already cached, or being loaded by another caller: left as
    /// they are.
    pub skipped: u64,
    /// Ids whose loader call failed, or for which it returned no value.
    /// (When a batch's call fails, the ids it had not asked for yet count
    /// as skipped.)
    pub failed: u64,
}

impl WarmReport {
    fn add(&mut self, other: WarmReport) {
        self.stored += other.stored;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }
}

/// The template label of warming's counters and events.
const WARM_TEMPLATE: &str = "warm";

impl Cache {
    /// Loads `ids` into both tiers through `load`, `options.batch` ids per
    /// call and `options.concurrency` calls at a time, each value stored
    /// for `ttl` under `key(id)`, as a batch function stores its values:
    /// ids cached already or being loaded are skipped, one flight per
    /// key, and an invalidation that comes after a call's read keeps its
    /// values out. Each batch is reported to the hooks
    /// ([`Event::Warmed`]) as it ends, and counted in
    /// [`Stats::warmed`](crate::Stats::warmed).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use cache_runtime::{Cache, WarmOptions};
    ///
    /// let cache = Cache::builder().build().unwrap();
    /// let report = cache
    ///     .warm_ids(1..=250u32, |id| format!("country:{id}"), Duration::from_secs(3600),
    ///         WarmOptions::default().batch(100), |ids: Vec<u32>| async move {
    ///             Ok::<_, std::io::Error>(ids.into_iter().map(|id| (id, id * 2)).collect())
    ///         })
    ///     .await;
    /// assert_eq!(report.stored, 250);
    /// assert_eq!(cache.get::<u32>("country:7").await, Some(14));
    /// # });
    /// ```
    pub async fn warm_ids<K, V, E, I, F, Fut>(
        &self,
        ids: I,
        key: impl Fn(&K) -> String,
        ttl: Duration,
        options: WarmOptions,
        load: F,
    ) -> WarmReport
    where
        I: IntoIterator<Item = K>,
        K: Eq + Hash + Clone,
        V: Shareable,
        F: Fn(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        self.warm_stream(stream::iter(ids), key, ttl, options, load)
            .await
    }

    /// [`Cache::warm_ids`] for ids that arrive as a [`Stream`] (rows of a
    /// query read as they come, a file read line by line): batches are
    /// made as ids arrive, so a long stream is never held whole.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use cache_runtime::{Cache, WarmOptions};
    ///
    /// let cache = Cache::builder().build().unwrap();
    /// let ids = futures_util::stream::iter(1..=10u32);
    /// let load = |ids: Vec<u32>| async move {
    ///     Ok::<_, std::io::Error>(ids.into_iter().map(|id| (id, id)).collect())
    /// };
    /// let report = cache
    ///     .warm_stream(ids, |id| format!("n:{id}"), Duration::from_secs(60), WarmOptions::default(), load)
    ///     .await;
    /// assert_eq!(report.stored, 10);
    /// # });
    /// ```
    pub async fn warm_stream<K, V, E, S, F, Fut>(
        &self,
        ids: S,
        key: impl Fn(&K) -> String,
        ttl: Duration,
        options: WarmOptions,
        load: F,
    ) -> WarmReport
    where
        S: Stream<Item = K>,
        K: Eq + Hash + Clone,
        V: Shareable,
        F: Fn(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        let (key, load) = (&key, &load);
        ids.chunks(options.batch)
            .map(|batch| self.warm_batch(batch, key, ttl, load))
            .buffer_unordered(options.concurrency)
            .fold(WarmReport::default(), |mut total, report| async move {
                total.add(report);
                total
            })
            .await
    }

    /// One batch of [`Cache::warm_ids`].
    async fn warm_batch<K, V, E, F, Fut>(
        &self,
        batch: Vec<K>,
        key: &impl Fn(&K) -> String,
        ttl: Duration,
        load: &F,
    ) -> WarmReport
    where
        K: Eq + Hash + Clone,
        V: Shareable,
        F: Fn(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        let batch: Vec<K> = batch
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();
        drop(seen);
        let keys: Vec<String> = batch.iter().map(key).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let site = self.site(WARM_TEMPLATE);
        let policy = Policy::ttl(ttl);
        let route = self.shared_route::<V>();
        let (asked, answered) = (AtomicU64::new(0), AtomicU64::new(0));
        let origin = |ids: Vec<K>| {
            asked.fetch_add(ids.len() as u64, Ordering::Relaxed);
            let wanted: std::collections::HashSet<K> = ids.iter().cloned().collect();
            let call = load(ids);
            let answered = &answered;
            async move {
                let out = call.await;
                // Each id asked for once, whatever else the loader sent.
                if let Ok(pairs) = &out {
                    let mut answers = std::collections::HashSet::with_capacity(pairs.len());
                    answers.extend(
                        pairs
                            .iter()
                            .map(|(id, _)| id)
                            .filter(|id| wanted.contains(*id)),
                    );
                    answered.fetch_add(answers.len() as u64, Ordering::Relaxed);
                }
                out
            }
        };
        let total = batch.len() as u64;
        let loaded = self
            .load_batch::<K, V, Plain<V>, E, _, _>(batch, &keys, &site, &policy, route, origin)
            .await;
        // What the tiers answered was not asked for; what was asked and
        // not answered (no value, or a failed call) failed.
        drop(loaded);
        let asked = asked.load(Ordering::Relaxed).min(total);
        let stored = answered.load(Ordering::Relaxed).min(asked);
        let report = WarmReport {
            stored,
            skipped: total - asked,
            failed: asked - stored,
        };
        self.warmed(&site, report);
        report
    }

    /// Counts and reports a batch of warming.
    fn warmed(&self, site: &crate::site::Site, report: WarmReport) {
        site.counters.add(Counter::Warmed, report.stored);
        self.emit(Event::Warmed {
            stored: report.stored,
            skipped: report.skipped,
            failed: report.failed,
        });
    }
}

/// A warmer's job: warms the cache it is given, and says what it did.
type Job = dyn Fn(Cache) -> Pin<Box<dyn Future<Output = WarmReport> + Send>> + Send + Sync;

/// A warmer registered on a cache (see [`Cache::add_warmer`]).
pub(crate) struct Warmer {
    name: Box<str>,
    every: Duration,
    jitter_percent: u8,
    job: Box<Job>,
    running: AtomicBool,
    runs: AtomicU64,
    last: Mutex<Option<WarmReport>>,
}

/// A warmer as [`Health::warmers`](crate::Health::warmers) shows it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// let cache = cache_runtime::Cache::builder().build().unwrap();
/// cache.add_warmer("none", Duration::from_secs(60), 0, |_| async { Default::default() });
/// let warmer = &cache.health().await.warmers[0];
/// assert_eq!((warmer.name.as_str(), warmer.runs), ("none", 0));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmerHealth {
    /// Its name.
    pub name: String,
    /// How often it runs.
    pub every: Duration,
    /// Whether it is running now.
    pub running: bool,
    /// Runs finished.
    pub runs: u64,
    /// What its last run did.
    pub last: Option<WarmReport>,
}

/// Why a warmer did not run.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use cache_runtime::{Cache, WarmerError};
/// let cache = Cache::builder().build().unwrap();
/// let error = cache.run_warmer("lookups").await.unwrap_err();
/// assert_eq!(error, WarmerError::Unknown("lookups".into()));
/// assert_eq!(error.to_string(), "no warmer is named `lookups`");
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarmerError {
    /// No warmer of this name.
    Unknown(String),
    /// It is running now; one run at a time.
    Running(String),
}

impl std::fmt::Display for WarmerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WarmerError::Unknown(name) => write!(f, "no warmer is named `{name}`"),
            WarmerError::Running(name) => {
                write!(
                    f,
                    "the warmer `{name}` is running now; it runs once at a time"
                )
            }
        }
    }
}

impl std::error::Error for WarmerError {}

impl Warmer {
    /// Runs the job unless it is running; `None` if it was.
    async fn run(&self, cache: Cache) -> Option<WarmReport> {
        if self.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _done = Done(&self.running);
        let report = (self.job)(cache).await;
        *self.last.lock() = Some(report);
        self.runs.fetch_add(1, Ordering::Relaxed);
        Some(report)
    }

    fn health(&self) -> WarmerHealth {
        WarmerHealth {
            name: self.name.to_string(),
            every: self.every,
            running: self.running.load(Ordering::Acquire),
            runs: self.runs.load(Ordering::Relaxed),
            last: *self.last.lock(),
        }
    }

    /// The pause before the next run: `every`, less up to `jitter`%.
    fn pause(&self) -> Duration {
        let cut = self.every.as_secs_f64() * f64::from(self.jitter_percent.min(100)) / 100.0;
        let cut = Duration::try_from_secs_f64(cut * fastrand::f64()).unwrap_or_default();
        self.every.saturating_sub(cut)
    }
}

impl Cache {
    /// Registers a warmer named `name` that runs `job` on this cache now
    /// and then every `every` (less a random share of up to
    /// `jitter_percent`%, so that instances do not warm together), in a
    /// task of the current tokio runtime, until the runtime shuts down or
    /// the cache is dropped. A run never starts while the last one runs.
    /// It shows in [`Health::warmers`](crate::Health::warmers), and
    /// [`Cache::run_warmer`] (and the admin router's `POST /warm`) runs it
    /// now.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use cache_runtime::{Cache, WarmOptions};
    ///
    /// let cache = Cache::builder().build().unwrap();
    /// fn key(id: &u32) -> String {
    ///     format!("currency:{id}")
    /// }
    /// cache.add_warmer("currencies", Duration::from_secs(300), 10, |cache| async move {
    ///     let load = |ids: Vec<u32>| async move {
    ///         Ok::<_, std::io::Error>(ids.into_iter().map(|id| (id, id * 10)).collect())
    ///     };
    ///     cache.warm_ids([978, 840], key, Duration::from_secs(3600), WarmOptions::default(), load).await
    /// });
    /// // The task's first run has not started yet on this one-thread runtime.
    /// assert_eq!(cache.run_warmer("currencies").await.unwrap().stored, 2);
    /// assert_eq!(cache.get::<u32>("currency:978").await, Some(9780));
    /// # });
    /// ```
    pub fn add_warmer<F, Fut>(&self, name: &str, every: Duration, jitter_percent: u8, job: F)
    where
        F: Fn(Cache) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WarmReport> + Send + 'static,
    {
        let warmer = Arc::new(Warmer {
            name: name.into(),
            every: every.max(Duration::from_millis(1)),
            jitter_percent,
            job: Box::new(move |cache| Box::pin(job(cache))),
            running: AtomicBool::new(false),
            runs: AtomicU64::new(0),
            last: Mutex::new(None),
        });
        self.inner.warmers.lock().push(Arc::clone(&warmer));
        let cache = Arc::downgrade(&self.inner);
        tokio::runtime::Handle::current().spawn(periodically(cache, warmer));
    }

    /// Runs the warmer `name` now and returns what it did; an error when
    /// there is none of that name or it is running.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert!(cache.run_warmer("nothing").await.is_err());
    /// # });
    /// ```
    pub async fn run_warmer(&self, name: &str) -> Result<WarmReport, WarmerError> {
        let warmer = self
            .inner
            .warmers
            .lock()
            .iter()
            .find(|w| &*w.name == name)
            .cloned()
            .ok_or_else(|| WarmerError::Unknown(name.to_owned()))?;
        warmer
            .run(self.clone())
            .await
            .ok_or_else(|| WarmerError::Running(name.to_owned()))
    }

    /// The names of the warmers registered on this cache.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert!(cache.warmer_names().is_empty());
    /// ```
    pub fn warmer_names(&self) -> Vec<String> {
        self.inner
            .warmers
            .lock()
            .iter()
            .map(|w| w.name.to_string())
            .collect()
    }

    pub(crate) fn warmers_health(&self) -> Vec<WarmerHealth> {
        self.inner
            .warmers
            .lock()
            .iter()
            .map(|w| w.health())
            .collect()
    }
}

/// A warmer's task: runs it, then again after each pause, while its cache
/// lives.
async fn periodically(cache: Weak<Inner>, warmer: Arc<Warmer>) {
    loop {
        let Some(inner) = cache.upgrade() else {
            return;
        };
        warmer.run(Cache { inner }).await;
        tokio::time::sleep(warmer.pause()).await;
    }
}
