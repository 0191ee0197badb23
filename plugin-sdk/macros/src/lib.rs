//! The `#[plugin]` attribute of `callgate-sdk`. Use it through `callgate_sdk::plugin`; the code it
//! writes names `::callgate_sdk`, so the plugin crate must depend on the SDK under that name.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, ImplItem, Item, ItemImpl};

/// A hook: the flag it turns on in `plugin-info.hooks`, and its name in the WIT contract.
struct HookName {
    flag: &'static str,
    wit: &'static str,
}

/// The method names `impl Plugin` may contain, in contract order, and the hook each one is.
const METHODS: &[(&str, Option<HookName>)] = &[
    ("new", None),
    ("on_invite", hook("INVITE", "on-invite")),
    ("on_response", hook("RESPONSE", "on-response")),
    ("on_refer", hook("REFER", "on-refer")),
    ("recording_policy", hook("RECORDING", "recording-policy")),
    ("on_media_state", hook("MEDIA_STATE", "on-media-state")),
    ("on_dtmf", hook("DTMF", "on-dtmf")),
    ("on_call_end", hook("CALL_END", "on-call-end")),
];

const fn hook(flag: &'static str, wit: &'static str) -> Option<HookName> {
    Some(HookName { flag, wit })
}

/// The custom section of the plugin's core module that says what the artifact is (read by
/// `callgate plugin inspect` without instantiating anything). Keep in step with the host's
/// `plugin::artifact::META_SECTION`.
const META_SECTION: &str = "callgate:plugin-meta";

/// The SDK version written into the metadata. The macro crate is released in lockstep with
/// `callgate-sdk` (both take the workspace version), so its own version is the SDK's.
const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exports `impl Plugin for YourType { .. }` as the crate's Callgate plugin. See
/// `callgate_sdk::plugin` for the documentation.
#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand(attr.into(), item.clone()) {
        Ok(out) => out.into(),
        Err(err) => {
            // Keep the item so that the only errors are ours (and rustc's own about the impl).
            let err = err.to_compile_error();
            quote!(#item #err).into()
        }
    }
}

