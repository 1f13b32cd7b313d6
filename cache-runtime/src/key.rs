//! Cache keys: the `KeyPart` trait, its escaping writer, and the stack buffer
//! that `#[cached]` builds keys in.
//!
//! A key is the template's literal text with every placeholder replaced by
//! the escaped text of its argument. Escaping is percent-encoding of the
//! characters that mean something to a key or a pattern (`%`, `:`, `,`, `*`,
//! `?`, `[`, `]`, `\`, `{`, `}`, space and control characters; the set is
//! `cache_grammar::is_escaped`, built on the characters the macros reject in
//! a template's text), so:
//!
//! - an argument can never forge a separator: `("a:b", 1)` and `("a", ..)`
//!   never share a key;
//! - an argument can never widen a pattern: `*` in user input is `%2A`;
//! - the escaped text of a placeholder never contains `:`, so a template whose
//!   placeholders are separated by `:` (the macros check this) maps different
//!   arguments to different keys.

use std::fmt;

use cache_grammar::is_escaped;

/// The longest key the cache stores, in bytes, the same on every instance.
///
/// A call whose key is longer is not cached: a `#[cached]` function calls
/// its origin and returns its value, the handle's `get` and `exists`
/// answer `None` and `false`, `set` stores nothing; each such call is
/// counted in [`Stats::keys_too_long`](crate::Stats::keys_too_long) and said
/// once per key template. The bound keeps every pattern invalidation's cost
/// per key bounded, in process and in Redis (see [`Pattern`](crate::Pattern)):
/// a key built from user input (a search query, a filter) cannot make one
/// `SCAN` block Redis. Keep a long part out of the key, or put a digest of
/// it there.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use cache_runtime::{Cache, MAX_KEY_BYTES};
///
/// let cache = Cache::builder().build().unwrap();
/// let long = format!("search:{}", "q".repeat(MAX_KEY_BYTES));
/// cache.set(&long, 1u8, Duration::from_secs(60)).await;
/// assert_eq!(cache.get::<u8>(&long).await, None);
/// assert_eq!(cache.stats().keys_too_long, 2);
/// # });
/// ```
pub const MAX_KEY_BYTES: usize = 1024;

/// Bytes a key may take before [`KeyBuf`] spills to the heap.
const INLINE_KEY: usize = 96;

/// A byte buffer on the stack while it is short, on the heap after.
#[derive(Clone)]
struct Bytes {
    inline: [u8; INLINE_KEY],
    len: usize,
    spilled: Option<Vec<u8>>,
}

impl Bytes {
    const fn new() -> Self {
        Bytes {
            inline: [0; INLINE_KEY],
            len: 0,
            spilled: None,
        }
    }

