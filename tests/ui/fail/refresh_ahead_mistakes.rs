use cache_runtime::cached;

// A share that refreshes on every hit, and one that never does.
#[cached(ttl = "1m", key = "a:<id>", refresh_ahead = "0%")]
async fn a(id: u64) -> u64 {
    id
}

#[cached(ttl = "1m", key = "b:<id>", refresh_ahead = "100%")]
async fn b(id: u64) -> u64 {
    id
}

// Not a percentage.
#[cached(ttl = "1m", key = "c:<id>", refresh_ahead = "0.8")]
async fn c(id: u64) -> u64 {
    id
}

// Nothing kept in process to watch.
#[cached(ttl = "1m", key = "d:<id>", refresh_ahead = "80%", tier = "l2")]
async fn d(id: u64) -> u64 {
    id
}

// A plain `fn`: no task to refresh in.
#[cached(ttl = "1m", key = "e:<id>", refresh_ahead = "80%")]
fn e(id: u64) -> u64 {
    id
}

struct Db;

impl Db {
    // The refresh outlives the call, so it cannot borrow `self`.
    #[cached(ttl = "1m", key = "f:<id>", refresh_ahead = "80%", skip(self))]
    async fn f(&self, id: u64) -> u64 {
        id
    }
}

// A batch: ids due are loaded again once expired.
#[cached(ttl = "1m", key = "g:<ids>", batch = "ids", refresh_ahead = "80%")]
async fn g(ids: &[u64]) -> std::collections::HashMap<u64, u64> {
    ids.iter().map(|id| (*id, *id)).collect()
}

fn main() {}