const USAGE: &str = "`#[callgate_sdk::plugin]` goes on `impl Plugin for YourType { .. }`";

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut errors: Vec<Error> = Vec::new();
    if !attr.is_empty() {
        errors.push(Error::new(
            attr.span(),
            "`#[callgate_sdk::plugin]` takes no arguments",
        ));
    }
    let imp: ItemImpl = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Impl(imp)) => imp,
        Ok(other) => return Err(Error::new(first_span(&other), USAGE)),
        Err(e) => return Err(Error::new(e.span(), USAGE)),
    };
    check_header(&imp, &mut errors);
    let hooks = hooks_present(&imp, &mut errors);
    if let Some(err) = errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        return Err(err);
    }

    let ty = &imp.self_ty;
    let meta = meta_json(&hooks);
    let flags = hooks
        .iter()
        .map(|h| syn::Ident::new(h.flag, Span::call_site()));
    let sdk = quote!(::callgate_sdk);
    // Everything is spanned at the type so that errors in the glue point somewhere useful.
    let glue = quote_spanned! {ty.span()=>
        const _: () = {
            ::std::thread_local! {
                static __CALLGATE_PLUGIN: ::core::cell::RefCell<::core::option::Option<#ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl #sdk::__private::Export for #ty {
                fn hooks() -> #sdk::__private::HookSet {
                    #sdk::__private::HookSet::empty() #(| #sdk::__private::HookSet::#flags)*
                }

                fn slot() -> &'static #sdk::__private::LocalKey<
                    ::core::cell::RefCell<::core::option::Option<Self>>,
                > {
                    &__CALLGATE_PLUGIN
                }
            }

            // Only wasm gets the exports: their names (`callgate:plugin/hooks@0.1.1#init`) are not
            // valid in a native linker's version script, and native builds are for tests.
            #[cfg(target_arch = "wasm32")]
            type __CallgateComponent = #sdk::__private::Component<#ty>;
            #[cfg(target_arch = "wasm32")]
            #sdk::__wit::export!(__CallgateComponent with_types_in #sdk::__wit);

            // The artifact's metadata, as JSON in a custom section. `env!` is expanded in the plugin
            // crate, so the name and version are the plugin's own. Wasm only, like the exports: a
            // native object format has its own rules for section names.
            #[cfg(target_arch = "wasm32")]
            const __CALLGATE_META: &str = #meta;
            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = #META_SECTION)]
            #[used]
            static __CALLGATE_PLUGIN_META: [u8; __CALLGATE_META.len()] = {
                // A section holds bytes, not a `&str` (that would be a pointer): copy them in.
                let text = __CALLGATE_META.as_bytes();
                let mut out = [0u8; __CALLGATE_META.len()];
                let mut i = 0;
                while i < out.len() {
                    out[i] = text[i];
                    i += 1;
                }
                out
            };
        };
    };
    Ok(quote!(#imp #glue))
}

/// The metadata JSON as an expression of type `&'static str`:
/// `{"name":..,"version":..,"sdk":..,"hooks":[..]}`. Package names and versions never contain
/// characters JSON would need to escape, so no escaping is done.
fn meta_json(hooks: &[&HookName]) -> TokenStream2 {
    let hooks = hooks
        .iter()
        .map(|h| format!("\"{}\"", h.wit))
        .collect::<Vec<_>>()
        .join(",");
    let head = "{\"name\":\"";
    let version = "\",\"version\":\"";
    let tail = format!("\",\"sdk\":\"{SDK_VERSION}\",\"hooks\":[{hooks}]}}");
    quote! {
        ::core::concat!(
            #head, ::core::env!("CARGO_PKG_NAME"),
            #version, ::core::env!("CARGO_PKG_VERSION"),
            #tail
        )
    }
}

fn first_span(item: &Item) -> Span {
    item.to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

/// Checks `impl Plugin for Type` itself: a trait impl of a trait called `Plugin`, not generic,
/// not negative, not unsafe.
fn check_header(imp: &ItemImpl, errors: &mut Vec<Error>) {
    match &imp.trait_ {
        None => errors.push(Error::new(
            imp.self_ty.span(),
            format!("{USAGE}: this is an inherent impl, not an impl of `Plugin`"),
        )),
        Some((bang, path, _)) => {
            if let Some(bang) = bang {
                errors.push(Error::new(
                    bang.span(),
                    format!("{USAGE}: not a negative impl"),
                ));
            }
            let last = path.segments.last().map(|s| s.ident.to_string());
            if last.as_deref() != Some("Plugin") {
                errors.push(Error::new(
                    path.span(),
                    format!(
                        "{USAGE}: `{}` is not the `Plugin` trait",
                        path.to_token_stream()
                    ),
                ));
            }
        }
    }
    if !imp.generics.params.is_empty() || imp.generics.where_clause.is_some() {
        errors.push(Error::new(
            imp.generics.span(),
            "a plugin type cannot be generic: the component exports exactly one concrete type",
        ));
    }
    if let Some(unsafety) = &imp.unsafety {
        errors.push(Error::new(
            unsafety.span(),
            format!("{USAGE}: `Plugin` is not an unsafe trait"),
        ));
    }
    if let Some(default) = &imp.defaultness {
        errors.push(Error::new(
            default.span(),
            format!("{USAGE}: not a `default impl`"),
        ));
    }
}

/// The hooks whose methods are present, in contract order; an error for anything that is not a
/// known method.
fn hooks_present(imp: &ItemImpl, errors: &mut Vec<Error>) -> Vec<&'static HookName> {
    let mut present = Vec::new();
    for item in &imp.items {
        match item {
            ImplItem::Fn(f) => {
                let name = f.sig.ident.to_string();
                match METHODS.iter().position(|(m, _)| *m == name) {
                    Some(i) => present.push(i),
                    None => errors.push(Error::new(f.sig.ident.span(), unknown_method(&name))),
                }
            }
            ImplItem::Macro(m) => errors.push(Error::new(
                m.span(),
                "`#[callgate_sdk::plugin]` must see every hook by name: write the methods out \
                 instead of generating them with a macro",
            )),
            other => errors.push(Error::new(
                other.span(),
                "`impl Plugin` contains only methods: `new` and the hooks",
            )),
        }
    }
    // Contract order whatever the order in the impl, so the metadata is stable; a duplicate method
    // is rustc's error to report.
    present.sort_unstable();
    present.dedup();
    present
        .into_iter()
        .filter_map(|i| METHODS[i].1.as_ref())
        .collect()
}

fn unknown_method(name: &str) -> String {
    let known: Vec<&str> = METHODS.iter().map(|(m, _)| *m).collect();
    let mut msg = format!("`{name}` is not a method of `Plugin`");
    if let Some(best) = known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min()
    {
        msg.push_str(&format!(": did you mean `{}`?", best.1));
    }
    msg.push_str(&format!(" (the hooks are: {})", known[1..].join(", ")));
    msg
}

/// Levenshtein distance, for the "did you mean" hint.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}
