//! The host API a plugin imports: logging, per-call shared state, call control, counters.

use core::fmt;

#[cfg(target_arch = "wasm32")]
use crate::__wit::callgate::plugin::{
    call_control as wcc, call_state as wcs, log as wlog, metrics as wmetrics,
};

/// Native builds (`cargo test` of a plugin) have no host: the host API is simulated so that hooks
/// can be unit-tested. Logging goes to standard error, call state is a per-thread map with the
/// host's limits, and every call-control command is refused with `NotSupported`.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::__wit::callgate::plugin::call_control::{ControlError, Header, Leg, RecordOptions};

    thread_local! {
        pub(super) static STATE: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
        pub(super) static COUNTERS: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
    }

    fn refused<T>() -> Result<T, ControlError> {
        Err(ControlError::NotSupported(
            "native build: there is no gateway".to_owned(),
        ))
    }

    pub(super) fn hang_up(_: Option<u16>, _: &str) -> Result<(), ControlError> {
        refused()
    }
    pub(super) fn start_recording(_: &RecordOptions) -> Result<(), ControlError> {
        refused()
    }
    pub(super) fn pause_recording() -> Result<(), ControlError> {
        refused()
    }
    pub(super) fn resume_recording() -> Result<(), ControlError> {
        refused()
    }
    pub(super) fn stop_recording() -> Result<(), ControlError> {
        refused()
    }
    pub(super) fn play_prompt(_: Leg, _: &str, _: u32) -> Result<u64, ControlError> {
        refused()
    }
    pub(super) fn stop_prompt(_: u64) -> Result<(), ControlError> {
        refused()
    }
    pub(super) fn transfer(_: Leg, _: &str, _: &[Header]) -> Result<(), ControlError> {
        refused()
    }
}

use crate::__wit::callgate::plugin::call_control::ControlError as WitControlError;

/// A log severity, as in the gateway's log filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// For debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The name as in the WIT: `trace` .. `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Why a `call_state` write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Called outside a call (from `Plugin::new`).
    NoCall,
    /// The key is longer than 128 bytes, the value longer than 4096 bytes, or the call already holds
    /// 64 keys.
    TooLarge,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateError::NoCall => "no call (call state is only available inside a hook)",
            StateError::TooLarge => {
                "too large (key over 128 bytes, value over 4096 bytes, or 64 keys already)"
            }
        })
    }
}

impl std::error::Error for StateError {}

