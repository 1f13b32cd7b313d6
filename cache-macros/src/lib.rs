use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn cached(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

#[proc_macro_attribute]
pub fn invalidates(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

#[proc_macro_derive(KeyPart)]
pub fn derive_key_part(_item: TokenStream) -> TokenStream {
    TokenStream::new()
}
