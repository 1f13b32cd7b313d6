//! Code generation, from the checked model only.
//!
//! The user's attributes, visibility and signature are re-emitted as they
//! are; only the body is replaced. An async body becomes an `async move`
//! block given the declared type through `__private::typed`; a sync body a
//! `move` closure with the declared return type, run once by the runtime,
//! so that `return` and `?` in the body stay local to it. The runtime is
//! reached through one path (`crate = ".."`, default `::cache_runtime`) and
//! its `__private` module only; std through `::core` paths. Generated
//! locals have `mixed_site` hygiene, so they never meet the user's names.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::Block;

use crate::ast::{self, Body, Function};
use crate::ctxt::Ctxt;
use crate::valid::{
    self, CachedPlan, InvalidatesPlan, KeyStep, Part, PartHead, SpecPlan, TemplateName, Tier,
};
use crate::{attr, fallback};

/// `#[cached(args)] item`.
pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match Function::parse(item.clone()) {
        Ok(func) => func,
        Err(why) => return fallback::not_a_function(item, why, "cached"),
    };
    let mut ctxt = Ctxt::new();
    let args = attr::parse_cached(args, &mut ctxt);
    let plan = valid::cached(args, &func, &mut ctxt);
    match ctxt.check() {
        Ok(()) => emit(&func, gen_cached(&func, &plan)),
        Err(error) => fallback::with_error(item, error),
    }
}

/// `#[invalidates(args)] item`.
pub(crate) fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match Function::parse(item.clone()) {
        Ok(func) => func,
        Err(why) => return fallback::not_a_function(item, why, "invalidates"),
    };
    let mut ctxt = Ctxt::new();
    let args = attr::parse_invalidates(args, &mut ctxt);
    let plan = valid::invalidates(args, &func, &mut ctxt);
    match ctxt.check() {
        Ok(()) => emit(&func, gen_invalidates(&func, &plan)),
        Err(error) => fallback::with_error(item, error),
    }
}

/// The function with `body` in place of its own.
fn emit(func: &Function, body: TokenStream) -> TokenStream {
    let Function {
        attrs,
        inner_attrs,
        vis,
        sig,
        braces,
        ..
    } = func;
    let mut block = TokenStream::new();
    braces.surround(&mut block, |block| {
        block.extend(quote! {
            #(#inner_attrs)*
            #body
        });
    });
    quote! {
        #(#attrs)*
        #vis #sig #block
    }
}

