//! `#[cached(batch = "ids")]`: a function over many ids, called with only
//! the ids no tier holds, each value stored under its own key. Its checks
//! and its code.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, LitStr, Type};

use crate::ast::{Body, Function, ReceiverKind};
use crate::attr::CachedArgs;
use crate::ctxt::Ctxt;
use crate::expand::{build_key, local, private, respan, return_type, spec_statics, value_codec};
use crate::suggest;
use crate::valid::CachedPlan;

/// A checked `batch = ".."`.
pub(crate) struct BatchPlan {
    /// The parameter holding the ids, as written.
    param: Ident,
    /// Its `mut`, if any.
    binding_mut: Option<syn::token::Mut>,
    /// Its type, as written.
    ty: Type,
}

/// Checks `batch = ".."` (if given) against the function and its key
/// (`key`, with the heads of its placeholders, when one was written).
pub(crate) fn check(
    args: &CachedArgs,
    func: &Function,
    key: Option<(&LitStr, Vec<String>)>,
    ctxt: &mut Ctxt,
) -> Option<BatchPlan> {
    let lit = args.batch.as_ref()?;
    let name = lit.value();
    let span = lit.span();
    let unsupported = [
        (
            "stale",
            args.stale.as_ref().map(LitStr::span),
            "a stale id is loaded again with the others",
        ),
        (
            "fail_safe",
            args.fail_safe.as_ref().map(LitStr::span),
            "the batch's error is returned",
        ),
        (
            "timeout",
            args.timeout.as_ref().map(LitStr::span),
            "the batch waits for its origin call",
        ),
        (
            "refresh_ahead",
            args.refresh_ahead.as_ref().map(LitStr::span),
            "an id due for a refresh is served and loaded again once expired",
        ),
        (
            "lock",
            args.lock
                .as_ref()
                .filter(|lock| lock.value)
                .map(|lock| lock.span),
            "ids are single-flight in each process, not across instances",
        ),
        (
            "tags",
            args.tags.as_ref().map(|tags| tags.span),
            "invalidate the ids' keys, e.g. `#[invalidates(\"product:<id>\")]`",
        ),
    ];
    for (option, at, instead) in unsupported {
        if let Some(at) = at {
            ctxt.error(
                at,
                format!("`{option}` does not apply to a batch function (`batch = \"{name}\"`): {instead}; remove `{option}`"),
            );
        }
    }
    match &func.body {
        Body::Direct { is_async: true, .. } => {}
        Body::Direct { is_async: false, .. } => ctxt.error(
            span,
            format!("`batch` needs an `async fn`: make `{}` async, or cache one id at a time without `batch`", func.sig.ident),
        ),
        Body::AsyncTrait { .. } => ctxt.error(
            span,
            "`batch` does not apply to an `#[async_trait]` method; cache a free `async fn` or an inherent method",
        ),
    }
    if let Some(receiver) = &func.receiver {
        if receiver.kind != ReceiverKind::Ref {
            ctxt.error(
                receiver.self_token.span,
                "a batch function may call its body more than once (for ids whose load another caller gave up), so it takes `&self`, not `self` or `&mut self`",
            );
        }
    }
    for param in &func.params {
        if param.mut_ref {
            ctxt.error_spanned(
                &param.tokens,
                "a batch function may call its body more than once (for ids whose load another caller gave up), so its parameters cannot be `&mut`; take `&T`",
            );
        }
    }
    let Some(param) = func.param(&name) else {
        let names: Vec<String> = func
            .params
            .iter()
            .filter_map(|p| p.name.as_ref())
            .map(|n| n.unraw().to_string())
            .collect();
        let hint = match suggest::closest(&name, names.iter().map(String::as_str)) {
            Some(close) => format!("did you mean `{close}`?"),
            None => {
                "name the parameter that holds the ids, e.g. `batch = \"ids\"` for `ids: &[u64]`"
                    .to_owned()
            }
        };
        ctxt.error(
            span,
            format!("`batch` names `{name}`, but no parameter is named `{name}`; {hint}"),
        );
        return None;
    };
    match key {
        None => ctxt.error(
            span,
            format!("a batch function needs the key of one id: add `key = \"item:<{name}>\"`, where `<{name}>` stands for each id"),
        ),
        Some((key, heads)) if !heads.contains(&name) => ctxt.error(
            key.span(),
            format!("with `batch = \"{name}\"` the key must name `<{name}>`, which stands for each id, e.g. `key = \"item:<{name}>\"`"),
        ),
        Some(_) => {}
    }
    Some(BatchPlan {
        param: param.name.clone()?,
        binding_mut: param.binding_mut,
        ty: (*param.ty).clone(),
    })
}

