//! One module per incompatible contract track (Zed's `since_vX_Y_Z` layout), each with its own
//! bindings and conversions into host types. A track's module binds its newest version: a later patch
//! may only add (an interface, a function), so wasmtime's semver matching of import and export names
//! lets the same bindings run plugins built for the track's earlier patches. A released version's WIT
//! (`wit/since_v*`) is never changed.

pub(crate) mod since_v0_1_2;

/// The newest contract version this host speaks.
pub(crate) use since_v0_1_2 as latest;
