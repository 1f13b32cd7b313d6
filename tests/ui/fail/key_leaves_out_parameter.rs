use cache_runtime::cached;

// `user(1, true)` would answer with the value of `user(1, false)`.
#[cached(ttl = "1m", key = "user:<id>")]
async fn user(id: u64, include_deleted: bool) -> String {
    format!("{id}{include_deleted}")
}

struct Db;

// A `skip` that already lists a parameter is extended in the suggestion.
#[cached(ttl = "1m", key = "order:<id>", skip(db))]
fn order(db: &Db, id: u64, currency: &str) -> String {
    let _ = db;
    format!("{id}{currency}")
}

// A pattern parameter cannot be named in a key.
#[cached(ttl = "1m", key = "sum:<id>")]
fn sum(id: u8, (a, b): (u8, u8)) -> u16 {
    u16::from(id) + u16::from(a) + u16::from(b)
}

struct Catalog {
    region: String,
}

impl Catalog {
    // Every instance would share one value per key.
    #[cached(ttl = "1m", key = "price:<sku>")]
    fn price(&self, sku: &str) -> u64 {
        self.region.len() as u64 + sku.len() as u64
    }
}

fn main() {}
