//! Write Callgate plugins in Rust: implement one trait, [`Plugin`], and put one attribute,
//! [`#[callgate_sdk::plugin]`](macro@plugin), on the impl block.
//!
//! ```ignore
//! use callgate_sdk::prelude::*;
//!
//! struct Tagger {
//!     tenant: String,
//! }
//!
//! #[callgate_sdk::plugin]
//! impl Plugin for Tagger {
//!     fn new(config: &Config) -> Result<Self, String> {
//!         Ok(Self { tenant: config.get_str("tenant").unwrap_or("default").into() })
//!     }
//!
//!     fn on_invite(&mut self, _call: &CallInfo, _req: &Request) -> InviteDecision {
//!         Forward::new()
//!             .invite_header("X-Tenant", &self.tenant)
//!             .pass_through(["X-Correlation-Id"])
//!             .response_header("X-Handled-By", "tagger")
//!             .into()
//!     }
//! }
//! ```
//!
//! The attribute tells the gateway which hooks the plugin implements (from the method names in the
//! impl block), so the gateway calls only those, and creates no instance at all for a call in which
//! none of them fires. Every hook left out means "no opinion".
//!
//! Lifecycle: the gateway creates one instance at load and calls [`Plugin::new`] with the config;
//! an `Err` refuses the load. Then each call gets a fresh instance, with `new` called again, which
//! lives until the call ends: fields of `self` are per call. Use [`call_state`] to share values with
//! other plugins of the chain within a call.
//!
//! Limits: each hook call has a deadline (10 ms by default) and each instance a memory cap (32 MiB
//! by default). A panic (a trap: plugins are built with `panic = "abort"`), a missed deadline, the
//! memory cap or a decision the host refuses ends the plugin's part in that call, and its failure
//! policy applies.

#![deny(missing_docs)]

mod config;
mod convert;
#[cfg(any(
    test,
    all(
        feature = "size-class-heap",
        target_family = "wasm",
        not(target_feature = "atomics")
    )
))]
mod heap;
mod host;
mod types;

/// The plugin's global allocator (see `heap.rs`): only where there are no threads, which its
/// unsynchronised state relies on.
#[cfg(all(
    feature = "size-class-heap",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static HEAP: heap::SizeClassHeap<std::alloc::System> = heap::SizeClassHeap::new(std::alloc::System);

#[doc(hidden)]
#[allow(missing_docs, clippy::all, unsafe_op_in_unsafe_fn)]
pub mod __wit {
    wit_bindgen::generate!({
        path: "../wit/since_v0.1.2",
        world: "lean-plugin",
        pub_export_macro: true,
        default_bindings_module: "callgate_sdk::__wit",
    });
}

// The public API is this explicit list: generated types never appear in it (they sit in `__wit`).
pub use crate::config::Config;
pub use crate::host::{ControlError, Level, PromptHandle, StateError};
pub use crate::host::{call_control, call_state, log, metrics};
pub use crate::types::{
    CallFacts, CallInfo, CallOutcome, CallSummary, Dtmf, DtmfSource, Forward, Header, HeaderEdits,
    Headers, Initiator, InviteDecision, Leg, Legs, MediaChange, MediaMode, MediaSource, MediaState,
    RecordOptions, RecordStart, RecordingDecision, Redirect, ReferDecision, Reject, Request,
    Response, TransferRequest,
};
pub use crate::types::{check_header_name, is_sip_uri};

/// Marks `impl Plugin for YourType { .. }` as the plugin of this crate and exports it.
///
/// The impl block is kept as written. The attribute adds the component's exports and tells the
/// gateway which hooks to call, from the names of the methods present: `on_invite`, `on_response`,
/// `on_refer`, `recording_policy`, `on_media_state`, `on_dtmf`, `on_call_end` (and `new`, which is
/// required). Any other name is a compile error (a typo such as `on_invit` would otherwise be a hook
/// that is silently never called). One plugin per crate; the crate must depend on `callgate_sdk`
/// under that name.
pub use callgate_sdk_macros::plugin;

