//! Every check, and the checked model that `expand.rs` generates code from.
//!
//! Each check reports into the [`Ctxt`] and goes on, so that one compile
//! shows all the mistakes. The checks shared by `#[cached]` and
//! `#[invalidates]` (placeholders, `cache = ".."`, the return type) are
//! written once.

use std::time::Duration;

use cache_grammar::{parse_duration, parse_percent, SEPARATOR, WILDCARD};
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Ident, LitBool, LitStr, Member, Path, Token};

use crate::ast::{Function, ReceiverKind, ReturnKind};
use crate::attr::{CachedArgs, InvalidatesArgs, Skip};
use crate::ctxt::Ctxt;
use crate::key::{self, Flavor, Placeholder, Segment, SegmentKind};
use crate::suggest;

/// A checked `#[cached]`.
pub(crate) struct CachedPlan {
    pub(crate) krate: Path,
    pub(crate) spec: SpecPlan,
    pub(crate) key: Vec<KeyStep>,
    /// `tags = [..]`: each tag's template.
    pub(crate) tags: Vec<Vec<KeyStep>>,
    /// `batch = ".."`: a key per id of this parameter.
    pub(crate) batch: Option<crate::batch::BatchPlan>,
}

/// The `Spec` of a `#[cached]` function: only what was given.
pub(crate) struct SpecPlan {
    pub(crate) template: TemplateName,
    pub(crate) ttl_ms: Option<u64>,
    /// A `TtlPreset` constant: `ttl = "@list"` or `ttl = PRESET`, as
    /// `<crate>::ttl_preset(&PRESET)`.
    pub(crate) ttl_preset: Option<proc_macro2::TokenStream>,
    pub(crate) stale_ms: Option<u64>,
    pub(crate) l1_ttl_ms: Option<u64>,
    pub(crate) jitter_percent: Option<u8>,
    pub(crate) cache_none: Option<bool>,
    pub(crate) cache: Option<String>,
    pub(crate) tier: Option<Tier>,
    pub(crate) fail_safe_ms: Option<u64>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) lock: Option<bool>,
    pub(crate) refresh_ahead: Option<u8>,
}

/// The template's name, for metrics labels.
pub(crate) enum TemplateName {
    /// `key = ".."`, as written.
    Written(LitStr),
    /// The default key: the module path followed by this text
    /// (`::get_order#:<tenant>:<id>`).
    Default(String),
}

#[derive(Clone, Copy)]
pub(crate) enum Tier {
    L1,
    L2,
    Both,
}

/// One step of building a key or a pattern.
pub(crate) enum KeyStep {
    /// `module_path!()` followed by this text (`::get_order#`): the default
    /// key's start.
    ModulePath(String),
    /// Checked template text.
    Literal(String),
    /// A placeholder's value.
    Part(Part),
    /// `*`.
    Wildcard,
    /// The name of a type parameter (`core::any::type_name`): in a default
    /// key, so that instantiations of a generic function do not share
    /// values.
    TypeName(syn::Ident),
}

/// The expression of a placeholder: `head.field.field`, spanned at the
/// placeholder (or, in a default key, at the parameter).
pub(crate) struct Part {
    pub(crate) head: PartHead,
    pub(crate) fields: Vec<Member>,
    pub(crate) span: Span,
}

pub(crate) enum PartHead {
    /// A parameter, resolved like the parameter's own name.
    Param(Ident),
    /// The receiver.
    SelfValue(Token![self]),
}

/// A checked `#[invalidates]`.
pub(crate) struct InvalidatesPlan {
    pub(crate) krate: Path,
    pub(crate) cache: Option<String>,
    pub(crate) before: bool,
    pub(crate) patterns: Vec<Vec<KeyStep>>,
    /// `tags = [..]`: each tag's template.
    pub(crate) tags: Vec<Vec<KeyStep>>,
}

