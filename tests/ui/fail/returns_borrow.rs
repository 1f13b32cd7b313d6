use cache_runtime::cached;

struct Catalog {
    name: String,
}

impl Catalog {
    #[cached(ttl = "1m", key = "name:<id>", skip(self))]
    fn name(&self, id: u64) -> &str {
        let _ = id;
        &self.name
    }
}

#[derive(Clone)]
struct Order {
    id: u64,
}

#[cached(ttl = "1m", key = "order:<id>")]
fn order<'a>(id: &'a Order) -> &'a Order {
    id
}

#[cached(ttl = "1m", key = "first:<id>", skip(orders))]
fn first(orders: &[Order], id: u64) -> Option<&Order> {
    orders.iter().find(|o| o.id == id)
}

fn main() {}

// An error is returned, not stored: it may borrow (no error here).
#[cached(ttl = "1m", key = "check:<id>", skip(name))]
fn check<'a>(id: u64, name: &'a str) -> Result<u64, &'a str> {
    if id == 0 { Err(name) } else { Ok(id) }
}
