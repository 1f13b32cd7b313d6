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
mod ctxt;
mod derive;
// The runtime's own parser, so that both crates read `"2m"` the same way.
// Formatting it is the runtime's business.
#[allow(dead_code)]
#[path = "../../cache-runtime/src/duration.rs"]
#[rustfmt::skip]
mod duration;
mod expand;
mod fallback;
mod key;
mod suggest;
mod valid;

use proc_macro::TokenStream;

/// Caches what a function returns, under a key built from its arguments.
///
/// ```ignore
/// use cache_runtime::cached;
///
/// #[cached(ttl = "2m", key = "order:<tenant>:<id>")]
/// async fn get_order(tenant: &TenantId, id: u64) -> Result<Order, DbError> {
///     db::load_order(tenant, id).await
/// }
///
/// #[cached(ttl = "30s", stale = "5m", key = "orders:list:<tenant>:p<page>")]
/// async fn list_orders(tenant: &TenantId, page: u32) -> Result<Vec<Order>, DbError> {
///     db::list_orders(tenant, page).await
/// }
///
/// impl Catalog {
///     // Methods name what identifies the instance in their key.
///     #[cached(ttl = "1m", key = "price:<self.region>:<sku>")]
///     fn price(&self, sku: &str) -> Option<u64> {
///         self.lookup(sku)
///     }
/// }
/// ```
///
/// Options: `ttl`, `key`, `stale`, `l1_ttl`, `tier`, `none`, `fail_safe`,
/// `timeout`, `lock`, `cache`, `jitter` and `crate`; see the documentation
/// of `cache_runtime::cached`. `Err` is never cached; `None` only with
/// `none = true`. A return type whose last path segment is `Option` or
/// `Result` (`io::Result<T>` too) is treated as such; any other type is
/// cached as it is.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}

/// Removes keys and patterns from the cache after the function succeeded
/// (for a `Result`, on `Ok` only).
///
/// ```ignore
/// use cache_runtime::invalidates;
///
/// #[invalidates("order:<tenant>:<id>", "orders:list:<tenant>:*")]
/// async fn update_order(tenant: &TenantId, id: u64, patch: Patch) -> Result<Order, DbError> {
///     db::update_order(tenant, id, patch).await
/// }
///
/// // `before = true` also invalidates before the call; `cache` names the cache.
/// #[invalidates("rate:<currency>", before = true, cache = "lookups")]
/// fn set_rate(currency: &str, rate: u64) { store(currency, rate) }
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
/// ```ignore
/// use cache_runtime::KeyPart;
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
/// #[derive(KeyPart)]
/// #[key_part(crate = "my_app::cache")] // when the runtime is re-exported
/// struct Sku(u64);
/// ```
#[proc_macro_derive(KeyPart, attributes(key_part))]
pub fn derive_key_part(item: TokenStream) -> TokenStream {
    derive::key_part(item.into()).into()
}
