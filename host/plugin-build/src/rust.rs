//! Rust plugins: a nested `cargo build` for `wasm32-wasip2`, whose output is already a component.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::run::Tool;

/// Variables of an enclosing cargo build (e.g. when called from a build script) that are meant for
/// the host build, not for wasm guests.
const HOST_BUILD_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "CARGO_LLVM_COV",
    "LLVM_PROFILE_FILE",
];

/// The package name in `dir/Cargo.toml`.
fn package_name(dir: &Path) -> Result<String, Error> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let manifest: toml::Table = text.parse().map_err(|e| Error::Manifest {
        path: path.clone(),
        message: format!("{e}"),
    })?;
    manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::Manifest {
            path,
            message: "no [package] name".into(),
        })
}

/// Builds the Rust plugins in `dirs` with a single `cargo build --target wasm32-wasip2 --profile
/// plugin`, so that they share the build of their dependencies, into the cargo target directory
/// `target_dir`. Returns the component of each directory, in order, inside `target_dir`.
///
/// Cargo runs from the first directory with `-p <package>` for each one: the plugins must be
/// members of one workspace, and that workspace must define the `plugin` profile.
pub fn build_rust_plugins(dirs: &[PathBuf], target_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let Some(first) = dirs.first() else {
        return Ok(Vec::new());
    };
    let cargo = Tool::new(
        std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`",
    );
    let mut cmd = cargo.command();
    cmd.current_dir(first)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"])
        .arg("--target-dir")
        .arg(target_dir);
    let mut built = Vec::new();
    for dir in dirs {
        let pkg = package_name(dir)?;
        cmd.args(["-p", &pkg]);
        built.push(
            target_dir
                .join("wasm32-wasip2")
                .join("plugin")
                .join(format!("{}.wasm", pkg.replace('-', "_"))),
        );
    }
    for var in HOST_BUILD_VARS {
        cmd.env_remove(var);
    }
    cargo.run(&mut cmd, |output| {
        (output.contains("wasm32-wasip2") && output.contains("target may not be installed"))
            .then(|| "the wasm target is missing: `rustup target add wasm32-wasip2`".to_owned())
    })?;
    Ok(built)
}
