use cache_runtime::invalidates;

#[invalidates]
fn update_order(id: u64) {
    let _ = id;
}

#[invalidates(before = true)]
fn update_other(id: u64) {
    let _ = id;
}

fn main() {}
