use cache_runtime::cached;

struct Counter {
    id: u64,
    n: u64,
}

impl Counter {
    #[cached(ttl = "30s", key = "next:<self.id>")]
    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

fn main() {}
