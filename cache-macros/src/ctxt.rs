//! Error collection: every check reports into one [`Ctxt`], so that a single
//! compile shows all the mistakes of an attribute (serde_derive's
//! `internals/ctxt.rs` is the model).

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// The errors found so far.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Option<syn::Error>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt::default()
    }

    /// Adds `error` (which may itself hold several).
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.errors {
            Some(errors) => errors.combine(error),
            None => self.errors = Some(error),
        }
    }

    /// Adds an error at `span`.
    pub(crate) fn error(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Adds an error spanning every token of `tokens`.
    pub(crate) fn error_spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.errors.is_some()
    }

    /// `Ok` when nothing was reported.
    pub(crate) fn check(self) -> syn::Result<()> {
        match self.errors {
            Some(errors) => Err(errors),
            None => Ok(()),
        }
    }
}

/// Stores `value` in an option slot that may be given once only; the second
/// occurrence is an error on its name (`span`).
pub(crate) fn set_once<T>(ctxt: &mut Ctxt, slot: &mut Option<T>, name: &str, span: Span, value: T) {
    if slot.is_some() {
        ctxt.error(span, format!("`{name}` is given twice; keep one of them"));
    } else {
        *slot = Some(value);
    }
}
