use std::time::Duration;

use cache_runtime::cached;

// Not a built-in preset: a "did you mean".
#[cached(ttl = "@lisst", key = "a:<id>")]
async fn a(id: u64) -> u64 {
    id
}

// A constant that is a duration, not a preset.
const TEN: Duration = Duration::from_secs(10);

#[cached(ttl = TEN, key = "b:<id>")]
async fn b(id: u64) -> u64 {
    id
}

// Two TTLs.
#[cached(ttl = "1m", ttl = TEN, key = "c:<id>")]
async fn c(id: u64) -> u64 {
    id
}

fn main() {}