/// Why a `call_control` command was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// This gateway build or configuration cannot do this yet; the text says what is missing.
    NotSupported(String),
    /// Called outside a call (from `Plugin::new`).
    NoCall,
    /// An argument is not acceptable; the text names it.
    InvalidArgument(String),
    /// The call is not in a state where this makes sense; the text says which state it is in.
    WrongState(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::NotSupported(s) => write!(f, "not supported: {s}"),
            ControlError::NoCall => {
                f.write_str("no call (call control is only available inside a hook)")
            }
            ControlError::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            ControlError::WrongState(s) => write!(f, "wrong state: {s}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// A prompt started by [`call_control::play_prompt`], for [`call_control::stop_prompt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PromptHandle(pub u64);

#[cfg(target_arch = "wasm32")]
impl From<wcs::StateError> for StateError {
    fn from(e: wcs::StateError) -> Self {
        match e {
            wcs::StateError::NoCall => StateError::NoCall,
            wcs::StateError::TooLarge => StateError::TooLarge,
        }
    }
}

impl From<WitControlError> for ControlError {
    fn from(e: WitControlError) -> Self {
        match e {
            WitControlError::NotSupported(s) => ControlError::NotSupported(s),
            WitControlError::NoCall => ControlError::NoCall,
            WitControlError::InvalidArgument(s) => ControlError::InvalidArgument(s),
            WitControlError::WrongState(s) => ControlError::WrongState(s),
        }
    }
}

/// The facts of the call whose hook runs, for [`crate::CallInfo`]'s first read in a hook. Asked of
/// the host once per instance (an instance serves one call), then only the B leg's Call-ID until it
/// is known. Outside a hook the host has no call: the facts are empty and not kept.
#[cfg(target_arch = "wasm32")]
pub(crate) fn call_facts() -> std::rc::Rc<crate::CallFacts> {
    use crate::__wit::callgate::plugin::call as wcall;
    use std::cell::RefCell;
    use std::rc::Rc;
    thread_local! {
        static CALL: RefCell<Option<Rc<crate::CallFacts>>> = const { RefCell::new(None) };
    }
    CALL.with(|cell| {
        let mut cached = cell.borrow_mut();
        match cached.as_ref() {
            Some(f) if f.b_call_id.is_some() => f.clone(),
            Some(f) => match wcall::b_call_id() {
                Some(b) => {
                    let mut facts = (**f).clone();
                    facts.b_call_id = Some(b);
                    cached.insert(Rc::new(facts)).clone()
                }
                None => f.clone(),
            },
            None => match wcall::info() {
                Some(info) => cached.insert(Rc::new(info.into())).clone(),
                None => Rc::default(),
            },
        }
    })
}

/// Natively there is no host: a call read in a unit test without [`crate::CallInfo::new`] is empty.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn call_facts() -> std::rc::Rc<crate::CallFacts> {
    std::rc::Rc::default()
}

/// Structured logging into the gateway's log, tagged with the plugin's name and the call's id.
/// Messages over 4 KiB are cut; filtered-out levels are cheap. The macros `trace!` .. `error!` take
/// `format!` arguments. Standard output and standard error also reach the log (`info`, `warn`).
pub mod log {
    use super::Level;
    #[cfg(target_arch = "wasm32")]
    use super::wlog;

    /// Writes one line at `level`.
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        let level = match level {
            Level::Trace => wlog::Level::Trace,
            Level::Debug => wlog::Level::Debug,
            Level::Info => wlog::Level::Info,
            Level::Warn => wlog::Level::Warn,
            Level::Error => wlog::Level::Error,
        };
        #[cfg(target_arch = "wasm32")]
        wlog::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{}] {message}", level.as_str());
    }

    /// Writes one line at `trace`.
    pub fn trace(message: &str) {
        log(Level::Trace, message)
    }

    /// Writes one line at `debug`.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }

    /// Writes one line at `info`.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }

    /// Writes one line at `warn`.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }

    /// Writes one line at `error`.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Key/value state kept by the host for the current call, shared by every plugin of the call's chain
/// and dropped when the call ends. Outside a call (in `Plugin::new`) reads find nothing and writes
/// fail with [`StateError::NoCall`].
pub mod call_state {
    use super::StateError;
    #[cfg(target_arch = "wasm32")]
    use super::wcs;

    /// The value stored under `key` in this call, if any.
    pub fn get(key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return wcs::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        return super::native::STATE.with(|m| m.borrow().get(key).cloned());
    }

    /// Stores `value` under `key` in this call, replacing any earlier value. Keys up to 128 bytes,
    /// values up to 4096 bytes, at most 64 keys per call.
    pub fn set(key: &str, value: &str) -> Result<(), StateError> {
        #[cfg(target_arch = "wasm32")]
        return wcs::set(key, value).map_err(Into::into);
        #[cfg(not(target_arch = "wasm32"))]
        return super::native::STATE.with(|m| {
            let mut m = m.borrow_mut();
            let full = m.len() >= 64 && !m.contains_key(key);
            if key.len() > 128 || value.len() > 4096 || full {
                return Err(StateError::TooLarge);
            }
            m.insert(key.to_owned(), value.to_owned());
            Ok(())
        });
    }

    /// Removes `key` from this call; removing a missing key is not an error.
    pub fn remove(key: &str) {
        #[cfg(target_arch = "wasm32")]
        wcs::remove(key);
        #[cfg(not(target_arch = "wasm32"))]
        super::native::STATE.with(|m| m.borrow_mut().remove(key));
    }

    /// Native builds only (`cargo test`): forgets every key, as at the start of a new call.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn clear() {
        super::native::STATE.with(|m| m.borrow_mut().clear());
    }
}

