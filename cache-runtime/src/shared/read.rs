//! Reads of the shared tier: the leader's lookup of a key (with the
//! distributed lock on a miss, see `lock`), and `exists`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::{unix_ms, ValueCodec};
use super::lock::LockGuard;
use super::{Report, SharedTier};
use crate::entry::AnyValue;
use crate::envelope::{Deadlines, EnvelopeError};
use crate::hooks::{Event, Tier};
use crate::l2::Read;
use crate::site::Site;
use crate::stats::Counter;

/// Permission to fill the shared tier: the generation the leader read
/// before its origin call, and when.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    pub(super) generation: u64,
    pub(super) read_at: Instant,
}

/// What a value found in the shared tier came with.
pub(crate) struct Stored {
    pub(crate) deadlines: Deadlines,
    /// Its encoded length.
    pub(crate) len: usize,
    /// The tags it carries.
    pub(crate) tags: Vec<Box<str>>,
}

/// What the leader's lookup in the shared tier found.
pub(crate) enum Found {
    /// A fresh value of the type asked for, and what it came with.
    Value(AnyValue, Stored),
    /// Nothing fresh; a fill may follow when there is a ticket (none when
    /// the shared tier could not be read). The value found past its
    /// freshness but still kept (`stale`, `fail_safe`), if any: the answer
    /// when the origin fails.
    Miss(Option<Ticket>, Option<AnyValue>),
}

