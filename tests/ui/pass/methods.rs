//! Methods, `Self` in return types, generics, lifetimes, inner attributes
//! and documentation comments: the signature is kept as written.
#![deny(missing_docs)]

//! A crate.

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;

use cache_runtime::{cached, invalidates, Cache, KeyPart};

/// A tenant.
#[derive(Clone, Debug, PartialEq, KeyPart)]
pub struct Tenant {
    /// Its id.
    pub id: u32,
    /// Its region.
    pub region: String,
}

impl Tenant {
    /// Returns a `Self`, cached.
    #[cached(ttl = "1m", key = "tenant:<id>")]
    pub fn load(id: u32) -> Self {
        Tenant { id, region: "eu".to_owned() }
    }

    /// An `Option<Self>`, async, keyed by a field of `self`.
    #[cached(ttl = "1m", key = "sibling:<self.region>:<self.id>:<offset>")]
    pub async fn sibling(&self, offset: u32) -> Option<Self> {
        #![allow(clippy::needless_return)]
        if offset == 0 {
            return None;
        }
        return Some(Tenant { id: self.id + offset, region: self.region.clone() });
    }

    /// Takes `self` by value.
    #[cached(ttl = "1m", key = "into_region:<self.id>")]
    pub fn into_region(self) -> String {
        self.region
    }

    /// `&mut self` in a pattern: read before the body changes it.
    #[invalidates("tenant:<id>", "sibling:<self.region>:*")]
    pub fn rename(&mut self, id: u32, region: &str) -> Result<(), String> {
        self.region = region.to_owned();
        let _ = id;
        Ok(())
    }

    /// `&mut` parameters in a pattern.
    #[invalidates("sibling:<other.region>:*")]
    pub fn merge(&self, other: &mut Tenant) {
        other.region.clone_from(&self.region);
    }
}

/// A generic type with a cached method.
pub struct Repo<T> {
    name: &'static str,
    marker: PhantomData<T>,
}

impl<T: Clone + Debug + Default + Send + Sync + 'static> Repo<T> {
    /// The value type is a parameter of the impl.
    #[cached(ttl = "1m", key = "repo:<self.name>:<id>")]
    pub fn get(&self, id: u64) -> Result<T, String>
    where
        T: PartialEq,
    {
        let _ = id;
        Ok(T::default())
    }
}

/// Borrowed arguments with named and elided lifetimes.
#[cached(ttl = "1m", key = "concat:<a>:<b>")]
pub fn concat<'a>(a: &'a str, b: Cow<'_, str>) -> String {
    format!("{a}{b}")
}

/// `impl Trait` arguments.
#[cached(ttl = "1m", key = "len:<item>")]
pub fn len(item: impl KeyPart + AsRef<str>) -> usize {
    item.as_ref().len()
}

/// Patterns in parameters are fine when the names they bind are skipped.
#[cached(ttl = "1m", key = "sum:<id>", skip(a, b))]
pub fn sum(id: u8, (a, b): (u8, u8)) -> u16 {
    u16::from(id) + u16::from(a) + u16::from(b)
}

/// Tuple fields.
#[cached(ttl = "1m", key = "pair:<pair.0>:<pair.1>")]
pub fn pair(pair: (u8, String)) -> String {
    format!("{}{}", pair.0, pair.1)
}

/// Raw identifiers.
#[cached(ttl = "1m", key = "raw:<r#type>")]
pub fn r#match(r#type: u8) -> u8 {
    r#type
}

/// `mut` bindings.
#[cached(ttl = "1m", key = "count:<n>")]
pub fn countdown(mut n: u32) -> u32 {
    let mut steps = 0;
    while n > 0 {
        n /= 2;
        steps += 1;
    }
    steps
}

/// `?` and `io::Result`.
#[cached(ttl = "1m", key = "parse:<text>")]
pub fn parse(text: &str) -> std::io::Result<u32> {
    let n: u32 = text.parse().map_err(std::io::Error::other)?;
    Ok(n)
}

/// A raw string key.
#[cached(ttl = "1m", key = r#"raw"quoted:<n>"#)]
pub fn raw_key(n: u8) -> u8 {
    n
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::builder().build().unwrap();
    cache
        .scope(async {
            let mut tenant = Tenant::load(1);
            assert_eq!(tenant.sibling(0).await, None);
            assert_eq!(tenant.sibling(2).await.map(|t| t.id), Some(3));
            assert!(tenant.rename(1, "us").is_ok());
            tenant.merge(&mut Tenant::load(2));
            let repo = Repo::<Vec<u8>> { name: "bytes", marker: PhantomData };
            assert_eq!(repo.get(1), Ok(Vec::new()));
            assert_eq!(concat("a", Cow::Borrowed("b")), "ab");
            assert_eq!(len("abc"), 3);
            assert_eq!(sum(1, (2, 3)), 6);
            assert_eq!(pair((1, "x".to_owned())), "1x");
            assert_eq!(r#match(4), 4);
            assert_eq!(countdown(8), 4);
            assert_eq!(parse("12").unwrap(), 12);
            assert!(parse("x").is_err());
            assert_eq!(raw_key(2), 2);
            assert_eq!(tenant.into_region(), "us");
        })
        .await;
    assert_eq!(cache.get::<u8>("raw\"quoted:2").await, Some(2));
}
