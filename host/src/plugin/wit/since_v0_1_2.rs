//! Contract `callgate:plugin@0.1.2`: generated bindings, the host imports, and conversions between
//! generated types and the host's own (`plugin::decision`). Generated types stop here.
//!
//! These bindings serve every plugin of the 0.1 track. 0.1.1 and 0.1.2 only added interfaces
//! (`metrics`; `call` and the `lean-hooks` export), and wasmtime resolves a 0.1.0 or 0.1.1 plugin's
//! imports and its `hooks@0.1.z` export by semver against these. A plugin exports either `hooks`
//! (every hook gets the call's facts and a string per header name and value) or `lean-hooks` (the
//! facts on request through `call`, a message's headers as one string): [`Pre::new`] finds which.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::Store;
use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, ComponentType, HasSelf, Instance, InstancePre, Lift,
    Lower, TypedFunc,
};

use super::super::ctx::{PluginCtx, STATE_MAX_KEY, STATE_MAX_KEYS, STATE_MAX_VALUE};
use super::super::decision as d;

wasmtime::component::bindgen!({
    path: "../wit/since_v0.1.2",
    world: "gateway",
    exports: { default: async },
});

use callgate::plugin::{call, call_control, call_state, config, log, metrics, types as t};
pub(crate) use exports::callgate::plugin::{hooks, lean_hooks};

/// The contract version this module speaks; plugins built for an earlier patch of the same track
/// (0.1.0, 0.1.1) load too.
pub(crate) const VERSION: (u32, u32, u32) = (0, 1, 2);

/// The hooks interface of this version; wasmtime's semver lookup also finds an earlier 0.1.z.
const HOOKS_EXPORT: &str = "callgate:plugin/hooks@0.1.2";

/// The cheaper hooks interface, new in 0.1.2.
const LEAN_HOOKS_EXPORT: &str = "callgate:plugin/lean-hooks@0.1.2";

/// Adds this version's host imports to `linker`.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<PluginCtx>,
) -> wasmtime::Result<()> {
    Gateway::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(linker, |c| c)
}

impl t::Host for PluginCtx {}

impl metrics::Host for PluginCtx {
    fn counter_add(&mut self, name: String, delta: u64) {
        if self.scope.is_none() {
            return; // from `init`: see the WIT
        }
        if let Err(why) = self.plugin.counters.add(&name, delta)
            && !self.plugin.counters.warned()
        {
            tracing::warn!(plugin = %self.plugin.name, counter = %cut(&name, 80), "counter ignored: {why}");
        }
    }
}

impl call::Host for PluginCtx {
    fn info(&mut self) -> Option<t::CallInfo> {
        self.scope.as_ref().map(|s| (&s.info).into())
    }

    fn b_call_id(&mut self) -> Option<String> {
        self.scope.as_ref()?.info.b_call_id.clone()
    }
}

/// Longest message a plugin may log in one call.
const MAX_LOG: usize = 4096;

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl log::Host for PluginCtx {
    fn log(&mut self, level: log::Level, message: String) {
        let msg = cut(&message, MAX_LOG);
        let plugin = &*self.plugin.name;
        let call_ref = self.call_ref;
        match level {
            log::Level::Trace => tracing::trace!(plugin, call_ref, "{msg}"),
            log::Level::Debug => tracing::debug!(plugin, call_ref, "{msg}"),
            log::Level::Info => tracing::info!(plugin, call_ref, "{msg}"),
            log::Level::Warn => tracing::warn!(plugin, call_ref, "{msg}"),
            log::Level::Error => tracing::error!(plugin, call_ref, "{msg}"),
        }
    }
}

