//! Invalidations that could not reach the shared tier, kept in order until
//! they can. Bounded: past the bound, everything queued is replaced by one
//! clear of the namespace, which covers it all; so is an invalidation whose
//! replay failed [`REPLAY_ATTEMPTS`] times (a pattern too costly for the
//! server's timeout, say), rather than replayed forever.

use std::collections::VecDeque;

use crate::pattern::Pattern;

/// One queued invalidation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pending {
    Pattern(Pattern),
    /// Every value carrying this tag.
    Tag(Box<str>),
    /// The whole namespace: a `clear`, or the queue's overflow.
    Clear,
}

/// Replays of one pattern that may fail before it is widened to a clear.
pub(crate) const REPLAY_ATTEMPTS: u32 = 3;

pub(crate) struct Queue {
    items: VecDeque<(u64, Pending)>,
    next: u64,
    bound: usize,
    /// The item being replayed: it may reach Redis before or after a
    /// change made meanwhile, so it covers no new push.
    replaying: Option<u64>,
    /// Failed replays of the oldest item in a row.
    failures: u32,
    /// Invalidations queued (not covered by one already queued), and
    /// overflows, since the start.
    pub(crate) queued: u64,
    pub(crate) overflows: u64,
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Already queued, and not yet replayed.
    Known,
    /// The bound was reached: the queue is now one clear.
    Overflowed,
}

impl Queue {
    pub(crate) fn new(bound: usize) -> Queue {
        Queue {
            items: VecDeque::new(),
            next: 0,
            bound: bound.max(1),
            replaying: None,
            failures: 0,
            queued: 0,
            overflows: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn push(&mut self, item: Pending) -> Pushed {
        // An item waiting to be replayed covers a new one like it, and a
        // clear waiting covers everything: replayed later than this push,
        // it binds every fill that read before it.
        let covered = self.items.iter().any(|(ticket, queued)| {
            Some(*ticket) != self.replaying && (*queued == item || *queued == Pending::Clear)
        });
        if covered {
            return Pushed::Known;
        }
        self.queued += 1;
        if item == Pending::Clear {
            self.keep_replaying_only();
        } else if self.items.len() >= self.bound {
            self.overflows += 1;
            self.keep_replaying_only();
            self.enqueue(Pending::Clear);
            return Pushed::Overflowed;
        }
        self.enqueue(item);
        Pushed::Queued
    }

    /// Drops what waits (a clear queued now covers it), keeping the item
    /// being replayed, whose end the replay reports.
    fn keep_replaying_only(&mut self) {
        let replaying = self.replaying;
        self.items.retain(|(ticket, _)| Some(*ticket) == replaying);
    }

    fn enqueue(&mut self, item: Pending) {
        self.items.push_back((self.next, item));
        self.next += 1;
    }

    /// The oldest invalidation, to replay now, and its ticket for
    /// [`done`](Queue::done) or [`failed`](Queue::failed).
    pub(crate) fn replay_next(&mut self) -> Option<(u64, Pending)> {
        let next = self.items.front().cloned()?;
        self.replaying = Some(next.0);
        Some(next)
    }

    /// The replay of `ticket` went through.
    pub(crate) fn done(&mut self, ticket: u64) {
        self.items.retain(|(t, _)| *t != ticket);
        self.replaying = None;
        self.failures = 0;
    }

    /// The replay failed: the item waits again, or after
    /// [`REPLAY_ATTEMPTS`] failures in a row, the queue becomes one clear
    /// (counted as an overflow). Returns whether it did.
    pub(crate) fn failed(&mut self) -> bool {
        self.replaying = None;
        self.failures += 1;
        let widen = self.failures >= REPLAY_ATTEMPTS
            && self
                .items
                .front()
                .is_some_and(|(_, item)| *item != Pending::Clear);
        if widen {
            self.failures = 0;
            self.overflows += 1;
            self.items.clear();
            self.enqueue(Pending::Clear);
        }
        widen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pending {
        Pending::Pattern(Pattern::parse(p).unwrap())
    }

    #[test]
    fn keeps_order_drops_repeats_and_overflows_into_a_clear() {
        let mut q = Queue::new(3);
        assert_eq!(q.push(pattern("a")), Pushed::Queued);
        assert_eq!(q.push(pattern("b:*")), Pushed::Queued);
        assert_eq!(q.push(pattern("a")), Pushed::Known);
        let (first, item) = q.replay_next().unwrap();
        assert_eq!(item, pattern("a"));
        q.done(first);
        assert_eq!(q.replay_next().unwrap().1, pattern("b:*"));
        q.failed();
        q.push(pattern("c"));
        q.push(pattern("d"));
        assert_eq!(q.push(pattern("e")), Pushed::Overflowed);
        assert_eq!(q.len(), 1);
        // A clear waiting covers whatever comes until it is replayed.
        assert_eq!(q.push(pattern("f")), Pushed::Known);
        let (clear, item) = q.replay_next().unwrap();
        assert_eq!(item, Pending::Clear);
        // Not while it is being replayed: it may have reached Redis already.
        assert_eq!(q.push(pattern("g")), Pushed::Queued);
        q.done(clear);
        assert_eq!(q.replay_next().unwrap().1, pattern("g"));
    }

    #[test]
    fn a_pattern_that_keeps_failing_is_widened_to_a_clear() {
        let mut q = Queue::new(8);
        q.push(pattern("q:*a*b"));
        q.push(pattern("c"));
        for _ in 1..REPLAY_ATTEMPTS {
            q.replay_next();
            assert!(!q.failed());
        }
        q.replay_next();
        assert!(q.failed());
        assert_eq!((q.len(), q.overflows), (1, 1));
        let (ticket, item) = q.replay_next().unwrap();
        assert_eq!(item, Pending::Clear);
        // A clear is never widened: it is retried until it goes through.
        for _ in 0..2 * REPLAY_ATTEMPTS {
            assert!(!q.failed());
            q.replay_next();
        }
        q.done(ticket);
        assert_eq!(q.len(), 0);
        // A success in between starts the count again.
        q.push(pattern("d"));
        q.replay_next();
        q.failed();
        let (ticket, _) = q.replay_next().unwrap();
        q.done(ticket);
        q.push(pattern("e"));
        for _ in 1..REPLAY_ATTEMPTS {
            q.replay_next();
            assert!(!q.failed());
        }
    }

    #[test]
    fn an_item_being_replayed_covers_no_new_push() {
        let mut q = Queue::new(8);
        q.push(pattern("a"));
        let (ticket, _) = q.replay_next().unwrap();
        assert_eq!(q.push(pattern("a")), Pushed::Queued);
        q.done(ticket);
        assert_eq!(q.len(), 1);
        // An overflow keeps the item being replayed, and replaces the rest.
        let mut q = Queue::new(1);
        q.push(pattern("a"));
        let (ticket, _) = q.replay_next().unwrap();
        assert_eq!(q.push(pattern("b")), Pushed::Overflowed);
        q.done(ticket);
        assert_eq!((q.len(), q.replay_next().unwrap().1), (1, Pending::Clear));
        // A clear supersedes what waits before it.
        let mut q = Queue::new(8);
        q.push(pattern("a"));
        q.push(Pending::Clear);
        assert_eq!(q.len(), 1);
    }
}
