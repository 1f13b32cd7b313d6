//! The arguments of `#[cached(..)]` and `#[invalidates(..)]`, parsed into a
//! typed model.
//!
//! Values stay literals with their spans (`ttl = "2m"` is kept as the
//! `LitStr` `"2m"`): `valid.rs` gives them a meaning and reports mistakes on
//! the literal. Parsing recovers after a bad option (it skips to the next
//! `,`), so that one compile reports every mistake of an attribute.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, LitBool, LitStr, Path, Token};

use crate::ctxt::{set_once, Ctxt};
use crate::suggest;

mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(key);
    syn::custom_keyword!(stale);
    syn::custom_keyword!(l1_ttl);
    syn::custom_keyword!(tier);
    syn::custom_keyword!(none);
    syn::custom_keyword!(fail_safe);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(lock);
    syn::custom_keyword!(cache);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(before);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(batch);
    syn::custom_keyword!(refresh_ahead);
    syn::custom_keyword!(tags);
}

/// The options of `#[cached]`, in the order the messages list them.
const CACHED_OPTIONS: &[&str] = &[
    "ttl",
    "key",
    "stale",
    "l1_ttl",
    "tier",
    "none",
    "fail_safe",
    "timeout",
    "lock",
    "cache",
    "jitter",
    "refresh_ahead",
    "tags",
    "skip",
    "batch",
    "crate",
];

/// The options of `#[invalidates]`, after its patterns.
const INVALIDATES_OPTIONS: &[&str] = &["tags", "before", "cache", "crate"];

/// `#[cached(..)]`, as written.
#[derive(Default)]
pub(crate) struct CachedArgs {
    pub(crate) ttl: Option<LitStr>,
    /// `ttl = PRESET`: the path of a `TtlPreset` constant.
    pub(crate) ttl_preset: Option<Path>,
    pub(crate) key: Option<LitStr>,
    pub(crate) stale: Option<LitStr>,
    pub(crate) l1_ttl: Option<LitStr>,
    pub(crate) tier: Option<LitStr>,
    pub(crate) none: Option<LitBool>,
    pub(crate) fail_safe: Option<LitStr>,
    pub(crate) timeout: Option<LitStr>,
    pub(crate) lock: Option<LitBool>,
    pub(crate) cache: Option<LitStr>,
    pub(crate) jitter: Option<LitStr>,
    pub(crate) refresh_ahead: Option<LitStr>,
    pub(crate) skip: Option<Skip>,
    /// Whether a `skip` was written but did not parse.
    pub(crate) skip_failed: bool,
    /// `batch = "ids"`: the parameter holding the ids of a batch load.
    pub(crate) batch: Option<LitStr>,
    /// `tags = ["product:<id>", ..]`: the value's tags.
    pub(crate) tags: Option<Tags>,
    pub(crate) krate: Option<Path>,
}

/// `tags = ["product:<id>", "catalog"]`: templates, with the span of `tags`.
pub(crate) struct Tags {
    pub(crate) span: Span,
    pub(crate) templates: Vec<LitStr>,
}

/// `skip(db, self)`: the parameters that are not part of an explicit key.
pub(crate) struct Skip {
    /// The names as written (`self` included), with their spans.
    pub(crate) names: Vec<Ident>,
}

/// `#[invalidates(..)]`, as written.
#[derive(Default)]
pub(crate) struct InvalidatesArgs {
    pub(crate) patterns: Vec<LitStr>,
    pub(crate) tags: Option<Tags>,
    pub(crate) before: Option<LitBool>,
    pub(crate) cache: Option<LitStr>,
    pub(crate) krate: Option<Path>,
}

/// `#[key_part(..)]` on a `#[derive(KeyPart)]` type.
#[derive(Default)]
pub(crate) struct KeyPartArgs {
    pub(crate) krate: Option<Path>,
}