impl SharedTier {
    /// Looks `key` up, as the leader of its flight, for a function that
    /// keeps values `keep` past their freshness; a value fresh for less
    /// than `ahead` more counts as past it (a refresh ahead of expiry
    /// looks for a newer one). With `poll` (a leader
    /// waiting for another instance's lock, looking again and again) no
    /// miss is counted and the breaker is not told: one miss was counted,
    /// and its looks say nothing new about Redis's health.
    #[allow(clippy::too_many_arguments)] // the lookup's, and its windows
    pub(crate) async fn lookup<V: 'static>(
        &self,
        report: &dyn Report,
        key: &str,
        site: &Site,
        codec: ValueCodec,
        keep: Duration,
        ahead: Duration,
        poll: bool,
    ) -> Found {
        let Some(store) = self.guarded_store(report) else {
            return Found::Miss(None, None);
        };
        let read_at = Instant::now();
        match store.read_checked(key).await {
            Ok(read) => {
                if !poll {
                    self.breaker.success();
                }
                self.found::<V>(report, read, read_at, site, codec, (keep, ahead), poll)
            }
            Err(e) => {
                self.failed(report, "GET", &e);
                Found::Miss(None, None)
            }
        }
    }

    /// Looks each of `keys` up as [`lookup`](Self::lookup) does, in one
    /// `MGET` per group (see
    /// [`read_checked_batch`](crate::l2::coherent::Coherent::read_checked_batch)):
    /// what it found, per key in order.
    pub(crate) async fn lookup_many<V: 'static>(
        &self,
        report: &dyn Report,
        keys: &[&str],
        site: &Site,
        codec: ValueCodec,
        keep: Duration,
    ) -> Vec<Found> {
        let misses = || keys.iter().map(|_| Found::Miss(None, None)).collect();
        let Some(store) = self.guarded_store(report) else {
            return misses();
        };
        let read_at = Instant::now();
        match store.read_checked_batch(keys).await {
            Ok(reads) => {
                self.breaker.success();
                reads
                    .into_iter()
                    .map(|read| {
                        self.found::<V>(
                            report,
                            read,
                            read_at,
                            site,
                            codec,
                            (keep, Duration::ZERO),
                            false,
                        )
                    })
                    .collect()
            }
            Err(e) => {
                self.failed(report, "MGET", &e);
                misses()
            }
        }
    }

    /// What a checked read made at `read_at` found for a function of
    /// `codec` that keeps values `keep` past their freshness, looking
    /// `ahead` (see [`lookup`](Self::lookup)); counted unless `poll`.
    #[allow(clippy::too_many_arguments)] // the lookup's, and the read
    fn found<V: 'static>(
        &self,
        report: &dyn Report,
        read: Read,
        read_at: Instant,
        site: &Site,
        codec: ValueCodec,
        (keep, ahead): (Duration, Duration),
        poll: bool,
    ) -> Found {
        let missed = || {
            if !poll {
                site.counters.add(Counter::L2Miss, 1);
            }
        };
        let undecodable = matches!(read, Read::Undecodable { .. });
        let (stored, start, generation, tags) = match read {
            Read::Value {
                bytes,
                start,
                generation,
                tags,
                ..
            } => (bytes, start, generation, tags),
            Read::Absent { generation } | Read::Undecodable { generation } => {
                if undecodable {
                    site.counters.add(Counter::L2Undecodable, 1);
                }
                missed();
                let ticket = Ticket {
                    generation,
                    read_at,
                };
                return Found::Miss(Some(ticket), None);
            }
            Read::Corrupt { what } => {
                self.corrupt(report, what);
                missed();
                return Found::Miss(None, None);
            }
        };
        let ticket = Some(Ticket {
            generation,
            read_at,
        });
        let bytes = &stored[start..];
        // The value's `Deserialize` is user code, fed bytes from outside: a
        // panic is one more undecodable value.
        let envelope = self.envelope;
        let decoded = std::panic::catch_unwind(|| (codec.decode)(&envelope, bytes))
            .unwrap_or(Err(EnvelopeError::Panicked));
        let now = unix_ms();
        match decoded {
            Ok((value, deadlines))
                if value.is::<V>() && deadlines.is_fresh(now.saturating_add(millis(ahead))) =>
            {
                site.counters.add(Counter::L2Hit, 1);
                report.emit(Event::Hit {
                    template: site.template,
                    tier: Tier::L2,
                });
                let len = bytes.len();
                Found::Value(
                    value,
                    Stored {
                        deadlines,
                        len,
                        tags,
                    },
                )
            }
            // Past its freshness: the origin is called, and this answers
            // if it fails, within this function's window (whoever wrote it).
            Ok((value, deadlines)) if value.is::<V>() && now < kept_until_ms(&deadlines, keep) => {
                missed();
                Found::Miss(ticket, Some(value))
            }
            // Another type (two functions sharing a key), or expired.
            Ok(_) => {
                missed();
                Found::Miss(ticket, None)
            }
            Err(_) => {
                site.counters.add(Counter::L2Undecodable, 1);
                missed();
                Found::Miss(ticket, None)
            }
        }
    }

    /// The leader's lookup; with `lock` (or the cache's `lock` setting),
    /// on a miss, single flight across instances (see
    /// [`wait_for_lock`](Self::wait_for_lock)).
    #[allow(clippy::too_many_arguments)] // the lookup's, and the lock
    pub(crate) async fn lead<V: 'static>(
        self: &Arc<Self>,
        report: &dyn Report,
        key: &str,
        site: &Site,
        codec: ValueCodec,
        (keep, ahead): (Duration, Duration),
        lock: bool,
    ) -> (Found, Option<LockGuard>) {
        let found = self
            .lookup::<V>(report, key, site, codec, keep, ahead, false)
            .await;
        // A value, or Redis failing: nothing to coordinate.
        if !(lock || self.lock_all) || !matches!(found, Found::Miss(Some(_), _)) {
            return (found, None);
        }
        // Boxed: the wait would otherwise weigh on every lookup's future.
        Box::pin(self.wait_for_lock::<V>(report, key, site, codec, keep, ahead, found)).await
    }

    /// Whether the shared tier holds a fresh value under `key`, of any
    /// type; `false` when it cannot say (Redis failing, the breaker open).
    pub(crate) async fn exists(&self, report: &dyn Report, key: &str) -> bool {
        let Some(store) = self.guarded_store(report) else {
            return false;
        };
        match store.read_checked(key).await {
            Ok(Read::Value { bytes, start, .. }) => {
                self.breaker.success();
                self.envelope
                    .header(&bytes[start..])
                    .is_ok_and(|header| header.deadlines.is_fresh(unix_ms()))
            }
            Ok(Read::Absent { .. } | Read::Undecodable { .. }) => {
                self.breaker.success();
                false
            }
            Ok(Read::Corrupt { what, .. }) => {
                self.breaker.success();
                self.corrupt(report, what);
                false
            }
            Err(e) => {
                self.failed(report, "GET", &e);
                false
            }
        }
    }
}

/// The end of the window in which a value with `deadlines` may answer for
/// a function that keeps values `keep` past their freshness: its writer's
/// window, cut to the function's.
pub(crate) fn kept_until_ms(deadlines: &Deadlines, keep: Duration) -> u64 {
    let own = deadlines.fresh_until_ms.saturating_add(millis(keep));
    deadlines.stale_until_ms.min(own)
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
