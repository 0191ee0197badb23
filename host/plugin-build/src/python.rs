//! Python plugins: `componentize-py` bundles CPython, the standard library and `app.py` into a
//! component (about 18 MB; about 5 s per build, hence the digest).

use std::path::Path;

use crate::digest::{self, Inputs};
use crate::run::Tool;
use crate::{Error, WORLD, temp_path};

/// The module componentize-py is pointed at: `app.py` in the plugin directory.
pub(crate) const APP: &str = "app.py";

/// Names the command below, so that changing it rebuilds every Python plugin.
const RECIPE: &str = "python/1: componentize-py -d <wit> -w plugin componentize app";

/// componentize-py, from `$COMPONENTIZE_PY` if set (e.g. a virtualenv's), else from `PATH`.
fn componentize_py() -> Tool {
    Tool::new(
        std::env::var_os("COMPONENTIZE_PY").unwrap_or_else(|| "componentize-py".into()),
        "install it from PyPI: `pip install componentize-py==0.25.1`",
    )
}

/// Builds the Python plugin in `dir` into the component `out`, unless its inputs are unchanged.
pub(crate) fn build(dir: &Path, wit_dir: &Path, out: &Path) -> Result<(), Error> {
    let tool = componentize_py();
    let mut inputs = Inputs::new(RECIPE);
    inputs.text("componentize-py", &tool.version()?);
    inputs.tree(dir, |p| {
        p.extension().is_some_and(|e| e == "py") && !in_build_output(p)
    })?;
    inputs.tree(wit_dir, |_| true)?;
    let digest = inputs.finish();
    if digest::up_to_date(out, &digest) {
        return Ok(());
    }
    digest::forget(out);

    let wit_dir = wit_dir.canonicalize().map_err(Error::io(wit_dir))?;
    let tmp = std::path::absolute(temp_path(out)).map_err(Error::io(out))?;
    // componentize-py imports app.py and leaves __pycache__ beside it whatever PYTHONDONTWRITEBYTECODE
    // says; it runs on a copy, so that the source tree stays clean (and the build script that
    // watches it does not rerun for nothing).
    let src = out.with_extension("py-build");
    copy_tree(dir, &src)?;
    let mut cmd = tool.command();
    cmd.current_dir(&src)
        .arg("-d")
        .arg(&wit_dir)
        .args(["-w", WORLD, "componentize", "app", "-o"])
        .arg(&tmp);
    let result = tool.run(&mut cmd, |_| None);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    std::fs::rename(&tmp, out).map_err(Error::io(out))?;
    digest::record(out, &digest)
}

/// Replaces `to` with a copy of the plugin directory `from`, less hidden entries and bytecode.
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(Error::io(to))?;
    }
    std::fs::create_dir_all(to).map_err(Error::io(to))?;
    for entry in std::fs::read_dir(from).map_err(Error::io(from))? {
        let entry = entry.map_err(Error::io(from))?;
        let name = entry.file_name();
        // `target` holds build output (`callgate plugin build` writes there by default), which
        // would otherwise be copied into itself.
        if name.to_string_lossy().starts_with('.') || name == "__pycache__" || name == "target" {
            continue;
        }
        let (path, dest) = (entry.path(), to.join(&name));
        if path.is_dir() {
            copy_tree(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(Error::io(&path))?;
        }
    }
    Ok(())
}

/// True for paths (relative to the plugin directory) under its `target/`: build output, not sources.
fn in_build_output(rel: &Path) -> bool {
    rel.components()
        .next()
        .is_some_and(|c| c.as_os_str() == "target")
}
