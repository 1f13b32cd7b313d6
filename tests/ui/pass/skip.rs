//! `skip(..)`: every parameter of a function with an explicit key is in the
//! key or skipped; `_`-prefixed names and patterns binding nothing need
//! neither.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::cached;

struct Db {
    calls: AtomicU64,
}

#[cached(ttl = "1m", key = "order:<id>", skip(db))]
fn order(db: &Db, id: u64) -> u64 {
    db.calls.fetch_add(1, Ordering::SeqCst);
    id * 10
}

// Visibly unused parameters need no `skip`.
#[cached(ttl = "1m", key = "plain:<id>")]
fn plain(id: u64, _trace: &str, _: bool) -> u64 {
    id
}

// Without `key`, skipped parameters are left out of the default key.
#[cached(ttl = "1m", skip(db))]
fn default_key(db: &Db, id: u64) -> u64 {
    db.calls.fetch_add(1, Ordering::SeqCst);
    id + 1
}

struct Catalog {
    tenant: String,
    db: Db,
}

impl Catalog {
    // A field of `self` in the key counts for `self`.
    #[cached(ttl = "1m", key = "price:<self.tenant>:<sku>")]
    fn price(&self, sku: &str) -> u64 {
        self.db.calls.fetch_add(1, Ordering::SeqCst);
        sku.len() as u64
    }

    // The result does not depend on the instance.
    #[cached(ttl = "1m", key = "tax:<r#type>", skip(self))]
    fn tax(&self, r#type: &str) -> u64 {
        self.db.calls.fetch_add(1, Ordering::SeqCst);
        r#type.len() as u64
    }
}

fn main() {
    let db = Db { calls: AtomicU64::new(0) };
    assert_eq!(order(&db, 1), 10);
    assert_eq!(order(&Db { calls: AtomicU64::new(0) }, 1), 10);
    assert_eq!(db.calls.load(Ordering::SeqCst), 1);
    assert_eq!(plain(2, "a", true), 2);
    assert_eq!(default_key(&db, 3), 4);
    assert_eq!(default_key(&db, 3), 4);
    assert_eq!(db.calls.load(Ordering::SeqCst), 2);

    let eu = Catalog { tenant: "eu".into(), db: Db { calls: AtomicU64::new(0) } };
    let us = Catalog { tenant: "us".into(), db: Db { calls: AtomicU64::new(0) } };
    assert_eq!(eu.price("apple"), 5);
    assert_eq!(us.price("apple"), 5);
    assert_eq!(us.db.calls.load(Ordering::SeqCst), 1, "keyed by tenant");
    assert_eq!(eu.tax("vat"), 3);
    assert_eq!(us.tax("vat"), 3);
    assert_eq!(us.db.calls.load(Ordering::SeqCst), 1, "shared by every instance");
}
