//! Error collection: every check reports into one [`Ctxt`], so that a single
//! compile shows all the mistakes of an attribute (serde_derive's
//! `internals/ctxt.rs` is the model).

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// The errors found so far. It must end in [`Ctxt::check`]: a `Ctxt`
/// dropped unchecked panics (in debug builds of the macros), since its
/// errors would be lost.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Option<syn::Error>,
    /// How many errors were pushed, so that a check can tell whether the
    /// checks before it found anything.
    count: usize,
    checked: bool,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt::default()
    }

    /// Adds `error` (which may itself hold several).
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.count += error.clone().into_iter().count();
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

    /// The number of errors reported so far.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// `Ok` when nothing was reported.
    pub(crate) fn check(mut self) -> syn::Result<()> {
        self.checked = true;
        match self.errors.take() {
            Some(errors) => Err(errors),
            None => Ok(()),
        }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if cfg!(debug_assertions) && !self.checked && !std::thread::panicking() {
            panic!(
                "cache-macros: a `Ctxt` was dropped without `check()`: its errors would be lost"
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_checks() {
        let mut ctxt = Ctxt::new();
        assert_eq!(ctxt.count(), 0);
        ctxt.error(Span::call_site(), "one");
        let mut two = syn::Error::new(Span::call_site(), "two");
        two.combine(syn::Error::new(Span::call_site(), "three"));
        ctxt.push(two);
        assert_eq!(ctxt.count(), 3);
        let errors = ctxt.check().unwrap_err();
        assert_eq!(errors.into_iter().count(), 3);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "without `check()`")]
    fn unchecked_panics() {
        let mut ctxt = Ctxt::new();
        ctxt.error(Span::call_site(), "lost");
    }
}