/// Follows a dotted path into a JSON value (array elements by index).
fn lookup<'v>(root: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    if path.is_empty() {
        return Some(root);
    }
    path.split('.').try_fold(root, |v, key| match v {
        serde_json::Value::Object(m) => m.get(key),
        serde_json::Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

impl config::Host for PluginCtx {
    fn json(&mut self) -> String {
        self.plugin.config_json.to_string()
    }

    fn get(&mut self, path: String) -> Option<String> {
        match lookup(&self.plugin.config, &path)? {
            serde_json::Value::String(s) => Some(s.clone()),
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    fn keys(&mut self, path: String) -> Vec<String> {
        match lookup(&self.plugin.config, &path) {
            Some(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            Some(serde_json::Value::Array(a)) => (0..a.len()).map(|i| i.to_string()).collect(),
            _ => Vec::new(),
        }
    }
}

impl call_state::Host for PluginCtx {
    fn get(&mut self, key: String) -> Option<String> {
        let scope = self.scope.as_ref()?;
        scope
            .state
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    fn set(&mut self, key: String, value: String) -> Result<(), call_state::StateError> {
        let scope = self.scope.as_mut().ok_or(call_state::StateError::NoCall)?;
        if key.len() > STATE_MAX_KEY || value.len() > STATE_MAX_VALUE {
            return Err(call_state::StateError::TooLarge);
        }
        if let Some(slot) = scope.state.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else if scope.state.len() >= STATE_MAX_KEYS {
            return Err(call_state::StateError::TooLarge);
        } else {
            scope.state.push((key, value));
        }
        Ok(())
    }

    fn remove(&mut self, key: String) {
        if let Some(scope) = self.scope.as_mut() {
            scope.state.retain(|(k, _)| *k != key);
        }
    }
}

type ControlResult<T> = Result<T, call_control::ControlError>;

impl PluginCtx {
    /// Queues a command if the call layer supports it.
    fn queue(&mut self, supported: bool, what: &str, command: d::CallCommand) -> ControlResult<()> {
        let plugin = self.plugin.name.clone();
        let scope = self
            .scope
            .as_mut()
            .ok_or(call_control::ControlError::NoCall)?;
        if !supported {
            return Err(call_control::ControlError::NotSupported(format!(
                "{what} is not available in this gateway yet"
            )));
        }
        scope.commands.push(d::IssuedCommand { plugin, command });
        Ok(())
    }

    fn support(&self) -> super::super::ctx::ControlSupport {
        self.scope.as_ref().map(|s| s.support).unwrap_or_default()
    }
}

fn check_target(target: &str) -> ControlResult<()> {
    super::super::validate::check_sip_uri(target)
        .map_err(|e| call_control::ControlError::InvalidArgument(e.to_string()))
}

impl call_control::Host for PluginCtx {
    fn hang_up(&mut self, status: Option<u16>, reason: String) -> ControlResult<()> {
        let status = status.unwrap_or(480);
        if !(400..=699).contains(&status) {
            return Err(call_control::ControlError::InvalidArgument(format!(
                "status {status} is not 400-699"
            )));
        }
        let reason = cut(&reason, 256)
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let ok = self.support().hang_up;
        self.queue(ok, "hang-up", d::CallCommand::HangUp { status, reason })
    }

    fn start_recording(&mut self, options: t::RecordOptions) -> ControlResult<()> {
        let ok = self.support().recording;
        self.queue(
            ok,
            "recording",
            d::CallCommand::StartRecording(options.into()),
        )
    }

    fn pause_recording(&mut self) -> ControlResult<()> {
        let ok = self.support().recording;
        self.queue(ok, "recording", d::CallCommand::PauseRecording)
    }

    fn resume_recording(&mut self) -> ControlResult<()> {
        let ok = self.support().recording;
        self.queue(ok, "recording", d::CallCommand::ResumeRecording)
    }

    fn stop_recording(&mut self) -> ControlResult<()> {
        let ok = self.support().recording;
        self.queue(ok, "recording", d::CallCommand::StopRecording)
    }

    fn play_prompt(&mut self, leg: t::Leg, prompt: String, repeat: u32) -> ControlResult<u64> {
        if prompt.is_empty() || prompt.contains(['/', '\\']) || prompt.starts_with('.') {
            return Err(call_control::ControlError::InvalidArgument(
                "prompt must be a plain file name".into(),
            ));
        }
        let ok = self.support().prompts;
        let handle = self.scope.as_ref().map_or(0, |s| s.next_handle + 1);
        self.queue(
            ok,
            "play-prompt",
            d::CallCommand::PlayPrompt {
                leg: leg.into(),
                prompt,
                repeat,
                handle,
            },
        )?;
        if let Some(s) = self.scope.as_mut() {
            s.next_handle = handle;
        }
        Ok(handle)
    }

    fn stop_prompt(&mut self, handle: u64) -> ControlResult<()> {
        let ok = self.support().prompts;
        self.queue(ok, "stop-prompt", d::CallCommand::StopPrompt(handle))
    }

    fn transfer(
        &mut self,
        leg: t::Leg,
        target: String,
        headers: Vec<t::Header>,
    ) -> ControlResult<()> {
        check_target(&target)?;
        let headers: Vec<d::Header> = headers.into_iter().map(Into::into).collect();
        for h in &headers {
            super::super::validate::check_header(h)
                .map_err(|e| call_control::ControlError::InvalidArgument(e.to_string()))?;
        }
        let ok = self.support().transfer;
        self.queue(
            ok,
            "transfer",
            d::CallCommand::Transfer {
                leg: leg.into(),
                target,
                headers,
            },
        )
    }
}

// ---- conversions: host -> guest (hook inputs) ----

impl From<&d::Header> for t::Header {
    fn from(h: &d::Header) -> Self {
        t::Header {
            name: h.name.clone(),
            value: h.value.clone(),
        }
    }
}

fn headers_in(h: &[d::Header]) -> Vec<t::Header> {
    h.iter().map(Into::into).collect()
}

impl From<d::Leg> for t::Leg {
    fn from(l: d::Leg) -> Self {
        match l {
            d::Leg::A => t::Leg::A,
            d::Leg::B => t::Leg::B,
        }
    }
}

impl From<&d::CallInfo> for t::CallInfo {
    fn from(c: &d::CallInfo) -> Self {
        t::CallInfo {
            call_ref: c.call_ref,
            call_id: c.call_id.clone(),
            b_call_id: c.b_call_id.clone(),
            from: c.from.clone(),
            to: c.to.clone(),
            request_uri: c.request_uri.clone(),
            source: c.source.clone(),
        }
    }
}

// The contract's `header`, `request` and `response` records lowered straight from the borrowed
// views: the generated types own their strings, and converting into them copied every header once
// more on every hook before wasmtime copied it into the plugin's memory.

#[derive(ComponentType, Lower)]
#[component(record)]
struct HeaderArg<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(ComponentType, Lower)]
#[component(record)]
struct RequestArg<'a> {
    method: &'a str,
    uri: &'a str,
    headers: Vec<HeaderArg<'a>>,
    #[component(name = "body-type")]
    body_type: Option<&'a str>,
}

#[derive(ComponentType, Lower)]
#[component(record)]
struct ResponseArg<'a> {
    status: u16,
    reason: &'a str,
    headers: Vec<HeaderArg<'a>>,
    #[component(name = "body-type")]
    body_type: Option<&'a str>,
}

fn header_args<'a>(h: &[d::HeaderView<'a>]) -> Vec<HeaderArg<'a>> {
    h.iter()
        .map(|h| HeaderArg {
            name: h.name,
            value: h.value,
        })
        .collect()
}

