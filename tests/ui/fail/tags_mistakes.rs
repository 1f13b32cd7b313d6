use std::collections::HashMap;

use cache_runtime::{cached, invalidates};

// One string, not a list.
#[cached(ttl = "1m", key = "a:<id>", tags = "item:<id>")]
async fn one(id: u64) -> u64 {
    id
}

// Not strings; an empty list.
#[cached(ttl = "1m", key = "b:<id>", tags = [id])]
async fn not_strings(id: u64) -> u64 {
    id
}

#[cached(ttl = "1m", key = "c:<id>", tags = [])]
async fn empty(id: u64) -> u64 {
    id
}

// A wildcard, glob syntax, a placeholder that names no parameter.
#[cached(ttl = "1m", key = "d:<id>", tags = ["item:*", "item:[<id>]", "owner:<idd>"])]
async fn wrong(id: u64) -> u64 {
    id
}

// A batch function takes no tags.
#[cached(ttl = "1m", key = "e:<ids>", batch = "ids", tags = ["items"])]
async fn batch(ids: &[u64]) -> HashMap<u64, u64> {
    ids.iter().map(|id| (*id, *id)).collect()
}

// `#[invalidates]` with a bad tag, and with nothing to invalidate.
#[invalidates(tags = ["item:<idd>", ""])]
async fn touch(id: u64) {
    let _ = id;
}

fn main() {}
