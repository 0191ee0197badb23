//! Builds the in-tree plugins (`plugins/*`, `plugins/testing/*`; Rust, C or Python) as
//! components, so that the gateway's default config, the tests and the benchmarks find them without
//! a manual step.
//!
//! The components land in `target/plugins/<dir name>.wasm`; the directory is exported to the crate
//! as `CALLGATE_PLUGIN_DIR`. The Rust plugins are built by one nested cargo invocation (so that they
//! share their dependencies' build) with its own target directory, so that it never waits on the
//! lock of the build that runs this script; the C and Python plugins are built one by one with
//! `callgate-plugin-build`, which skips those whose inputs did not change. Set
//! `CALLGATE_SKIP_PLUGIN_BUILD=1` to skip (e.g. when the toolchains are not installed and no plugin
//! is needed).

use std::path::{Path, PathBuf};

use callgate_plugin_build::{Lang, build_plugin, build_rust_plugins, plugin_dirs};

/// The newest contract, `wit/since_v<x.y.z>` with the highest version: what in-tree plugins target.
fn newest_wit(root: &Path) -> PathBuf {
    let wit = root.join("wit");
    let version = |p: &Path| -> Option<Vec<u64>> {
        let name = p.file_name()?.to_str()?.strip_prefix("since_v")?;
        name.split('.').map(|n| n.parse().ok()).collect()
    };
    std::fs::read_dir(&wit)
        .unwrap_or_else(|e| panic!("reading {}: {e}", wit.display()))
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| Some((version(&p)?, p)))
        .max()
        .unwrap_or_else(|| panic!("no wit/since_v* directory in {}", wit.display()))
        .1
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .expect("a plugin directory has a name")
        .to_string_lossy()
        .into_owned()
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let root = manifest
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    let out_dir = root.join("target").join("plugins");
    println!("cargo:rustc-env=CALLGATE_PLUGIN_DIR={}", out_dir.display());
    println!("cargo:rerun-if-env-changed=CALLGATE_SKIP_PLUGIN_BUILD");
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
    for dir in ["plugins", "plugin-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    if std::env::var_os("CALLGATE_SKIP_PLUGIN_BUILD").is_some() {
        return;
    }

    let (mut rust, mut others) = (Vec::new(), Vec::new());
    for parent in [root.join("plugins"), root.join("plugins").join("testing")] {
        let dirs = plugin_dirs(&parent).unwrap_or_else(|e| panic!("{e}"));
        for (dir, lang) in dirs {
            match lang {
                Lang::Rust => rust.push(dir),
                Lang::C | Lang::Python => others.push(dir),
            }
        }
    }
    let wit = newest_wit(&root);
    let build_dir = root.join("target").join("plugin-build");
    // The nested cargo and the C/Python builds are independent: run them side by side.
    let (rust_built, others_built) = std::thread::scope(|s| {
        let others = s.spawn(|| {
            others
                .iter()
                .map(|dir| build_plugin(dir, &wit, &build_dir))
                .collect::<Result<Vec<_>, _>>()
        });
        let rust = build_rust_plugins(&rust, &root.join("target").join("wasm"));
        (rust, others.join().expect("the C/Python build thread"))
    });
    let rust_built = rust_built.unwrap_or_else(|e| {
        panic!("building the Rust plugins failed (are the wasm targets installed? `rustup target add wasm32-unknown-unknown wasm32-wasip2`): {e}")
    });
    let others_built = others_built.unwrap_or_else(|e| panic!("building a plugin failed: {e}"));

    std::fs::create_dir_all(&out_dir).expect("creating target/plugins");
    for (dir, built) in rust
        .iter()
        .zip(&rust_built)
        .chain(others.iter().zip(&others_built))
    {
        copy_if_changed(built, &out_dir.join(format!("{}.wasm", dir_name(dir))));
    }
}

/// Copies only when the content differs, so that an unchanged plugin keeps its mtime (the gateway's
/// file watcher reloads on change).
fn copy_if_changed(from: &Path, to: &Path) {
    let new = std::fs::read(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    if std::fs::read(to).ok().as_deref() != Some(&new[..]) {
        std::fs::write(to, &new).unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
    }
}
