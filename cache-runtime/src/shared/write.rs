//! Writes to the shared tier: the fill after an origin call (checked
//! against the invalidations since the leader's read), the handle's `set`,
//! and invalidations, queued when Redis cannot take them (see `recovery`).

use std::any::Any;
use std::sync::atomic::Ordering;

use super::codec::{unix_ms, ValueCodec};
use super::read::{millis, Ticket};
use super::{Report, SharedTier};
use crate::entry::Life;
use crate::envelope::Deadlines;
use crate::invalidation::SharedInvalidation;
use crate::l2::coherent::{Coherent, Fill};
use crate::l2::L2Error;
use crate::pattern::Pattern;
use crate::pending::Pending;
use crate::stats::Counter;

/// Sends an invalidation to Redis (and, with it, to the other instances).
/// Behind Sentinel or on a cluster with replicas, it is done once a
/// replica of each primary it wrote to holds it too.
pub(super) async fn send(store: &Coherent, item: &Pending) -> Result<SharedInvalidation, L2Error> {
    let epoch = store.master_epoch();
    let (done, key) = match item {
        Pending::Pattern(pattern) => (store.invalidate_checked(pattern).await, pattern.exact_key()),
        Pending::Tag(tag) => (store.invalidate_tag(tag).await, None),
        Pending::Clear => (
            store.clear_checked().await.map(SharedInvalidation::Scanned),
            None,
        ),
    };
    let done = done?;
    store.replicated(epoch, key).await?;
    Ok(done)
}

impl SharedTier {
    /// Writes a value the origin returned, with its tags, unless an
    /// invalidation newer than the leader's read (`ticket`) covers its key
    /// or a tag; returns whether it did.
    pub(crate) async fn fill(
        &self,
        report: &dyn Report,
        key: &str,
        ticket: Ticket,
        (value, tags): (&(dyn Any + Send + Sync), &[Box<str>]),
        codec: ValueCodec,
        life: Life,
    ) -> bool {
        let Some(store) = self.guarded_store(report) else {
            return false;
        };
        let Some(bytes) = self.encode(report, value, codec, life) else {
            return false;
        };
        let ttl = life.ttl.saturating_add(life.keep);
        let filled = store
            .fill_checked(key, ticket.generation, ticket.read_at, (&bytes, tags), ttl)
            .await;
        match filled {
            Ok(Fill::Stored) => {
                self.breaker.success();
                report.count(Counter::L2Set, 1);
                true
            }
            Ok(Fill::Refused) => {
                self.breaker.success();
                report.count(Counter::L2FillRejected, 1);
                false
            }
            Ok(Fill::Corrupt(what)) => {
                self.breaker.success();
                report.count(Counter::L2FillRejected, 1);
                self.corrupt(report, what);
                false
            }
            Err(e) => {
                self.failed(report, "FILL", &e);
                false
            }
        }
    }

    /// Writes `value` as the key's newest value (see `set_checked`), for
    /// every instance; returns whether it did.
    pub(crate) async fn set(
        &self,
        report: &dyn Report,
        key: &str,
        value: &(dyn Any + Send + Sync),
        codec: ValueCodec,
        life: Life,
    ) -> bool {
        let Some(store) = self.guarded_store(report) else {
            return false;
        };
        let Some(bytes) = self.encode(report, value, codec, life) else {
            return false;
        };
        let ttl = life.ttl.saturating_add(life.keep);
        match store.set_checked(key, &bytes, ttl).await {
            Ok(()) => {
                self.breaker.success();
                report.count(Counter::L2Set, 1);
                true
            }
            Err(e) => {
                self.failed(report, "SET", &e);
                false
            }
        }
    }