/// The body of a batch function: the ids are taken from their parameter,
/// each id's key is made with the parameter's name bound to that id, and
/// the origin rebuilds the parameter from the ids it is called with.
pub(crate) fn expand(func: &Function, plan: &CachedPlan, batch: &BatchPlan) -> TokenStream {
    let Body::Direct { block, .. } = &func.body else {
        unreachable!("checked: a batch function is a plain `async fn`");
    };
    let span = func.output.span;
    let rt = respan(private(&plan.krate), span);
    let root = respan(plan.krate.to_token_stream(), span);
    let statics = spec_statics(func, &plan.spec, &private(&plan.krate));
    let key = build_key(&plan.key, &private(&plan.krate));
    let key_var = local("__cache_key");
    let ret = return_type(func);
    let stored = quote_spanned!(span=> ::core::option::Option<<#ret as #root::BatchReturn>::Value>);
    let (codec, weigher) = value_codec(plan, &rt, &root, &stored, span);

    let ids = &batch.param;
    let ids_mut = &batch.binding_mut;
    let missing = local("__cache_missing");
    let held = local("__cache_ids");
    // The body's ids, of the parameter's type, held by a local (for a
    // borrowed type, what it borrows: a `Vec` for a slice).
    let ty = &batch.ty;
    let owned = quote_spanned!(ty.span()=> <#ty as #root::BatchIds>::from_ids(#missing));
    let rebuild = match ty {
        Type::Reference(reference) => {
            let unbound = Type::Reference(syn::TypeReference {
                lifetime: None,
                ..reference.clone()
            });
            quote! {
                let #held = #owned;
                let #ids_mut #ids: #unbound = &#held;
            }
        }
        _ => quote!(let #ids_mut #ids: #ty = #owned;),
    };
    // The other arguments, copied for each call of the body.
    let copies = func
        .params
        .iter()
        .filter(|param| param.name.as_ref() != Some(ids))
        .flat_map(|param| {
            param
                .bindings
                .iter()
                .map(move |name| (name, param.binding_mut))
        })
        .map(|(name, binding_mut)| {
            quote! {
                #[allow(unused_variables, clippy::clone_on_copy, clippy::redundant_clone)]
                let #binding_mut #name = ::core::clone::Clone::clone(&#name);
            }
        });
    // A `mut` binding is mutated in the body's copy, not in the argument
    // itself: marked as used, it draws no `unused_mut`.
    let marks = func
        .params
        .iter()
        .filter(|param| param.binding_mut.is_some())
        .filter_map(|param| param.name.as_ref())
        .map(|name| quote!(let _ = &mut #name;));
    let stmts = &block.stmts;
    let ids_arg = quote_spanned!(ty.span()=> #root::batch_ids::<#ty>(#ids));
    let check = quote_spanned!(span=> #root::batch_return::<#ret>());
    let fetch = quote_spanned!(span=> #rt::fetch_batch::<#ret, _, _>);
    quote! {
        #statics
        #check;
        #(#marks)*
        #fetch(
            #codec,
            #weigher,
            &__CACHE_SPEC,
            &__CACHE_SLOT,
            #ids_arg,
            |#ids: &<#ret as #root::BatchReturn>::Id| { #key #key_var },
            |#missing| {
                #(#copies)*
                #rt::typed::<#ret, _>(async move { #rebuild #(#stmts)* })
            },
        ).await
    }
}