    #[inline(always)]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if let Some(heap) = &mut self.spilled {
            heap.extend_from_slice(bytes);
            return;
        }
        let end = self.len + bytes.len();
        if end <= INLINE_KEY {
            self.inline[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            self.spill(end).extend_from_slice(bytes);
        }
    }

    #[cold]
    fn spill(&mut self, capacity: usize) -> &mut Vec<u8> {
        let mut heap = Vec::with_capacity(capacity.max(2 * INLINE_KEY));
        heap.extend_from_slice(&self.inline[..self.len]);
        self.spilled.insert(heap)
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }

    /// Appends `n` in decimal, written in place while the key is on the
    /// stack (no formatting buffer, no copy of it).
    #[inline(always)]
    fn push_decimal(&mut self, n: u64) {
        const MAX_DIGITS: usize = 20;
        if self.spilled.is_some() || self.len + MAX_DIGITS > INLINE_KEY {
            return self.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        let digits = decimal_digits(n);
        let out = &mut self.inline[self.len..self.len + MAX_DIGITS];
        let mut end = digits;
        let mut rest = n;
        while rest >= 100 {
            let pair = (rest % 100) as usize * 2;
            rest /= 100;
            end -= 2;
            out[end..end + 2].copy_from_slice(&DECIMAL_PAIRS[pair..pair + 2]);
        }
        if rest >= 10 {
            let pair = rest as usize * 2;
            out[..2].copy_from_slice(&DECIMAL_PAIRS[pair..pair + 2]);
        } else {
            out[0] = b'0' + rest as u8;
        }
        self.len += digits;
    }

    #[inline]
    fn len(&self) -> usize {
        self.spilled.as_ref().map_or(self.len, Vec::len)
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match &self.spilled {
            Some(heap) => heap,
            None => &self.inline[..self.len],
        }
    }

    /// Inserts `bytes` at `at` (rare: nested `Option`s).
    fn insert(&mut self, at: usize, bytes: &[u8]) {
        let len = self.len();
        let heap = match self.spilled {
            Some(ref mut heap) => heap,
            None => self.spill(len + bytes.len()),
        };
        heap.splice(at..at, bytes.iter().copied());
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// How many decimal digits `n` takes (1 for 0): from its bit length,
/// `log10(2) ~ 1233 / 4096`, corrected by one comparison.
#[inline(always)]
fn decimal_digits(n: u64) -> usize {
    const POWERS: [u64; 20] = {
        let mut powers = [1; 20];
        let mut at = 1;
        while at < 20 {
            powers[at] = powers[at - 1] * 10;
            at += 1;
        }
        powers
    };
    let bits = 64 - (n | 1).leading_zeros() as usize;
    let guess = (bits * 1233) >> 12;
    (guess + 1 - usize::from(n < POWERS[guess])).max(1)
}

/// `00` to `99`, two bytes each.
const DECIMAL_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Where a [`KeyPart`] writes its text. Everything written through it is
/// escaped, so no implementation can produce a separator or a wildcard.
///
/// ```
/// use cache_runtime::{KeyPart, KeyWriter};
///
/// struct Region { country: String, zone: u8 }
///
/// impl KeyPart for Region {
///     fn write_key(&self, out: &mut KeyWriter<'_>) {
///         out.write_str(&self.country);
///         out.write_separator();
///         self.zone.write_key(out);
///     }
/// }
/// ```
pub struct KeyWriter<'a> {
    buf: &'a mut Bytes,
}

impl KeyWriter<'_> {
    /// Writes `s`, escaping every reserved character.
    #[inline]
    pub fn write_str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        if !bytes.iter().any(|&b| is_escaped(b)) {
            self.buf.extend_from_slice(bytes);
            return;
        }
        for &b in bytes {
            if is_escaped(b) {
                self.buf.extend_from_slice(&[
                    b'%',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
            } else {
                self.buf.push(b);
            }
        }
    }

    /// Writes the `Display` text of `value`, escaped.
    pub fn write_display(&mut self, value: &dyn fmt::Display) {
        use fmt::Write;
        struct Escaping<'w, 'a>(&'w mut KeyWriter<'a>);
        impl Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.write_str(s);
                Ok(())
            }
        }
        // Writing into memory cannot fail; a `Display` impl that reports an
        // error leaves what it wrote so far, which is still escaped.
        let _ = write!(Escaping(self), "{value}");
    }

    /// Writes the separator between the fields of a composite part: `,`.
    /// `,` inside a field is escaped, so fields never run into each other.
    pub fn write_separator(&mut self) {
        self.buf.push(b',');
    }

    /// Bytes that need no escaping (digits, `-`, `true`).
    #[inline]
    fn write_plain(&mut self, s: &str) {
        debug_assert!(!s.bytes().any(is_escaped));
        self.buf.extend_from_slice(s.as_bytes());
    }
}

/// A value that can stand in a cache key placeholder.
///
/// Implemented for integers, `bool`, `char`, `str`, `String`, `Option`,
/// references, `Box`, `Rc`, `Arc` and `Cow`. For your own type, write one
/// impl that forwards to a field, or escape its `Display` text:
///
/// ```
/// use cache_runtime::{KeyPart, KeyWriter};
///
/// pub struct TenantId(String);
///
/// impl KeyPart for TenantId {
///     fn write_key(&self, out: &mut KeyWriter<'_>) {
///         self.0.write_key(out)
///     }
/// }
/// ```
///
/// Floating-point numbers are not key parts: `0.1 + 0.2` and `0.3` would be
/// different keys, and `NaN` never equals itself. Round them to an integer
/// (cents, basis points) first.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used in a cache key",
    label = "`{Self}` does not implement `KeyPart`",
    note = "for a type of your own, add `#[derive(cache_runtime::KeyPart)]` or implement `cache_runtime::KeyPart` (one method: `fn write_key(&self, out: &mut KeyWriter<'_>)`); or put one of its fields in the key instead, e.g. `<arg.id>`"
)]
pub trait KeyPart {
    /// Writes this value's key text. Implementations must write different
    /// text for values that should be cached apart.
    fn write_key(&self, out: &mut KeyWriter<'_>);
}

macro_rules! unsigned_key_part {
    ($($t:ty)*) => {$(
        impl KeyPart for $t {
            #[inline(always)]
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                out.buf.push_decimal(u64::from(*self));
            }
        }
    )*};
}
unsigned_key_part!(u8 u16 u32 u64);

