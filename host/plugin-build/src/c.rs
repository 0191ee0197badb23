//! C plugins, by toolchain.md's "route A": bindings from `wit-bindgen-c` (as a library, so nothing
//! to install), then Debian's clang for `wasm32-wasi` (clang 14 has no `wasm32-wasip2` target) as a
//! reactor, linked by rustup's `wasm-component-ld`, which adds the WASI p1->p2 adapter and makes
//! the component.

use std::path::{Path, PathBuf};

use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

use crate::digest::{self, Inputs};
use crate::run::{Tool, which};
use crate::{Error, WORLD, temp_path};

/// What the C toolchain comes from (Debian 12 package names).
const APT: &str =
    "install the Debian packages: `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`";

/// Names the steps below, so that changing a flag rebuilds every C plugin.
const RECIPE: &str = "c/1: wit-bindgen-c 0.61; clang --target=wasm32-wasi -mexec-model=reactor -O2 \
                      -fuse-ld=wasm-component-ld -Wl,--wasi-adapter=reactor -Wl,--strip-debug";

/// The C sources of a plugin: the `*.c` files directly in `dir`, sorted.
pub(crate) fn sources(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "c") && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The linker wrapper that ships with the Rust toolchain (rustc uses it for `wasm32-wasip2`).
fn wasm_component_ld() -> Result<Tool, Error> {
    let rustc = Tool::new(
        std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()),
        "install Rust with rustup (https://rustup.rs)",
    );
    let mut cmd = rustc.command();
    cmd.args(["--print", "sysroot"]);
    let sysroot = PathBuf::from(rustc.run(&mut cmd, |_| None)?.trim());
    let mut cmd = rustc.command();
    cmd.arg("-vV");
    let info = rustc.run(&mut cmd, |_| None)?;
    let host = info
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("x86_64-unknown-linux-gnu");
    let path = sysroot
        .join("lib")
        .join("rustlib")
        .join(host)
        .join("bin")
        .join("wasm-component-ld");
    let tool = Tool::new(
        path,
        "it ships with the Rust toolchain since 1.82: `rustup update`",
    );
    if !tool.program.is_file() {
        return Err(Error::MissingTool {
            tool: tool.program.display().to_string(),
            install: tool.install.into(),
        });
    }
    Ok(tool)
}

/// Reads a likely cause from clang's output.
fn hint(output: &str) -> Option<String> {
    let package = if output.contains("libclang_rt.builtins-wasm32") {
        "libclang-rt-14-dev-wasm32"
    } else if output.contains("crt1-reactor.o")
        || output.contains(".h' file not found")
        || output.contains("-lc")
    {
        "wasi-libc"
    } else if output.contains("wasm-ld")
        && ["not found", "No such file", "failed to find"]
            .iter()
            .any(|m| output.contains(m))
    {
        "lld"
    } else {
        return None;
    };
    Some(format!(
        "probably the Debian package `{package}` is missing (`apt-get install {package}`)"
    ))
}

/// Writes the C bindings of the world into `gen`, returning the files written.
fn bindings(wit_dir: &Path, r#gen: &Path) -> Result<Vec<PathBuf>, Error> {
    fn wit<E: std::fmt::Display>(wit_dir: &Path) -> impl Fn(E) -> Error + '_ {
        move |e| Error::Wit {
            path: wit_dir.to_path_buf(),
            message: format!("{e:#}"),
        }
    }
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_path(wit_dir).map_err(wit(wit_dir))?;
    let world = resolve
        .select_world(&[pkg], Some(WORLD))
        .map_err(wit(wit_dir))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .map_err(wit(wit_dir))?;
    std::fs::create_dir_all(r#gen).map_err(Error::io(r#gen))?;
    let mut written = Vec::new();
    for (name, content) in files.iter() {
        let path = r#gen.join(name);
        std::fs::write(&path, content).map_err(Error::io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// Builds the C plugin in `dir` into the component `out`, unless its inputs are unchanged.
pub(crate) fn build(dir: &Path, wit_dir: &Path, out: &Path) -> Result<(), Error> {
    let clang = match which("clang") {
        Some(p) => Tool::new(p, APT),
        None => {
            return Err(Error::MissingTool {
                tool: "clang".into(),
                install: APT.into(),
            });
        }
    };
    let wcl = wasm_component_ld()?;
    // wasm-component-ld runs `wasm-ld` from PATH (Debian's lld); without it, the toolchain's own
    // rust-lld serves (toolchain.md: the same working component).
    let wasm_ld = which("wasm-ld").or_else(|| {
        let p = wcl.program.parent()?.join("gcc-ld").join("wasm-ld");
        p.is_file().then_some(p)
    });
    let Some(wasm_ld) = wasm_ld else {
        return Err(Error::MissingTool {
            tool: "wasm-ld".into(),
            install: APT.into(),
        });
    };

    let mut inputs = Inputs::new(RECIPE);
    inputs.text("clang", &clang.version()?);
    inputs.text("wasm-component-ld", &wcl.version()?);
    inputs.text("wasm-ld", &wasm_ld.to_string_lossy());
    inputs.tree(dir, |p| p.extension().is_some_and(|e| e == "c" || e == "h"))?;
    inputs.tree(wit_dir, |_| true)?;
    let digest = inputs.finish();
    if digest::up_to_date(out, &digest) {
        return Ok(());
    }
    digest::forget(out);

    let r#gen = out.with_extension("c-build").join("gen");
    let generated = bindings(wit_dir, &r#gen)?;
    let tmp = temp_path(out);
    let mut cmd = clang.command();
    cmd.args([
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-Wall",
    ])
    .arg("-I")
    .arg(&r#gen)
    .args(sources(dir).map_err(Error::io(dir))?)
    .args(
        generated
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "c" || e == "o")),
    )
    .arg(format!("-fuse-ld={}", wcl.program.display()))
    .args(["-Wl,--wasi-adapter=reactor", "-Wl,--strip-debug"])
    .arg(format!("-Wl,--wasm-ld-path={}", wasm_ld.display()))
    .arg("-o")
    .arg(&tmp);
    let result = clang.run(&mut cmd, hint);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    std::fs::rename(&tmp, out).map_err(Error::io(out))?;
    digest::record(out, &digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_missing_package() {
        let h = |s: &str| hint(s).unwrap_or_default();
        assert!(h("wasm-ld: error: cannot open /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a").contains("`libclang-rt-14-dev-wasm32`"));
        assert!(h("fatal error: 'stdlib.h' file not found").contains("`wasi-libc`"));
        assert!(h("error: unable to find library -lc").contains("`wasi-libc`"));
        assert!(h("failed to find `wasm-ld` on PATH").contains("`lld`"));
        assert_eq!(hint("x.c:3:1: error: expected ';'"), None);
        assert_eq!(
            hint("wasm-ld: error: x.o: undefined symbol: exports_x"),
            None
        );
    }
}