/// Checks `#[cached]` on `func`.
pub(crate) fn cached(args: CachedArgs, func: &Function, ctxt: &mut Ctxt) -> CachedPlan {
    check_signature(func, "cached", ctxt);
    check_owned_return(func, ctxt);
    if func.output.kind == ReturnKind::Unit {
        let message =
            "a `#[cached]` function must return the value to cache; `()` is nothing to cache";
        match &func.output.ty {
            Some(ty) => ctxt.error_spanned(ty, message),
            None => ctxt.error_spanned(&func.sig, message),
        }
    }

    let ttl_preset = ttl_preset(&args, ctxt);
    let ttl = positive_duration(
        ctxt,
        args.ttl
            .as_ref()
            .filter(|lit| !lit.value().starts_with('@')),
        "ttl",
        "remove `#[cached]` or give a positive duration such as \"30s\"",
        "caches nothing",
    );
    let stale = positive_duration(
        ctxt,
        args.stale.as_ref(),
        "stale",
        "remove `stale` or give a positive duration such as \"5m\"",
        "serves no stale value",
    );
    let l1_ttl = positive_duration(
        ctxt,
        args.l1_ttl.as_ref(),
        "l1_ttl",
        "use `tier = \"l2\"` to skip the in-process tier, or give a positive duration such as \"20s\"",
        "keeps nothing in the in-process tier",
    );
    let fail_safe = positive_duration(
        ctxt,
        args.fail_safe.as_ref(),
        "fail_safe",
        "remove `fail_safe` or give a positive duration such as \"1h\"",
        "serves nothing when the origin fails",
    );
    let timeout = positive_duration(
        ctxt,
        args.timeout.as_ref(),
        "timeout",
        "remove `timeout` or give a positive duration such as \"2s\"",
        "never waits for the origin",
    );

    if let (Some((l1, l1_lit)), Some((ttl, ttl_lit))) = (&l1_ttl, &ttl) {
        if l1 >= ttl {
            ctxt.error(
                l1_lit.span(),
                format!(
                    "`l1_ttl` ({}) must be shorter than `ttl` ({}): the in-process copy cannot outlive the value; make `l1_ttl` shorter or remove it",
                    l1_lit.value(),
                    ttl_lit.value()
                ),
            );
        }
    }
    if let (Some((fail_safe, fail_safe_lit)), Some((stale, stale_lit))) = (&fail_safe, &stale) {
        if fail_safe <= stale {
            ctxt.error(
                fail_safe_lit.span(),
                format!(
                    "`fail_safe` ({}) must be longer than `stale` ({}): stale values are served during the stale window anyway; make `fail_safe` longer or remove it",
                    fail_safe_lit.value(),
                    stale_lit.value()
                ),
            );
        }
    }
    if let Some((_, timeout_lit)) = &timeout {
        if stale.is_none() && fail_safe.is_none() {
            ctxt.error(
                timeout_lit.span(),
                "`timeout` answers with a stale value when the origin is slow, so it needs one at hand: add `stale = \"5m\"` or `fail_safe = \"1h\"`, or remove `timeout`",
            );
        }
    }

    let tier = args
        .tier
        .as_ref()
        .and_then(|lit| match lit.value().as_str() {
            "l1" => Some(Tier::L1),
            "l2" => Some(Tier::L2),
            "both" => Some(Tier::Both),
            other => {
                ctxt.error(
                    lit.span(),
                    format!("unknown tier `{other}`: expected one of \"l1\", \"l2\", \"both\""),
                );
                None
            }
        });
    // An `#[async_trait]` method that was expanded first is async too.
    let is_async = !matches!(
        func.body,
        crate::ast::Body::Direct {
            is_async: false,
            ..
        }
    );
    if let Some((_, timeout_lit)) = &timeout {
        origin_must_own(ctxt, func, "timeout", timeout_lit, is_async);
    }
    let refresh_ahead = args.refresh_ahead.as_ref().and_then(|lit| {
        origin_must_own(ctxt, func, "refresh_ahead", lit, is_async);
        if let Some(Tier::L2) = tier {
            ctxt.error(
                lit.span(),
                "`refresh_ahead` watches the value kept in process, and `tier = \"l2\"` keeps none; remove one of them",
            );
        }
        match parse_percent(&lit.value()) {
            Ok(percent @ 1..=99) => Some(percent),
            Ok(percent) => {
                ctxt.error(
                    lit.span(),
                    format!("`refresh_ahead = \"{percent}%\"` would {}: give the share of the TTL after which a hit refreshes the value, from 1% to 99%, e.g. \"80%\"", if percent == 0 { "refresh on every hit" } else { "never refresh" }),
                );
                None
            }
            Err(message) => {
                ctxt.error(lit.span(), message);
                None
            }
        }
    });
    if let Some(lock) = args.lock.as_ref().filter(|lock| lock.value) {
        if let (Some(Tier::L1), Some(lit)) = (tier, &args.tier) {
            ctxt.error(
                lock.span(),
                format!(
                    "`lock = true` makes instances wait for each other's value in Redis, and `tier = \"{}\"` keeps values out of Redis; remove `lock`, or write `tier = \"both\"`",
                    lit.value()
                ),
            );
        }
    }
    if let (Some(Tier::L2), Some((_, l1_lit))) = (tier, &l1_ttl) {
        ctxt.error(
            l1_lit.span(),
            "`l1_ttl` has no effect with `tier = \"l2\"`: values do not live in the in-process tier; remove one of them",
        );
    }

    let jitter_percent = args
        .jitter
        .as_ref()
        .and_then(|lit| match parse_percent(&lit.value()) {
            Ok(percent) => Some(percent),
            Err(message) => {
                ctxt.error(lit.span(), message);
                None
            }
        });

    if let Some(none) = args.none.as_ref().filter(|_| args.batch.is_none()) {
        if none.value
            && func.output.kind != ReturnKind::Option
            && func.output.kind != ReturnKind::Unit
        {
            ctxt.error(
                none.span,
                format!(
                    "`none = true` caches `None`, but `{}` does not return an `Option`; remove `none`",
                    func.sig.ident
                ),
            );
        }
    }

    let mut batch_key = None;
    let (key, template) = match &args.key {
        Some(lit) => {
            let before = ctxt.count();
            let template = key::parse(lit, Flavor::Key, ctxt);
            let steps = bind(&template.segments, Flavor::Key, func, ctxt);
            // A key with mistakes may name a parameter in a way that did not
            // parse, and a `skip` with mistakes may miss one: the key is
            // checked for what it leaves out only when both are sound.
            let key_is_sound = ctxt.count() == before;
            let in_key = placeholder_heads(&template.segments);
            batch_key = Some((lit, in_key.clone()));
            let before = ctxt.count();
            let skipped = check_skip(args.skip.as_ref(), &in_key, func, ctxt);
            let skip_is_sound = ctxt.count() == before && !args.skip_failed;
            if key_is_sound && skip_is_sound {
                check_key_covers(&in_key, &skipped, func, ctxt);
            }
            (steps, TemplateName::Written(lit.clone()))
        }
        None => {
            let skipped = check_skip(args.skip.as_ref(), &[], func, ctxt);
            default_key(func, &skipped, ctxt)
        }
    };

    let batch = crate::batch::check(&args, func, batch_key, ctxt);
    let tags = tags(args.tags.as_ref(), func, ctxt);
    CachedPlan {
        batch,
        tags,
        krate: runtime_path(args.krate),
        spec: SpecPlan {
            template,
            ttl_ms: ttl.map(|(d, _)| millis(d)),
            ttl_preset,
            stale_ms: stale.map(|(d, _)| millis(d)),
            l1_ttl_ms: l1_ttl.map(|(d, _)| millis(d)),
            jitter_percent,
            cache_none: args.none.as_ref().map(|b: &LitBool| b.value),
            cache: cache_name(ctxt, args.cache.as_ref()),
            tier,
            fail_safe_ms: fail_safe.map(|(d, _)| millis(d)),
            timeout_ms: timeout.map(|(d, _)| millis(d)),
            lock: args.lock.as_ref().map(|b| b.value),
            refresh_ahead,
        },
        key,
    }
}