macro_rules! signed_key_part {
    ($($t:ty)*) => {$(
        impl KeyPart for $t {
            #[inline(always)]
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                if *self < 0 {
                    out.buf.push(b'-');
                }
                out.buf.push_decimal(u64::from(self.unsigned_abs()));
            }
        }
    )*};
}
signed_key_part!(i8 i16 i32 i64);

impl KeyPart for usize {
    #[inline(always)]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (*self as u64).write_key(out);
    }
}

impl KeyPart for isize {
    #[inline(always)]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (*self as i64).write_key(out);
    }
}

macro_rules! wide_key_part {
    ($($t:ty)*) => {$(
        impl KeyPart for $t {
            #[inline]
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                out.write_plain(itoa::Buffer::new().format(*self));
            }
        }
    )*};
}
wide_key_part!(u128 i128);

/// The hyphenated lower-case form (`67e55044-10b1-426f-9247-bb680e5fe0c8`),
/// with the `uuid` feature.
///
/// ```
/// let id = uuid::Uuid::from_u128(0x67e5504410b1426f9247bb680e5fe0c8);
/// assert_eq!(cache_runtime::key_text(&id), "67e55044-10b1-426f-9247-bb680e5fe0c8");
/// ```
#[cfg(feature = "uuid")]
impl KeyPart for uuid::Uuid {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_plain(
            self.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
    }
}

impl KeyPart for bool {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_plain(if *self { "true" } else { "false" });
    }
}

impl KeyPart for char {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_str(self.encode_utf8(&mut [0; 4]));
    }
}

impl KeyPart for str {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_str(self);
    }
}

impl KeyPart for String {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.write_str(self);
    }
}

