//! The annotated function, as a model: its parameters, its receiver, what
//! it returns, and the shape of its body (as written, or as `#[async_trait]`
//! rewrote it).

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    AttrStyle, Attribute, Block, Expr, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments,
    ReturnType, Signature, Stmt, Type, TypeParamBound, Visibility,
};

/// A function under `#[cached]` or `#[invalidates]`.
pub(crate) struct Function {
    /// Outer attributes (`#[doc]`, `#[inline]`, ..), re-emitted as they are.
    pub(crate) attrs: Vec<Attribute>,
    /// Inner attributes of the body (`#![allow(..)]`).
    pub(crate) inner_attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    /// The signature, re-emitted as written.
    pub(crate) sig: Signature,
    pub(crate) params: Vec<Param>,
    pub(crate) receiver: Option<Receiver>,
    pub(crate) output: Output,
    pub(crate) body: Body,
    /// The braces of the function's body, reused for the new body so that
    /// the item spans the user's code (the `dead_code` lint, for one,
    /// ignores items that end in generated tokens).
    pub(crate) braces: syn::token::Brace,
}

/// A typed parameter.
pub(crate) struct Param {
    /// The binding, when the pattern is a plain identifier.
    pub(crate) name: Option<Ident>,
    /// Its `mut`, when the binding is `mut name`.
    pub(crate) binding_mut: Option<syn::token::Mut>,
    /// The names a pattern binds (`(a, b): (u8, u8)` binds `a` and `b`);
    /// the name itself for a plain identifier.
    pub(crate) bindings: Vec<Ident>,
    /// The whole `pat: Type`, for errors.
    pub(crate) tokens: TokenStream,
    /// Whether the type is `&mut T`.
    pub(crate) mut_ref: bool,
    /// The type as written.
    pub(crate) ty: Box<Type>,
}

impl Param {
    /// `T` when the parameter is a shared reference `&T`.
    pub(crate) fn referent(&self) -> Option<&Type> {
        match peel(&self.ty) {
            Type::Reference(r) if r.mutability.is_none() => Some(&r.elem),
            _ => None,
        }
    }
}

/// The `self` parameter of a method.
pub(crate) struct Receiver {
    pub(crate) self_token: syn::token::SelfValue,
    pub(crate) kind: ReceiverKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReceiverKind {
    /// `&self`
    Ref,
    /// `&mut self`
    RefMut,
    /// `self`, `self: Box<Self>`, ..
    Value,
}

/// What the function returns (the future's output for async functions).
pub(crate) struct Output {
    /// The declared type; `None` for a function without `->`.
    pub(crate) ty: Option<Type>,
    pub(crate) kind: ReturnKind,
    /// An `impl Trait` inside the type, which generated code cannot name.
    pub(crate) impl_trait: Option<syn::TypeImplTrait>,
    /// The return type, or the signature when there is none.
    pub(crate) span: Span,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ReturnKind {
    /// No return type, or `()`.
    Unit,
    /// Any other type `T`.
    Plain,
    /// A type whose last path segment is `Option`.
    Option,
    /// A type whose last path segment is `Result` (`io::Result<T>` too).
    Result,
}

/// How the body is run.
pub(crate) enum Body {
    /// An `async fn` or a plain `fn`: the block as written.
    Direct { is_async: bool, block: Box<Block> },
    /// A method rewritten by `#[async_trait]`:
    /// `fn f<'life0, 'async_trait>(&'life0 self, ..) -> Pin<Box<dyn Future<Output = R> + Send + 'async_trait>>`
    /// whose body ends in `Box::pin(async move { .. })`.
    AsyncTrait {
        /// Statements before the `Box::pin(..)` (none in current versions).
        prelude: Vec<Stmt>,
        /// The `Box::pin` path as written, so that its resolution is kept.
        box_pin: Box<Expr>,
        /// The block of the `async move { .. }`.
        inner: Box<Block>,
    },
}

/// Why an item is not a function this crate can rewrite.
pub(crate) enum NotAFunction {
    /// A function without a body (a trait method declaration).
    NoBody(Box<Signature>),
    /// A function whose signature parses but whose body does not (code
    /// being edited): rustc reports the body's own syntax error.
    BadBody,
    /// Anything else.
    Other,
}

impl Function {
    pub(crate) fn parse(item: TokenStream) -> Result<Function, NotAFunction> {
        let item: ItemFn = match syn::parse2(item.clone()) {
            Ok(item) => item,
            Err(_) => {
                return Err(match syn::parse2::<syn::TraitItemFn>(item.clone()) {
                    Ok(declaration) => NotAFunction::NoBody(Box::new(declaration.sig)),
                    Err(_) if has_unparsed_body(item) => NotAFunction::BadBody,
                    Err(_) => NotAFunction::Other,
                })
            }
        };
        let ItemFn {
            attrs,
            vis,
            sig,
            block,
        } = item;
        let (inner_attrs, attrs): (Vec<_>, Vec<_>) = attrs
            .into_iter()
            .partition(|attr| matches!(attr.style, AttrStyle::Inner(_)));

        let mut params = Vec::new();
        let mut receiver = None;
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(recv) => {
                    let kind = match peel(&recv.ty) {
                        Type::Reference(r) if r.mutability.is_some() => ReceiverKind::RefMut,
                        Type::Reference(_) => ReceiverKind::Ref,
                        _ => ReceiverKind::Value,
                    };
                    receiver = Some(Receiver {
                        self_token: recv.self_token,
                        kind,
                    });
                }
                FnArg::Typed(typed) => {
                    let (name, binding_mut) = match &*typed.pat {
                        Pat::Ident(pat) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                            (Some(pat.ident.clone()), pat.mutability)
                        }
                        _ => (None, None),
                    };
                    params.push(Param {
                        name,
                        binding_mut,
                        bindings: bindings(&typed.pat),
                        tokens: typed.to_token_stream(),
                        mut_ref: matches!(peel(&typed.ty), Type::Reference(r) if r.mutability.is_some()),
                        ty: typed.ty.clone(),
                    });
                }
            }
        }

