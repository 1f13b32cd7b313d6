use cache_runtime::invalidates;

#[invalidates("orders:<tenant>:?", before = true, "order:<id>", ttl = "1m")]
fn update_order(tenant: &str, id: u64) {
    let _ = (tenant, id);
}

#[invalidates("")]
fn update_other(id: u64) {
    let _ = id;
}

fn main() {}
