//! One module per contract version, each with its own bindings and conversions into host types
//! (Zed's `since_vX_Y_Z` layout). A released version's module is never changed in a way that
//! breaks plugins built against it.

pub(crate) mod since_v0_1_0;

/// The newest contract version this host speaks.
pub(crate) use since_v0_1_0 as latest;
