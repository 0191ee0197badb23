//! The plugin runtime: one wasmtime engine per process, each plugin compiled once and pre-instantiated,
//! a fresh sandboxed instance per call, hook deadlines and memory caps, the chain's merge rules, the
//! failure policy, and per-hook accounting.
//!
//! The B2B layer sees only [`Runtime`], [`LoadedPlugin`], [`Chain`], [`CallPlugins`] and the types in
//! [`decision`]; generated bindings stay inside `wit/`.

pub mod artifact;
mod cache;
mod call;
mod ctx;
pub mod decision;
mod engine;
mod loaded;
mod preinit;
pub mod source;
pub mod stats;
pub mod validate;
mod wit;

pub use artifact::{Artifact, ArtifactError, PluginMeta};
pub use cache::{CompileError, CompileOutcome};
pub use call::{CallPlugins, Chain, InviteOutcome, PolicyAbort};
pub use ctx::ControlSupport;
pub use engine::{Runtime, RuntimeConfig};
pub use loaded::{FailurePolicy, LoadError, LoadedPlugin, PluginSpec};
pub use source::PluginSource;

use stats::Hook;

/// A set of hooks, one bit per [`Hook`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookMask(u16);

impl HookMask {
    /// Adds a hook.
    pub fn insert(&mut self, h: Hook) {
        self.0 |= 1 << h as u16;
    }

    /// True if the hook is in the set.
    pub fn contains(self, h: Hook) -> bool {
        self.0 & (1 << h as u16) != 0
    }

    /// The hooks in the set, in contract order.
    pub fn hooks(self) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |&h| self.contains(h))
    }
}