        let braces = block.brace_token;
        let (body, output) = match async_trait_shape(&sig, &block) {
            Some((body, ty)) => (body, Output::of(Some(ty), ty_span_or_sig(&sig))),
            None => {
                let ty = match &sig.output {
                    ReturnType::Default => None,
                    ReturnType::Type(_, ty) => Some((**ty).clone()),
                };
                let body = Body::Direct {
                    is_async: sig.asyncness.is_some(),
                    block,
                };
                (body, Output::of(ty, ty_span_or_sig(&sig)))
            }
        };

        Ok(Function {
            attrs,
            inner_attrs,
            vis,
            sig,
            params,
            receiver,
            output,
            body,
            braces,
        })
    }

    /// The names of the parameters that have one, and `self` for methods.
    pub(crate) fn names(&self) -> impl Iterator<Item = String> + '_ {
        let receiver = self.receiver.as_ref().map(|_| "self".to_owned());
        let params = self
            .params
            .iter()
            .filter_map(|p| p.name.as_ref().map(|n| n.unraw().to_string()));
        receiver.into_iter().chain(params)
    }

    /// The parameter named `name` (without `r#`).
    pub(crate) fn param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|p| p.name.as_ref().is_some_and(|n| n.unraw() == name))
    }
}

impl Output {
    fn of(ty: Option<Type>, span: Span) -> Output {
        let kind = match &ty {
            None => ReturnKind::Unit,
            Some(ty) => match peel(ty) {
                Type::Tuple(tuple) if tuple.elems.is_empty() => ReturnKind::Unit,
                Type::Path(path) if path.qself.is_none() => match path.path.segments.last() {
                    Some(last) if last.ident == "Option" => ReturnKind::Option,
                    Some(last) if last.ident == "Result" => ReturnKind::Result,
                    _ => ReturnKind::Plain,
                },
                _ => ReturnKind::Plain,
            },
        };
        let impl_trait = ty.as_ref().and_then(find_impl_trait);
        Output {
            ty,
            kind,
            impl_trait,
            span,
        }
    }
}

/// Whether `item` is a function's attributes, visibility and signature
/// followed by a `{ .. }` body whose contents are left unparsed.
fn has_unparsed_body(item: TokenStream) -> bool {
    let parser = |input: syn::parse::ParseStream| {
        input.call(Attribute::parse_outer)?;
        input.parse::<Visibility>()?;
        input.parse::<Signature>()?;
        let body;
        syn::braced!(body in input);
        body.parse::<TokenStream>()?;
        Ok(())
    };
    syn::parse::Parser::parse2(parser, item).is_ok()
}

/// The return type's span, or the signature's when it has none.
fn ty_span_or_sig(sig: &Signature) -> Span {
    match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => sig.span(),
    }
}

/// Looks through `(T)` and the invisible groups of `macro_rules!` fragments.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => peel(&group.elem),
        Type::Paren(paren) => peel(&paren.elem),
        other => other,
    }
}

