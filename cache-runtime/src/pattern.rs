//! Invalidation patterns: Redis glob syntax, parsed once and matched against
//! keys byte by byte, so that the in-process tier and Redis agree on what a
//! pattern covers.

use std::fmt;

/// A parsed invalidation pattern.
///
/// The syntax is Redis's glob: `*` matches any run of bytes (within and
/// across `:` segments), `?` one byte, `[abc]`, `[^abc]` and `[a-z]` one byte
/// of a set, and `\` makes the next byte literal. A pattern without
/// wildcards names one key.
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
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: Box<str>,
    tokens: Vec<Token>,
    /// The key, when the pattern has no wildcard.
    exact: Option<Box<str>>,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    pattern: String,
    reason: PatternErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternErrorKind {
    Empty,
    UnclosedSet(usize),
    TrailingEscape,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pattern `{}`: ", self.pattern.escape_debug())?;
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
        }
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    /// Parses `source`.
    ///
    /// # Errors
    /// An empty pattern, a `[` that is never closed, or a trailing `\`.
    pub fn parse(source: &str) -> Result<Pattern, PatternError> {
        let error = |reason| PatternError {
            pattern: source.to_owned(),
            reason,
        };
        if source.is_empty() {
            return Err(error(PatternErrorKind::Empty));
        }
        let bytes = source.as_bytes();
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        let flush = |literal: &mut Vec<u8>, tokens: &mut Vec<Token>| {
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(literal)));
            }
        };
        while i < bytes.len() {
            match bytes[i] {
                b'*' => {
                    flush(&mut literal, &mut tokens);
                    if tokens.last() != Some(&Token::AnyRun) {
                        tokens.push(Token::AnyRun);
                    }
                    i += 1;
                }
                b'?' => {
                    flush(&mut literal, &mut tokens);
                    tokens.push(Token::AnyOne);
                    i += 1;
                }
                b'\\' => {
                    let Some(&next) = bytes.get(i + 1) else {
                        return Err(error(PatternErrorKind::TrailingEscape));
                    };
                    literal.push(next);
                    i += 2;
                }
                b'[' => {
                    flush(&mut literal, &mut tokens);
                    let open = i;
                    i += 1;
                    let negated = bytes.get(i) == Some(&b'^');
                    if negated {
                        i += 1;
                    }
                    let mut items = Vec::new();
                    loop {
                        match bytes.get(i) {
                            None => return Err(error(PatternErrorKind::UnclosedSet(open))),
                            Some(b']') if !items.is_empty() => {
                                i += 1;
                                break;
                            }
                            Some(&b) => {
                                let (low, width) = if b == b'\\' {
                                    match bytes.get(i + 1) {
                                        Some(&e) => (e, 2),
                                        None => {
                                            return Err(error(PatternErrorKind::UnclosedSet(open)))
                                        }
                                    }
                                } else {
                                    (b, 1)
                                };
                                i += width;
                                if bytes.get(i) == Some(&b'-')
                                    && bytes.get(i + 1).is_some_and(|&h| h != b']')
                                {
                                    let high = bytes[i + 1];
                                    i += 2;
                                    items.push(SetItem::Range(low.min(high), low.max(high)));
                                } else {
                                    items.push(SetItem::Byte(low));
                                }
                            }
                        }
                    }
                    tokens.push(Token::Set { negated, items });
                }
                b => {
                    literal.push(b);
                    i += 1;
                }
            }
        }
        let exact = match tokens.as_slice() {
            [] => Some(String::from_utf8_lossy(&literal).into()),
            _ => None,
        };
        flush(&mut literal, &mut tokens);
        Ok(Pattern {
            source: source.into(),
            tokens,
            exact,
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

    /// The literal text every matching key starts with.
    pub fn literal_prefix(&self) -> &str {
        match self.tokens.first() {
            Some(Token::Literal(bytes)) => std::str::from_utf8(bytes).unwrap_or(""),
            _ => "",
        }
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
    fn exact_and_prefix() {
        let p = Pattern::parse("order:acme:42").unwrap();
        assert_eq!(p.exact_key(), Some("order:acme:42"));
        assert_eq!(p.literal_prefix(), "order:acme:42");
        let p = Pattern::parse("orders:*:x").unwrap();
        assert_eq!(p.exact_key(), None);
        assert_eq!(p.literal_prefix(), "orders:");
    }
}
