//! Builds the in-tree plugins (`plugins/*`, `plugins/testing/*`) as wasm32-wasip2 components, so that
//! the gateway's default config, the tests and the benchmarks find them without a manual step.
//!
//! The components land in `target/plugins/<name>.wasm`; the directory is exported to the crate as
//! `CALLGATE_PLUGIN_DIR`. A nested cargo uses its own target directory so that it never waits on the
//! lock of the build that runs this script. Set `CALLGATE_SKIP_PLUGIN_BUILD=1` to skip (e.g. when the
//! wasm target is not installed and no plugin is needed).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugin packages: every directory under `plugins/` and `plugins/testing/` with a Cargo.toml.
/// By convention a plugin's package is named after its directory.
fn plugin_packages(root: &Path) -> Vec<String> {
    let mut pkgs = Vec::new();
    for dir in [root.join("plugins"), root.join("plugins").join("testing")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().join("Cargo.toml").is_file() {
                pkgs.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    pkgs.sort();
    pkgs
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
    for dir in ["plugins", "plugin-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    if std::env::var_os("CALLGATE_SKIP_PLUGIN_BUILD").is_some() {
        return;
    }
    let wasm_target = root.join("target").join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"])
        .arg("--target-dir")
        .arg(&wasm_target);
    let pkgs = plugin_packages(&root);
    for pkg in &pkgs {
        cmd.args(["-p", pkg]);
    }
    // The outer build's settings are for the host, not for wasm guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the plugins");
    assert!(
        status.success(),
        "building the plugins failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
    );
    std::fs::create_dir_all(&out_dir).expect("creating target/plugins");
    for pkg in &pkgs {
        let file = format!("{}.wasm", pkg.replace('-', "_"));
        let built = wasm_target.join("wasm32-wasip2").join("plugin").join(&file);
        copy_if_changed(&built, &out_dir.join(format!("{pkg}.wasm")));
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