/// `None` is written `%N`. `Some(v)` is written as `v`, prefixed with `%S`
/// when `v`'s own text starts with `%N` or `%S` (a nested `Option`), so that
/// `None`, `Some(None)` and `Some(Some(None))` stay apart.
impl<T: KeyPart> KeyPart for Option<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        match self {
            None => out.buf.extend_from_slice(b"%N"),
            Some(v) => {
                let start = out.buf.len();
                v.write_key(out);
                let written = &out.buf.as_slice()[start..];
                if written.starts_with(b"%N") || written.starts_with(b"%S") {
                    out.buf.insert(start, b"%S");
                }
            }
        }
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &mut T {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for Box<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for std::rc::Rc<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for std::sync::Arc<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: KeyPart + ToOwned + ?Sized> KeyPart for std::borrow::Cow<'_, T> {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

/// A key under construction, on the stack while it is short.
///
/// `#[cached]` builds every key in one of these, so a hit allocates nothing
/// for its key. [`KeyBuf::as_str`] is the finished key.
///
/// ```
/// use cache_runtime::KeyBuf;
///
/// let mut key = KeyBuf::new();
/// key.push_literal("order:");
/// key.push_part("acme:eu");
/// key.push_literal(":");
/// key.push_part(&42u64);
/// assert_eq!(key.as_str(), "order:acme%3Aeu:42");
/// ```
#[derive(Clone)]
pub struct KeyBuf {
    buf: Bytes,
}

impl Default for KeyBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyBuf {
    /// An empty key.
    #[inline]
    pub fn new() -> Self {
        KeyBuf { buf: Bytes::new() }
    }

    /// Appends template text as it is. The macros only pass text they have
    /// checked; text with reserved characters other than `:` is the caller's
    /// responsibility.
    #[inline(always)]
    pub fn push_literal(&mut self, text: &str) {
        self.buf.extend_from_slice(text.as_bytes());
    }

    /// Appends a placeholder's value, escaped.
    #[inline(always)]
    pub fn push_part<P: KeyPart + ?Sized>(&mut self, part: &P) {
        part.write_key(&mut KeyWriter { buf: &mut self.buf });
    }

    /// Appends the `*` wildcard (for invalidation patterns).
    #[inline]
    pub fn push_wildcard(&mut self) {
        self.buf.push(cache_grammar::WILDCARD as u8);
    }

    /// The key text.
    #[inline]
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.as_slice();
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: every byte was appended from a `&str` whole, or is ASCII
        // written by `KeyWriter` (escapes, digits, separators); the only
        // insertion (`Option`'s `%S`) is ASCII at the end of an earlier
        // append, a character boundary. So the bytes are UTF-8. This runs
        // on every hit, where a validation pass would cost a few percent.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The key text of one value, as a placeholder would write it.
///
/// ```
/// assert_eq!(cache_runtime::key_text(&"a:b*"), "a%3Ab%2A");
/// assert_eq!(cache_runtime::key_text(&Some(7u8)), "7");
/// assert_eq!(cache_runtime::key_text(&None::<u8>), "%N");
/// ```
pub fn key_text<P: KeyPart + ?Sized>(part: &P) -> String {
    let mut key = KeyBuf::new();
    key.push_part(part);
    key.as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_reserved_characters() {
        assert_eq!(key_text("a:b"), "a%3Ab");
        assert_eq!(key_text("*?[]\\{}"), "%2A%3F%5B%5D%5C%7B%7D");
        assert_eq!(key_text("%"), "%25");
        assert_eq!(key_text("line\nnext"), "line%0Anext");
        assert_eq!(key_text("café"), "café");
        assert_eq!(key_text(&-12i32), "-12");
        assert_eq!(key_text(&true), "true");
    }

    #[test]
    fn nested_options_stay_apart() {
        let none: Option<Option<u8>> = None;
        let some_none: Option<Option<u8>> = Some(None);
        let some_some: Option<Option<u8>> = Some(Some(1));
        assert_eq!(key_text(&none), "%N");
        assert_eq!(key_text(&some_none), "%S%N");
        assert_eq!(key_text(&some_some), "1");
        assert_ne!(key_text(&Some(Some(None::<u8>))), key_text(&some_none));
    }

    #[test]
    fn decimal_digits_are_counted() {
        let mut n = 1u64;
        for digits in 1..20 {
            assert_eq!(decimal_digits(n), digits, "{n}");
            assert_eq!(decimal_digits(n * 10 - 1), digits, "{}", n * 10 - 1);
            n *= 10;
        }
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(n), 20);
        assert_eq!(decimal_digits(u64::MAX), 20);
    }

    #[test]
    fn integers_are_written_as_decimals() {
        for n in [
            0,
            1,
            9,
            10,
            42,
            99,
            100,
            101,
            999,
            1000,
            12_345,
            u64::MAX / 3,
            u64::MAX,
        ] {
            assert_eq!(key_text(&n), n.to_string());
            let mut key = KeyBuf::new();
            key.push_literal(&"x".repeat(80));
            key.push_part(&n);
            key.push_part(&n);
            assert_eq!(key.as_str(), format!("{}{n}{n}", "x".repeat(80)));
        }
        for n in [i64::MIN, -100, -1, 0, 7, i64::MAX] {
            assert_eq!(key_text(&n), n.to_string());
        }
        assert_eq!(key_text(&i8::MIN), "-128");
        assert_eq!(key_text(&u128::MAX), u128::MAX.to_string());
        assert_eq!(key_text(&(usize::MAX)), usize::MAX.to_string());
        assert_eq!(key_text(&(isize::MIN)), isize::MIN.to_string());
    }

    proptest::proptest! {
        #[test]
        fn every_integer_is_its_decimal_text(n: u64, m: i64, pad in 0usize..100) {
            let mut key = KeyBuf::new();
            key.push_literal(&"x".repeat(pad));
            key.push_part(&n);
            key.push_literal(":");
            key.push_part(&m);
            proptest::prop_assert_eq!(key.as_str(), format!("{}{n}:{m}", "x".repeat(pad)));
        }
    }

    #[test]
    fn long_keys_spill_to_the_heap() {
        let long = "x".repeat(1000);
        assert_eq!(key_text(long.as_str()), long);
    }
}
