//! The key template language: `"order:<tenant>:<id>"`.
//!
//! A template is literal text with placeholders: `<name>` names a parameter
//! (or `self`), `<name.field.0>` a field path from one. In `#[invalidates]`
//! patterns, `*` is a wildcard. This module turns the literal into
//! [`Segment`]s and reports the lexical mistakes (an unclosed `<`, a
//! character that means something to patterns, which `cache_grammar`
//! names for the runtime too); `valid.rs` binds the placeholders to
//! parameters.

use cache_grammar::{reserved, Reserved, WILDCARD};
use proc_macro2::Span;
use syn::parse::Parser;
use syn::LitStr;

use crate::ctxt::Ctxt;

/// Which macro the template belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// A `#[cached]` key: no wildcards.
    Key,
    /// An `#[invalidates]` pattern: `*` is a wildcard.
    Pattern,
    /// A tag (`tags = [..]` of either macro): named exactly, no wildcards.
    Tag,
}

/// A parsed template.
pub(crate) struct Template {
    pub(crate) segments: Vec<Segment>,
}

/// A piece of a template, with the span of its text.
pub(crate) struct Segment {
    pub(crate) kind: SegmentKind,
    pub(crate) span: Span,
}

pub(crate) enum SegmentKind {
    /// Text copied into the key as it is.
    Literal(String),
    /// `<head.field.field>`.
    Placeholder(Placeholder),
    /// `*` (patterns only).
    Wildcard,
}

/// `<head.field.field>`, as written.
pub(crate) struct Placeholder {
    /// A parameter name or `self`.
    pub(crate) head: String,
    /// Field names or tuple indices.
    pub(crate) fields: Vec<String>,
}

impl Placeholder {
    /// The placeholder as written, `<self.tenant>`, for messages.
    pub(crate) fn written(&self) -> String {
        let mut text = format!("<{}", self.head);
        for field in &self.fields {
            text.push('.');
            text.push_str(field);
        }
        text.push('>');
        text
    }

    /// The same placeholder with another head, for suggestions.
    pub(crate) fn with_head(&self, head: &str) -> String {
        Placeholder {
            head: head.to_owned(),
            fields: self.fields.clone(),
        }
        .written()
    }
}