impl<'a> From<&d::RequestView<'a>> for RequestArg<'a> {
    fn from(r: &d::RequestView<'a>) -> Self {
        RequestArg {
            method: r.method,
            uri: r.uri,
            headers: header_args(&r.headers),
            body_type: r.body_type,
        }
    }
}

impl<'a> From<&d::ResponseView<'a>> for ResponseArg<'a> {
    fn from(r: &d::ResponseView<'a>) -> Self {
        ResponseArg {
            status: r.status,
            reason: r.reason,
            headers: header_args(&r.headers),
            body_type: r.body_type,
        }
    }
}

impl From<&d::TransferRequest> for hooks::TransferRequest {
    fn from(r: &d::TransferRequest) -> Self {
        hooks::TransferRequest {
            refer_to: r.refer_to.clone(),
            referred_by: r.referred_by.clone(),
            replaces: r.replaces.clone(),
            headers: headers_in(&r.headers),
        }
    }
}

// `lean-hooks` takes a message's headers as one block of `Name: value` CR LF lines: one string
// lowered into the plugin instead of two per header, each of which costs a call into the guest's
// allocator.

/// The `head` text of `lean-hooks` records.
fn head_text<'a>(headers: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> String {
    let len = headers.clone().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut head = String::with_capacity(len);
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head
}

