//! Compiling plugin components, with an optional on-disk cache of the compiled artifacts so that a
//! restart or a reload of an unchanged plugin skips Cranelift.
//!
//! An entry is keyed by the SHA-256 of the component's bytes and the engine's
//! [`precompile_compatibility_hash`](wasmtime::Engine::precompile_compatibility_hash) (target,
//! compiler flags, tunables, wasm features, wasmtime version), so a changed plugin, a changed
//! `[runtime]` setting that affects code generation, or a new wasmtime release each get a new entry
//! instead of a wrong one. Entries are never evicted: stale ones are dead weight, not hazards.
//!
//! File layout, one file `<key>.cwasm` per entry:
//!
//! ```text
//! MAGIC (8 bytes) | key (32) | SHA-256 of the artifact (32) | artifact (wasmtime's serialised component)
//! ```
//!
//! Deserialising an artifact is `unsafe` (wasmtime trusts it to be its own output), so the artifact's
//! digest is checked before wasmtime sees a byte; a file that fails the check (torn write, disk
//! error, truncation, a file copied under the wrong name) is logged, removed and recompiled. The
//! check guards against accidents, not against an attacker who can write the directory: such a
//! person could write a matching digest too, so the directory must be as trusted as the binary.

use std::hash::Hasher;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::artifact::hex;
use super::engine::Runtime;

/// First bytes of every entry; the last byte is the layout's version.
const MAGIC: &[u8; 8] = b"CGCWASM\x01";
/// Bytes before the artifact: magic, key, artifact digest.
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

/// How [`Runtime::compile`] obtained a component, and how long it took (reading, checking,
/// compiling and writing included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileOutcome {
    /// Read from the cache directory: no compilation.
    Cached {
        /// Time to get the component.
        elapsed: Duration,
    },
    /// Compiled, and the artifact stored in the cache directory for next time.
    Compiled {
        /// Time to get the component.
        elapsed: Duration,
    },
    /// Compiled without the cache: none is configured, or storing the artifact failed (logged).
    Uncached {
        /// Time to get the component.
        elapsed: Duration,
    },
}

impl CompileOutcome {
    /// Time to get the component.
    pub fn elapsed(&self) -> Duration {
        match *self {
            Self::Cached { elapsed } | Self::Compiled { elapsed } | Self::Uncached { elapsed } => {
                elapsed
            }
        }
    }

    /// `cached`, `compiled` or `uncached`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cached { .. } => "cached",
            Self::Compiled { .. } => "compiled",
            Self::Uncached { .. } => "uncached",
        }
    }
}

/// Why a component could not be compiled. Cache trouble is never one of these: the cache falls
/// back to compiling and logs.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The bytes are not a component this engine accepts.
    #[error("not a valid wasm component: {0:#}")]
    Invalid(wasmtime::Error),
    /// The blocking task that compiles panicked or was cancelled.
    #[error("the compiler task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Runtime {
    /// Compiles a component, through the cache directory if one is configured
    /// ([`RuntimeConfig::cache_dir`](super::RuntimeConfig::cache_dir)). All the work (hashing,
    /// file I/O, Cranelift) runs on a blocking thread. The outcome is logged at info with the
    /// plugin's digest, the SHA-256 that `callgate plugin inspect` prints.
    pub async fn compile(
        &self,
        bytes: impl Into<Arc<[u8]>>,
    ) -> Result<(Component, CompileOutcome), CompileError> {
        let bytes: Arc<[u8]> = bytes.into();
        let engine = self.inner.engine.clone();
        let dir = self.inner.config.cache_dir.clone();
        let size = bytes.len();
        let (component, outcome, digest) =
            tokio::task::spawn_blocking(move || compile_blocking(&engine, dir.as_deref(), &bytes))
                .await??;
        tracing::info!(
            digest = %hex(&digest),
            size,
            outcome = outcome.name(),
            elapsed_ms = outcome.elapsed().as_secs_f64() * 1e3,
            "plugin component ready"
        );
        Ok((component, outcome))
    }
}

fn compile_blocking(
    engine: &Engine,
    dir: Option<&Path>,
    bytes: &[u8],
) -> Result<(Component, CompileOutcome, [u8; 32]), CompileError> {
    let started = Instant::now();
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let compile = || Component::new(engine, bytes).map_err(CompileError::Invalid);
    let Some(dir) = dir else {
        let c = compile()?;
        let elapsed = started.elapsed();
        return Ok((c, CompileOutcome::Uncached { elapsed }, digest));
    };
    let key = cache_key(&digest, engine);
    let path = dir.join(format!("{}.cwasm", hex(&key)));
    if let Some(c) = load_entry(engine, &key, &path) {
        let elapsed = started.elapsed();
        return Ok((c, CompileOutcome::Cached { elapsed }, digest));
    }
    let c = compile()?;
    let stored = c
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))
        .and_then(|artifact| store_entry(dir, &key, &path, &artifact));
    let elapsed = started.elapsed();
    let outcome = match stored {
        Ok(()) => CompileOutcome::Compiled { elapsed },
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot store the compiled component; the next load compiles again");
            CompileOutcome::Uncached { elapsed }
        }
    };
    Ok((c, outcome, digest))
}

