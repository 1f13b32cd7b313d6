//! Single flight across instances: a leader that missed in both tiers
//! takes the key's lock in Redis and holds it through its origin call and
//! its fill; the leaders of the other instances wait for its value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::ValueCodec;
use super::read::Found;
use super::{Report, SharedTier};
use crate::l2::coherent::Coherent;
use crate::l2::lock::Lock;
use crate::site::Site;

/// How often a leader waiting for another instance's lock looks again:
/// doubling from the first to the last.
const LOCK_POLL_FIRST: Duration = Duration::from_millis(2);
const LOCK_POLL_LAST: Duration = Duration::from_millis(50);
/// The longest a leader waits for another instance's lock, in lock
/// lifetimes.
const LOCK_WAIT_LIFETIMES: u32 = 10;

/// The distributed lock of a key, held by this instance's leader while it
/// calls the origin and fills, and renewed meanwhile (every third of its
/// lifetime), so that a slow origin call keeps it. Dropped, it is released
/// by a task (off the caller's answer), unless the breaker is open (it then
/// expires by itself); a holder that dies with its process frees it when it
/// expires. A holder that stored nothing leaves it vacated for a moment:
/// the waiting instances then call the origin at once instead of taking
/// the lock in turn.
pub(crate) struct LockGuard {
    shared: Arc<SharedTier>,
    store: Coherent,
    key: Box<str>,
    holder: Box<str>,
    renewal: Option<tokio::task::AbortHandle>,
    /// The holder's origin call ended and nothing reached Redis. (A holder
    /// dropped mid-call just releases it: another instance takes over.)
    pub(crate) vacate: bool,
}

impl LockGuard {
    fn new(shared: Arc<SharedTier>, store: &Coherent, key: &str, holder: String) -> LockGuard {
        let ttl = shared.lock_ttl;
        let renewal = shared.runtime().map(|runtime| {
            let (store, key, holder) = (store.clone(), key.to_owned(), holder.clone());
            runtime
                .spawn(async move {
                    loop {
                        tokio::time::sleep(ttl / 3).await;
                        if !matches!(store.renew_lock(&key, &holder, ttl).await, Ok(true)) {
                            return;
                        }
                    }
                })
                .abort_handle()
        });
        LockGuard {
            shared,
            store: store.clone(),
            key: key.into(),
            holder: holder.into(),
            renewal,
            vacate: false,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(renewal) = &self.renewal {
            renewal.abort();
        }
        if !self.shared.breaker.allows() {
            return;
        }
        let Some(runtime) = self.shared.runtime() else {
            return;
        };
        let store = self.store.clone();
        let (key, holder) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.holder),
        );
        let vacate = self.vacate;
        runtime.spawn(async move {
            // Not released (Redis failing): it expires.
            let _ = store.unlock(&key, &holder, vacate).await;
        });
    }
}

impl SharedTier {
    /// After a miss, single flight across instances: the leader takes the
    /// key's lock in Redis and returns it to be held through the origin
    /// call and the fill, or, while another instance holds it, looks again
    /// with a growing pause until that instance's value is there, or the
    /// lock is free (then takes it), or vacated (its holder stored nothing:
    /// then it calls the origin). Past ten lock lifetimes, or when Redis
    /// fails, it goes on without the lock.
    #[allow(clippy::too_many_arguments)] // the lookup's, and the lookup found
    pub(super) async fn wait_for_lock<V: 'static>(
        self: &Arc<Self>,
        report: &dyn Report,
        key: &str,
        site: &Site,
        codec: ValueCodec,
        keep: Duration,
        ahead: Duration,
        mut found: Found,
    ) -> (Found, Option<LockGuard>) {
        let holder = format!("{:016x}-{:016x}", self.instance, fastrand::u64(..));
        // A held lock has a live holder (it renews it) or a dead one (it
        // expires within its lifetime): waiting while it is held waits for
        // the holder's call, as waiters in one process do. Bounded, for a
        // holder whose call never ends.
        let deadline = Instant::now() + self.lock_ttl * LOCK_WAIT_LIFETIMES;
        let mut pause = LOCK_POLL_FIRST;
        loop {
            // A value, or Redis failing: nothing to coordinate.
            if !matches!(found, Found::Miss(Some(_), _)) {
                return (found, None);
            }
            let Some(store) = self.guarded_store(report) else {
                return (found, None);
            };
            match store.try_lock(key, &holder, self.lock_ttl).await {
                Ok(Lock::Taken) => {
                    self.breaker.success();
                    let guard = LockGuard::new(Arc::clone(self), store, key, holder);
                    // The previous holder may have filled and released
                    // between the look and the lock.
                    let again = self
                        .lookup::<V>(report, key, site, codec, keep, ahead, true)
                        .await;
                    if let Found::Value(..) = again {
                        return (again, None);
                    }
                    return (again, Some(guard));
                }
                // Its holder stored nothing (its origin failed, say): each
                // calls its own.
                Ok(Lock::Vacated) => return (found, None),
                Ok(Lock::Held) => {}
                Err(e) => {
                    self.failed(report, "LOCK", &e);
                    return (found, None);
                }
            }
            if Instant::now() >= deadline {
                return (found, None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LOCK_POLL_LAST);
            found = self
                .lookup::<V>(report, key, site, codec, keep, ahead, true)
                .await;
        }
    }
}