fn view_head(h: &[d::HeaderView<'_>]) -> String {
    head_text(h.iter().map(|h| (h.name, h.value)))
}

#[derive(ComponentType, Lower)]
#[component(record)]
struct LeanRequestArg<'a> {
    method: &'a str,
    uri: &'a str,
    head: &'a str,
    #[component(name = "body-type")]
    body_type: Option<&'a str>,
}

#[derive(ComponentType, Lower)]
#[component(record)]
struct LeanResponseArg<'a> {
    status: u16,
    reason: &'a str,
    head: &'a str,
    #[component(name = "body-type")]
    body_type: Option<&'a str>,
}

impl From<&d::TransferRequest> for lean_hooks::TransferRequest {
    fn from(r: &d::TransferRequest) -> Self {
        lean_hooks::TransferRequest {
            refer_to: r.refer_to.clone(),
            referred_by: r.referred_by.clone(),
            replaces: r.replaces.clone(),
            head: head_text(
                r.headers
                    .iter()
                    .map(|h| (h.name.as_str(), h.value.as_str())),
            ),
        }
    }
}

impl From<d::MediaState> for t::MediaState {
    fn from(s: d::MediaState) -> Self {
        match s {
            d::MediaState::Negotiating => t::MediaState::Negotiating,
            d::MediaState::Connecting => t::MediaState::Connecting,
            d::MediaState::Connected => t::MediaState::Connected,
            d::MediaState::Held => t::MediaState::Held,
            d::MediaState::Stalled => t::MediaState::Stalled,
            d::MediaState::Ended => t::MediaState::Ended,
        }
    }
}

impl From<d::MediaChange> for t::MediaChange {
    fn from(c: d::MediaChange) -> Self {
        t::MediaChange {
            old: c.old.into(),
            new: c.new.into(),
            source: match c.source {
                d::MediaSource::Packets => t::MediaSource::Packets,
                d::MediaSource::Sdp => t::MediaSource::Sdp,
            },
        }
    }
}

impl From<d::Dtmf> for t::Dtmf {
    fn from(x: d::Dtmf) -> Self {
        t::Dtmf {
            digit: x.digit,
            duration_ms: x.duration_ms,
            source: match x.source {
                d::DtmfSource::Rfc4733 => t::DtmfSource::Rfc4733,
                d::DtmfSource::SipInfo => t::DtmfSource::SipInfo,
            },
        }
    }
}

impl From<&d::CallSummary> for t::CallSummary {
    fn from(s: &d::CallSummary) -> Self {
        t::CallSummary {
            outcome: match s.outcome {
                d::CallOutcome::Answered => t::CallOutcome::Answered,
                d::CallOutcome::Rejected => t::CallOutcome::Rejected,
                d::CallOutcome::Cancelled => t::CallOutcome::Cancelled,
                d::CallOutcome::Redirected => t::CallOutcome::Redirected,
                d::CallOutcome::TimedOut => t::CallOutcome::TimedOut,
                d::CallOutcome::Failed => t::CallOutcome::Failed,
            },
            status: s.status,
            reason: s.reason.clone(),
            ended_by: match s.ended_by {
                d::Initiator::Caller => t::Initiator::Caller,
                d::Initiator::Callee => t::Initiator::Callee,
                d::Initiator::Gateway => t::Initiator::Gateway,
                d::Initiator::Plugin => t::Initiator::Plugin,
            },
            setup_ms: s.setup_ms,
            talk_ms: s.talk_ms,
        }
    }
}

