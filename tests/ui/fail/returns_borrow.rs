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
