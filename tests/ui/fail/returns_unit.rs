use cache_runtime::cached;

#[cached(ttl = "30s", key = "log:<id>")]
fn log_order(id: u64) {
    println!("{id}");
}

#[cached(ttl = "30s", key = "log2:<id>")]
async fn log_order_async(id: u64) -> () {
    println!("{id}");
}

fn main() {}
