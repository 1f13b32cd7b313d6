//! Tags on the handle and in the load engine: invalidating a tag in both
//! tiers, and what a value's flight records of its tags (see
//! [`crate::tags`]).

use super::*;

impl Cache {
    /// Invalidates every value tagged `tag` (by `#[cached(tags = ..)]` or
    /// [`context::tag`](crate::context::tag)), in the cache and all its
    /// named caches (from any of them), in both tiers and on every
    /// instance: one write in process and one per group in Redis, whatever
    /// the number of values tagged (they are not counted: each is
    /// invalidated as it is next read; see [`Stats::tag_invalidations`]).
    /// Loads running meanwhile store nothing in process (none can tell yet
    /// which tags its value will carry), and callers that come after this
    /// do not join them.
    ///
    /// Returns how the shared tier took it (see [`SharedInvalidation`]).
    ///
    /// # Errors
    /// An empty tag, or one longer than [`MAX_TAG_BYTES`](crate::MAX_TAG_BYTES).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use cache_runtime::{context, Cache};
    ///
    /// let cache = Cache::builder().build().unwrap();
    /// let ttl = Duration::from_secs(60);
    /// let page = cache
    ///     .get_or_insert_with("page:home", ttl, || async {
    ///         context::tag("product:42"); // the page shows product 42
    ///         "<html>..</html>".to_string()
    ///     })
    ///     .await;
    /// assert!(cache.exists("page:home").await);
    /// cache.invalidate_tag("product:42").await.unwrap();
    /// assert!(!cache.exists("page:home").await);
    /// # let _ = page;
    /// # });
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) -> Result<SharedInvalidation, crate::TagError> {
        crate::tags::check(tag)?;
        self.invalidate_tag_now(tag);
        self.tag_invalidated(tag);
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            let done = shared.invalidate_tag(&*self.inner, tag).await;
            // Again: what a load brought back from Redis before the mark.
            self.invalidate_tag_now(tag);
            return Ok(done);
        }
        Ok(SharedInvalidation::NotConfigured)
    }

    /// As [`Cache::invalidate_tag`], from a plain `fn` (see
    /// [`Cache::invalidate_everywhere_blocking`]).
    pub(crate) fn invalidate_tag_blocking(&self, tag: &str) -> SharedInvalidation {
        if crate::tags::check(tag).is_err() {
            return SharedInvalidation::NotConfigured; // never a value's tag
        }
        self.invalidate_tag_now(tag);
        self.tag_invalidated(tag);
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            let done = match shared
                .block_on_counted(&*self.inner, shared.invalidate_tag(&*self.inner, tag))
            {
                Some(done) => done,
                None => {
                    shared.defer_tag(tag);
                    SharedInvalidation::Queued("no tokio runtime could be made for redis".into())
                }
            };
            self.invalidate_tag_now(tag);
            return done;
        }
        SharedInvalidation::NotConfigured
    }

    /// The tags of a value its flight computes: `tags` (what its origin
    /// call named, see [`crate::context::tag`]), born when the flight
    /// started; `None` without tags.
    pub(super) fn entry_tags(
        born: u64,
        tags: Vec<Box<str>>,
    ) -> Option<Arc<crate::tags::EntryTags>> {
        if tags.is_empty() {
            return None;
        }
        Some(Arc::new(crate::tags::EntryTags {
            born,
            names: tags.into(),
        }))
    }

    /// Invalidates `tag` in process, in the whole tree of named caches
    /// (which share the stamps). Every running load is marked as an
    /// invalidation marks it, since none can tell yet which tags its value
    /// will carry: it stores nothing in process, answers only the callers
    /// that joined it before, and callers that come now start their own.
    /// Not counted: see [`tag_invalidated`](Self::tag_invalidated).
    pub(crate) fn invalidate_tag_now(&self, tag: &str) {
        self.inner.tag_stamps.invalidate(tag);
        let root = self
            .inner
            .root
            .upgrade()
            .map_or_else(|| self.clone(), |inner| Cache { inner });
        root.mark_all_flights();
    }

    /// Counts a tag invalidation once, and tells the hooks.
    pub(crate) fn tag_invalidated(&self, tag: &str) {
        self.inner.counters.add(Counter::TagInvalidation, 1);
        self.emit(Event::InvalidateTag { tag });
    }

    fn mark_all_flights(&self) {
        self.inner.flights.invalidate_all();
        for child in self.children() {
            child.mark_all_flights();
        }
    }
}