// ---- conversions: guest -> host (decisions) ----

impl From<t::Header> for d::Header {
    fn from(h: t::Header) -> Self {
        d::Header {
            name: h.name,
            value: h.value,
        }
    }
}

fn headers_out(h: Vec<t::Header>) -> Vec<d::Header> {
    h.into_iter().map(Into::into).collect()
}

impl From<t::Leg> for d::Leg {
    fn from(l: t::Leg) -> Self {
        match l {
            t::Leg::A => d::Leg::A,
            t::Leg::B => d::Leg::B,
        }
    }
}

impl From<t::MediaMode> for d::MediaMode {
    fn from(m: t::MediaMode) -> Self {
        match m {
            t::MediaMode::Anchored => d::MediaMode::Anchored,
            t::MediaMode::Direct => d::MediaMode::Direct,
        }
    }
}

impl From<t::HeaderEdits> for d::HeaderEdits {
    fn from(e: t::HeaderEdits) -> Self {
        d::HeaderEdits {
            add: headers_out(e.add),
            remove: e.remove,
        }
    }
}

impl From<t::RecordOptions> for d::RecordOptions {
    fn from(o: t::RecordOptions) -> Self {
        d::RecordOptions {
            legs: d::RecordLegs {
                a: o.legs.contains(t::Legs::A),
                b: o.legs.contains(t::Legs::B),
            },
            start: match o.start {
                t::RecordStart::OnAnswer => d::RecordStart::OnAnswer,
                t::RecordStart::OnMediaConnected => d::RecordStart::OnMediaConnected,
            },
            tags: o.tags,
        }
    }
}

/// The decisions of `hooks` and `lean-hooks` are records and variants of the same shape in two
/// interfaces, hence two sets of generated types: one conversion text serves both.
macro_rules! decisions_into_host {
    ($m:ident) => {
        impl From<$m::InviteDecision> for d::InviteDecision {
            fn from(x: $m::InviteDecision) -> Self {
                match x {
                    $m::InviteDecision::Forward(f) => d::InviteDecision::Forward(d::Forward {
                        target: f.target,
                        invite_headers: headers_out(f.invite_headers),
                        pass_through: f.pass_through,
                        remove_headers: f.remove_headers,
                        response_headers: headers_out(f.response_headers),
                        media: f.media.map(Into::into),
                    }),
                    $m::InviteDecision::Reject(r) => d::InviteDecision::Reject(d::Reject {
                        status: r.status,
                        reason: r.reason,
                        headers: headers_out(r.headers),
                    }),
                    $m::InviteDecision::Redirect(r) => d::InviteDecision::Redirect(d::Redirect {
                        status: r.status,
                        contacts: r.contacts,
                        headers: headers_out(r.headers),
                    }),
                }
            }
        }
        impl From<$m::ReferDecision> for d::ReferDecision {
            fn from(x: $m::ReferDecision) -> Self {
                match x {
                    $m::ReferDecision::NoOpinion => d::ReferDecision::NoOpinion,
                    $m::ReferDecision::Reject(s) => d::ReferDecision::Reject(s),
                    $m::ReferDecision::Pass => d::ReferDecision::Pass,
                    $m::ReferDecision::Perform(p) => d::ReferDecision::Perform {
                        target: p.target,
                        headers: headers_out(p.headers),
                    },
                }
            }
        }
        impl From<$m::RecordingDecision> for d::RecordingDecision {
            fn from(x: $m::RecordingDecision) -> Self {
                match x {
                    $m::RecordingDecision::None => d::RecordingDecision::None,
                    $m::RecordingDecision::Record(o) => d::RecordingDecision::Record(o.into()),
                }
            }
        }

        impl From<&$m::PluginInfo> for super::super::HookMask {
            /// The hooks a plugin asked for, from `init`'s answer.
            fn from(info: &$m::PluginInfo) -> Self {
                use super::super::stats::Hook;
                let f = info.hooks;
                let mut m = super::super::HookMask::default();
                for (flag, hook) in [
                    ($m::HookSet::INVITE, Hook::Invite),
                    ($m::HookSet::RESPONSE, Hook::Response),
                    ($m::HookSet::REFER, Hook::Refer),
                    ($m::HookSet::RECORDING, Hook::Recording),
                    ($m::HookSet::MEDIA_STATE, Hook::MediaState),
                    ($m::HookSet::DTMF, Hook::Dtmf),
                    ($m::HookSet::CALL_END, Hook::CallEnd),
                ] {
                    if f.contains(flag) {
                        m.insert(hook);
                    }
                }
                m
            }
        }
    };
}

