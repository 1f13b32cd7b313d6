//! Batch functions: every collection of ids and every answer a batch
//! takes, methods, owned and borrowed arguments, values kept in process.
#![deny(missing_docs, unused)]

//! A crate.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use cache_runtime::{cached, Cache};

/// A catalogue.
pub struct Catalogue {
    /// Its region.
    pub region: String,
}

impl Catalogue {
    /// A method, keyed by a field of `self`.
    #[cached(ttl = "1m", key = "name:<self.region>:<ids>", batch = "ids")]
    pub async fn names(&self, ids: &Vec<u32>) -> Vec<(u32, String)> {
        ids.iter().map(|id| (*id, format!("{}{id}", self.region))).collect()
    }
}

/// A `HashSet` of string ids, an owned argument used in the body.
#[cached(ttl = "1m", key = "sku:<tenant>:<ids>", batch = "ids")]
pub async fn skus(tenant: String, ids: HashSet<String>) -> Result<BTreeMap<String, usize>, String> {
    Ok(ids.into_iter().map(|id| (id.clone(), id.len() + tenant.len())).collect())
}

/// A borrowed set, an unused argument left out of the key.
#[cached(ttl = "1m", key = "n:<ids>", batch = "ids", skip(_log))]
pub async fn squares(_log: &str, ids: &BTreeSet<u64>) -> HashMap<u64, u64> {
    ids.iter().map(|id| (*id, id * id)).collect()
}

/// A queue of ids; a value that is not serde, kept in process.
#[cached(ttl = "1m", key = "label:<ids>", batch = "ids", tier = "l1", none = true)]
pub async fn labels(mut ids: VecDeque<u8>) -> HashMap<u8, std::sync::Arc<str>> {
    ids.pop_front();
    ids.into_iter().map(|id| (id, id.to_string().into())).collect()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache = Cache::builder().build().unwrap();
    rt.block_on(cache.scope(async {
        let catalogue = Catalogue { region: "eu".into() };
        assert_eq!(catalogue.names(&vec![1, 2]).await.len(), 2);
        let found = skus("t".into(), HashSet::from(["ab".to_string()])).await;
        assert_eq!(found.unwrap()["ab"], 3);
        assert_eq!(squares("", &BTreeSet::from([3])).await[&3], 9);
        assert_eq!(labels(VecDeque::from([1, 2])).await.len(), 1);
        let _ = Rc::new(());
    }));
}
