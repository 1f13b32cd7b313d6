use cache_runtime::cached;

struct Filter {
    org: String,
}

#[cached(ttl = "30s", key = "orders:<filter>")]
fn list_orders(filter: &Filter) -> Vec<String> {
    vec![filter.org.clone()]
}

fn main() {}