/// Everything a plugin usually needs: `use callgate_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CallFacts, CallInfo, CallOutcome, CallSummary, Config, ControlError, Dtmf, DtmfSource,
        Forward, Header, HeaderEdits, Headers, Initiator, InviteDecision, Leg, Legs, MediaChange,
        MediaMode, MediaSource, MediaState, Plugin, RecordOptions, RecordStart, RecordingDecision,
        Redirect, ReferDecision, Reject, Request, Response, StateError, TransferRequest,
    };
    pub use crate::{call_control, call_state, log, metrics};
    pub use crate::{debug, error, info, trace, warn};
}

/// A Callgate plugin. Implement `new` and the hooks you need, and put
/// [`#[callgate_sdk::plugin]`](macro@plugin) on the impl block.
///
/// Every hook has a default that means "no opinion"; the attribute also makes sure the gateway does
/// not call hooks the impl block leaves out.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its config. Called once at load (an `Err` refuses the load and its text
    /// is logged; on a reload the old version keeps serving) and once per call on the call's fresh
    /// instance (an `Err` there applies the failure policy).
    fn new(config: &Config) -> Result<Self, String>;

    /// A new call arrived on the A leg (an initial INVITE); the host already answered 100 Trying.
    /// Called once per call, before the B leg exists.
    ///
    /// Chain: the first `Reject` or `Redirect` wins and later plugins are not asked; `Forward` edits
    /// accumulate in chain order; a later plugin's `target` or `media` overrides an earlier one's.
    ///
    /// Default: [`InviteDecision::no_opinion`] (an empty `Forward`).
    fn on_invite(&mut self, call: &CallInfo, request: &Request) -> InviteDecision {
        let _ = (call, request);
        InviteDecision::no_opinion()
    }

    /// A response arrived on `leg` to a request of `method` that the host relays to the other leg.
    /// The edits apply to the copy sent on the other leg (after `Forward::response_header`s) and
    /// accumulate in chain order.
    ///
    /// Default: no edits.
    fn on_response(
        &mut self,
        call: &CallInfo,
        leg: Leg,
        method: &str,
        response: &Response,
    ) -> HeaderEdits {
        let _ = (call, leg, method, response);
        HeaderEdits::new()
    }

    /// A party sent REFER. Chain: the first decision other than `NoOpinion` wins.
    ///
    /// Default: [`ReferDecision::NoOpinion`].
    fn on_refer(&mut self, call: &CallInfo, leg: Leg, transfer: &TransferRequest) -> ReferDecision {
        let _ = (call, leg, transfer);
        ReferDecision::NoOpinion
    }

    /// Whether to record the call: called once per call, after `on_invite` forwarded it and before
    /// the B-leg INVITE is sent. Chain: recorded if any plugin says `Record`; a later plugin's legs
    /// and start override an earlier one's, tags accumulate.
    ///
    /// Default: [`RecordingDecision::None`].
    fn recording_policy(&mut self, call: &CallInfo) -> RecordingDecision {
        let _ = call;
        RecordingDecision::None
    }

    /// The media state of `leg` changed. Both legs `Connected` is the moment to start a prompt.
    ///
    /// Default: nothing.
    fn on_media_state(&mut self, call: &CallInfo, leg: Leg, change: MediaChange) {
        let _ = (call, leg, change);
    }

    /// A DTMF digit from `leg`'s party ended.
    ///
    /// Default: nothing.
    fn on_dtmf(&mut self, call: &CallInfo, leg: Leg, dtmf: Dtmf) {
        let _ = (call, leg, dtmf);
    }

    /// The call is over on both legs: the last hook of the call; the instance is dropped after it.
    ///
    /// Default: nothing.
    fn on_call_end(&mut self, call: &CallInfo, summary: &CallSummary) {
        let _ = (call, summary);
    }
}

/// Writes a `trace` line to the gateway's log, `format!`-style: `trace!("x = {x}")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::trace(&::std::format!($($arg)*)) };
}