/// The entry's key: the component's digest bound to everything about the engine that affects the
/// compiled code.
fn cache_key(component_digest: &[u8; 32], engine: &Engine) -> [u8; 32] {
    let mut h = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    let engine_digest = h.0.finalize();
    let mut k = Sha256::new();
    k.update(component_digest);
    k.update(engine_digest);
    k.finalize().into()
}

/// Feeds `Hash` output into SHA-256: unlike `DefaultHasher`, whose algorithm may change between
/// Rust releases, the result is stable, so a rebuilt gateway still finds its entries.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
    }
}

/// Why an entry's bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corrupt {
    /// Shorter than the header.
    Truncated,
    /// Not our magic, or another layout version.
    Magic,
    /// The header names another key: the file is not this entry.
    Key,
    /// The artifact does not match its digest.
    Digest,
}

impl Corrupt {
    fn reason(self) -> &'static str {
        match self {
            Corrupt::Truncated => "shorter than its header",
            Corrupt::Magic => "not a cache entry of this version",
            Corrupt::Key => "written for another key",
            Corrupt::Digest => "artifact does not match its digest (truncated or damaged)",
        }
    }
}

/// The artifact inside an entry's bytes, if the header and the digest check out.
fn check_entry<'a>(key: &[u8; 32], file: &'a [u8]) -> Result<&'a [u8], Corrupt> {
    if file.len() < HEADER_LEN {
        return Err(Corrupt::Truncated);
    }
    let (magic, rest) = file.split_at(MAGIC.len());
    let (file_key, rest) = rest.split_at(32);
    let (digest, artifact) = rest.split_at(32);
    if magic != MAGIC {
        return Err(Corrupt::Magic);
    }
    if file_key != key {
        return Err(Corrupt::Key);
    }
    if Sha256::digest(artifact).as_slice() != digest {
        return Err(Corrupt::Digest);
    }
    Ok(artifact)
}

/// Reads, checks and deserialises an entry. A missing entry is `None` silently; a bad one is
/// logged once, removed, and `None`.
fn load_entry(engine: &Engine, key: &[u8; 32], path: &Path) -> Option<Component> {
    let file = match std::fs::read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the compiled-component cache entry; compiling");
            return None;
        }
    };
    let reason = match check_entry(key, &file) {
        // SAFETY: `artifact` is byte for byte what `Component::serialize` produced for an engine
        // with this compatibility hash (the key binds it), as the digest written beside it when it
        // was stored shows; wasmtime also re-checks its own version and settings in the artifact.
        Ok(artifact) => match unsafe { Component::deserialize(engine, artifact) } {
            Ok(c) => return Some(c),
            Err(e) => format!("wasmtime refused it: {e:#}"),
        },
        Err(c) => c.reason().to_string(),
    };
    tracing::warn!(path = %path.display(), reason = %reason, "corrupt compiled-component cache entry; removing it and compiling");
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the corrupt cache entry");
    }
    None
}

/// Tells apart the temporary files of concurrent stores within one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes an entry atomically: a temporary file in the same directory, then a rename, so that a
/// reader (this process or another sharing the directory) sees the whole entry or none. No fsync:
/// an entry torn by a crash fails its digest check and is rebuilt, which costs one compilation.
fn store_entry(dir: &Path, key: &[u8; 32], path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.{}.tmp",
        hex(key),
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(key)?;
        f.write_all(&Sha256::digest(artifact))?;
        f.write_all(artifact)?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8; 32], artifact: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(key);
        f.extend_from_slice(&Sha256::digest(artifact));
        f.extend_from_slice(artifact);
        f
    }

    #[test]
    fn a_sound_entry_yields_its_artifact() {
        let key = [7; 32];
        assert_eq!(check_entry(&key, &entry(&key, b"code")), Ok(&b"code"[..]));
    }

    #[test]
    fn damage_anywhere_is_caught_before_deserialising() {
        let key = [7; 32];
        let good = entry(&key, b"some compiled code");
        assert_eq!(
            check_entry(&key, &good[..HEADER_LEN - 1]),
            Err(Corrupt::Truncated)
        );
        assert_eq!(
            check_entry(&key, &good[..good.len() - 1]),
            Err(Corrupt::Digest)
        );
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(check_entry(&key, &flipped), Err(Corrupt::Digest));
        let mut magic = good.clone();
        magic[7] = 2;
        assert_eq!(check_entry(&key, &magic), Err(Corrupt::Magic));
        assert_eq!(check_entry(&[8; 32], &good), Err(Corrupt::Key));
    }

    #[test]
    fn the_key_depends_on_the_component_and_the_engine() {
        let plain = Engine::default();
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true).epoch_interruption(true);
        let other = Engine::new(&c).unwrap();
        let (a, b) = ([1; 32], [2; 32]);
        assert_eq!(cache_key(&a, &plain), cache_key(&a, &Engine::default()));
        assert_ne!(cache_key(&a, &plain), cache_key(&b, &plain));
        assert_ne!(cache_key(&a, &plain), cache_key(&a, &other));
    }

    #[test]
    fn a_store_replaces_the_entry_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!(
            "callgate-cache-unit-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let key = [3; 32];
        let path = dir.join("entry.cwasm");
        store_entry(&dir, &key, &path, b"first").unwrap();
        store_entry(&dir, &key, &path, b"second").unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(check_entry(&key, &file), Ok(&b"second"[..]));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["entry.cwasm"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
