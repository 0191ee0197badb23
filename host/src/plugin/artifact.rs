//! What a plugin file is, read from its bytes alone (no engine, no compilation, no instance): its
//! digest, the contract version it targets, its imports, and the metadata the Rust SDK stamps into
//! it. `callgate plugin inspect` prints this; the loader and the compiled-component cache name a
//! plugin by the same digest.

use sha2::{Digest as _, Sha256};
use wasmparser::{Encoding, Parser, Payload};

/// The custom section the SDK's `#[plugin]` macro writes into the plugin's core module: JSON as
/// in [`PluginMeta`].
pub const META_SECTION: &str = "callgate:plugin-meta";

/// The contract version a component export names, if it is one of the hooks interfaces a plugin
/// exports (`callgate:plugin/hooks@0.1.0`, `callgate:plugin/lean-hooks@0.1.2`).
pub(crate) fn hooks_export_version(export: &str) -> Option<&str> {
    let rest = export.strip_prefix("callgate:plugin/")?;
    rest.strip_prefix("hooks@")
        .or_else(|| rest.strip_prefix("lean-hooks@"))
}

/// The metadata the Rust SDK embeds in a plugin (custom section [`META_SECTION`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginMeta {
    /// The plugin's package name.
    pub name: String,
    /// The plugin's package version.
    pub version: String,
    /// The `callgate-sdk` version it was built with.
    pub sdk: String,
    /// The hooks its `impl Plugin` defines, spelled as in the WIT contract (`on-invite`), in
    /// contract order.
    pub hooks: Vec<String>,
}

/// A plugin component, described from its bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    /// SHA-256 of the file, lower-case hex: the plugin version's identity.
    pub digest: String,
    /// Size of the file in bytes.
    pub size: usize,
    /// The contract version of the `callgate:plugin/hooks@X.Y.Z` (or `lean-hooks`) export (`0.1.0`); none if the
    /// component exports no Callgate hooks.
    pub contract: Option<String>,
    /// The SDK's metadata; none for components built without the Rust SDK (C, Python, ...),
    /// whose hooks are learnt from `init` at load.
    pub meta: Option<PluginMeta>,
    /// The interfaces the component imports (`callgate:plugin/log@0.1.0`, `wasi:io/error@0.2.6`),
    /// in file order.
    pub imports: Vec<String>,
}

/// Why bytes could not be described as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Does not start with the wasm magic number.
    #[error("not a wasm file (no `\\0asm` magic number)")]
    NotWasm,
    /// A wasm file that does not parse.
    #[error("malformed wasm: {0}")]
    Parse(wasmparser::BinaryReaderError),
    /// A core module: plugins are components (`callgate plugin build`, `cargo build --target
    /// wasm32-wasip2`, or
    /// `wasm-tools component new`).
    #[error(
        "a core wasm module, not a component: build it with `callgate plugin build`, for wasm32-wasip2, or wrap it with `wasm-tools component new`"
    )]
    NotComponent,
    /// The metadata section is there but is not the JSON the SDK writes.
    #[error("malformed `{META_SECTION}` section: {0}")]
    Meta(serde_json::Error),
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

impl Artifact {
    /// Describes a component from its bytes. Nothing is validated beyond what reading needs:
    /// whether it links and what `init` says are the loader's business.
    pub fn read(bytes: &[u8]) -> Result<Self, ArtifactError> {
        // Checked here because wasmparser's message for it is a dump of both byte arrays.
        if !bytes.starts_with(b"\0asm") {
            return Err(ArtifactError::NotWasm);
        }
        let mut contract = None;
        let mut meta_json = None;
        let mut imports = Vec::new();
        // What each open module or component is, outermost first: imports and exports count only
        // at the top level (depth 1); the metadata sits in a nested core module.
        let mut stack: Vec<Encoding> = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(ArtifactError::Parse)? {
                Payload::Version { encoding, .. } => {
                    if stack.is_empty() && encoding == Encoding::Module {
                        return Err(ArtifactError::NotComponent);
                    }
                    stack.push(encoding);
                }
                Payload::End(_) => {
                    stack.pop();
                }
                Payload::ComponentImportSection(reader) if stack.len() == 1 => {
                    for import in reader {
                        let import = import.map_err(ArtifactError::Parse)?;
                        imports.push(import.name.name.to_string());
                    }
                }
                Payload::ComponentExportSection(reader) if stack.len() == 1 => {
                    for export in reader {
                        let export = export.map_err(ArtifactError::Parse)?;
                        if let Some(v) = hooks_export_version(export.name.name) {
                            contract = Some(v.to_string());
                        }
                    }
                }
                Payload::CustomSection(section)
                    if section.name() == META_SECTION
                        && stack.last() == Some(&Encoding::Module)
                        && meta_json.is_none() =>
                {
                    meta_json = Some(section.data());
                }
                _ => {}
            }
        }
        let meta = meta_json
            .map(serde_json::from_slice::<PluginMeta>)
            .transpose()
            .map_err(ArtifactError::Meta)?;
        Ok(Self {
            digest: digest(bytes),
            size: bytes.len(),
            contract,
            meta,
            imports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component holding one core module: enough structure to exercise the walk without a
    /// compiler. `module_custom` is a (name, data) custom section inside the core module.
    fn component(module_custom: Option<(&str, &[u8])>) -> Vec<u8> {
        fn custom(name: &str, data: &[u8]) -> Vec<u8> {
            let mut body = vec![name.len() as u8];
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(data);
            let mut s = vec![0x00, body.len() as u8];
            s.extend(body);
            s
        }
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        if let Some((n, d)) = module_custom {
            module.extend(custom(n, d));
        }
        let mut c = b"\0asm\x0d\0\x01\0".to_vec();
        // Core module section (id 1) wrapping the module.
        c.push(0x01);
        c.push(module.len() as u8);
        c.extend(module);
        c
    }

    #[test]
    fn digest_is_sha256_hex() {
        // The SHA-256 of the empty string, from FIPS 180-4's examples.
        assert_eq!(
            digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn metadata_is_read_from_the_nested_core_module() {
        let json =
            br#"{"name":"p","version":"1.2.3","sdk":"0.1.0","hooks":["on-invite","on-call-end"]}"#;
        let bytes = component(Some((META_SECTION, json)));
        let a = Artifact::read(&bytes).unwrap();
        let m = a.meta.unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_str()),
            ("p", "1.2.3"),
            "{bytes:?}"
        );
        assert_eq!(m.hooks, ["on-invite", "on-call-end"]);
        assert_eq!(a.contract, None);
        assert_eq!(a.size, bytes.len());
    }

    #[test]
    fn a_component_without_the_section_has_no_metadata() {
        let a = Artifact::read(&component(Some(("other", b"x")))).unwrap();
        assert_eq!(a.meta, None);
        let a = Artifact::read(&component(None)).unwrap();
        assert_eq!(a.meta, None);
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let e = Artifact::read(&component(Some((META_SECTION, b"{not json")))).unwrap_err();
        assert!(matches!(e, ArtifactError::Meta(_)), "{e}");
        let e = Artifact::read(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(matches!(e, ArtifactError::NotComponent), "{e}");
        let e = Artifact::read(b"PK\x03\x04").unwrap_err();
        assert!(matches!(e, ArtifactError::NotWasm), "{e}");
        let mut cut = component(Some((META_SECTION, b"{}")));
        cut.truncate(cut.len() - 1);
        let e = Artifact::read(&cut).unwrap_err();
        assert!(matches!(e, ArtifactError::Parse(_)), "{e}");
    }
}
