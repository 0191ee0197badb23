//! Plugin artifacts on disk, as the tests pin them.
#![allow(dead_code)]

use std::path::Path;

/// The SHA-256 of a file, as `sha256` config keys and the admin API write it.
pub fn sha256_of(path: &Path) -> String {
    callgate::plugin::artifact::digest(&std::fs::read(path).unwrap())
}