/// The built-in TTL presets (`ttl = "@name"`), with their defaults, as the
/// runtime's `ttl` module has them.
const TTL_PRESETS: [(&str, &str); 6] = [
    ("short", "1m"),
    ("medium", "10m"),
    ("long", "1h"),
    ("list", "30s"),
    ("report", "15m"),
    ("lookup", "24h"),
];

/// `ttl = "@name"` (a built-in preset, checked here) or `ttl = PRESET` (a
/// constant of the application, checked by rustc): the preset's path.
fn ttl_preset(args: &CachedArgs, ctxt: &mut Ctxt) -> Option<proc_macro2::TokenStream> {
    if let (Some(lit), Some(_)) = (&args.ttl, &args.ttl_preset) {
        ctxt.error(lit.span(), "`ttl` is given twice; keep one of them");
        return None;
    }
    let krate = runtime_path(args.krate.clone());
    // Through a function of the crate's root, so that a path to what is
    // not a preset is reported in words naming no internal item.
    if let Some(path) = &args.ttl_preset {
        let span = syn::spanned::Spanned::span(path);
        return Some(quote::quote_spanned!(span=> #krate::ttl_preset(&#path)));
    }
    let lit = args.ttl.as_ref()?;
    let value = lit.value();
    let name = value.strip_prefix('@')?;
    if TTL_PRESETS.iter().any(|(preset, _)| *preset == name) {
        let constant = Ident::new(&name.to_ascii_uppercase(), lit.span());
        return Some(quote::quote!(#krate::ttl_preset(&#krate::ttl::#constant)));
    }
    let known: Vec<String> = TTL_PRESETS
        .iter()
        .map(|(preset, default)| format!("`@{preset}` ({default})"))
        .collect();
    let hint = match suggest::closest(name, TTL_PRESETS.iter().map(|(preset, _)| *preset)) {
        Some(close) => format!("did you mean `@{close}`? "),
        None => String::new(),
    };
    ctxt.error(
        lit.span(),
        format!(
            "`@{name}` is not a built-in TTL preset; {hint}the built-in ones are {}; for one of your own, declare `const {}: cache_runtime::TtlPreset = cache_runtime::TtlPreset::new(\"{name}\", ..);` and write `ttl = {}`",
            known.join(", "),
            name.to_ascii_uppercase(),
            name.to_ascii_uppercase(),
        ),
    );
    None
}

/// Checks `#[invalidates]` on `func`.
pub(crate) fn invalidates(
    args: InvalidatesArgs,
    func: &Function,
    ctxt: &mut Ctxt,
) -> InvalidatesPlan {
    check_signature(func, "invalidates", ctxt);
    if args.patterns.is_empty() && args.tags.is_none() && !ctxt.has_errors() {
        ctxt.error(
            Span::call_site(),
            "`#[invalidates]` needs at least one key or pattern, e.g. `#[invalidates(\"orders:list:<tenant>:*\")]`, or tags, e.g. `#[invalidates(tags = [\"product:<id>\"])]`",
        );
    }
    let patterns = args
        .patterns
        .iter()
        .map(|lit| {
            let template = key::parse(lit, Flavor::Pattern, ctxt);
            bind(&template.segments, Flavor::Pattern, func, ctxt)
        })
        .collect();
    InvalidatesPlan {
        krate: runtime_path(args.krate),
        cache: cache_name(ctxt, args.cache.as_ref()),
        before: args.before.is_some_and(|b| b.value),
        patterns,
        tags: tags(args.tags.as_ref(), func, ctxt),
    }
}

/// Checks the templates of `tags = [..]` and binds their placeholders.
fn tags(tags: Option<&crate::attr::Tags>, func: &Function, ctxt: &mut Ctxt) -> Vec<Vec<KeyStep>> {
    let Some(tags) = tags else {
        return Vec::new();
    };
    if tags.templates.is_empty() {
        ctxt.error(
            tags.span,
            "`tags = []` names no tag: list at least one, e.g. `tags = [\"product:<id>\"]`, or remove `tags`",
        );
    }
    tags.templates
        .iter()
        .map(|lit| {
            let template = key::parse(lit, Flavor::Tag, ctxt);
            bind(&template.segments, Flavor::Tag, func, ctxt)
        })
        .collect()
}

/// What both macros require of the function itself.
fn check_signature(func: &Function, macro_name: &str, ctxt: &mut Ctxt) {
    if let Some(constness) = &func.sig.constness {
        ctxt.error(
            constness.span,
            format!("`#[{macro_name}]` cannot apply to a `const fn`: a cache is not available at compile time; remove `const`"),
        );
    }
    if let Some(impl_trait) = &func.output.impl_trait {
        ctxt.error_spanned(
            impl_trait,
            format!("`#[{macro_name}]` needs a return type it can name; `impl Trait` is not one: return a concrete type"),
        );
    }
}

/// A cached value outlives the call that made it: it cannot borrow from
/// the arguments, so a `&T` (or a type holding a borrow) is refused on the
/// type, with what to return instead.
fn check_owned_return(func: &Function, ctxt: &mut Ctxt) {
    let Some(ty) = &func.output.ty else {
        return;
    };
    if func.output.impl_trait.is_some() {
        return; // reported by `check_signature`
    }
    let mut peeled = ty;
    while let syn::Type::Paren(syn::TypeParen { elem, .. })
    | syn::Type::Group(syn::TypeGroup { elem, .. }) = peeled
    {
        peeled = elem;
    }
    if let syn::Type::Reference(reference) = peeled {
        let referent = &reference.elem;
        let (owned, shared) = match quote::ToTokens::to_token_stream(referent)
            .to_string()
            .as_str()
        {
            "str" => ("String".to_owned(), "Arc<str>".to_owned()),
            "[u8]" => ("Vec<u8>".to_owned(), "Arc<[u8]>".to_owned()),
            other => (other.to_owned(), format!("Arc<{other}>")),
        };
        ctxt.error_spanned(
            ty,
            format!(
                "a cached function must return an owned value: the cache hands out copies that outlive the call, and a reference cannot; return `{owned}` or `{shared}`"
            ),
        );
    } else if stored_type(peeled, func.output.kind).is_some_and(crate::ast::borrows_inside) {
        ctxt.error_spanned(
            ty,
            "a cached function must return an owned value: the cache hands out copies that outlive the call, and this type holds a borrow (a `&` or a lifetime); return owned data (`String` for `&str`, `T` or `Arc<T>` for `&T`)",
        );
    }
}

/// The type of the value a return type stores: `T` of `Result<T, E>` (the
/// error is returned, not stored, and may borrow) and of `Option<T>`, else
/// the type itself.
fn stored_type(ty: &syn::Type, kind: ReturnKind) -> Option<&syn::Type> {
    if kind != ReturnKind::Result && kind != ReturnKind::Option {
        return Some(ty);
    }
    let syn::Type::Path(path) = ty else {
        return Some(ty);
    };
    let last = path.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// Parses a duration option that must not be zero.
fn positive_duration<'a>(
    ctxt: &mut Ctxt,
    lit: Option<&'a LitStr>,
    name: &str,
    fix: &str,
    zero_means: &str,
) -> Option<(Duration, &'a LitStr)> {
    let lit = lit?;
    match parse_duration(&lit.value()) {
        Ok(duration) if duration.is_zero() => {
            let article = if name.starts_with(['a', 'e', 'i', 'o', 'u', 'l']) {
                "an"
            } else {
                "a"
            };
            ctxt.error(
                lit.span(),
                format!("{article} `{name}` of zero {zero_means}; {fix}"),
            );
            None
        }
        Ok(duration) => Some((duration, lit)),
        Err(message) => {
            ctxt.error(lit.span(), message);
            None
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn cache_name(ctxt: &mut Ctxt, lit: Option<&LitStr>) -> Option<String> {
    let lit = lit?;
    let name = lit.value();
    if name.trim().is_empty() {
        ctxt.error(
            lit.span(),
            "`cache` needs a name, e.g. `cache = \"lookups\"`; remove `cache` to use the default cache",
        );
        return None;
    }
    Some(name)
}

fn runtime_path(krate: Option<Path>) -> Path {
    krate.unwrap_or_else(|| syn::parse_quote!(::cache_runtime))
}

/// Binds the placeholders of a template to the function's parameters and
/// checks that the key they build is unambiguous.
///
/// A `#[cached]` key may not read `&mut` parameters: the function changes
/// that state. An `#[invalidates]` pattern may: it is built before the body
/// runs, from the state the cached values were made from.
fn bind(segments: &[Segment], flavor: Flavor, func: &Function, ctxt: &mut Ctxt) -> Vec<KeyStep> {
    check_separators(segments, ctxt);
    segments
        .iter()
        .filter_map(|segment| match &segment.kind {
            SegmentKind::Literal(text) => Some(KeyStep::Literal(text.clone())),
            SegmentKind::Wildcard => Some(KeyStep::Wildcard),
            SegmentKind::Placeholder(placeholder) => {
                bind_placeholder(placeholder, segment.span, flavor, func, ctxt).map(KeyStep::Part)
            }
        })
        .collect()
}

fn bind_placeholder(
    placeholder: &Placeholder,
    span: Span,
    flavor: Flavor,
    func: &Function,
    ctxt: &mut Ctxt,
) -> Option<Part> {
    let written = placeholder.written();
    // Field names are shown at the placeholder but belong to the expansion,
    // so that rustc's "a field with a similar name exists" does not offer
    // to rewrite the key's string into code.
    let field_span = Span::call_site().located_at(span);
    let fields = placeholder
        .fields
        .iter()
        .map(|field| match field.parse::<u32>() {
            Ok(index) => Member::Unnamed(syn::Index {
                index,
                span: field_span,
            }),
            Err(_) => {
                let mut ident: Ident =
                    syn::parse_str(field).expect("key.rs checked the field name");
                ident.set_span(field_span);
                Member::Named(ident)
            }
        })
        .collect();
    let must_not_change = |what: &str, name: &str| {
        format!(
            "`{written}` refers to `&mut` {what} `{name}`; a key must not depend on state the function changes. Use a value parameter or a field of it"
        )
    };

    if placeholder.head == "self" {
        let Some(receiver) = &func.receiver else {
            ctxt.error(
                span,
                format!("unknown placeholder `{written}`: `self` is only available in methods, and `{}` is not one", func.sig.ident),
            );
            return None;
        };
        if receiver.kind == ReceiverKind::RefMut && flavor == Flavor::Key {
            ctxt.error(span, must_not_change("receiver", "self"));
            return None;
        }
        let self_token = Token![self](receiver.self_token.span.located_at(span));
        return Some(Part {
            head: PartHead::SelfValue(self_token),
            fields,
            span,
        });
    }

    let head = placeholder
        .head
        .strip_prefix("r#")
        .unwrap_or(&placeholder.head);
    let Some(param) = func.param(head) else {
        let names: Vec<String> = func.names().collect();
        let hint = match suggest::closest(head, names.iter().map(String::as_str)) {
            Some(close) => format!(
                "did you mean `{close}`? (`{}`)",
                placeholder.with_head(close)
            ),
            None if names.is_empty() => format!("`{}` has no parameters", func.sig.ident),
            None => format!(
                "the parameters are {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ctxt.error(
            span,
            format!("unknown placeholder `{written}`: no parameter is named `{head}`; {hint}"),
        );
        return None;
    };
    if param.mut_ref && flavor == Flavor::Key {
        ctxt.error(span, must_not_change("parameter", head));
        return None;
    }
    if let (Some(float), true) = (float_type(&param.ty), placeholder.fields.is_empty()) {
        ctxt.error(
            span,
            format!("`{written}` is a floating-point number (`{float}`), which cannot be part of a key: {FLOAT_ADVICE}"),
        );
        return None;
    }
    let mut ident = param.name.clone()?;
    ident.set_span(ident.span().located_at(span));
    Some(Part {
        head: PartHead::Param(ident),
        fields,
        span,
    })
}

/// Checks the names of `skip(..)` and returns them (without `r#`): each
/// must be a parameter (or `self` in a method) that is not in the key
/// (`in_key`, the heads of its placeholders), once.
fn check_skip(
    skip: Option<&Skip>,
    in_key: &[String],
    func: &Function,
    ctxt: &mut Ctxt,
) -> Vec<String> {
    let Some(skip) = skip else {
        return Vec::new();
    };
    let mut names: Vec<String> = func.names().collect();
    // Names bound inside pattern parameters may be skipped too.
    for param in func.params.iter().filter(|p| p.name.is_none()) {
        names.extend(param.bindings.iter().map(|b| b.unraw().to_string()));
    }
    let mut skipped: Vec<String> = Vec::new();
    for ident in &skip.names {
        let name = ident.unraw().to_string();
        if skipped.contains(&name) {
            ctxt.error(
                ident.span(),
                format!("`{name}` is listed twice in `skip`; keep one"),
            );
            continue;
        }
        if name == "self" && func.receiver.is_none() {
            ctxt.error(
                ident.span(),
                format!(
                    "`skip(self)`: `{}` is not a method, so it has no `self`; remove it from `skip`",
                    func.sig.ident
                ),
            );
            continue;
        }
        if in_key.contains(&name) && names.contains(&name) {
            ctxt.error(
                ident.span(),
                format!(
                    "`{name}` is in the key and in `skip`, which says it is not part of the key; remove it from `skip` (or from the key)"
                ),
            );
            continue;
        }
        if !names.contains(&name) {
            // The parameters that could be meant: those not in the key.
            let left_out: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !in_key.iter().any(|k| k == n))
                .collect();
            let hint = match suggest::closest(&name, left_out.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None if names.is_empty() => format!("`{}` has no parameters", func.sig.ident),
                None => format!("the parameters are {}", quoted_list(&names)),
            };
            ctxt.error(
                ident.span(),
                format!("`skip` names `{name}`, but no parameter is named `{name}`; {hint}"),
            );
            continue;
        }
        skipped.push(name);
    }
    skipped
}

/// An explicit key must name every parameter, in a placeholder or through
/// a field of it, or the parameter must be in `skip(..)`: a parameter that
/// is neither would make calls that differ only in it share one value.
/// Parameters named `_` or `_name`, and patterns that bind no name, are
/// visibly unused and need neither.
fn check_key_covers(in_key: &[String], skipped: &[String], func: &Function, ctxt: &mut Ctxt) {
    // `skip(db, name)` with what was already skipped.
    let skip_with = |name: &str| {
        let mut list: Vec<&str> = skipped.iter().map(String::as_str).collect();
        list.push(name);
        format!("skip({})", list.join(", "))
    };
    let covered =
        |name: &str| in_key.iter().any(|n| n == name) || skipped.iter().any(|n| n == name);
    if let Some(receiver) = &func.receiver {
        if !covered("self") {
            ctxt.error(
                receiver.self_token.span,
                format!(
                    "the key does not name `self`, so every instance would share one cached value per key: name what identifies the instance in the key (e.g. `<self.id>`), or, if the result does not depend on the instance, add `{}`",
                    skip_with("self")
                ),
            );
        }
    }
    for param in &func.params {
        match &param.name {
            Some(ident) => {
                let name = ident.unraw().to_string();
                if name.starts_with('_') || covered(&name) {
                    continue;
                }
                ctxt.error(
                    ident.span(),
                    format!(
                        "`{name}` is not in the key, so calls that differ only in `{name}` would share one cached value: name it in the key (`<{name}>`, or a field of it), or, if it does not change the result, add `{}`",
                        skip_with(&name)
                    ),
                );
            }
            None => {
                let names: Vec<String> = param
                    .bindings
                    .iter()
                    .map(|b| b.unraw().to_string())
                    .filter(|n| !n.starts_with('_'))
                    .collect();
                let left: Vec<&String> = names.iter().filter(|n| !covered(n)).collect();
                if left.is_empty() {
                    continue;
                }
                ctxt.error_spanned(
                    &param.tokens,
                    format!(
                        "a key cannot name a parameter bound by a pattern, so calls that differ only in it would share one cached value: bind it to a name (`name: Type`) and name that in the key, or, if it does not change the result, add `{}`",
                        skip_with(&left.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", "))
                    ),
                );
            }
        }
    }
}

/// The heads of the placeholders of a template (without `r#`).
fn placeholder_heads(segments: &[Segment]) -> Vec<String> {
    segments
        .iter()
        .filter_map(|segment| match &segment.kind {
            SegmentKind::Placeholder(placeholder) => Some(
                placeholder
                    .head
                    .strip_prefix("r#")
                    .unwrap_or(&placeholder.head)
                    .to_owned(),
            ),
            _ => None,
        })
        .collect()
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why floats are not key parts, and what to do instead.
pub(crate) const FLOAT_ADVICE: &str = "0.1 + 0.2 != 0.3 and NaN != NaN, so equal amounts could be cached apart; pass it rounded to an integer (cents, basis points) and key on that";

/// `f32` or `f64` when `ty` is one (or a reference to one).
pub(crate) fn float_type(ty: &syn::Type) -> Option<&'static str> {
    match ty {
        syn::Type::Reference(r) => float_type(&r.elem),
        syn::Type::Paren(p) => float_type(&p.elem),
        syn::Type::Group(g) => float_type(&g.elem),
        syn::Type::Path(path) if path.qself.is_none() => {
            if path.path.is_ident("f64") {
                Some("f64")
            } else if path.path.is_ident("f32") {
                Some("f32")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Two placeholders must have literal text with a `:` between them:
/// escaped values never contain `:`, so the key splits one way only.
fn check_separators(segments: &[Segment], ctxt: &mut Ctxt) {
    let mut previous: Option<&Placeholder> = None;
    // The text since the previous placeholder, `*` included.
    let mut between = String::new();
    for segment in segments {
        match &segment.kind {
            SegmentKind::Literal(text) => between.push_str(text),
            SegmentKind::Wildcard => between.push(WILDCARD),
            SegmentKind::Placeholder(placeholder) => {
                if let Some(before) = previous.filter(|_| !between.contains(SEPARATOR)) {
                    let (a, b) = (before.written(), placeholder.written());
                    // `<a>-<b>` becomes `<a>:<b>`, `<a>pp<b>` becomes `<a>:pp<b>`.
                    let fixed = match between.find(|c: char| !c.is_alphanumeric()) {
                        Some(at) => {
                            let mut fixed = between.clone();
                            let len = fixed[at..].chars().next().map_or(0, char::len_utf8);
                            fixed.replace_range(at..at + len, ":");
                            fixed
                        }
                        None => format!(":{between}"),
                    };
                    ctxt.error(
                        segment.span,
                        format!(
                            "placeholders `{a}` and `{b}` must be separated by `:` so that different arguments never make the same key; write `{a}{fixed}{b}`"
                        ),
                    );
                }
                previous = Some(placeholder);
                between.clear();
            }
        }
    }
}

/// The key of a `#[cached]` without `key = ".."`: the module path and the
/// function name, ended by `#`, then every argument, each after a `:`; and
/// its template, the same text with a placeholder for each argument.
fn default_key(
    func: &Function,
    skipped: &[String],
    ctxt: &mut Ctxt,
) -> (Vec<KeyStep>, TemplateName) {
    let name = func.sig.ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
    if func.receiver.is_some() {
        let mut example = format!("{name}:<self.id>");
        for param in &func.params {
            if let Some(param) = &param.name {
                example.push_str(&format!(":<{param}>"));
            }
        }
        ctxt.error(
            Span::call_site(),
            format!(
                "a method must give `key = \"...\"`: a default key would share one cached value between every instance of the type; e.g. `key = \"{example}\"`"
            ),
        );
    }
    // `#` ends the function's path: paths never hold one, so no argument
    // list can make this key equal another function's. The template shown
    // in metrics is the key's shape, `#` included.
    let head = format!("::{name}#");
    let mut steps = vec![KeyStep::ModulePath(head.clone())];
    let mut template = head;
    // What a generic function returns may depend on its type parameters
    // alone (`size_of::<T>()`): each instantiation keys apart.
    for ty in func.sig.generics.type_params() {
        template.push_str(&format!(":<{}>", ty.ident.unraw()));
        steps.push(KeyStep::Literal(":".to_owned()));
        steps.push(KeyStep::TypeName(ty.ident.clone()));
    }
    for param in &func.params {
        if !param.bindings.is_empty()
            && param
                .bindings
                .iter()
                .all(|b| skipped.contains(&b.unraw().to_string()))
        {
            continue;
        }
        let Some(ident) = &param.name else {
            ctxt.error_spanned(
                &param.tokens,
                "the default key is made of every argument by name, and this parameter is a pattern; give a `key = \"...\"` that names what identifies a call",
            );
            continue;
        };
        if param.mut_ref {
            ctxt.error_spanned(
                &param.tokens,
                format!(
                    "`{ident}` is a `&mut` parameter, and the default key is made of every argument; a key must not depend on state the function changes. Give a `key = \"...\"` without it"
                ),
            );
            continue;
        }
        if let Some(float) = float_type(&param.ty) {
            ctxt.error_spanned(
                &param.tokens,
                format!("`{ident}` is a floating-point number (`{float}`), and the default key is made of every argument: {FLOAT_ADVICE}; or `skip({ident})` if it does not change the result"),
            );
            continue;
        }
        // A type without `KeyPart` is reported on the parameter's name.
        template.push_str(&format!(":<{}>", ident.unraw()));
        steps.push(KeyStep::Literal(":".to_owned()));
        steps.push(KeyStep::Part(Part {
            head: PartHead::Param(ident.clone()),
            fields: Vec::new(),
            span: ident.span(),
        }));
    }
    (steps, TemplateName::Default(template))
}

/// With `timeout` or `refresh_ahead` (`option`), the origin call may
/// outlive its caller: it runs in a task of its own, so it must own what it
/// uses. Borrowed arguments are copied (`ToOwned`); a receiver, a mutable
/// borrow, an argument bound by a pattern, or a type the generated code
/// cannot name cannot be.
fn origin_must_own(ctxt: &mut Ctxt, func: &Function, option: &str, lit: &LitStr, is_async: bool) {
    let name = &func.sig.ident;
    if !is_async {
        ctxt.error(
            lit.span(),
            format!("`{option}` needs an `async fn`: the origin call goes on in a task after the caller has its answer; make `{name}` async, or remove `{option}`"),
        );
        return;
    }
    if func.receiver.is_some() || matches!(func.body, crate::ast::Body::AsyncTrait { .. }) {
        ctxt.error(
            lit.span(),
            format!("`{option}` lets the origin call go on after the caller has its answer, so it cannot borrow `self`; move the body of `{name}` into a free `async fn` that takes what it needs by value or by `&` (borrowed arguments are copied), and cache that"),
        );
        return;
    }
    for param in &func.params {
        let problem = if param.mut_ref {
            Some("a `&mut` argument, which the origin call cannot keep after the caller has its answer; pass it by value or by `&`")
        } else if param.referent().is_some() && param.name.is_none() {
            Some("a borrowed argument bound by a pattern; bind it to a name")
        } else if crate::ast::contains_impl_trait(&param.ty) {
            Some("an `impl Trait` argument, whose owned copy the generated code cannot name; use a generic parameter")
        } else if param.referent().is_some_and(crate::ast::contains_dyn) {
            Some("a borrowed trait object, which has no owned copy; pass an `Arc<dyn ..>` (by value or by `&`)")
        } else if crate::ast::borrows_inside(param.referent().unwrap_or(&param.ty)) {
            Some("an argument that holds a borrow (a lifetime or a `&` inside its type), which the origin call cannot keep; pass owned data")
        } else {
            None
        };
        if let Some(problem) = problem {
            ctxt.error(
                syn::spanned::Spanned::span(&param.ty),
                format!("`{option}` runs the origin call in a task of its own, which owns copies of the arguments: this is {problem}, or remove `{option}`"),
            );
        }
    }
}
