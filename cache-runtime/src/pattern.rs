//! Invalidation patterns: Redis glob syntax, parsed once and matched against
//! keys byte by byte, so that the in-process tier and Redis agree on what a
//! pattern covers.
//!
//! Redis reads a pattern with `stringmatchlen` (`src/util.c`). The parser
//! here reads it the same way, and refuses the forms whose reading there is
//! surprising or depends on the machine, so that an accepted pattern covers
//! the same keys in both tiers (`tests/glob.rs` compares the two on
//! generated patterns against a real redis-server).
//!
//! Redis's `*` does not match an empty key, but Redis only ever sees a
//! pattern after the namespace (`SCAN 0 MATCH <namespace>:<pattern>` over
//! `<namespace>:<key>`), where `*` matches the empty rest, as it does here.

use std::fmt;

/// A parsed invalidation pattern.
///
/// The syntax is Redis's glob: `*` matches any run of bytes (within and
/// across `:` segments), `?` one byte, `[abc]`, `[^abc]` and `[a-z]` one byte
/// of a set, and `\` makes the next byte literal. A pattern without
/// wildcards names one key.
///
/// Sets are read as Redis reads them, and the forms Redis reads in a
/// surprising way are refused, each with what to write instead:
///
/// - `[]` and `[^]` (Redis closes the set at once): write `[\]]` for a
///   literal `]`;
/// - a `-` that is not between the two ends of a range, other than first
///   in the set (`[a-]` is a range up to `]` in Redis, `[\a-z]` is `a`, `-`
///   and `z`): write `\-` for a literal `-`;
/// - a range ending in `\` (Redis does not escape there);
/// - a byte that is not ASCII in a set (a set matches one byte; Redis
///   compares bytes above 127 in ranges as signed on some machines).
///
/// `?` and sets match one byte: a character that is not ASCII is 2 to 4.
///
/// Redis's glob works up to about key length × the length of the pattern
/// after its first `*` on every key a `SCAN` looks at, and older versions
/// of Redis take time exponential in the number of `*`. So a pattern has
/// at most [`MAX_TAIL_LEN`](Pattern::MAX_TAIL_LEN) bytes after its first
/// `*`, at most [`MAX_STARS`](Pattern::MAX_STARS) `*`, and, when it has a
/// wildcard, at most [`MAX_LEN`](Pattern::MAX_LEN) bytes.
///
/// ```
/// use cache_runtime::Pattern;
///
/// let p = Pattern::parse("orders:list:acme:*").unwrap();
/// assert!(p.matches("orders:list:acme:p1:pp20"));
/// assert!(!p.matches("orders:list:globex:p1:pp20"));
/// assert_eq!(p.literal_prefix(), "orders:list:acme:");
///
/// let err = Pattern::parse("orders:[a-").unwrap_err();
/// assert_eq!(err.to_string(), "invalid pattern `orders:[a-`: `[` at byte 7 is never closed with `]`");
/// let err = Pattern::parse("orders:[]]x").unwrap_err();
/// assert!(err.to_string().contains(r"write `[\]]` for a literal `]`"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: Box<str>,
    tokens: Vec<Token>,
    /// The key, when the pattern has no wildcard.
    exact: Option<Box<str>>,
    /// The bytes after the first run of `*` (0 without one).
    tail_len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    AnyRun,
    AnyOne,
    Set { negated: bool, items: Vec<SetItem> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetItem {
    Byte(u8),
    Range(u8, u8),
}

/// Why a pattern could not be parsed.
///
/// Its message quotes at most the first 64 bytes of the pattern, and then
/// says how long the pattern was.
///
/// ```
/// use cache_runtime::Pattern;
///
/// let huge = format!("q:*{}b", "a".repeat(10_000));
/// let err = Pattern::parse(&huge).unwrap_err().to_string();
/// assert!(err.starts_with("invalid pattern `q:*aaa"));
/// assert!(err.contains("(its first 64 of 10004 bytes)"));
/// assert!(err.len() < 500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    /// The pattern's first [`SHOWN`] bytes at most, cut at a character.
    shown: Box<str>,
    /// The pattern's length in bytes.
    len: usize,
    reason: PatternErrorKind,
}