    /// Encodes `value` with `life`'s deadlines; `None` (counted as an
    /// error) when it cannot be: too large, or its `Serialize` failed or
    /// panicked (user code: the panic costs the write only). The value
    /// then stays in process.
    fn encode(
        &self,
        report: &dyn Report,
        value: &(dyn Any + Send + Sync),
        codec: ValueCodec,
        life: Life,
    ) -> Option<Vec<u8>> {
        let fresh_until = unix_ms().saturating_add(millis(life.ttl));
        let deadlines = Deadlines::new(fresh_until, fresh_until.saturating_add(millis(life.keep)));
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (codec.encode)(value, &self.envelope, deadlines)
        }));
        match encoded {
            Ok(Ok(bytes)) => Some(bytes),
            _ => {
                report.count(Counter::Error, 1);
                None
            }
        }
    }

    /// Invalidates `pattern` for every instance; queues it when Redis
    /// cannot take it now.
    pub(crate) async fn invalidate(
        &self,
        report: &dyn Report,
        pattern: &Pattern,
    ) -> SharedInvalidation {
        self.invalidate_item(report, Pending::Pattern(pattern.clone()))
            .await
    }

    /// Invalidates every value carrying `tag`, for every instance; queues
    /// it when Redis cannot take it now.
    pub(crate) async fn invalidate_tag(
        &self,
        report: &dyn Report,
        tag: &str,
    ) -> SharedInvalidation {
        self.invalidate_item(report, Pending::Tag(tag.into())).await
    }

    /// Invalidates the whole namespace.
    pub(crate) async fn clear(&self, report: &dyn Report) {
        self.invalidate_item(report, Pending::Clear).await;
    }

    async fn invalidate_item(&self, report: &dyn Report, item: Pending) -> SharedInvalidation {
        match self.store_now() {
            Some(store) => self.invalidate_in(report, store, item).await,
            None => SharedInvalidation::NotConfigured,
        }
    }

    async fn invalidate_in(
        &self,
        report: &dyn Report,
        store: &Coherent,
        item: Pending,
    ) -> SharedInvalidation {
        // Twice at most: the breaker may close between the look and the
        // queueing, and then the invalidation goes now.
        for _ in 0..2 {
            if !self.breaker.takes_invalidations() {
                if self.defer(&item, false) {
                    self.deliver_unmarked(&item);
                    return SharedInvalidation::Queued("the circuit breaker is open".into());
                }
                continue;
            }
            return match send(store, &item).await {
                Ok(done) => {
                    self.breaker.success();
                    report.count(Counter::Delete, done.removed().unwrap_or(0));
                    done
                }
                Err(e) => {
                    self.failed(report, "INVALIDATE", &e);
                    self.defer(&item, true);
                    SharedInvalidation::Queued(e.to_string())
                }
            };
        }
        // The breaker changed twice meanwhile: queue it regardless.
        self.defer(&item, true);
        SharedInvalidation::Queued("the circuit breaker is changing state".into())
    }

    /// Still removes and announces an invalidation queued while the
    /// breaker is open, in the background (the caller does not wait), in
    /// case Redis answers although this instance's breaker is open: a full
    /// Redis refuses the invalidation's marks but takes `UNLINK` and
    /// `PUBLISH`. One at a time: while one runs, the next is only queued
    /// (as all are, to be marked on replay).
    fn deliver_unmarked(&self, item: &Pending) {
        if *item == Pending::Clear || self.delivering.swap(true, Ordering::AcqRel) {
            return;
        }
        let (tier, item) = (self.this.clone(), item.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.delivering.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(async move {
            let Some(tier) = tier.upgrade() else { return };
            if let Some(store) = tier.store() {
                match &item {
                    Pending::Pattern(pattern) => store.remove_and_announce(pattern).await,
                    Pending::Tag(tag) => store.announce_tag(tag).await,
                    Pending::Clear => {}
                }
            }
            tier.delivering.store(false, Ordering::Release);
        });
    }

    /// Queues `tag`'s invalidation for when Redis can take it.
    pub(crate) fn defer_tag(&self, tag: &str) {
        self.defer(&Pending::Tag(tag.into()), true);
    }

    /// Invalidates `pattern` from a plain `fn`, and waits for it (see
    /// [`SharedTier::block_on`]). Queued when no runtime can run it.
    pub(crate) fn invalidate_blocking(
        &self,
        report: &dyn Report,
        pattern: &Pattern,
    ) -> SharedInvalidation {
        match self.block_on_counted(report, self.invalidate(report, pattern)) {
            Some(done) => done,
            None => {
                self.defer(&Pending::Pattern(pattern.clone()), true);
                SharedInvalidation::Queued("no tokio runtime could be made for redis".into())
            }
        }
    }
}