/// Writes a `debug` line to the gateway's log, `format!`-style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}

/// Writes an `info` line to the gateway's log, `format!`-style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}

/// Writes a `warn` line to the gateway's log, `format!`-style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}

/// Writes an `error` line to the gateway's log, `format!`-style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

/// What `#[callgate_sdk::plugin]` expands to uses these; not part of the API.
#[doc(hidden)]
pub mod __private {
    use core::cell::RefCell;
    use core::marker::PhantomData;

    pub use crate::__wit::exports::callgate::plugin::lean_hooks::HookSet;
    pub use std::thread::LocalKey;

    use crate::__wit::exports::callgate::plugin::lean_hooks as wit;
    use crate::{CallInfo, Config, Plugin};

    /// Implemented by the attribute for the plugin type.
    pub trait Export: Plugin {
        /// The hooks present in the impl block.
        fn hooks() -> HookSet;
        /// Where the instance built by `init` lives (one per component instance).
        fn slot() -> &'static LocalKey<RefCell<Option<Self>>>;
    }

    /// The component: implements the generated `Guest` by converting and forwarding to `P`.
    pub struct Component<P>(PhantomData<P>);

    /// Logs a panic as one line (message, then where), before the trap that follows it.
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        crate::log::error(&format!("panic: {message}{at}"));
    }

    /// Runs `f` on the instance and the call (its facts asked of the host only if `f` reads one),
    /// or returns `default()` if there is no instance (a hook before `init`) or it is busy
    /// (re-entry, which the host never does).
    fn with<P: Export, R>(
        default: impl FnOnce() -> R,
        f: impl FnOnce(&mut P, &CallInfo) -> R,
    ) -> R {
        P::slot().with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(plugin) => f(plugin, &CallInfo::from_host()),
                None => default(),
            },
            Err(_) => default(),
        })
    }

    impl<P: Export> wit::Guest for Component<P> {
        fn init(config: String) -> Result<wit::PluginInfo, String> {
            // Without WASI, std's panic hook has no stderr to write to: send the message to the
            // gateway's log before the trap. (With WASI, the gateway logs the plugin's stderr.)
            #[cfg(all(target_family = "wasm", target_os = "unknown"))]
            std::panic::set_hook(Box::new(log_panic));
            let config = Config::from_json(&config)?;
            let plugin = P::new(&config)?;
            P::slot().with(|cell| {
                if let Ok(mut slot) = cell.try_borrow_mut() {
                    *slot = Some(plugin);
                }
            });
            Ok(wit::PluginInfo { hooks: P::hooks() })
        }

        fn on_invite(request: wit::Request) -> wit::InviteDecision {
            let request = request.into();
            with::<P, _>(Default::default, |p, call| p.on_invite(call, &request)).into()
        }

        fn on_response(leg: wit::Leg, method: String, response: wit::Response) -> wit::HeaderEdits {
            let response = response.into();
            with::<P, _>(Default::default, |p, call| {
                p.on_response(call, leg.into(), &method, &response)
            })
            .into()
        }

        fn on_refer(leg: wit::Leg, transfer: wit::TransferRequest) -> wit::ReferDecision {
            let transfer = transfer.into();
            with::<P, _>(Default::default, |p, call| {
                p.on_refer(call, leg.into(), &transfer)
            })
            .into()
        }

        fn recording_policy() -> wit::RecordingDecision {
            with::<P, _>(Default::default, |p, call| p.recording_policy(call)).into()
        }

        fn on_media_state(leg: wit::Leg, change: wit::MediaChange) {
            with::<P, _>(
                || (),
                |p, call| p.on_media_state(call, leg.into(), change.into()),
            );
        }

        fn on_dtmf(leg: wit::Leg, digit: wit::Dtmf) {
            with::<P, _>(|| (), |p, call| p.on_dtmf(call, leg.into(), digit.into()));
        }

        fn on_call_end(summary: wit::CallSummary) {
            let summary = summary.into();
            with::<P, _>(|| (), |p, call| p.on_call_end(call, &summary));
        }
    }
}