/// The names that `pat` binds.
fn bindings(pat: &Pat) -> Vec<Ident> {
    struct Find(Vec<Ident>);
    impl VisitMut for Find {
        fn visit_pat_ident_mut(&mut self, node: &mut syn::PatIdent) {
            self.0.push(node.ident.clone());
            syn::visit_mut::visit_pat_ident_mut(self, node);
        }
    }
    let mut find = Find(Vec::new());
    find.visit_pat_mut(&mut pat.clone());
    find.0
}

/// Whether `ty` holds a `dyn Trait` anywhere.
pub(crate) fn contains_dyn(ty: &Type) -> bool {
    struct Find(bool);
    impl VisitMut for Find {
        fn visit_type_trait_object_mut(&mut self, _: &mut syn::TypeTraitObject) {
            self.0 = true;
        }
    }
    let mut find = Find(false);
    find.visit_type_mut(&mut ty.clone());
    find.0
}

/// Whether `ty` holds a reference or a lifetime other than `'static`.
pub(crate) fn borrows_inside(ty: &Type) -> bool {
    struct Find(bool);
    impl VisitMut for Find {
        fn visit_type_reference_mut(&mut self, _: &mut syn::TypeReference) {
            self.0 = true;
        }
        fn visit_lifetime_mut(&mut self, lifetime: &mut syn::Lifetime) {
            if lifetime.ident != "static" {
                self.0 = true;
            }
        }
    }
    let mut find = Find(false);
    find.visit_type_mut(&mut ty.clone());
    find.0
}

/// Whether `ty` holds an `impl Trait` anywhere.
pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    find_impl_trait(ty).is_some()
}

fn find_impl_trait(ty: &Type) -> Option<syn::TypeImplTrait> {
    struct Find(Option<syn::TypeImplTrait>);
    impl VisitMut for Find {
        fn visit_type_impl_trait_mut(&mut self, node: &mut syn::TypeImplTrait) {
            self.0.get_or_insert_with(|| node.clone());
        }
    }
    let mut find = Find(None);
    find.visit_type_mut(&mut ty.clone());
    find.0
}

/// Recognises what `#[async_trait]` made of an `async fn`: a plain `fn`
/// returning `Pin<Box<dyn Future<Output = R> + ..>>` whose body ends in
/// `Box::pin(async move { .. })`. Returns the body and `R`.
fn async_trait_shape(sig: &Signature, block: &Block) -> Option<(Body, Type)> {
    if sig.asyncness.is_some() {
        return None;
    }
    let ReturnType::Type(_, ret) = &sig.output else {
        return None;
    };
    let output = future_output(ret)?;
    let (last, prelude) = block.stmts.split_last()?;
    let Stmt::Expr(Expr::Call(call), None) = last else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    let mut segments = func.path.segments.iter().rev();
    let is_box_pin = segments.next().is_some_and(|s| s.ident == "pin")
        && segments.next().is_some_and(|s| s.ident == "Box");
    if !is_box_pin || call.args.len() != 1 {
        return None;
    }
    let Some(Expr::Async(inner)) = call.args.first() else {
        return None;
    };
    inner.capture?;
    let body = Body::AsyncTrait {
        prelude: prelude.to_vec(),
        box_pin: call.func.clone(),
        inner: Box::new(inner.block.clone()),
    };
    Some((body, output))
}

/// `R` of `Pin<Box<dyn Future<Output = R> + ..>>`.
fn future_output(ty: &Type) -> Option<Type> {
    let pin = last_generic(peel(ty), "Pin")?;
    let boxed = last_generic(peel(pin), "Box")?;
    let Type::TraitObject(object) = peel(boxed) else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let last = bound.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(assoc.ty.clone()),
            _ => None,
        })
    })
}

/// The single type argument of a path type whose last segment is `name`.
fn last_generic<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// `block` with `#[allow(unused_variables)]` on `#[async_trait]`'s
/// rebindings (`let id = id;`) of the parameters in `used`: those the key
/// uses, which the body need not use.
pub(crate) fn quiet_rebindings(block: &Block, used: &[&Ident]) -> Block {
    let mut block = block.clone();
    for stmt in &mut block.stmts {
        let Stmt::Local(local) = stmt else {
            continue;
        };
        let Pat::Ident(pat) = &local.pat else {
            continue;
        };
        let Some(init) = &local.init else {
            continue;
        };
        let Expr::Path(value) = &*init.expr else {
            continue;
        };
        if used.iter().any(|name| pat.ident == **name) && value.path.is_ident(&pat.ident) {
            local
                .attrs
                .push(syn::parse_quote!(#[allow(unused_variables)]));
        }
    }
    block
}
