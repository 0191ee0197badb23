//! The digest of a build's inputs, kept beside its output so that an unchanged plugin is not built
//! again (a Python plugin takes seconds to componentize).

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::Error;

/// A SHA-256 over everything a build reads. Every item is length-prefixed, so that two different
/// input sets can never hash the same bytes.
pub(crate) struct Inputs(Sha256);

impl Inputs {
    /// Starts a digest; `recipe` names the build steps and flags, so that changing them rebuilds.
    pub fn new(recipe: &str) -> Self {
        let mut d = Self(Sha256::new());
        d.text("recipe", recipe);
        d
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
    }

    /// Adds a labelled text, e.g. a tool's version.
    pub fn text(&mut self, label: &str, text: &str) {
        self.bytes(label.as_bytes());
        self.bytes(text.as_bytes());
    }

    /// Adds every file under `root` that `keep` accepts (by path relative to `root`), with its
    /// relative path, in a stable order. Hidden entries and `__pycache__` are skipped: editors and
    /// Python leave them behind and they are not sources.
    pub fn tree(&mut self, root: &Path, keep: impl Fn(&Path) -> bool) -> Result<(), Error> {
        for rel in files(root)? {
            if keep(&rel) {
                let path = root.join(&rel);
                let content = std::fs::read(&path).map_err(Error::io(&path))?;
                self.bytes(rel.to_string_lossy().as_bytes());
                self.bytes(&content);
            }
        }
        Ok(())
    }

    /// The digest as hex.
    pub fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The files under `root`, as sorted paths relative to it.
fn files(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in std::fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            let name = entry.file_name();
            let name_str = name.to_string_lossy();
            if name_str.starts_with('.') || name_str == "__pycache__" {
                continue;
            }
            let ty = entry.file_type().map_err(Error::io(&entry.path()))?;
            if ty.is_dir() {
                stack.push(rel.join(&name));
            } else if ty.is_file() {
                out.push(rel.join(&name));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn digest_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".digest");
    out.with_file_name(name)
}

/// True if `out` exists and was built from inputs with this digest.
pub(crate) fn up_to_date(out: &Path, digest: &str) -> bool {
    out.is_file() && std::fs::read_to_string(digest_path(out)).is_ok_and(|d| d.trim() == digest)
}

/// Records that `out` was built from inputs with this digest.
pub(crate) fn record(out: &Path, digest: &str) -> Result<(), Error> {
    let path = digest_path(out);
    std::fs::write(&path, format!("{digest}\n")).map_err(Error::io(&path))
}

/// Forgets the digest of `out`, before rebuilding it: a build that fails half-way must not leave
/// an old digest beside a new output (or the reverse).
pub(crate) fn forget(out: &Path) {
    let _ = std::fs::remove_file(digest_path(out));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_content_names_and_labels() {
        let root = std::env::temp_dir().join(format!("callgate-digest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("__pycache__")).unwrap();
        std::fs::write(root.join("a.py"), "x = 1").unwrap();
        std::fs::write(root.join("sub").join("b.py"), "y = 2").unwrap();
        std::fs::write(root.join("README.md"), "docs").unwrap();
        let digest = |recipe: &str| {
            let mut d = Inputs::new(recipe);
            d.tree(&root, |p| p.extension().is_some_and(|e| e == "py"))
                .unwrap();
            d.finish()
        };
        let first = digest("r1");
        assert_eq!(first.len(), 64);
        assert_eq!(digest("r1"), first);
        assert_ne!(digest("r2"), first);
        // Files the filter drops, hidden files and bytecode do not count.
        std::fs::write(root.join("README.md"), "other docs").unwrap();
        std::fs::write(root.join(".a.py.swp"), "junk").unwrap();
        std::fs::write(root.join("__pycache__").join("a.py"), "junk").unwrap();
        assert_eq!(digest("r1"), first);
        // A changed source, or the same content under another name, does.
        std::fs::write(root.join("sub").join("b.py"), "y = 3").unwrap();
        let second = digest("r1");
        assert_ne!(second, first);
        std::fs::rename(root.join("sub").join("b.py"), root.join("b.py")).unwrap();
        assert_ne!(digest("r1"), second);

        let out = root.join("p.wasm");
        assert!(!up_to_date(&out, &first));
        std::fs::write(&out, "wasm").unwrap();
        record(&out, &first).unwrap();
        assert!(up_to_date(&out, &first));
        assert!(!up_to_date(&out, &second));
        forget(&out);
        assert!(!up_to_date(&out, &first));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
