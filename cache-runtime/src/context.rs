//! What the body of a `#[cached]` function says about the value it is
//! computing, from inside: how long it lives, chosen from the result
//! itself (an order that is delivered can live an hour, one that is
//! pending ten seconds), and which tags it carries, chosen from what it
//! read (a page that shows product 42 carries `product:42`). The
//! attribute's `ttl`, `stale` and `fail_safe` stay the defaults; its
//! `tags` are added to.
//!
//! Each call applies to the value that the innermost `#[cached]` (or
//! [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with)) origin
//! call running on this task computes, and returns whether there is one:
//! outside an origin call (a hit, plain code) or in a batch function's
//! body (which computes many values) it changes nothing and returns
//! `false`.
//!
//! ```
//! use std::time::Duration;
//! use cache_runtime::{cached, context};
//!
//! #[derive(Clone)]
//! struct Order { delivered: bool }
//!
//! #[cached(ttl = "10s", key = "order:<id>")]
//! async fn order(id: u64) -> Order {
//!     let order = Order { delivered: id % 2 == 0 };
//!     if order.delivered {
//!         context::ttl(Duration::from_secs(3600));
//!     }
//!     order
//! }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! assert!(order(2).await.delivered);
//! assert!(!context::ttl(Duration::from_secs(1))); // not computing a value here
//! # });
//! ```

use std::time::Duration;

use crate::flight;

/// Sets how long the value being computed is fresh, in place of the
/// function's `ttl` (the in-process copy still lives at most `l1_ttl`,
/// and `jitter` still applies); `false` outside an origin call. See the
/// [module](self).
///
/// ```
/// use std::time::Duration;
/// assert!(!cache_runtime::context::ttl(Duration::from_secs(60))); // no value computed here
/// ```
pub fn ttl(ttl: Duration) -> bool {
    flight::adapt(|adapted| adapted.ttl = Some(ttl))
}

/// Sets how long past its freshness the value being computed is served
/// while one caller refreshes it, in place of the function's `stale`;
/// `false` outside an origin call.
///
/// ```
/// use std::time::Duration;
/// assert!(!cache_runtime::context::stale(Duration::from_secs(60)));
/// ```
pub fn stale(stale: Duration) -> bool {
    flight::adapt(|adapted| adapted.stale = Some(stale))
}

/// Sets how long past its freshness the value being computed answers
/// when the origin fails, in place of the function's `fail_safe`;
/// `false` outside an origin call.
///
/// ```
/// use std::time::Duration;
/// assert!(!cache_runtime::context::fail_safe(Duration::from_secs(3600)));
/// ```
pub fn fail_safe(window: Duration) -> bool {
    flight::adapt(|adapted| adapted.fail_safe = Some(window))
}

/// Tags the value being computed with `tag`, besides the function's own
/// `tags`: [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) and
/// `#[invalidates(tags = [..])]` of that tag, on any instance, invalidate
/// it. `false` outside an origin call. A value given a tag that cannot be
/// one (empty, or longer than [`MAX_TAG_BYTES`](crate::MAX_TAG_BYTES)) or
/// more than [`MAX_TAGS`](crate::MAX_TAGS) distinct tags is returned but
/// not stored (`false`): an invalidation meant for it could not reach it.
///
/// ```
/// use cache_runtime::{cached, context};
///
/// #[derive(Clone)]
/// struct Page { html: String }
///
/// #[cached(ttl = "5m", key = "page:<slug>", tags = ["pages"])]
/// async fn page(slug: String) -> Page {
///     // Found out while rendering: the page shows products 42 and 7.
///     for product in [42, 7] {
///         context::tag(format!("product:{product}"));
///     }
///     Page { html: format!("<h1>{slug}</h1>") }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache = cache_runtime::Cache::global();
/// page("home".into()).await;
/// assert!(cache.exists("page:home").await);
/// cache.invalidate_tag("product:7").await.unwrap();
/// assert!(!cache.exists("page:home").await);
/// # });
/// ```
pub fn tag(tag: impl Into<String>) -> bool {
    let tag = tag.into();
    let mut added = false;
    let in_flight = flight::adapt(|adapted| {
        if crate::tags::check(&tag).is_err() {
            adapted.untagged = true;
        } else if adapted.tags.iter().any(|known| **known == *tag) {
            added = true;
        } else if adapted.tags.len() < crate::MAX_TAGS {
            adapted.tags.push(tag.into());
            added = true;
        } else {
            adapted.untagged = true;
        }
    });
    in_flight && added
}
