//! `#[derive(KeyPart)]`: newtypes, structs, enums of unit variants, generics.

use cache_runtime::{key_text, KeyPart};

#[derive(KeyPart)]
struct TenantId(String);

#[derive(KeyPart)]
struct Named {
    id: u64,
}

#[derive(KeyPart)]
struct Region {
    country: String,
    zone: u8,
}

#[derive(KeyPart)]
enum Currency {
    Eur,
    Usd,
}

#[derive(KeyPart)]
enum Never {}

#[derive(KeyPart)]
struct Pair<A, B>(A, B);

#[derive(KeyPart)]
struct Borrowed<'a> {
    name: &'a str,
}

fn main() {
    assert_eq!(key_text(&TenantId("a:b".to_owned())), "a%3Ab");
    assert_eq!(key_text(&Named { id: 7 }), "7");
    assert_eq!(key_text(&Region { country: "f,r".to_owned(), zone: 3 }), "f%2Cr,3");
    assert_eq!(key_text(&Currency::Eur), "Eur");
    assert_eq!(key_text(&Currency::Usd), "Usd");
    assert_eq!(key_text(&Pair(1u8, "x")), "1,x");
    assert_eq!(key_text(&Borrowed { name: "n" }), "n");
    let _ = |never: &Never| key_text(never);
}