/// The longest pattern without a `*` before its end whose match is cheap
/// enough to run under a lock (see [`Pattern::is_cheap`]).
const CHEAP_LEN: usize = 256;

/// How many bytes of a pattern its error quotes.
const SHOWN: usize = 64;

impl PatternError {
    fn new(pattern: &str, reason: PatternErrorKind) -> PatternError {
        PatternError {
            shown: start_of(pattern, SHOWN).into(),
            len: pattern.len(),
            reason,
        }
    }
}

/// The longest start of `text` of at most `max` bytes that ends at a
/// character: what a message quotes of a long input.
pub(crate) fn start_of(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternErrorKind {
    Empty,
    UnclosedSet(usize),
    TrailingEscape,
    /// `[]` or `[^]` at this byte.
    EmptySet {
        at: usize,
        negated: bool,
    },
    /// The `-` of `[a-]`, a range up to `]` in Redis.
    RangeToBracket(usize),
    /// The `\` of `[a-\]`, the end of a range in Redis.
    RangeToBackslash(usize),
    /// A literal `-` that is not first in its set.
    StrayDash(usize),
    /// A character that is not ASCII in a set.
    NotAsciiInSet {
        at: usize,
        c: char,
    },
    /// A pattern with a wildcard longer than [`Pattern::MAX_LEN`].
    TooLong,
    /// More runs of `*` than [`Pattern::MAX_STARS`].
    TooManyStars(usize),
    /// More than [`Pattern::MAX_TAIL_LEN`] bytes after the first `*`.
    TailTooLong {
        star: usize,
        tail: usize,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pattern `{}`", self.shown.escape_debug())?;
        if self.shown.len() < self.len {
            write!(f, " (its first {} of {} bytes)", self.shown.len(), self.len)?;
        }
        f.write_str(": ")?;
        match self.reason {
            PatternErrorKind::Empty => {
                f.write_str("a pattern cannot be empty (use `*` to match every key)")
            }
            PatternErrorKind::UnclosedSet(at) => {
                write!(f, "`[` at byte {at} is never closed with `]`")
            }
            PatternErrorKind::TrailingEscape => f.write_str(
                "it ends with `\\`, which escapes nothing (write `\\\\` for a literal backslash)",
            ),
            PatternErrorKind::EmptySet { at, negated: false } => write!(
                f,
                "`[]` at byte {at} is an empty set that matches nothing; write `[\\]]` for a literal `]`"
            ),
            PatternErrorKind::EmptySet { at, negated: true } => write!(
                f,
                "`[^]` at byte {at} is an empty set that Redis reads as any byte; write `?` for any byte, or `[^\\]]` for any byte but `]`"
            ),
            PatternErrorKind::RangeToBracket(at) => write!(
                f,
                "`-` at the end of a set (byte {at}) makes Redis read a range up to `]` and the set as running on; write `\\-` for a literal `-`"
            ),
            PatternErrorKind::RangeToBackslash(at) => write!(
                f,
                "`\\` at byte {at} ends a range, where Redis does not escape; end the range with the byte itself, or write `\\-` for a literal `-`"
            ),
            PatternErrorKind::StrayDash(at) => write!(
                f,
                "`-` at byte {at} is not between the two ends of a range; write `\\-` for a literal `-`"
            ),
            PatternErrorKind::NotAsciiInSet { at, c } => write!(
                f,
                "`{}` at byte {at} is not ASCII: a set matches one byte, so it holds ASCII characters only",
                c.escape_debug()
            ),
            PatternErrorKind::TooLong => write!(
                f,
                "a pattern with wildcards may be at most {} bytes long (one that names a single key may be longer); invalidate by a prefix instead",
                Pattern::MAX_LEN
            ),
            PatternErrorKind::TooManyStars(stars) => write!(
                f,
                "it has {stars} `*` (a run of them counts once), more than {}, and each one can multiply the time Redis's glob takes; invalidate by a prefix instead",
                Pattern::MAX_STARS
            ),
            PatternErrorKind::TailTooLong { star, tail } => write!(
                f,
                "{tail} bytes follow the `*` at byte {star}, more than {}: Redis's glob works up to key length × that on every key it scans; invalidate by a prefix instead (end the pattern at its first `*`)",
                Pattern::MAX_TAIL_LEN
            ),
        }
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    /// The longest pattern with a wildcard, in bytes. A pattern without
    /// wildcards names one key, and is as long as the key.
    ///
    /// ```
    /// use cache_runtime::Pattern;
    ///
    /// let prefix = "a".repeat(Pattern::MAX_LEN - 1);
    /// assert!(Pattern::parse(&format!("{prefix}*")).is_ok());
    /// assert!(Pattern::parse(&format!("{prefix}a*")).is_err());
    /// assert!(Pattern::parse(&Pattern::escape(&"a".repeat(100_000))).is_ok());
    /// ```
    pub const MAX_LEN: usize = 4096;

    /// The most `*` a pattern may have; a run of `*` counts once.
    ///
    /// ```
    /// use cache_runtime::Pattern;
    ///
    /// assert!(Pattern::parse(&"a*".repeat(Pattern::MAX_STARS)).is_ok());
    /// assert!(Pattern::parse(&"a*".repeat(Pattern::MAX_STARS + 1)).is_err());
    /// assert!(Pattern::parse(&"a**".repeat(Pattern::MAX_STARS)).is_ok());
    /// ```
    pub const MAX_STARS: usize = 16;

    /// The most bytes a pattern may have after its first `*` (or its
    /// first run of `*`): Redis's glob works up to about key length × that
    /// many bytes on every key it scans.
    ///
    /// ```
    /// use cache_runtime::Pattern;
    ///
    /// let tail = "a".repeat(Pattern::MAX_TAIL_LEN);
    /// assert!(Pattern::parse(&format!("orders:*{tail}")).is_ok());
    /// assert!(Pattern::parse(&format!("orders:*{tail}b")).is_err());
    /// // A prefix pattern has no tail, however long the prefix.
    /// assert!(Pattern::parse(&format!("orders:{tail}{tail}:*")).is_ok());
    /// ```
    pub const MAX_TAIL_LEN: usize = 256;

    /// Parses `source`.
    ///
    /// # Errors
    /// An empty pattern, a `[` that is never closed, a trailing `\`, the
    /// sets that Redis reads in a surprising way, and a pattern beyond the
    /// limits on its cost (see [`Pattern`]).
    pub fn parse(source: &str) -> Result<Pattern, PatternError> {
        let error = |reason| PatternError::new(source, reason);
        if source.is_empty() {
            return Err(error(PatternErrorKind::Empty));
        }
        let bytes = source.as_bytes();
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        let mut stars = 0;
        // The first `*`, and how many bytes follow its run.
        let mut first_star = None;
        while i < bytes.len() {
            let token = match bytes[i] {
                b'*' => {
                    let run = bytes[i..].iter().take_while(|&&b| b == b'*').count();
                    first_star.get_or_insert((i, bytes.len() - i - run));
                    stars += 1;
                    i += run;
                    Token::AnyRun
                }
                b'?' => {
                    i += 1;
                    Token::AnyOne
                }
                b'[' => {
                    let (set, end) = parse_set(source, i).map_err(error)?;
                    i = end;
                    set
                }
                b'\\' => {
                    let &next = bytes
                        .get(i + 1)
                        .ok_or_else(|| error(PatternErrorKind::TrailingEscape))?;
                    literal.push(next);
                    i += 2;
                    continue;
                }
                b => {
                    literal.push(b);
                    i += 1;
                    continue;
                }
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(token);
        }
        let exact = tokens
            .is_empty()
            .then(|| String::from_utf8_lossy(&literal).into());
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        if exact.is_none() && source.len() > Self::MAX_LEN {
            return Err(error(PatternErrorKind::TooLong));
        }
        if stars > Self::MAX_STARS {
            return Err(error(PatternErrorKind::TooManyStars(stars)));
        }
        let (star, tail_len) = first_star.unwrap_or_default();
        if tail_len > Self::MAX_TAIL_LEN {
            return Err(error(PatternErrorKind::TailTooLong {
                star,
                tail: tail_len,
            }));
        }
        Ok(Pattern {
            source: source.into(),
            tokens,
            exact,
            tail_len,
        })
    }

    /// The pattern that matches `key` and nothing else: `key` with the
    /// glob characters (`* ? [ ] \`) escaped.
    ///
    /// ```
    /// use cache_runtime::Pattern;
    /// let pattern = Pattern::escape("odd*key");
    /// assert_eq!(pattern, r"odd\*key");
    /// assert_eq!(Pattern::parse(&pattern).unwrap().exact_key(), Some("odd*key"));
    /// ```
    pub fn escape(key: &str) -> String {
        let mut out = String::with_capacity(key.len() + 2);
        for c in key.chars() {
            if cache_grammar::is_glob_meta(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The one key this pattern names, when it has no wildcard.
    ///
    /// ```
    /// use cache_runtime::Pattern;
    /// assert_eq!(Pattern::parse(r"a\*b").unwrap().exact_key(), Some("a*b"));
    /// assert_eq!(Pattern::parse("a*").unwrap().exact_key(), None);
    /// ```
    pub fn exact_key(&self) -> Option<&str> {
        self.exact.as_deref()
    }

    /// The cheapest pattern that covers every key `source` covers: the
    /// literal text before its first wildcard, then `*` (a prefix pattern,
    /// whose cost does not depend on the keys). What an invalidation built
    /// from a template takes when the pattern it made is refused for its
    /// cost: wider, never narrower.
    pub(crate) fn widened(source: &str) -> Pattern {
        let bytes = source.as_bytes();
        let mut literal = Vec::new();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'*' | b'?' | b'[' => break,
                b'\\' => {
                    literal.extend(bytes.get(i + 1));
                    i += 2;
                }
                _ => {
                    literal.push(b);
                    i += 1;
                }
            }
        }
        let literal = String::from_utf8_lossy(&literal);
        Pattern::parse(&format!("{}*", Pattern::escape(&literal)))
            .expect("an escaped literal and `*` parse")
    }

    /// The literal text every matching key starts with.
    pub fn literal_prefix(&self) -> &str {
        match self.tokens.first() {
            Some(Token::Literal(bytes)) => std::str::from_utf8(bytes).unwrap_or(""),
            _ => "",
        }
    }

    /// What Redis's glob costs per key byte of a `SCAN` over this pattern:
    /// the bytes after its first run of `*`, 0 for a prefix pattern
    /// (`abc*`) and for a pattern without `*`; at most
    /// [`MAX_TAIL_LEN`](Pattern::MAX_TAIL_LEN). The shared tier's scans
    /// are to size their `COUNT` by it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn cost_factor(&self) -> usize {
        self.tail_len
    }

    /// Whether matching a key costs at most [`CHEAP_LEN`] steps, whatever
    /// the key: no `*` before the end (see
    /// [`cost_factor`](Pattern::cost_factor)) and a short pattern, as a
    /// prefix invalidation (`orders:list:acme:*`) is.
    pub(crate) fn is_cheap(&self) -> bool {
        self.tail_len == 0 && self.source.len() <= CHEAP_LEN
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        matches_tokens(&self.tokens, key.as_bytes())
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Reads the set opening at byte `open` of `source` as Redis does; returns
/// it and the byte after its `]`.
///
/// Redis's loop, item by item: `\` and a byte is that byte; `]` closes the
/// set (even as its first item); `x-y` is a range whenever three bytes are
/// left, whatever `y` is; any other byte is itself; the end of the pattern
/// closes the set. An item read in a surprising way is refused once the
/// set is known to close, so that an unclosed set is reported as such
/// (but for a range up to `]`, which is why the set does not close).
fn parse_set(source: &str, open: usize) -> Result<(Token, usize), PatternErrorKind> {
    use PatternErrorKind::{NotAsciiInSet, RangeToBackslash, RangeToBracket, StrayDash};
    let bytes = source.as_bytes();
    let not_ascii = |at: usize| {
        (!bytes[at].is_ascii()).then(|| NotAsciiInSet {
            at,
            c: (source.get(at..).and_then(|rest| rest.chars().next()))
                .unwrap_or(char::REPLACEMENT_CHARACTER),
        })
    };
    let mut i = open + 1;
    let negated = bytes.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut surprise = None;
    loop {
        let (item, width, refused) = match &bytes[i..] {
            // Redis reads a lone `\` as itself, then runs out of pattern.
            [] | [b'\\'] => return Err(PatternErrorKind::UnclosedSet(open)),
            [b']', ..] if items.is_empty() => {
                return Err(PatternErrorKind::EmptySet { at: open, negated })
            }
            [b']', ..] => return surprise.map_or(Ok((Token::Set { negated, items }, i + 1)), Err),
            [b'\\', escaped, ..] => (SetItem::Byte(*escaped), 2, not_ascii(i + 1)),
            [low, b'-', high, ..] => {
                let refused = match high {
                    // The `]` meant to close the set: whether another one
                    // does or not, this is what to report.
                    b']' => return Err(RangeToBracket(i + 1)),
                    b'\\' => Some(RangeToBackslash(i + 2)),
                    _ => not_ascii(i).or_else(|| not_ascii(i + 2)),
                };
                (SetItem::Range(*low.min(high), *low.max(high)), 3, refused)
            }
            [b'-', ..] if !items.is_empty() => (SetItem::Byte(b'-'), 1, Some(StrayDash(i))),
            [byte, ..] => (SetItem::Byte(*byte), 1, not_ascii(i)),
        };
        surprise = surprise.or(refused);
        items.push(item);
        i += width;
    }
}

fn set_contains(items: &[SetItem], b: u8) -> bool {
    items.iter().any(|item| match *item {
        SetItem::Byte(x) => x == b,
        SetItem::Range(low, high) => (low..=high).contains(&b),
    })
}

/// Glob matching with one backtracking point per `*`, linear in practice.
fn matches_tokens(tokens: &[Token], key: &[u8]) -> bool {
    let (mut t, mut k) = (0, 0);
    // Where to resume after the latest `*`: (token index after it, key index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if t < tokens.len() {
            let step = match &tokens[t] {
                Token::AnyRun => {
                    star = Some((t + 1, k));
                    t += 1;
                    continue;
                }
                Token::Literal(lit) => key[k..].starts_with(lit).then_some(lit.len()),
                Token::AnyOne => (k < key.len()).then_some(1),
                Token::Set { negated, items } => key
                    .get(k)
                    .filter(|&&b| set_contains(items, b) != *negated)
                    .map(|_| 1),
            };
            if let Some(width) = step {
                t += 1;
                k += width;
                continue;
            }
        } else if k == key.len() {
            return true;
        }
        // Mismatch: let the latest `*` swallow one more byte.
        match star {
            Some((resume, from)) if from < key.len() => {
                star = Some((resume, from + 1));
                t = resume;
                k = from + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, k: &str) -> bool {
        Pattern::parse(p).unwrap().matches(k)
    }

    #[test]
    fn globs_match_like_redis() {
        assert!(m("*", ""));
        assert!(m("*", "anything:at:all"));
        assert!(m("a:*:c", "a:b:c"));
        assert!(m("a:*:c", "a:b:x:c"));
        assert!(!m("a:*:c", "a:b:c:d"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[^ab]x", "bx"));
        assert!(m("[a-c]x", "cx"));
        assert!(m(r"a\*", "a*"));
        assert!(!m(r"a\*", "ab"));
        assert!(m("*a*a*a", "aaaa"));
        assert!(!m("*a*a*b", "aaaa"));
        assert!(m("k", "k"));
        assert!(!m("k", "kk"));
    }

    /// Sets as Redis reads them (`stringmatchlen`): an escaped byte does not
    /// start a range, a `-` first in a set is itself, ranges run either way.
    #[test]
    fn sets_are_read_as_redis_reads_them() {
        assert!(m("[-a]x", "-x"));
        assert!(m("[^-a]x", "bx") && !m("[^-a]x", "-x"));
        assert!(m("[--/]", ".") && !m("[--/]", "0"));
        assert!(m("[z-a]", "m"));
        assert!(m(r"[\]]x", "]x") && !m(r"[\]]x", "x"));
        assert!(m(r"[^\]]x", "ax") && !m(r"[^\]]x", "]x"));
        assert!(m(r"[a\-]x", "-x") && !m(r"[a\-]x", "bx"));
        assert!(m(r"[\a\-z]", "-") && !m(r"[\a\-z]", "b"));
        assert!(m("[[*?]", "[") && m("[[*?]", "*") && !m("[[*?]", "a"));
        assert!(m("[a-c][^b]", "ca") && !m("[a-c][^b]", "cb"));
        assert!(m("a]", "a]"));
    }

    /// What Redis reads in a surprising way is refused, with the spelling
    /// to use instead.
    #[test]
    fn surprising_sets_are_refused() {
        let refused = |p: &str, says: &str| {
            let err = Pattern::parse(p).unwrap_err().to_string();
            assert!(err.contains(says), "{p}: {err}");
        };
        // Redis: `[]` matches nothing, then `]x`.
        refused(
            "[]]x",
            r"`[]` at byte 0 is an empty set that matches nothing; write `[\]]`",
        );
        // Redis: `[^]` matches any byte, then `]x`.
        refused(
            "[^]]x",
            r"`[^]` at byte 0 is an empty set that Redis reads as any byte",
        );
        // Redis: a range from `a` to `]`, then `x`, and the set runs on.
        refused("[a-]x", r"`-` at the end of a set (byte 2)");
        refused("[a-]x", r"write `\-` for a literal `-`");
        refused("[--]", "`-` at the end of a set (byte 2)");
        refused(r"[a-\]]", r"`\` at byte 3 ends a range");
        // Redis: `a`, `-`, `z`.
        refused(
            r"[\a-z]",
            "`-` at byte 3 is not between the two ends of a range",
        );
        refused("[a-c-e]", "`-` at byte 4 is not between");
        refused(r"[ab\--]", "`-` at byte 5 is not between");
        refused("[é]", "`é` at byte 1 is not ASCII");
        refused(r"x[a\é]", "`é` at byte 4 is not ASCII");
        refused("[a-é]", "`é` at byte 3 is not ASCII");
        refused("[]", "`[]` at byte 0");
        refused("[^]", "`[^]` at byte 0");
        refused(r"[a\", "`[` at byte 0 is never closed");
        // An unclosed set is reported as such, whatever it holds.
        refused("x[a-c-", "`[` at byte 1 is never closed");
        refused("x[é", "`[` at byte 1 is never closed");
    }

    #[test]
    fn malformed_patterns_are_errors() {
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("a[").is_err());
        assert!(Pattern::parse("a[^").is_err());
        assert!(Pattern::parse("a\\").is_err());
        let err = Pattern::parse("x\\").unwrap_err().to_string();
        assert!(err.contains("ends with `\\`"), "{err}");
    }

    /// `cache_grammar::is_glob_meta` names every character this parser
    /// treats as syntax: any other one stands for itself, and each one
    /// escaped does.
    #[test]
    fn the_glob_characters_of_the_grammar_are_the_parsers() {
        for c in (0..0x80u8).map(char::from) {
            let text = c.to_string();
            let escaped = Pattern::parse(&Pattern::escape(&text)).unwrap();
            assert_eq!(escaped.exact_key(), Some(text.as_str()), "{c:?}");
            if !cache_grammar::is_glob_meta(c) {
                let literal = Pattern::parse(&text).unwrap();
                assert_eq!(literal.exact_key(), Some(text.as_str()), "{c:?}");
            }
        }
    }

    #[test]
    fn costly_patterns_are_refused_at_their_limits() {
        let error = |p: &str| Pattern::parse(p).unwrap_err().to_string();
        let tail = "a".repeat(Pattern::MAX_TAIL_LEN);
        assert!(Pattern::parse(&format!("q:*{tail}")).is_ok());
        assert!(Pattern::parse(&format!("q:***{tail}")).is_ok());
        let err = error(&format!("q:**{tail}b"));
        assert!(
            err.contains("257 bytes follow the `*` at byte 2, more than 256"),
            "{err}"
        );
        assert!(err.contains("invalidate by a prefix instead"), "{err}");
        // A `*` in a set or escaped is not one.
        assert!(Pattern::parse(&format!(r"q:[*]\*{tail}{tail}")).is_ok());

        let stars = "a*".repeat(Pattern::MAX_STARS);
        assert!(Pattern::parse(&stars).is_ok());
        let err = error(&format!("{stars}*b*"));
        assert!(
            err.contains("it has 17 `*` (a run of them counts once), more than 16"),
            "{err}"
        );

        let long = format!("{}*", "a".repeat(Pattern::MAX_LEN));
        let err = error(&long);
        assert!(err.contains("at most 4096 bytes long"), "{err}");
        assert!(Pattern::parse(&long[1..]).is_ok());
        assert!(Pattern::parse(&format!("{}?", "a".repeat(Pattern::MAX_LEN))).is_err());
        // One key, however long, is one pattern.
        let key = "k*".repeat(Pattern::MAX_LEN);
        let exact = Pattern::parse(&Pattern::escape(&key)).unwrap();
        assert_eq!(exact.exact_key(), Some(key.as_str()));
    }

    #[test]
    fn the_cost_factor_is_what_follows_the_first_star() {
        let cost = |p: &str| Pattern::parse(p).unwrap().cost_factor();
        assert_eq!(cost("abc"), 0);
        assert_eq!(cost("a?[bc]"), 0);
        assert_eq!(cost("abc*"), 0);
        assert_eq!(cost("abc**"), 0);
        assert_eq!(cost("*"), 0);
        assert_eq!(cost("a*bc"), 2);
        assert_eq!(cost("a**b*c"), 3);
        assert_eq!(cost(r"a\**b"), 1);
    }

    /// An error quotes 64 bytes at most, cut at a character, and says how
    /// long the pattern was.
    #[test]
    fn errors_never_echo_a_long_pattern() {
        let short = Pattern::parse("a[").unwrap_err().to_string();
        assert_eq!(
            short,
            "invalid pattern `a[`: `[` at byte 1 is never closed with `]`"
        );
        let long = format!("{}{}[", "a".repeat(63), "é".repeat(5000));
        let err = Pattern::parse(&long).unwrap_err().to_string();
        let expected = format!(
            "invalid pattern `{}` (its first 63 of 10064 bytes): `[` at byte 10063 is never closed with `]`",
            "a".repeat(63)
        );
        assert_eq!(err, expected);
        let debug = format!("{:?}", Pattern::parse(&long).unwrap_err());
        assert!(debug.len() < 200, "{debug}");
    }

    #[test]
    fn a_widened_pattern_is_its_literal_prefix_and_a_star() {
        let costly = format!("q:{}:*{}b", "x\\*", "a".repeat(Pattern::MAX_TAIL_LEN + 1));
        assert!(Pattern::parse(&costly).is_err());
        let wide = Pattern::widened(&costly);
        assert_eq!(wide.as_str(), "q:x\\*:*");
        assert_eq!(wide.cost_factor(), 0);
        assert!(wide.matches(&format!("q:x*:{}b", "a".repeat(300))));
        assert_eq!(Pattern::widened("?x").as_str(), "*");
    }

    #[test]
    fn exact_and_prefix() {
        let p = Pattern::parse("order:acme:42").unwrap();
        assert_eq!(p.exact_key(), Some("order:acme:42"));
        assert_eq!(p.literal_prefix(), "order:acme:42");
        let p = Pattern::parse("orders:*:x").unwrap();
        assert_eq!(p.exact_key(), None);
        assert_eq!(p.literal_prefix(), "orders:");
    }
}
