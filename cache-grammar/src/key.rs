//! The characters that keys and patterns give a meaning to.
//!
//! A key is the text of its template with the escaped text of an argument
//! in each placeholder; a pattern is Redis's glob over keys. The macros
//! reject the [`reserved`] characters in the text of a template, and the
//! runtime escapes the same characters (and a few more, [`is_escaped`]) in
//! arguments, so that neither can make a key that a pattern misreads.

/// The wildcard of patterns: any run of bytes, within and across `:`
/// segments. A key never holds one: templates reject it, arguments escape it.
///
/// ```
/// assert_eq!(cache_grammar::WILDCARD, '*');
/// assert!(cache_grammar::is_glob_meta(cache_grammar::WILDCARD));
/// ```
pub const WILDCARD: char = '*';

/// What separates the parts of a key: `order:<tenant>:<id>`. Arguments
/// escape it, so a template whose placeholders are separated by it splits
/// one way only.
///
/// ```
/// assert_eq!(cache_grammar::SEPARATOR, ':');
/// assert!(cache_grammar::is_escaped(cache_grammar::SEPARATOR as u8));
/// ```
pub const SEPARATOR: char = ':';

/// Whether `c` is glob syntax in a pattern: `*` (any run of bytes), `?`
/// (one byte), `[` and `]` (a set of bytes) and `\` (the next byte as it
/// is).
///
/// ```
/// use cache_grammar::is_glob_meta;
///
/// assert!("*?[]\\".chars().all(is_glob_meta));
/// assert!(!is_glob_meta(':'));
/// ```
pub const fn is_glob_meta(c: char) -> bool {
    matches!(c, WILDCARD | '?' | '[' | ']' | '\\')
}

/// What a character that key text may not hold is.
///
/// ```
/// use cache_grammar::{reserved, Reserved};
///
/// assert_eq!(reserved('*'), Some(Reserved::Wildcard));
/// assert_eq!(reserved('{'), Some(Reserved::Brace));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// `*`, the wildcard of patterns.
    Wildcard,
    /// `?`, `[`, `]` or `\`: the rest of the glob syntax of patterns.
    GlobSyntax,
    /// `{` or `}`: not placeholder syntax (placeholders are `<name>`).
    Brace,
    /// Whitespace: keys are single tokens.
    Whitespace,
    /// A control character other than whitespace.
    Control,
}

/// Why the text of a key template may not hold `c`, if it may not: glob
/// syntax (so that `#[invalidates]` patterns can name every key), braces,
/// whitespace and control characters. Arguments escape the ASCII ones.
///
/// ```
/// use cache_grammar::{reserved, Reserved};
///
/// assert_eq!(reserved('?'), Some(Reserved::GlobSyntax));
/// assert_eq!(reserved(' '), Some(Reserved::Whitespace));
/// assert_eq!(reserved('\u{a0}'), Some(Reserved::Whitespace));
/// assert_eq!(reserved('\0'), Some(Reserved::Control));
/// assert_eq!(reserved(':'), None);
/// assert_eq!(reserved('é'), None);
/// ```
pub fn reserved(c: char) -> Option<Reserved> {
    if c.is_ascii() {
        reserved_ascii(c as u8)
    } else if c.is_whitespace() {
        Some(Reserved::Whitespace)
    } else if c.is_control() {
        Some(Reserved::Control)
    } else {
        None
    }
}

/// [`reserved`] for an ASCII byte, usable in constants.
const fn reserved_ascii(byte: u8) -> Option<Reserved> {
    let c = byte as char;
    if matches!(c, WILDCARD) {
        Some(Reserved::Wildcard)
    } else if is_glob_meta(c) {
        Some(Reserved::GlobSyntax)
    } else if matches!(c, '{' | '}') {
        Some(Reserved::Brace)
    } else if matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r') {
        Some(Reserved::Whitespace)
    } else if byte < 0x20 || byte == 0x7f {
        Some(Reserved::Control)
    } else {
        None
    }
}

/// `true` for each ASCII byte that [`is_escaped`] is `true` for.
const ESCAPED: [bool; 128] = {
    let mut table = [false; 128];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = matches!(byte as u8, b'%' | b',')
            || byte as u8 == SEPARATOR as u8
            || reserved_ascii(byte as u8).is_some();
        byte += 1;
    }
    table
};

/// Whether the text of an argument has `byte` percent-encoded in a key
/// (`:` becomes `%3A`): the ASCII [`reserved`] characters, the
/// [`SEPARATOR`], `,` (between the fields of one argument) and `%` itself.
/// The bytes of other characters are written as they are.
///
/// ```
/// use cache_grammar::is_escaped;
///
/// assert!(b"%:,*?[]\\{} \n".iter().all(|&b| is_escaped(b)));
/// assert!(!b"az09-_.<>#".iter().any(|&b| is_escaped(b)));
/// assert!(!"é".bytes().any(is_escaped));
/// ```
#[inline]
pub const fn is_escaped(byte: u8) -> bool {
    byte < 0x80 && ESCAPED[byte as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule the macros checked template text with, written out.
    fn forbidden_before(c: char) -> Option<Reserved> {
        Some(match c {
            '*' => Reserved::Wildcard,
            '?' | '[' | ']' | '\\' => Reserved::GlobSyntax,
            '{' | '}' => Reserved::Brace,
            c if c.is_whitespace() => Reserved::Whitespace,
            c if c.is_control() => Reserved::Control,
            _ => return None,
        })
    }

    #[test]
    fn reserved_is_the_rule_of_the_macros_for_every_char() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(reserved(c), forbidden_before(c), "{c:?}");
        }
    }

    #[test]
    fn escaped_bytes_are_the_reserved_ascii_ones_and_the_separators() {
        for byte in 0..=u8::MAX {
            let before = byte < 0x20 || byte == 0x7f || b"%:,*?[]\\{} ".contains(&byte);
            assert_eq!(is_escaped(byte), before, "{byte:#x}");
        }
        // An argument never holds unescaped what a template may not.
        for byte in 0..0x80u8 {
            if reserved(byte as char).is_some() {
                assert!(is_escaped(byte), "{byte:#x}");
            }
        }
    }
}