/// Parses `#[cached(..)]`'s arguments. Mistakes go to `ctxt`; what parsed
/// is returned either way.
pub(crate) fn parse_cached(tokens: TokenStream, ctxt: &mut Ctxt) -> CachedArgs {
    let mut args = CachedArgs::default();
    let parser = |input: ParseStream| {
        parse_list(input, ctxt, |input, ctxt| {
            if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                // A duration is more likely a TTL than a key.
                let option = if cache_grammar::parse_duration(&lit.value()).is_ok() {
                    "ttl"
                } else {
                    "key"
                };
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "`#[cached]` takes named options; write `{option} = {}`",
                        quote::ToTokens::to_token_stream(&lit)
                    ),
                ));
            }
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::ttl) {
                let name: kw::ttl = input.parse()?;
                // A path names a `TtlPreset` constant of the application.
                let ahead = input.fork();
                if ahead.parse::<Token![=]>().is_ok()
                    && (ahead.peek(Ident::peek_any) || ahead.peek(Token![::]))
                {
                    input.parse::<Token![=]>()?;
                    let preset: Path = input.parse()?;
                    set_once(ctxt, &mut args.ttl_preset, "ttl", name.span, preset);
                    return Ok(());
                }
                let value = string_value(input, "ttl", name.span, "\"2m\"")?;
                set_once(ctxt, &mut args.ttl, "ttl", name.span, value);
            } else if lookahead.peek(kw::key) {
                let name: kw::key = input.parse()?;
                let value = string_value(input, "key", name.span, "\"order:<tenant>:<id>\"")?;
                set_once(ctxt, &mut args.key, "key", name.span, value);
            } else if lookahead.peek(kw::stale) {
                let name: kw::stale = input.parse()?;
                let value = string_value(input, "stale", name.span, "\"5m\"")?;
                set_once(ctxt, &mut args.stale, "stale", name.span, value);
            } else if lookahead.peek(kw::l1_ttl) {
                let name: kw::l1_ttl = input.parse()?;
                let value = string_value(input, "l1_ttl", name.span, "\"20s\"")?;
                set_once(ctxt, &mut args.l1_ttl, "l1_ttl", name.span, value);
            } else if lookahead.peek(kw::tier) {
                let name: kw::tier = input.parse()?;
                let value = string_value(input, "tier", name.span, "\"l1\"")?;
                set_once(ctxt, &mut args.tier, "tier", name.span, value);
            } else if lookahead.peek(kw::none) {
                let name: kw::none = input.parse()?;
                let value = bool_value(input, "none", name.span)?;
                set_once(ctxt, &mut args.none, "none", name.span, value);
            } else if lookahead.peek(kw::fail_safe) {
                let name: kw::fail_safe = input.parse()?;
                let value = string_value(input, "fail_safe", name.span, "\"1h\"")?;
                set_once(ctxt, &mut args.fail_safe, "fail_safe", name.span, value);
            } else if lookahead.peek(kw::timeout) {
                let name: kw::timeout = input.parse()?;
                let value = string_value(input, "timeout", name.span, "\"2s\"")?;
                set_once(ctxt, &mut args.timeout, "timeout", name.span, value);
            } else if lookahead.peek(kw::lock) {
                let name: kw::lock = input.parse()?;
                let value = bool_value(input, "lock", name.span)?;
                set_once(ctxt, &mut args.lock, "lock", name.span, value);
            } else if lookahead.peek(kw::cache) {
                let name: kw::cache = input.parse()?;
                let value = string_value(input, "cache", name.span, "\"lookups\"")?;
                set_once(ctxt, &mut args.cache, "cache", name.span, value);
            } else if lookahead.peek(kw::jitter) {
                let name: kw::jitter = input.parse()?;
                let value = string_value(input, "jitter", name.span, "\"10%\"")?;
                set_once(ctxt, &mut args.jitter, "jitter", name.span, value);
            } else if lookahead.peek(kw::skip) {
                let name: kw::skip = input.parse()?;
                args.skip_failed = true;
                let value = skip_value(input, name.span)?;
                args.skip_failed = false;
                set_once(ctxt, &mut args.skip, "skip", name.span, value);
            } else if lookahead.peek(kw::refresh_ahead) {
                let name: kw::refresh_ahead = input.parse()?;
                let value = string_value(input, "refresh_ahead", name.span, "\"80%\"")?;
                set_once(
                    ctxt,
                    &mut args.refresh_ahead,
                    "refresh_ahead",
                    name.span,
                    value,
                );
            } else if lookahead.peek(kw::tags) {
                let name: kw::tags = input.parse()?;
                let value = tags_value(input, name.span)?;
                set_once(ctxt, &mut args.tags, "tags", name.span, value);
            } else if lookahead.peek(kw::batch) {
                let name: kw::batch = input.parse()?;
                let value = string_value(input, "batch", name.span, "\"ids\"")?;
                set_once(ctxt, &mut args.batch, "batch", name.span, value);
            } else if lookahead.peek(Token![crate]) {
                let name: Token![crate] = input.parse()?;
                let value = crate_value(input, name.span)?;
                set_once(ctxt, &mut args.krate, "crate", name.span, value);
            } else {
                return Err(unknown_option(input, lookahead, CACHED_OPTIONS));
            }
            Ok(())
        })
    };
    if let Err(error) = parser.parse2(tokens) {
        ctxt.push(error);
    }
    args
}