decisions_into_host!(hooks);
decisions_into_host!(lean_hooks);

/// The hooks of the contract, as an index into [`HookTable`].
#[derive(Clone, Copy)]
enum F {
    Init,
    OnInvite,
    OnResponse,
    OnRefer,
    RecordingPolicy,
    OnMediaState,
    OnDtmf,
    OnCallEnd,
}

/// Export names, in `F` order (the same in `hooks` and `lean-hooks`).
const HOOK_NAMES: [&str; 8] = [
    "init",
    "on-invite",
    "on-response",
    "on-refer",
    "recording-policy",
    "on-media-state",
    "on-dtmf",
    "on-call-end",
];

/// One component's hook exports, found once. The generated `instantiate` type-checks every hook
/// function of every new instance (a tenth of a fresh instance + hook); here each hook is
/// type-checked once per component, the first time it is called, and every later instance fetches
/// only the hook it runs.
struct HookTable {
    /// The component exports `lean-hooks` (else `hooks`).
    lean: bool,
    funcs: [ComponentExportIndex; 8],
    checked: [AtomicBool; 8],
}

/// A plugin component ready to instantiate per call.
pub(crate) struct Pre {
    pre: InstancePre<PluginCtx>,
    table: Arc<HookTable>,
}

impl Pre {
    /// Finds the hook exports: `lean-hooks@0.1.2`, else any 0.1.z `hooks` (by semver).
    pub(crate) fn new(pre: InstancePre<PluginCtx>) -> wasmtime::Result<Self> {
        let component = pre.component();
        let (lean, export, iface) = match component.get_export_index(None, LEAN_HOOKS_EXPORT) {
            Some(i) => (true, LEAN_HOOKS_EXPORT, i),
            None => {
                let i = component
                    .get_export_index(None, HOOKS_EXPORT)
                    .ok_or_else(|| {
                        wasmtime::format_err!("no export `{HOOKS_EXPORT}` or `{LEAN_HOOKS_EXPORT}`")
                    })?;
                (false, HOOKS_EXPORT, i)
            }
        };
        let mut funcs = Vec::with_capacity(HOOK_NAMES.len());
        for name in HOOK_NAMES {
            funcs.push(
                component
                    .get_export_index(Some(&iface), name)
                    .ok_or_else(|| wasmtime::format_err!("`{export}` lacks `{name}`"))?,
            );
        }
        let funcs = funcs
            .try_into()
            .unwrap_or_else(|_| unreachable!("one index per name"));
        Ok(Self {
            pre,
            table: Arc::new(HookTable {
                lean,
                funcs,
                checked: Default::default(),
            }),
        })
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<PluginCtx>,
    ) -> wasmtime::Result<Hooks> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        Ok(self.hooks_of(instance))
    }

    /// The hooks of an instance of this component made without [`Pre::instantiate`] (the
    /// pre-initialiser's instrumented one).
    pub(crate) fn hooks_of(&self, instance: Instance) -> Hooks {
        Hooks {
            instance,
            table: self.table.clone(),
        }
    }
}