/// Parses `lit`. Mistakes go to `ctxt`; the segments that parsed are
/// returned either way.
pub(crate) fn parse(lit: &LitStr, flavor: Flavor, ctxt: &mut Ctxt) -> Template {
    let text = lit.value();
    let spans = Spans::new(lit, &text);
    let what = match flavor {
        Flavor::Key => "key",
        Flavor::Pattern => "pattern",
        Flavor::Tag => "tag",
    };
    if text.is_empty() {
        let message = match flavor {
            Flavor::Key => "empty key: write literal text and placeholders, e.g. `key = \"order:<id>\"`, or remove `key` for the default",
            Flavor::Pattern => "empty pattern: it matches no key; write a key or a pattern, e.g. \"orders:list:<tenant>:*\"",
            Flavor::Tag => "empty tag: write literal text and placeholders, e.g. \"product:<id>\"",
        };
        ctxt.error(lit.span(), message);
        return Template {
            segments: Vec::new(),
        };
    }

    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut literal_start = 0;
    let mut reported = Vec::new();
    let flush = |literal: &mut String, start: usize, end: usize, segments: &mut Vec<Segment>| {
        if !literal.is_empty() {
            segments.push(Segment {
                kind: SegmentKind::Literal(std::mem::take(literal)),
                span: spans.range(start, end),
            });
        }
    };

    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '<' => {
                flush(&mut literal, literal_start, at, &mut segments);
                let rest = &text[at + 1..];
                let close = rest
                    .find(['>', '<'])
                    .filter(|&i| rest.as_bytes()[i] == b'>');
                let Some(close) = close else {
                    let end = rest.find('<').unwrap_or(rest.len());
                    let name_len = rest[..end]
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                        .unwrap_or(end);
                    let name = &rest[..name_len];
                    let example = if name.is_empty() { "id" } else { name };
                    ctxt.error(
                        spans.range(at, at + 1 + end),
                        format!("unclosed `<` in {what} \"{text}\": a placeholder needs a closing `>`, e.g. `<{example}>`"),
                    );
                    // Go on after the unclosed text.
                    while chars.next_if(|&(i, _)| i < at + 1 + end).is_some() {}
                    literal_start = at + 1 + end;
                    continue;
                };
                let inner = &rest[..close];
                let end = at + 1 + close + 1;
                let span = spans.range(at, end);
                while chars.next_if(|&(i, _)| i < end).is_some() {}
                literal_start = end;
                if inner.is_empty() {
                    ctxt.error(
                        span,
                        "empty placeholder `<>`: write a parameter name inside, e.g. `<id>`",
                    );
                    continue;
                }
                match placeholder(inner) {
                    Some(placeholder) => segments.push(Segment {
                        kind: SegmentKind::Placeholder(placeholder),
                        span,
                    }),
                    None => ctxt.error(
                        span,
                        format!(
                            "`<{inner}>` is not a placeholder: write a parameter name or a field path from one, e.g. `<id>` or `<filter.org>`"
                        ),
                    ),
                }
            }
            '>' => {
                flush(&mut literal, literal_start, at, &mut segments);
                literal_start = at + 1;
                ctxt.error(
                    spans.range(at, at + 1),
                    format!("`>` without a matching `<` in {what} \"{text}\": placeholders are written `<name>`"),
                );
            }
            WILDCARD if flavor == Flavor::Pattern => {
                flush(&mut literal, literal_start, at, &mut segments);
                literal_start = at + 1;
                segments.push(Segment {
                    kind: SegmentKind::Wildcard,
                    span: spans.range(at, at + 1),
                });
            }
            c => {
                if let Some(why) = reserved(c).filter(|_| !reported.contains(&c)) {
                    reported.push(c);
                    let message = reserved_message(c, why, flavor, &text);
                    ctxt.error(spans.range(at, at + c.len_utf8()), message);
                }
                literal.push(c);
            }
        }
    }
    flush(&mut literal, literal_start, text.len(), &mut segments);
    Template { segments }
}

/// `head.field.0`: identifiers separated by `.`; fields may be tuple indices.
fn placeholder(inner: &str) -> Option<Placeholder> {
    let mut parts = inner.split('.');
    let head = parts.next()?;
    if !is_head(head) {
        return None;
    }
    let fields = parts
        .map(|field| (is_field(field) || is_index(field)).then(|| field.to_owned()))
        .collect::<Option<Vec<_>>>()?;
    Some(Placeholder {
        head: head.to_owned(),
        fields,
    })
}

/// A parameter name: any identifier, raw or not, `self` included.
fn is_head(text: &str) -> bool {
    <syn::Ident as syn::ext::IdentExt>::parse_any
        .parse_str(text)
        .is_ok()
}

/// A field name: an identifier that is not a keyword, or a raw one.
fn is_field(text: &str) -> bool {
    syn::parse_str::<syn::Ident>(text).is_ok()
}

