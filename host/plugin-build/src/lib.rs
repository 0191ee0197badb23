//! Builds a Callgate plugin directory into a WebAssembly component, whatever language it is written
//! in.
//!
//! The language is read from the directory ([`Lang::detect`]):
//!
//! | language | recognised by | built with |
//! | --- | --- | --- |
//! | Rust | `Cargo.toml` | `cargo build --target wasm32-unknown-unknown --profile plugin`, made a component by `wit-component` (in-process); `--target wasm32-wasip2` when `[package.metadata.callgate] wasi = true` |
//! | C | `*.c` files | bindings from `wit-bindgen-c` (in-process), then `clang --target=wasm32-wasi` linked by `wasm-component-ld` |
//! | Python | `app.py` | `componentize-py -d <wit> -w plugin componentize app` |
//!
//! [`build_plugin`] builds one directory; [`build_rust_plugins`] builds several Rust plugins with one
//! cargo invocation, so that they share the build of their dependencies. C and Python builds are
//! skipped when their inputs (sources, WIT files, tool versions) are unchanged: a digest of the
//! inputs is kept beside the output (`<name>.wasm.digest`). Rust builds rely on cargo's own
//! incremental build instead.
//!
//! The tools come from the system: `clang`, `lld`, `wasi-libc` and `libclang-rt-14-dev-wasm32`
//! (Debian packages) for C, `componentize-py` (PyPI) for Python, the `wasm32-unknown-unknown` (and,
//! for plugins that ask for WASI, `wasm32-wasip2`) rustup targets for Rust. A missing one is reported as [`Error::MissingTool`] with what to install.

mod c;
mod digest;
mod python;
mod run;
mod rust;

use std::fmt;
use std::path::{Path, PathBuf};

pub use rust::build_rust_plugins;

/// The world every plugin implements (`wit/since_v*/hooks.wit`).
pub const WORLD: &str = "plugin";

/// The language a plugin directory is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    /// A cargo package (`Cargo.toml`) with a `cdylib` target, built for `wasm32-unknown-unknown`
    /// (or `wasm32-wasip2`, see the module docs).
    Rust,
    /// C sources (`*.c` directly in the directory), with bindings generated for the world.
    C,
    /// A Python module `app.py` with a `Hooks` class, componentized with CPython inside.
    Python,
}

impl Lang {
    /// The language of the plugin in `dir`: `Cargo.toml` means Rust, else any `*.c` file means C,
    /// else `app.py` means Python (checked in that order, so a Rust plugin may carry C or Python
    /// helpers). `None` if it is none of these, e.g. a directory that only groups plugins.
    pub fn detect(dir: &Path) -> Option<Lang> {
        if dir.join("Cargo.toml").is_file() {
            return Some(Lang::Rust);
        }
        if !c::sources(dir).unwrap_or_default().is_empty() {
            return Some(Lang::C);
        }
        if dir.join(python::APP).is_file() {
            return Some(Lang::Python);
        }
        None
    }

    /// `rust`, `c` or `python`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Python => "python",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a plugin could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory holds no plugin of a known language.
    #[error(
        "{}: not a plugin directory (expected Cargo.toml, *.c files or app.py)",
        dir.display()
    )]
    UnknownLanguage {
        /// The directory.
        dir: PathBuf,
    },
    /// A tool the build needs is not installed.
    #[error("{tool} not found: {install}")]
    MissingTool {
        /// The program or file looked for.
        tool: String,
        /// What to install to get it.
        install: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The WIT files could not be read, or bindings could not be generated from them.
    #[error("WIT {}: {message}", path.display())]
    Wit {
        /// The WIT directory.
        path: PathBuf,
        /// The parser's or generator's message.
        message: String,
    },
    /// A Rust plugin's Cargo.toml has no usable `[package] name`.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The Cargo.toml.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A built core module could not be made a component.
    #[error("{}: not a plugin component: {message}", path.display())]
    Component {
        /// The core module.
        path: PathBuf,
        /// wit-component's message.
        message: String,
    },
    /// A build tool ran and failed.
    #[error("{command} failed ({status}){}\n{output}", hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default())]
    Failed {
        /// The command line, for people.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed (standard error, then standard output).
        output: String,
        /// A likely cause, when the output shows one (e.g. a missing system package).
        hint: Option<String>,
    },
}

