//! Compile-time behaviour of the macros: one `tests/ui/fail/<case>.rs` with
//! its `.stderr` per diagnostic, and pass cases that must compile and run.
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
