//! What the macros emit when the input has mistakes: the item unchanged,
//! plus the errors, so that the rest of the crate (and the IDE) keeps
//! working and no follow-on error buries the real one.

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::ast::NotAFunction;

/// `item` as written, and `error`.
pub(crate) fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}

/// `item` as written, and why the attribute does not apply to it.
pub(crate) fn not_a_function(
    item: TokenStream,
    why: NotAFunction,
    macro_name: &str,
) -> TokenStream {
    let error = match why {
        // rustc reports the body's own syntax error (syn parses all stable
        // syntax, so rustc rejects what syn cannot read); an error of ours
        // would only hide it.
        NotAFunction::BadBody => return item,
        NotAFunction::NoBody(sig) => syn::Error::new_spanned(
            sig,
            format!(
                "`#[{macro_name}]` needs the function's body: put it on the method in the `impl` block, not on the trait's declaration"
            ),
        ),
        NotAFunction::Other => syn::Error::new(
            Span::call_site(),
            format!("`#[{macro_name}]` applies to functions (`fn` or `async fn`), not to this item"),
        ),
    };
    with_error(item, error)
}