/// Parses `#[invalidates(..)]`'s arguments: patterns first, then options.
pub(crate) fn parse_invalidates(tokens: TokenStream, ctxt: &mut Ctxt) -> InvalidatesArgs {
    let mut args = InvalidatesArgs::default();
    let mut seen_option = false;
    let parser = |input: ParseStream| {
        parse_list(input, ctxt, |input, ctxt| {
            if input.peek(LitStr) {
                let pattern: LitStr = input.parse()?;
                if seen_option {
                    return Err(syn::Error::new(
                        pattern.span(),
                        "patterns come first: move this pattern before `tags`, `before`, `cache` and `crate`",
                    ));
                }
                args.patterns.push(pattern);
                return Ok(());
            }
            seen_option = true;
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::tags) {
                let name: kw::tags = input.parse()?;
                let value = tags_value(input, name.span)?;
                set_once(ctxt, &mut args.tags, "tags", name.span, value);
            } else if lookahead.peek(kw::before) {
                let name: kw::before = input.parse()?;
                let value = bool_value(input, "before", name.span)?;
                set_once(ctxt, &mut args.before, "before", name.span, value);
            } else if lookahead.peek(kw::cache) {
                let name: kw::cache = input.parse()?;
                let value = string_value(input, "cache", name.span, "\"lookups\"")?;
                set_once(ctxt, &mut args.cache, "cache", name.span, value);
            } else if lookahead.peek(Token![crate]) {
                let name: Token![crate] = input.parse()?;
                let value = crate_value(input, name.span)?;
                set_once(ctxt, &mut args.krate, "crate", name.span, value);
            } else {
                return Err(unknown_option(input, lookahead, INVALIDATES_OPTIONS));
            }
            Ok(())
        })
    };
    if let Err(error) = parser.parse2(tokens) {
        ctxt.push(error);
    }
    args
}

/// Parses the `#[key_part(crate = "..")]` attributes of a derive input.
pub(crate) fn parse_key_part(attrs: &[syn::Attribute], ctxt: &mut Ctxt) -> KeyPartArgs {
    let mut args = KeyPartArgs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("key_part")) {
        let parser = |input: ParseStream| {
            parse_list(input, ctxt, |input, ctxt| {
                let lookahead = input.lookahead1();
                if lookahead.peek(Token![crate]) {
                    let name: Token![crate] = input.parse()?;
                    let value = crate_value(input, name.span)?;
                    set_once(ctxt, &mut args.krate, "crate", name.span, value);
                    Ok(())
                } else {
                    Err(unknown_option(input, lookahead, &["crate"]))
                }
            })
        };
        if let Err(error) = attr.parse_args_with(parser) {
            ctxt.push(error);
        }
    }
    args
}

