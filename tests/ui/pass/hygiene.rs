//! Names the generated code uses must not clash with the user's: parameters
//! named like the runtime's helpers, local `core` and `cache_runtime`
//! modules, and macros shadowing `concat!` and `module_path!`.
#![allow(dead_code, unused_macros)]

mod core {}
mod cache_runtime {}
mod std {}

macro_rules! concat {
    ($($t:tt)*) => {
        "shadowed"
    };
}
macro_rules! module_path {
    () => {
        "shadowed"
    };
}

struct Some;
struct Ok;
struct Err;
struct None;

use ::cache_runtime::{cached, invalidates, Cache, KeyPart};

#[derive(KeyPart)]
struct Key(u64);

#[allow(clippy::too_many_arguments)]
#[cached(ttl = "1m", key = "h:<key>:<cache>:<value>:<inner>:<result>:<fut>:<spec>:<slot>")]
async fn every_name(
    key: &Key,
    cache: u8,
    value: &str,
    inner: u16,
    result: bool,
    fut: char,
    spec: u32,
    slot: i64,
) -> ::core::result::Result<u64, String> {
    let _ = (value, inner, result, fut, spec, slot, cache);
    ::core::result::Result::Ok(key.0)
}

#[cached(ttl = "1m")]
fn default_key(key: u8, __cache_key: u8) -> ::core::option::Option<u8> {
    ::core::option::Option::Some(key + __cache_key)
}

#[invalidates("h:<key>:*")]
fn forget(key: &Key, keys: u8) -> ::core::result::Result<(), ()> {
    let _ = keys;
    ::core::result::Result::Ok(())
}

mod nested {
    mod core {}
    mod cache_runtime {}

    #[::cache_runtime::cached(ttl = "1m", key = "nested:<n>")]
    pub fn plain(n: u64) -> u64 {
        n + 1
    }

    pub fn call(n: u64) -> u64 {
        plain(n)
    }
}

fn main() {
    let cache = Cache::builder().build().unwrap();
    let runtime = ::tokio::runtime::Builder::new_current_thread().build().unwrap();
    let out = runtime.block_on(cache.scope(every_name(&Key(7), 1, "v", 2, true, 'c', 3, 4)));
    assert!(matches!(out, ::core::result::Result::Ok(7)));
    cache.scope_sync(|| {
        assert_eq!(default_key(1, 2), ::core::option::Option::Some(3));
        assert!(forget(&Key(7), 0).is_ok());
        assert_eq!(nested::call(1), 2);
    });
}