impl Error {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The plugin directories directly under `parent` (those [`Lang::detect`] recognises), sorted by
/// name. A missing `parent` has none.
pub fn plugin_dirs(parent: &Path) -> Result<Vec<(PathBuf, Lang)>, Error> {
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(parent)(e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.map_err(Error::io(parent))?.path();
        if path.is_dir()
            && let Some(lang) = Lang::detect(&path)
        {
            dirs.push((path, lang));
        }
    }
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(dirs)
}

/// The name of the component built from `dir`: the directory's name.
pub fn plugin_name(dir: &Path) -> Result<String, Error> {
    dir.canonicalize()
        .map_err(Error::io(dir))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::UnknownLanguage {
            dir: dir.to_path_buf(),
        })
}

/// Builds the plugin in `dir` against the WIT package in `wit_dir` (e.g. `wit/since_v0.1.1`) and
/// returns the component's path, `out_dir/<dir name>.wasm`. Intermediate files go under `out_dir`
/// too, never into `dir`.
///
/// A Rust plugin is built by cargo with `out_dir/cargo` as its target directory and must belong to
/// a workspace that defines the `plugin` profile; several Rust plugins are better built together
/// with [`build_rust_plugins`]. C and Python builds are skipped when nothing they read changed.
pub fn build_plugin(dir: &Path, wit_dir: &Path, out_dir: &Path) -> Result<PathBuf, Error> {
    let lang = Lang::detect(dir).ok_or_else(|| Error::UnknownLanguage {
        dir: dir.to_path_buf(),
    })?;
    std::fs::create_dir_all(out_dir).map_err(Error::io(out_dir))?;
    let out = out_dir.join(format!("{}.wasm", plugin_name(dir)?));
    match lang {
        Lang::Rust => {
            let built = build_rust_plugins(&[dir.to_path_buf()], &out_dir.join("cargo"))?;
            write_if_changed(&built[0], &out)?;
        }
        Lang::C => c::build(dir, wit_dir, &out)?,
        Lang::Python => python::build(dir, wit_dir, &out)?,
    }
    Ok(out)
}

/// Copies `from` to `to` unless `to` already has the same content, so that an unchanged component
/// keeps its modification time (the gateway reloads a plugin whose file changed).
pub fn write_if_changed(from: &Path, to: &Path) -> Result<bool, Error> {
    let new = std::fs::read(from).map_err(Error::io(from))?;
    if std::fs::read(to).ok().as_deref() == Some(&new[..]) {
        return Ok(false);
    }
    let tmp = temp_path(to);
    std::fs::write(&tmp, &new).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, to).map_err(Error::io(to))?;
    Ok(true)
}

/// A scratch path beside `path`, unique to this process so that concurrent builds never write the
/// same file; renamed over `path` once complete, so readers never see half a component.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "callgate-plugin-build-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn detects_each_language_and_prefers_cargo() {
        let root = scratch("detect");
        let make = |name: &str, files: &[&str]| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            for f in files {
                std::fs::write(d.join(f), "").unwrap();
            }
            d
        };
        assert_eq!(
            Lang::detect(&make("r", &["Cargo.toml", "app.py"])),
            Some(Lang::Rust)
        );
        assert_eq!(
            Lang::detect(&make("c", &["a.c", "a.h", "README.md"])),
            Some(Lang::C)
        );
        assert_eq!(Lang::detect(&make("py", &["app.py"])), Some(Lang::Python));
        assert_eq!(Lang::detect(&make("none", &["main.py", "x.h"])), None);
        // A directory named `x.c` is not a C source.
        std::fs::create_dir_all(root.join("none").join("x.c")).unwrap();
        assert_eq!(Lang::detect(&root.join("none")), None);

        let found = plugin_dirs(&root).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|(d, l)| (d.file_name().unwrap().to_str().unwrap(), *l))
            .collect();
        assert_eq!(
            names,
            [("c", Lang::C), ("py", Lang::Python), ("r", Lang::Rust)]
        );
        assert!(plugin_dirs(&root.join("missing")).unwrap().is_empty());
        assert!(matches!(
            build_plugin(&root.join("none"), &root, &root.join("out")),
            Err(Error::UnknownLanguage { .. })
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn write_if_changed_keeps_an_identical_file() {
        let root = scratch("copy");
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::write(&a, "one").unwrap();
        assert!(write_if_changed(&a, &b).unwrap());
        assert!(!write_if_changed(&a, &b).unwrap());
        std::fs::write(&a, "two").unwrap();
        assert!(write_if_changed(&a, &b).unwrap());
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "two");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
