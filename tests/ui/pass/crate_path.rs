//! `crate = ".."` for a runtime reached through a re-export.

mod infra {
    pub mod cache {
        pub use ::cache_runtime::*;
    }
}

use infra::cache::{cached, invalidates, Cache, KeyPart};

#[derive(KeyPart)]
#[key_part(crate = "crate::infra::cache")]
struct Sku(u64);

#[cached(ttl = "1m", key = "stock:<sku>", crate = "crate::infra::cache")]
fn stock(sku: &Sku) -> u64 {
    sku.0 * 10
}

#[invalidates("stock:*", crate = "crate::infra::cache")]
fn restock() {}

fn main() {
    let cache = Cache::builder().build().unwrap();
    cache.scope_sync(|| {
        assert_eq!(stock(&Sku(2)), 20);
        restock();
    });
}