/// Commands about the current call. Each is queued and carried out after the running hook returns,
/// in order; what can be checked at once is refused at once with a [`ControlError`], a later
/// failure is logged by the gateway.
pub mod call_control {
    #[cfg(not(target_arch = "wasm32"))]
    use super::native as wcc;
    #[cfg(target_arch = "wasm32")]
    use super::wcc;
    use super::{ControlError, PromptHandle};
    use crate::types::{Header, Leg, RecordOptions};

    /// Ends the call on both legs (BYE, or CANCEL on a ringing B leg), answering the caller with
    /// `status` (400-699, default 480) and `reason` if the A leg is not answered yet.
    pub fn hang_up(status: Option<u16>, reason: &str) -> Result<(), ControlError> {
        wcc::hang_up(status, reason).map_err(Into::into)
    }

    /// Starts recording now (`options.start` is ignored). Refused if already recording.
    pub fn start_recording(options: RecordOptions) -> Result<(), ControlError> {
        wcc::start_recording(&options.into()).map_err(Into::into)
    }

    /// Pauses the running recording; silence is written for the paused time.
    pub fn pause_recording() -> Result<(), ControlError> {
        wcc::pause_recording().map_err(Into::into)
    }

    /// Resumes a paused recording.
    pub fn resume_recording() -> Result<(), ControlError> {
        wcc::resume_recording().map_err(Into::into)
    }

    /// Stops the recording and closes its file; it cannot be resumed.
    pub fn stop_recording() -> Result<(), ControlError> {
        wcc::stop_recording().map_err(Into::into)
    }

    /// Plays the prompt `prompt` (a file name in the gateway's prompt directory) to `leg`, `repeat`
    /// times (0: until stopped or the call ends). Start prompts once the leg is `Connected`.
    pub fn play_prompt(leg: Leg, prompt: &str, repeat: u32) -> Result<PromptHandle, ControlError> {
        wcc::play_prompt(leg.into(), prompt, repeat)
            .map(PromptHandle)
            .map_err(Into::into)
    }

    /// Stops a prompt; stopping a finished prompt is not an error.
    pub fn stop_prompt(handle: PromptHandle) -> Result<(), ControlError> {
        wcc::stop_prompt(handle.0).map_err(Into::into)
    }

    /// Transfers `leg`'s party to `target` (a SIP or SIPS URI), with `headers` added to the new
    /// INVITE; the other party is hung up once the new call answers.
    pub fn transfer(leg: Leg, target: &str, headers: &[Header]) -> Result<(), ControlError> {
        let headers: Vec<_> = headers.iter().cloned().map(Into::into).collect();
        wcc::transfer(leg.into(), target, &headers).map_err(Into::into)
    }
}

/// Counters the plugin keeps about its own decisions, exported on the gateway's metrics endpoint as
/// `callgate_plugin_counter_total{plugin="NAME",name="COUNTER"}`. Names are 1-64 ASCII letters,
/// digits and `_`, starting with a letter; at most 64 counters per plugin. Counts made in
/// [`Plugin::new`](crate::Plugin::new) are ignored (it also runs at load). In native builds the
/// counts go to a per-thread map that [`metrics::value`] reads, for unit tests.
pub mod metrics {
    /// Adds `delta` to the counter `name`.
    pub fn counter_add(name: &str, delta: u64) {
        #[cfg(target_arch = "wasm32")]
        super::wmetrics::counter_add(name, delta);
        #[cfg(not(target_arch = "wasm32"))]
        super::native::COUNTERS
            .with(|c| *c.borrow_mut().entry(name.to_string()).or_default() += delta);
    }

    /// Adds one to the counter `name`.
    pub fn count(name: &str) {
        counter_add(name, 1)
    }

    /// The value this thread's hooks have added to `name` (native builds only, for unit tests).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn value(name: &str) -> u64 {
        super::native::COUNTERS.with(|c| c.borrow().get(name).copied().unwrap_or(0))
    }
}
