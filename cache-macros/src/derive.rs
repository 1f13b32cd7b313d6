//! `#[derive(KeyPart)]`: a struct writes its fields (separated, when there
//! are several), an enum of unit variants writes the variant's name.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Member};

use crate::attr;
use crate::ctxt::Ctxt;

pub(crate) fn key_part(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut ctxt = Ctxt::new();
    let args = attr::parse_key_part(&input.attrs, &mut ctxt);
    let krate = args
        .krate
        .unwrap_or_else(|| syn::parse_quote!(::cache_runtime));
    let body = body(&input, &krate, &mut ctxt);

    let ident = &input.ident;
    let mut generics = input.generics.clone();
    for param in input.generics.type_params() {
        let name = &param.ident;
        generics
            .make_where_clause()
            .predicates
            .push(syn::parse_quote!(#name: #krate::KeyPart));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let (body, error) = match ctxt.check() {
        Ok(()) => (body, None),
        // An impl that is never called, so that the uses of the type in keys
        // do not add errors to the real one.
        Err(error) => (
            quote!(::core::unreachable!()),
            Some(error.to_compile_error()),
        ),
    };
    quote! {
        #error
        #[automatically_derived]
        #[allow(unused_qualifications)]
        impl #impl_generics #krate::KeyPart for #ident #ty_generics #where_clause {
            fn write_key(&self, out: &mut #krate::KeyWriter<'_>) {
                #body
            }
        }
    }
}

fn body(input: &DeriveInput, krate: &syn::Path, ctxt: &mut Ctxt) -> TokenStream {
    let name = &input.ident;
    match &input.data {
        Data::Struct(data) => {
            if data.fields.is_empty() {
                ctxt.error(
                    name.span(),
                    format!(
                        "`#[derive(KeyPart)]` writes the fields of `{name}`, and it has none: every value would make the same key. Leave it out of the key, or implement `KeyPart` by hand"
                    ),
                );
                return TokenStream::new();
            }
            for field in &data.fields {
                if let Some(float) = crate::valid::float_type(&field.ty) {
                    ctxt.error_spanned(
                        &field.ty,
                        format!(
                            "a floating-point field (`{float}`) cannot be part of a key (0.1 + 0.2 != 0.3, NaN != NaN): store it rounded to an integer (cents, basis points), or implement `KeyPart` for `{name}` by hand without it"
                        ),
                    );
                }
            }
            let writes = data.fields.iter().enumerate().map(|(i, field)| {
                let member = match &field.ident {
                    Some(ident) => Member::Named(ident.clone()),
                    None => Member::Unnamed(syn::Index {
                        index: i as u32,
                        span: field.ty.span(),
                    }),
                };
                // A field type without `KeyPart` is reported on the field.
                quote_spanned!(field.ty.span()=> #krate::KeyPart::write_key(&self.#member, out);)
            });
            let separator = quote!(out.write_separator(););
            let mut body = TokenStream::new();
            for (i, write) in writes.enumerate() {
                if i > 0 {
                    body.extend(separator.clone());
                }
                body.extend(write);
            }
            body
        }
        Data::Enum(data) => {
            let mut arms = Vec::new();
            for variant in &data.variants {
                if !matches!(variant.fields, Fields::Unit) {
                    ctxt.error_spanned(
                        &variant.fields,
                        format!(
                            "`#[derive(KeyPart)]` on an enum writes the variant's name, so variants cannot have fields; implement `KeyPart` for `{name}` by hand to key `{}` by its fields",
                            variant.ident
                        ),
                    );
                    continue;
                }
                let ident = &variant.ident;
                let text = ident.to_string();
                let text = text.strip_prefix("r#").unwrap_or(&text);
                arms.push(quote!(Self::#ident => out.write_str(#text),));
            }
            quote! {
                match *self {
                    #(#arms)*
                }
            }
        }
        Data::Union(data) => {
            ctxt.error(
                data.union_token.span,
                "`#[derive(KeyPart)]` cannot read a union's active field; implement `KeyPart` by hand",
            );
            TokenStream::new()
        }
    }
}