/// The hooks of one live instance.
pub(crate) struct Hooks {
    instance: Instance,
    table: Arc<HookTable>,
}

impl Hooks {
    /// Calls hook `f` with these parameter and result types. Each `F` is called from exactly one
    /// place below per interface, always with the same types, so one successful check covers every
    /// later call of a component (which exports one of the two).
    async fn call<P, R>(&self, store: &mut Store<PluginCtx>, f: F, args: P) -> wasmtime::Result<R>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let (index, checked) = (
            &self.table.funcs[f as usize],
            &self.table.checked[f as usize],
        );
        let typed = if checked.load(Ordering::Acquire) {
            let func = self.instance.get_func(&mut *store, index).ok_or_else(|| {
                wasmtime::format_err!("hook `{}` missing", HOOK_NAMES[f as usize])
            })?;
            // SAFETY: this component's export was checked against exactly `P` and `R` (the types
            // of the one call site of `f` for its interface), and every instance of a component
            // has its types.
            unsafe { TypedFunc::<P, R>::new_unchecked(func) }
        } else {
            let typed = self.instance.get_typed_func::<P, R>(&mut *store, index)?;
            checked.store(true, Ordering::Release);
            typed
        };
        typed.call_async(&mut *store, args).await
    }

    /// Whether hooks take the call's facts as an argument (`hooks`), which the caller then
    /// converts once per call and passes to [`call_hook`].
    pub(crate) fn takes_call_info(&self) -> bool {
        !self.table.lean
    }

    /// Runs `init`: the hooks the plugin asked for, or its refusal.
    pub(crate) async fn call_init(
        &self,
        store: &mut Store<PluginCtx>,
        config: &str,
    ) -> wasmtime::Result<Result<super::super::HookMask, String>> {
        Ok(if self.table.lean {
            let (r,): (Result<lean_hooks::PluginInfo, String>,) =
                self.call(store, F::Init, (config,)).await?;
            r.map(|i| (&i).into())
        } else {
            let (r,): (Result<hooks::PluginInfo, String>,) =
                self.call(store, F::Init, (config,)).await?;
            r.map(|i| (&i).into())
        })
    }
}

/// The call as `hooks` receive it, in this version's types: a call converts it once.
pub(crate) type LoweredCallInfo = t::CallInfo;

/// Calls one hook on a live instance, converting arguments and results. `ci` is needed (and only
/// read) when the instance [`Hooks::takes_call_info`].
pub(crate) async fn call_hook(
    live: &mut super::super::loaded::Live,
    ci: Option<&LoweredCallInfo>,
    call: &super::super::call::HookCall<'_>,
) -> wasmtime::Result<super::super::call::HookReturn> {
    if live.hooks.table.lean {
        call_lean(live, call).await
    } else {
        let ci = ci.ok_or_else(|| wasmtime::format_err!("no call info for `hooks`"))?;
        call_classic(live, ci, call).await
    }
}

