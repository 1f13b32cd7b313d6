use cache_runtime::cached;

struct Repo {
    tenant: String,
}

impl Repo {
    #[cached(ttl = "30s")]
    fn user(&self, id: u64) -> String {
        format!("{}:{id}", self.tenant)
    }
}

fn main() {}
