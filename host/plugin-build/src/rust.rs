//! Rust plugins: a nested `cargo build`, for `wasm32-unknown-unknown` then made a component
//! in-process (wit-component), or for `wasm32-wasip2` (already a component) when the plugin asks for
//! WASI with `[package.metadata.callgate] wasi = true`.
//!
//! Why not WASI by default: Rust's std links ~20 WASI functions into a wasip2 plugin (stdio for panic
//! messages, environment, exit, terminals), and every per-call instance pays to link each of them:
//! ~24k of the ~420k instructions of a call with the probe plugin on every hook. The contract gives
//! a plugin what it needs (log, config, call state); the SDK sends panic messages to `log`.

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

/// The two targets a Rust plugin is built for.
const PLAIN: &str = "wasm32-unknown-unknown";
const WASI: &str = "wasm32-wasip2";

/// What the build needs from `dir/Cargo.toml`: the package name, and whether the plugin asks for
/// WASI (`[package.metadata.callgate] wasi = true`).
fn read_manifest(dir: &Path) -> Result<(String, bool), Error> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let manifest: toml::Table = text.parse().map_err(|e| Error::Manifest {
        path: path.clone(),
        message: format!("{e}"),
    })?;
    let package = manifest.get("package");
    let name = package
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::Manifest {
            path: path.clone(),
            message: "no [package] name".into(),
        })?;
    let wasi = match package
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("callgate"))
        .and_then(|c| c.get("wasi"))
    {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => {
            return Err(Error::Manifest {
                path,
                message: "[package.metadata.callgate] wasi must be true or false".into(),
            });
        }
    };
    Ok((name, wasi))
}

/// Builds the Rust plugins in `dirs` with one `cargo build --profile plugin` per target, so that
/// they share the build of their dependencies, into the cargo target directory `target_dir`.
/// Returns the component of each directory, in order, inside `target_dir`.
///
/// Cargo runs from the first directory with `-p <package>` for each one: the plugins must be
/// members of one workspace, and that workspace must define the `plugin` profile.
pub fn build_rust_plugins(dirs: &[PathBuf], target_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let Some(first) = dirs.first() else {
        return Ok(Vec::new());
    };
    let packages = dirs
        .iter()
        .map(|d| read_manifest(d))
        .collect::<Result<Vec<_>, _>>()?;
    for target in [PLAIN, WASI] {
        let names: Vec<&str> = packages
            .iter()
            .filter(|(_, wasi)| (target == WASI) == *wasi)
            .map(|(name, _)| name.as_str())
            .collect();
        if !names.is_empty() {
            cargo_build(first, target, &names, target_dir)?;
        }
    }
    packages
        .iter()
        .map(|(name, wasi)| {
            let stem = name.replace('-', "_");
            let file = format!("{stem}.wasm");
            if *wasi {
                return Ok(target_dir.join(WASI).join("plugin").join(file));
            }
            let out = target_dir.join(PLAIN).join("plugin");
            let (module, component) = (out.join(file), out.join(format!("{stem}.component.wasm")));
            componentize(&module, &component)?;
            Ok(component)
        })
        .collect()
}

fn cargo_build(
    dir: &Path,
    target: &str,
    packages: &[&str],
    target_dir: &Path,
) -> Result<(), Error> {
    let cargo = Tool::new(
        std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-unknown-unknown wasm32-wasip2`",
    );
    let mut cmd = cargo.command();
    cmd.current_dir(dir)
        .args(["build", "--target", target, "--profile", "plugin"])
        .arg("--target-dir")
        .arg(target_dir);
    for pkg in packages {
        cmd.args(["-p", pkg]);
    }
    for var in HOST_BUILD_VARS {
        cmd.env_remove(var);
    }
    cargo.run(&mut cmd, |output| {
        (output.contains(target) && output.contains("target may not be installed"))
            .then(|| format!("the wasm target is missing: `rustup target add {target}`"))
    })?;
    Ok(())
}

/// Makes the component of a core module whose bindings (wit-bindgen's custom section) name its
/// imports and exports. Writes only when the bytes change, so an unchanged plugin keeps its mtime.
fn componentize(module: &Path, component: &Path) -> Result<(), Error> {
    let bytes = std::fs::read(module).map_err(Error::io(module))?;
    let encoded = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| Error::Component {
            path: module.to_path_buf(),
            message: format!("{e:#}"),
        })?;
    if std::fs::read(component).ok().as_deref() != Some(&encoded[..]) {
        std::fs::write(component, &encoded).map_err(Error::io(component))?;
    }
    Ok(())
}