async fn call_lean(
    live: &mut super::super::loaded::Live,
    call: &super::super::call::HookCall<'_>,
) -> wasmtime::Result<super::super::call::HookReturn> {
    use super::super::call::{HookCall as C, HookReturn as R};
    let h = &live.hooks;
    let store = &mut live.store;
    Ok(match call {
        C::Invite(req) => {
            let head = view_head(&req.headers);
            let req = LeanRequestArg {
                method: req.method,
                uri: req.uri,
                head: &head,
                body_type: req.body_type,
            };
            let (d,): (lean_hooks::InviteDecision,) = h.call(store, F::OnInvite, (&req,)).await?;
            R::Invite(d.into())
        }
        C::Response(leg, method, resp) => {
            let head = view_head(&resp.headers);
            let resp = LeanResponseArg {
                status: resp.status,
                reason: resp.reason,
                head: &head,
                body_type: resp.body_type,
            };
            let leg: t::Leg = (*leg).into();
            let (e,): (t::HeaderEdits,) =
                h.call(store, F::OnResponse, (leg, *method, &resp)).await?;
            R::Response(e.into())
        }
        C::Refer(leg, tr) => {
            let tr: lean_hooks::TransferRequest = (*tr).into();
            let leg: t::Leg = (*leg).into();
            let (d,): (lean_hooks::ReferDecision,) = h.call(store, F::OnRefer, (leg, &tr)).await?;
            R::Refer(d.into())
        }
        C::Recording => {
            let (d,): (lean_hooks::RecordingDecision,) =
                h.call(store, F::RecordingPolicy, ()).await?;
            R::Recording(d.into())
        }
        C::MediaState(leg, change) => {
            let (leg, change): (t::Leg, t::MediaChange) = ((*leg).into(), (*change).into());
            let (): () = h.call(store, F::OnMediaState, (leg, change)).await?;
            R::Unit
        }
        C::Dtmf(leg, dtmf) => {
            let (leg, dtmf): (t::Leg, t::Dtmf) = ((*leg).into(), (*dtmf).into());
            let (): () = h.call(store, F::OnDtmf, (leg, dtmf)).await?;
            R::Unit
        }
        C::CallEnd(summary) => {
            let summary: t::CallSummary = (*summary).into();
            let (): () = h.call(store, F::OnCallEnd, (&summary,)).await?;
            R::Unit
        }
    })
}

async fn call_classic(
    live: &mut super::super::loaded::Live,
    ci: &LoweredCallInfo,
    call: &super::super::call::HookCall<'_>,
) -> wasmtime::Result<super::super::call::HookReturn> {
    use super::super::call::{HookCall as C, HookReturn as R};
    let h = &live.hooks;
    let store = &mut live.store;
    Ok(match call {
        C::Invite(req) => {
            let req: RequestArg<'_> = (*req).into();
            let (d,): (hooks::InviteDecision,) = h.call(store, F::OnInvite, (ci, &req)).await?;
            R::Invite(d.into())
        }
        C::Response(leg, method, resp) => {
            let resp: ResponseArg<'_> = (*resp).into();
            let leg: t::Leg = (*leg).into();
            let (e,): (t::HeaderEdits,) = h
                .call(store, F::OnResponse, (ci, leg, *method, &resp))
                .await?;
            R::Response(e.into())
        }
        C::Refer(leg, tr) => {
            let tr: hooks::TransferRequest = (*tr).into();
            let leg: t::Leg = (*leg).into();
            let (d,): (hooks::ReferDecision,) = h.call(store, F::OnRefer, (ci, leg, &tr)).await?;
            R::Refer(d.into())
        }
        C::Recording => {
            let (d,): (hooks::RecordingDecision,) =
                h.call(store, F::RecordingPolicy, (ci,)).await?;
            R::Recording(d.into())
        }
        C::MediaState(leg, change) => {
            let (leg, change): (t::Leg, t::MediaChange) = ((*leg).into(), (*change).into());
            let (): () = h.call(store, F::OnMediaState, (ci, leg, change)).await?;
            R::Unit
        }
        C::Dtmf(leg, dtmf) => {
            let (leg, dtmf): (t::Leg, t::Dtmf) = ((*leg).into(), (*dtmf).into());
            let (): () = h.call(store, F::OnDtmf, (ci, leg, dtmf)).await?;
            R::Unit
        }
        C::CallEnd(summary) => {
            let summary: t::CallSummary = (*summary).into();
            let (): () = h.call(store, F::OnCallEnd, (ci, &summary)).await?;
            R::Unit
        }
    })
}
