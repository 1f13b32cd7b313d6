//! The attribute macros of `cache-runtime`: `#[cached]`, `#[invalidates]`
//! and `#[derive(KeyPart)]`. Use them through `cache_runtime`, which
//! re-exports them and documents them with runnable examples.
//!
//! The crate is a small compiler: `attr.rs` parses the arguments, `ast.rs`
//! models the annotated function, `key.rs` parses key templates, `valid.rs`
//! checks everything (reporting every mistake at once) and `expand.rs`
//! generates the new body from the checked model.

#![warn(missing_docs)]

mod ast;
mod attr;
mod batch;
mod ctxt;
mod derive;
mod expand;
mod fallback;
mod key;
mod suggest;
mod valid;

use proc_macro::TokenStream;

/// Caches what a function returns, under a key built from its arguments.
///
/// ```
/// use cache_runtime::{cached, KeyPart};
///
/// #[derive(Clone, KeyPart)]
/// struct TenantId(String);
/// #[derive(Clone, Debug, PartialEq)]
/// struct Order { id: u64 }
/// #[derive(Debug)]
/// struct DbError;
///
/// #[cached(ttl = "2m", key = "order:<tenant>:<id>")]
/// async fn get_order(tenant: &TenantId, id: u64) -> Result<Order, DbError> {
///     Ok(Order { id }) // the slow query
/// }
///
/// #[cached(ttl = "30s", stale = "5m", key = "orders:list:<tenant>:p<page>")]
/// async fn list_orders(tenant: &TenantId, page: u32) -> Result<Vec<Order>, DbError> {
///     Ok(vec![])
/// }
///
/// struct Catalog { region: String }
///
/// impl Catalog {
///     // Methods name what identifies the instance in their key.
///     #[cached(ttl = "1m", key = "price:<self.region>:<sku>", none = true)]
///     fn price(&self, sku: &str) -> Option<u64> {
///         (sku == "apple").then_some(120)
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let acme = TenantId("acme".into());
/// assert_eq!(get_order(&acme, 7).await.unwrap(), Order { id: 7 });
/// assert!(list_orders(&acme, 1).await.unwrap().is_empty());
/// let eu = Catalog { region: "eu".into() };
/// assert_eq!(eu.price("apple"), Some(120));
/// assert_eq!(eu.price("pear"), None); // cached too: `none = true`
/// # });
/// ```
///
/// Options: `ttl`, `key`, `stale`, `l1_ttl`, `tier`, `none`, `fail_safe`,
/// `timeout`, `lock`, `cache`, `jitter`, `skip` and `crate` (see the
/// table in the workspace's docs/attributes.md). With an explicit `key`, every parameter (`self`
/// included) is named in the key or listed in `skip(..)`, e.g.
/// `skip(db, self)`; names starting with `_` are exempt.
/// `Err` is never cached; `None` only with `none = true`. A return type whose
/// last path segment is `Option` or `Result` (`io::Result<T>` too) is
/// treated as such; any other type is cached as it is.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}

/// Removes keys and patterns from the cache after the function succeeded
/// (for a `Result`, on `Ok` only).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use cache_runtime::{cached, invalidates};
///
/// static RATE: AtomicU64 = AtomicU64::new(100);
///
/// #[cached(ttl = "1h", key = "rate:<currency>", cache = "lookups")]
/// fn rate(currency: &str) -> u64 {
///     RATE.load(Ordering::SeqCst)
/// }
///
/// // `before = true` also invalidates before the call; `cache` names the cache.
/// #[invalidates("rate:<currency>", before = true, cache = "lookups")]
/// fn set_rate(currency: &str, rate: u64) -> Result<(), String> {
///     RATE.store(rate, Ordering::SeqCst);
///     Ok(())
/// }
///
/// #[invalidates("rate:*", cache = "lookups")]
/// fn reset_rates() {}
///
/// assert_eq!(rate("EUR"), 100);
/// set_rate("EUR", 105).unwrap();
/// assert_eq!(rate("EUR"), 105); // the old value was removed after the write
/// reset_rates();
/// ```
///
/// Patterns use the placeholders of keys, and `*` (any text, within and
/// across `:` segments). The keys are built before the body runs, so the
/// body may consume its arguments.
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::invalidates(args.into(), item.into()).into()
}

/// Implements `KeyPart` for a struct (from its fields) or for an enum of
/// unit variants (from the variant's name).
///
/// ```
/// use cache_runtime::{key_text, KeyPart};
///
/// #[derive(KeyPart)]
/// struct TenantId(String);          // writes the string
///
/// #[derive(KeyPart)]
/// struct Region { country: String, zone: u8 }   // writes `country,zone`
///
/// #[derive(KeyPart)]
/// enum Currency { Eur, Usd }        // writes `Eur` or `Usd`
///
/// assert_eq!(key_text(&TenantId("a:b".into())), "a%3Ab");
/// assert_eq!(key_text(&Region { country: "fr".into(), zone: 2 }), "fr,2");
/// assert_eq!(key_text(&Currency::Usd), "Usd");
/// ```
///
/// When the runtime is re-exported under another path, say where:
/// `#[key_part(crate = "my_app::cache")]`.
#[proc_macro_derive(KeyPart, attributes(key_part))]
pub fn derive_key_part(item: TokenStream) -> TokenStream {
    derive::key_part(item.into()).into()
}