/// The body of a `#[cached]` function.
fn gen_cached(func: &Function, plan: &CachedPlan) -> TokenStream {
    if let Some(batch) = &plan.batch {
        return crate::batch::expand(func, plan, batch);
    }
    // Errors about the value type (not `Clone`, not `Send`, ..) are reported
    // once, on the return type: every generated token of the call is there.
    let span = func.output.span;
    let key_var = relocate(local("__cache_key").into_token_stream(), span);
    // Paths from the root (`::cache_runtime`, or the user's `crate = ".."`)
    // resolve the same with any span.
    let rt = respan(private(&plan.krate), span);
    let statics = spec_statics(func, &plan.spec, &private(&plan.krate));
    let key = build_key(&plan.key, &private(&plan.krate));
    let ret = return_type(func);
    // The kind (`Result`, `Option`, plain) is picked from the type, so that
    // an alias of `Result` is a `Result`: see `__private::Dispatch`. Errors
    // are shared with waiters only when the error type may be: `Clone` and
    // `'static`. Method probing does not see lifetimes, so a return type
    // that names one (or a type parameter, which may hide one) starts the
    // probe a step lower, where errors are not shared.
    let probe = if names_lifetime_or_type_param(&ret, &func.sig.generics) {
        quote_spanned!(span=> &&#rt::Dispatch::<#ret>::new())
    } else {
        quote_spanned!(span=> &&&#rt::Dispatch::<#ret>::new())
    };
    // The value is checked (`CachedValue`) through a function of the
    // crate's root, so that its error names no internal item: rustc leaves
    // out the same error of `fetch_as`'s bound at the same span.
    let root = respan(plan.krate.to_token_stream(), span);
    let kind = quote_spanned! {span=>
        #root::cached_value::<_, #ret>({
            #[allow(unused_imports)]
            use #rt::{OptionProbe as _, PlainProbe as _, ResultProbe as _, SharedResultProbe as _};
            (#probe).__cache_runtime_kind()
        })
    };

    let (codec, weigher) = value_codec(plan, &rt, &root, &ret, span);

    // The attribute's tags, named first thing in the origin call: built
    // only when the origin is called, never on a hit.
    let tag = tag_value(&plan.tags, &private(&plan.krate));
    let tagged = |block: &Block| {
        let stmts = &block.stmts;
        quote!({ #tag #(#stmts)* })
    };
    // A hit is answered before any future is made, with the work of a
    // plain `fn`'s hit. The key is built in a block of its own (the load
    // after a miss takes a copy): it is not part of the function's future,
    // which every call makes and moves.
    let fetch = |block: &Block| {
        let block = tagged(block);
        quote_spanned! {span=>
            {
                let __cache_found = {
                    #key
                    #rt::fetch_as(#kind, #weigher, #codec, &__CACHE_SPEC, &__CACHE_SLOT, &#key_var, move || #rt::typed::<#ret, _>(async move #block))
                };
                match __cache_found {
                    ::core::result::Result::Ok(__cache_hit) => __cache_hit,
                    ::core::result::Result::Err(__cache_load) => __cache_load.await,
                }
            }
        }
    };

    match &func.body {
        // With `timeout` the origin call may go on in a task after the
        // caller has its answer: it owns copies of the borrowed arguments,
        // re-borrowed under their names inside (checked in `valid`: a free
        // `async fn` without `&mut` or unnamed borrowed arguments).
        Body::Direct {
            is_async: true,
            block,
        } if plan.spec.timeout_ms.is_some() || plan.spec.refresh_ahead.is_some() => {
            let mut copies = TokenStream::new();
            let mut borrows = TokenStream::new();
            // A `mut` binding is mutated in the origin call's copy, not in
            // the argument itself: marked as used, it draws no `unused_mut`.
            let mut marks = TokenStream::new();
            for param in &func.params {
                let (Some(name), Some(referent)) = (&param.name, param.referent()) else {
                    continue;
                };
                let owned = local(&format!("__cache_owned_{}", name.unraw()));
                let binding_mut = &param.binding_mut;
                if binding_mut.is_some() {
                    marks.extend(quote_spanned! {span=> let _ = &mut #name; });
                }
                copies.extend(quote_spanned! {span=>
                    let #owned = ::std::borrow::ToOwned::to_owned(#name);
                });
                // An argument used only in the key is not used here.
                borrows.extend(quote_spanned! {span=>
                    #[allow(unused_variables)]
                    let #binding_mut #name: &#referent = ::std::borrow::Borrow::borrow(&#owned);
                });
            }
            // The body's statements, in the async block itself: a nested
            // block would draw `unused_braces` on one-expression bodies.
            let stmts = &block.stmts;
            // The copies are made only when the origin is called, never on
            // a hit.
            quote! {
                #statics
                #key
                #marks
                #rt::fetch_detached_as(#kind, #weigher, #codec, &__CACHE_SPEC, &__CACHE_SLOT, &#key_var, || {
                    #copies
                    move || #rt::typed::<#ret, _>(async move { #borrows #tag #(#stmts)* })
                }).await
            }
        }
        Body::Direct {
            is_async: true,
            block,
        } => {
            let fetch = fetch(block);
            quote! {
                #statics
                #fetch
            }
        }
        Body::Direct {
            is_async: false,
            block,
        } => {
            let block = tagged(block);
            let fetch = quote_spanned! {span=>
                #rt::fetch_blocking_as(#kind, #weigher, #codec, &__CACHE_SPEC, &__CACHE_SLOT, &#key_var, move || -> #ret #block)
            };
            quote! {
                #statics
                #key
                #fetch
            }
        }
        Body::AsyncTrait {
            prelude,
            box_pin,
            inner,
        } => {
            let fetch = fetch(&ast::quiet_rebindings(inner, &used_params(&plan.key)));
            quote! {
                #(#prelude)*
                #statics
                #box_pin(async move { #fetch })
            }
        }
    }
}

/// How the values of a function returning `ret` are encoded for the shared
/// tier (see `__private::Codecs`), and weighed (`__private::Weigh`).
pub(crate) fn value_codec(
    plan: &CachedPlan,
    rt: &TokenStream,
    root: &TokenStream,
    ret: &TokenStream,
    span: Span,
) -> (TokenStream, TokenStream) {
    // Values that are `Serialize` are weighed by their encoded length.
    let weigher = quote_spanned! {span=>
        {
            #[allow(unused_imports)]
            use #rt::{WeighInline as _, WeighItself as _, WeighStored as _};
            (&&&#rt::Weigh::<#ret>::new()).__cache_runtime_weigher()
        }
    };

    // Values that are serde are also encoded for the shared tier; an explicit
    // `tier = "l2"` or `"both"`, or `lock = true`, requires it.
    // The requirement is checked by a function of the crate's root, so that
    // its error names no internal item.
    let codec = match (plan.spec.tier, plan.spec.lock) {
        (Some(Tier::L2 | Tier::Both), _) | (_, Some(true)) => quote_spanned! {span=>
            #root::codec_for_redis({
                #[allow(unused_imports)]
                use #rt::{CodecItself as _, CodecNone as _, CodecStored as _};
                (&&&#rt::Codecs::<#ret>::new()).__cache_runtime_codec_required()
            })
        },
        _ => quote_spanned! {span=>
            {
                #[allow(unused_imports)]
                use #rt::{CodecItself as _, CodecNone as _, CodecStored as _};
                (&&&#rt::Codecs::<#ret>::new()).__cache_runtime_codec()
            }
        },
    };
    (codec, weigher)
}

/// `tokens` with `span`, for paths that resolve from the root.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(group) = &tt {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                tt = TokenTree::Group(respanned);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// `tokens` shown at `span`, each resolving as before.
fn relocate(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(group) = &tt {
                let mut relocated = Group::new(group.delimiter(), relocate(group.stream(), span));
                relocated.set_span(group.span().located_at(span));
                tt = TokenTree::Group(relocated);
            } else {
                tt.set_span(tt.span().located_at(span));
            }
            tt
        })
        .collect()
}

/// The body of an `#[invalidates]` function.
fn gen_invalidates(func: &Function, plan: &InvalidatesPlan) -> TokenStream {
    let keys_var = local("__cache_keys");
    let ret_var = local("__cache_ret");
    let rt = private(&plan.krate);
    let keys = built_keys(&plan.patterns, &rt);
    let tags_var = local("__cache_tags");
    let tags = built_keys(&plan.tags, &rt);
    let tag_count = plan.tags.len();
    let setup = quote! {
        static __CACHE_SLOT: #rt::Slot = #rt::Slot::new();
        let #keys_var = [#(#keys),*];
        let #tags_var: [#rt::KeyBuf; #tag_count] = [#(#tags),*];
    };
    let name = match &plan.cache {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let ret = return_type(func);
    // `Ok` for any `Result` (aliases too, picked by type), else always.
    let succeeded = quote! {
        {
            #[allow(unused_imports)]
            use #rt::{OptionProbe as _, PlainProbe as _, ResultProbe as _, Succeeded as _};
            (&&#rt::Dispatch::<#ret>::new()).__cache_runtime_kind().__cache_runtime_succeeded(&#ret_var)
        }
    };
    let guard = |apply: TokenStream| quote!(if #succeeded { #apply });

    let run_async = |block: &Block| {
        let before = plan
            .before
            .then(|| quote!(#rt::invalidate(#name, &__CACHE_SLOT, &#keys_var, &#tags_var).await;));
        let after =
            guard(quote!(#rt::invalidate(#name, &__CACHE_SLOT, &#keys_var, &#tags_var).await;));
        quote! {
            #before
            let #ret_var = #rt::typed::<#ret, _>(async move #block).await;
            #after
            #ret_var
        }
    };

    match &func.body {
        Body::Direct {
            is_async: true,
            block,
        } => {
            let run = run_async(block);
            quote! {
                #setup
                #run
            }
        }
        Body::Direct {
            is_async: false,
            block,
        } => {
            let before = plan.before.then(
                || quote!(#rt::invalidate_blocking(#name, &__CACHE_SLOT, &#keys_var, &#tags_var);),
            );
            let after = guard(
                quote!(#rt::invalidate_blocking(#name, &__CACHE_SLOT, &#keys_var, &#tags_var);),
            );
            quote! {
                #setup
                #before
                let #ret_var = #rt::call(move || -> #ret #block);
                #after
                #ret_var
            }
        }
        Body::AsyncTrait {
            prelude,
            box_pin,
            inner,
        } => {
            let used: Vec<&Ident> = plan
                .patterns
                .iter()
                .chain(&plan.tags)
                .flat_map(|steps| used_params(steps))
                .collect();
            let run = run_async(&ast::quiet_rebindings(inner, &used));
            quote! {
                #(#prelude)*
                #setup
                #box_pin(async move { #run })
            }
        }
    }
}

/// `tag_value(&[..])`: names the tags of `tags` for the value being
/// computed; nothing without tags.
fn tag_value(tags: &[Vec<KeyStep>], rt: &TokenStream) -> TokenStream {
    if tags.is_empty() {
        return TokenStream::new();
    }
    let built = built_keys(tags, rt);
    quote!(#rt::tag_value(&[#(#built),*]);)
}

/// A block building each of `templates` into a `KeyBuf`.
fn built_keys(templates: &[Vec<KeyStep>], rt: &TokenStream) -> Vec<TokenStream> {
    let key_var = local("__cache_key");
    templates
        .iter()
        .map(|steps| {
            let build = build_key(steps, rt);
            quote!({ #build #key_var })
        })
        .collect()
}

/// The parameters that `steps` read.
fn used_params(steps: &[KeyStep]) -> Vec<&Ident> {
    steps
        .iter()
        .filter_map(|step| match step {
            KeyStep::Part(Part {
                head: PartHead::Param(ident),
                ..
            }) => Some(ident),
            _ => None,
        })
        .collect()
}

/// A local variable of the generated code. `mixed_site` hygiene keeps it
/// apart from the user's names: a parameter called `__cache_key` neither
/// sees nor hides it.
pub(crate) fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// `<crate>::__private`.
pub(crate) fn private(krate: &syn::Path) -> TokenStream {
    quote!(#krate::__private)
}

/// The declared return type (`()` when there is none).
/// Whether `tokens` name a lifetime other than `'static`, or one of the
/// type parameters of `generics`.
fn names_lifetime_or_type_param(tokens: &TokenStream, generics: &syn::Generics) -> bool {
    let params: Vec<String> = generics
        .type_params()
        .map(|p| p.ident.to_string())
        .collect();
    let mut after_quote = false;
    tokens.clone().into_iter().any(|tt| match tt {
        TokenTree::Group(group) => names_lifetime_or_type_param(&group.stream(), generics),
        TokenTree::Punct(p) => {
            after_quote = p.as_char() == '\'';
            false
        }
        TokenTree::Ident(ident) => {
            let lifetime = std::mem::take(&mut after_quote);
            if lifetime {
                ident != "static"
            } else {
                params.iter().any(|p| ident == p)
            }
        }
        TokenTree::Literal(_) => false,
    })
}

pub(crate) fn return_type(func: &Function) -> TokenStream {
    match &func.output.ty {
        Some(ty) => ty.to_token_stream(),
        None => quote!(()),
    }
}

/// `static __CACHE_SPEC` and `static __CACHE_SLOT` of a `#[cached]` function.
pub(crate) fn spec_statics(func: &Function, spec: &SpecPlan, rt: &TokenStream) -> TokenStream {
    let name = func.sig.ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    let template = match &spec.template {
        TemplateName::Written(lit) => lit.to_token_stream(),
        TemplateName::Default(rest) => quote!(::core::concat!(::core::module_path!(), #rest)),
    };
    let function = quote!(::core::concat!(::core::module_path!(), "::", #name));

    let mut setters = Vec::new();
    let mut set = |method: &str, value: TokenStream| {
        let method = Ident::new(method, Span::call_site());
        setters.push(quote!(.#method(#value)));
    };
    let millis = |ms: u64| quote!(#ms);
    if let Some(ms) = spec.ttl_ms {
        set("ttl_ms", millis(ms));
    }
    if let Some(preset) = &spec.ttl_preset {
        set("ttl_preset", preset.clone());
    }
    if let Some(ms) = spec.stale_ms {
        set("stale_ms", millis(ms));
    }
    if let Some(ms) = spec.l1_ttl_ms {
        set("l1_ttl_ms", millis(ms));
    }
    if let Some(percent) = spec.jitter_percent {
        set("jitter_percent", quote!(#percent));
    }
    if let Some(yes) = spec.cache_none {
        set("cache_none", quote!(#yes));
    }
    if let Some(cache) = &spec.cache {
        set("cache", quote!(#cache));
    }
    if let Some(tier) = spec.tier {
        let variant = match tier {
            Tier::L1 => quote!(L1),
            Tier::L2 => quote!(L2),
            Tier::Both => quote!(Both),
        };
        set("tier", quote!(#rt::TierChoice::#variant));
    }
    if let Some(ms) = spec.fail_safe_ms {
        set("fail_safe_ms", millis(ms));
    }
    if let Some(ms) = spec.timeout_ms {
        set("timeout_ms", millis(ms));
    }
    if let Some(yes) = spec.lock {
        set("lock", quote!(#yes));
    }
    if let Some(percent) = spec.refresh_ahead {
        set("refresh_ahead_percent", quote!(#percent));
    }

    quote! {
        static __CACHE_SPEC: #rt::Spec = #rt::Spec::new(#template, #function) #(#setters)*;
        static __CACHE_SLOT: #rt::Slot = #rt::Slot::new();
    }
}

/// `let mut __cache_key = KeyBuf::new();` and the pushes of `steps`.
pub(crate) fn build_key(steps: &[KeyStep], rt: &TokenStream) -> TokenStream {
    let key_var = local("__cache_key");
    let pushes = steps.iter().map(|step| match step {
        KeyStep::ModulePath(rest) => {
            quote!(#key_var.push_literal(::core::concat!(::core::module_path!(), #rest));)
        }
        KeyStep::Literal(text) => quote!(#key_var.push_literal(#text);),
        KeyStep::Part(part) => {
            let part = part_expr(part);
            quote!(#key_var.push_part(#part);)
        }
        KeyStep::Wildcard => quote!(#key_var.push_wildcard();),
        KeyStep::TypeName(ty) => {
            quote!(#key_var.push_part(::core::any::type_name::<#ty>());)
        }
    });
    quote! {
        let mut #key_var = #rt::KeyBuf::new();
        #(#pushes)*
    }
}

/// `&head.field.field`, spanned at the placeholder so that a type without
/// `KeyPart` is reported there.
fn part_expr(part: &Part) -> TokenStream {
    let head = match &part.head {
        PartHead::Param(ident) => ident.to_token_stream(),
        PartHead::SelfValue(token) => token.to_token_stream(),
    };
    let fields = &part.fields;
    let span = part.span;
    quote_spanned!(span=> &#head #(.#fields)*)
}
