//! Callgate: a SIP back-to-back user agent whose call logic runs in WebAssembly plugins.
pub mod plugin;