fn is_index(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

/// Why `c` (which `cache_grammar::reserved` classed as `reserved`) cannot
/// appear in the template `text`.
fn reserved_message(c: char, reserved: Reserved, flavor: Flavor, text: &str) -> String {
    let shown = match reserved {
        Reserved::Whitespace | Reserved::Control => format!("{:?}", c),
        _ => format!("`{c}`"),
    };
    match (reserved, flavor) {
        (Reserved::Wildcard, Flavor::Tag) => "`*` cannot appear in a tag: a tag is invalidated by its exact name, never by a pattern; give each value every tag it should be invalidated by, e.g. `tags = [\"product:<id>\", \"products\"]`".to_owned(),
        (Reserved::GlobSyntax, Flavor::Tag) => format!(
            "{shown} cannot appear in a tag: tags read like keys; use `:` or `-` to structure the tag"
        ),
        (Reserved::Wildcard, _) => "`*` is a wildcard; it belongs in `#[invalidates]` patterns, not in a cached key".to_owned(),
        (Reserved::Brace, _) => format!(
            "{shown} cannot appear in \"{text}\": placeholders are written `<name>`, not `{{name}}`"
        ),
        (Reserved::GlobSyntax, Flavor::Key) => format!(
            "{shown} cannot appear in a key: it is pattern syntax, so `#[invalidates]` patterns could not name this key; use `:` or `-` to structure the key"
        ),
        (Reserved::GlobSyntax, Flavor::Pattern) => format!(
            "{shown} cannot appear in a pattern: the only wildcard is `*`, which matches any text"
        ),
        (Reserved::Whitespace, _) => format!(
            "whitespace ({shown}) cannot appear in \"{text}\": keys are single tokens; use `:` or `-` instead"
        ),
        (Reserved::Control, _) => format!(
            "a control character ({shown}) cannot appear in \"{text}\": keys are single tokens; use `:` or `-` instead"
        ),
    }
}

/// Spans of byte ranges of a string literal's value. On a stable compiler
/// `Literal::subspan` gives `None`, and every range gets the literal's span;
/// the messages therefore name what they are about.
struct Spans {
    literal: proc_macro2::Literal,
    whole: Span,
    /// Bytes between the token's start and the value's first byte, when the
    /// value is the token's text verbatim (no escapes).
    offset: Option<usize>,
}

impl Spans {
    fn new(lit: &LitStr, value: &str) -> Spans {
        let literal = lit.token();
        let repr = literal.to_string();
        let offset = if let Some(rest) = repr.strip_prefix('"') {
            (rest.strip_suffix('"') == Some(value)).then_some(1)
        } else if let Some(rest) = repr.strip_prefix('r') {
            let hashes = rest.bytes().take_while(|&b| b == b'#').count();
            Some(2 + hashes)
        } else {
            None
        };
        Spans {
            literal,
            whole: lit.span(),
            offset,
        }
    }

    fn range(&self, start: usize, end: usize) -> Span {
        self.offset
            .and_then(|offset| self.literal.subspan(offset + start..offset + end))
            .unwrap_or(self.whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str, flavor: Flavor) -> (Vec<String>, Option<String>) {
        let lit = LitStr::new(text, Span::call_site());
        let mut ctxt = Ctxt::new();
        let template = parse(&lit, flavor, &mut ctxt);
        let segments = template
            .segments
            .iter()
            .map(|s| match &s.kind {
                SegmentKind::Literal(text) => format!("lit({text})"),
                SegmentKind::Placeholder(p) => format!("ph({})", p.written()),
                SegmentKind::Wildcard => "*".to_owned(),
            })
            .collect();
        (segments, ctxt.check().err().map(|e| e.to_string()))
    }

    #[test]
    fn segments() {
        let (segments, error) = parse_str("order:<tenant>:<id>", Flavor::Key);
        assert_eq!(
            segments,
            ["lit(order:)", "ph(<tenant>)", "lit(:)", "ph(<id>)"]
        );
        assert_eq!(error, None);
        let (segments, error) = parse_str("orders:<self.tenant.0>:*", Flavor::Pattern);
        assert_eq!(
            segments,
            ["lit(orders:)", "ph(<self.tenant.0>)", "lit(:)", "*"]
        );
        assert_eq!(error, None);
    }

    #[test]
    fn mistakes() {
        assert!(parse_str("order:<tenant", Flavor::Key)
            .1
            .unwrap()
            .contains("unclosed `<`"));
        assert!(parse_str("a:<>", Flavor::Key)
            .1
            .unwrap()
            .contains("empty placeholder"));
        assert!(parse_str("a>b", Flavor::Key)
            .1
            .unwrap()
            .contains("`>` without"));
        assert!(parse_str("a:<a-b>", Flavor::Key)
            .1
            .unwrap()
            .contains("not a placeholder"));
        assert!(parse_str("a:*", Flavor::Key)
            .1
            .unwrap()
            .contains("wildcard"));
        assert!(parse_str("a b", Flavor::Key)
            .1
            .unwrap()
            .contains("whitespace"));
        assert!(parse_str("a:?", Flavor::Pattern)
            .1
            .unwrap()
            .contains("only wildcard"));
        assert!(parse_str("a:{id}", Flavor::Key)
            .1
            .unwrap()
            .contains("not `{name}`"));
    }
}