/// `item, item, ..` with an optional trailing comma. An item that fails is
/// reported and skipped up to the next `,`.
fn parse_list(
    input: ParseStream,
    ctxt: &mut Ctxt,
    mut item: impl FnMut(ParseStream, &mut Ctxt) -> syn::Result<()>,
) -> syn::Result<()> {
    while !input.is_empty() {
        if let Err(error) = item(input, ctxt) {
            ctxt.push(error);
            skip_to_comma(input)?;
        }
        if input.is_empty() {
            break;
        }
        if let Err(error) = input.parse::<Token![,]>() {
            ctxt.push(syn::Error::new(
                error.span(),
                "expected `,` between options",
            ));
            skip_to_comma(input)?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
    }
    Ok(())
}

/// Consumes tokens up to (not including) the next top-level `,`.
fn skip_to_comma(input: ParseStream) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(punct) = &tt {
                if punct.as_char() == ',' {
                    break;
                }
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// The error for a token that is no option: "unknown option `ttll`; did you
/// mean `ttl`? expected one of: ..", or the lookahead's own message when the
/// token is not a name at all.
fn unknown_option(
    input: ParseStream,
    lookahead: syn::parse::Lookahead1,
    options: &[&str],
) -> syn::Error {
    if !input.peek(Ident::peek_any) {
        return lookahead.error();
    }
    let name = match input.call(Ident::parse_any) {
        Ok(name) => name,
        Err(error) => return error,
    };
    let written = name.to_string();
    let expected = options
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = match suggest::closest(&written, options.iter().copied()) {
        Some(close) => format!("did you mean `{close}`? "),
        None => String::new(),
    };
    syn::Error::new(
        name.span(),
        format!("unknown option `{written}`; {hint}expected one of: {expected}"),
    )
}

/// `= "text"` after an option's name.
fn string_value(
    input: ParseStream,
    name: &str,
    name_span: Span,
    example: &str,
) -> syn::Result<LitStr> {
    expect_eq(input, name, name_span, example)?;
    if input.peek(LitStr) {
        return input.parse();
    }
    let span = value_span(input);
    Err(syn::Error::new(
        span,
        format!("`{name}` takes a string, e.g. `{name} = {example}`"),
    ))
}

/// `= true` or `= false` after an option's name.
fn bool_value(input: ParseStream, name: &str, name_span: Span) -> syn::Result<LitBool> {
    expect_eq(input, name, name_span, "true")?;
    if input.peek(LitBool) {
        return input.parse();
    }
    let span = value_span(input);
    Err(syn::Error::new(
        span,
        format!("`{name}` takes `true` or `false`, e.g. `{name} = true`"),
    ))
}

/// `= ["tag", ..]` after `tags`: string templates.
fn tags_value(input: ParseStream, name_span: Span) -> syn::Result<Tags> {
    expect_eq(input, "tags", name_span, TAGS_EXAMPLE)?;
    let mistake = |span| {
        syn::Error::new(
            span,
            format!("`tags` takes a list of strings, e.g. `tags = {TAGS_EXAMPLE}`"),
        )
    };
    if input.peek(LitStr) {
        let one: LitStr = input.parse()?;
        return Err(syn::Error::new(
            one.span(),
            format!(
                "`tags` takes a list: write `tags = [{}]`",
                quote::ToTokens::to_token_stream(&one)
            ),
        ));
    }
    if !input.peek(syn::token::Bracket) {
        return Err(mistake(value_span(input)));
    }
    let content;
    syn::bracketed!(content in input);
    let mut templates = Vec::new();
    while !content.is_empty() {
        if !content.peek(LitStr) {
            let error = mistake(value_span(&content));
            // The rest of the list goes with this error.
            content.step(|cursor| {
                let mut rest = *cursor;
                while let Some((_, next)) = rest.token_tree() {
                    rest = next;
                }
                Ok(((), rest))
            })?;
            return Err(error);
        }
        templates.push(content.parse::<LitStr>()?);
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    Ok(Tags {
        span: name_span,
        templates,
    })
}

const TAGS_EXAMPLE: &str = "[\"product:<id>\", \"catalog\"]";

/// `(name, name, ..)` after `skip`: parameter names, `self` included.
fn skip_value(input: ParseStream, name_span: Span) -> syn::Result<Skip> {
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            name_span,
            format!("`skip` takes a list of parameters: {SKIP_EXAMPLE}"),
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let names = content.parse_terminated(skipped_name, Token![,])?;
    Ok(Skip {
        names: names.into_iter().collect(),
    })
}

/// One name in `skip(..)`.
fn skipped_name(input: ParseStream) -> syn::Result<Ident> {
    if input.peek(Ident::peek_any) {
        input.call(Ident::parse_any)
    } else {
        Err(syn::Error::new(
            value_span(input),
            format!("`skip` lists parameter names: {SKIP_EXAMPLE}"),
        ))
    }
}

const SKIP_EXAMPLE: &str =
    "write `skip(name, ..)` with the parameters the key leaves out, e.g. `skip(db)`";

/// `= "path::to::runtime"`, parsed as a path with the literal's span.
fn crate_value(input: ParseStream, name_span: Span) -> syn::Result<Path> {
    let lit = string_value(input, "crate", name_span, "\"::cache_runtime\"")?;
    lit.parse::<Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("`crate` takes the path of the runtime crate, e.g. `crate = \"::cache_runtime\"`; `{}` is not a path", lit.value()),
        )
    })
}

/// The `=` after an option's name; its absence is reported on the name.
fn expect_eq(input: ParseStream, name: &str, name_span: Span, example: &str) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Ok(())
    } else {
        Err(syn::Error::new(
            name_span,
            format!("`{name}` takes a value: write `{name} = {example}`"),
        ))
    }
}

/// The span of the next token, or of the end of the arguments.
fn value_span(input: ParseStream) -> Span {
    input
        .cursor()
        .token_tree()
        .map_or_else(|| input.span(), |(tt, _)| tt.span())
}
