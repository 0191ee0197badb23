//! A call's view of the plugin chain: per-call instances created on first use, hooks run in chain
//! order with the merge rules of the contract, failures contained to the plugin and the call.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::FailurePolicy;
use super::ctx::{CallScope, ControlSupport, arm_store};
use super::decision::{
    CallInfo, CallSummary, Dtmf, Forward, HeaderEdits, InviteDecision, IssuedCommand, Leg,
    MediaChange, RecordOptions, RecordingDecision, ReferDecision, Reject, RequestView,
    ResponseView, TransferRequest,
};
use super::loaded::{Failure, Live, LoadedPlugin};
use super::stats::{FailureKind, Hook};
use super::validate::{self, Refusal};
use super::wit::latest as contract;

/// The plugins a deployment runs, in order. Cheap to clone; a reload builds a new chain while calls
/// in flight keep the one they started with.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    plugins: Arc<[Arc<LoadedPlugin>]>,
}

/// No instance slots are free for a new call: answer it 503 up front.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("plugin instance pool exhausted")]
pub struct Overloaded;

impl Chain {
    /// A chain of these plugins, run in this order.
    pub fn new(plugins: Vec<Arc<LoadedPlugin>>) -> Self {
        Self {
            plugins: plugins.into(),
        }
    }

    /// The plugins, in order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Starts a call: reserves one instance slot per plugin that has any per-call hook, so that the
    /// call never fails later for lack of a slot.
    pub fn start_call(
        &self,
        info: CallInfo,
        support: ControlSupport,
    ) -> Result<CallPlugins, Overloaded> {
        let needed = self
            .plugins
            .iter()
            .filter(|p| p.hooks().hooks().next().is_some())
            .count();
        let permit = match self.plugins.first() {
            Some(p) if needed > 0 => Some(
                p.runtime
                    .inner
                    .permits
                    .clone()
                    .try_acquire_many_owned(needed as u32)
                    .map_err(|_| Overloaded)?,
            ),
            _ => None,
        };
        Ok(CallPlugins {
            slots: self
                .plugins
                .iter()
                .map(|p| Slot {
                    plugin: p.clone(),
                    state: SlotState::Idle,
                })
                .collect(),
            lowered: None,
            scope: CallScope {
                info,
                support,
                ..Default::default()
            },
            abort: None,
            _permit: permit,
        })
    }
}

enum SlotState {
    /// No instance yet: created when the first hook of the plugin fires.
    Idle,
    /// The call's instance.
    Live(Box<Live>),
    /// The plugin failed (or the call ended): no more hooks for it in this call.
    Out,
}

struct Slot {
    plugin: Arc<LoadedPlugin>,
    state: SlotState,
}

/// A failed plugin's `reject` policy, for the call layer to apply if the call is still in setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAbort {
    /// The failed plugin.
    pub plugin: Arc<str>,
    /// The status to answer the caller with.
    pub status: u16,
    /// Why, for logs and the call detail record.
    pub reason: String,
}

/// The chain's merged answer to a new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteOutcome {
    /// What to do.
    pub decision: InviteDecision,
    /// The plugin whose reject or redirect (or failure policy) ended the chain, if any.
    pub decided_by: Option<Arc<str>>,
}

/// A hook invocation, in host types; each contract version's module converts it.
pub(crate) enum HookCall<'a> {
    Invite(&'a RequestView<'a>),
    Response(Leg, &'a str, &'a ResponseView<'a>),
    Refer(Leg, &'a TransferRequest),
    Recording,
    MediaState(Leg, MediaChange),
    Dtmf(Leg, Dtmf),
    CallEnd(&'a CallSummary),
}

impl HookCall<'_> {
    fn hook(&self) -> Hook {
        match self {
            HookCall::Invite(_) => Hook::Invite,
            HookCall::Response(..) => Hook::Response,
            HookCall::Refer(..) => Hook::Refer,
            HookCall::Recording => Hook::Recording,
            HookCall::MediaState(..) => Hook::MediaState,
            HookCall::Dtmf(..) => Hook::Dtmf,
            HookCall::CallEnd(_) => Hook::CallEnd,
        }
    }
}

/// A hook's answer, in host types.
pub(crate) enum HookReturn {
    Invite(InviteDecision),
    Response(HeaderEdits),
    Refer(ReferDecision),
    Recording(RecordingDecision),
    Unit,
}

/// The plugin side of one call: owned by the call's actor, dropped when the call ends (which returns
/// every instance to the pool).
pub struct CallPlugins {
    slots: Vec<Slot>,
    /// The call's facts in the contract's types, converted on the first hook of a plugin that
    /// takes them as an argument, once rather than for every hook.
    lowered: Option<contract::LoweredCallInfo>,
    /// The chain's per-call state, including the call's facts (`scope.info`).
    scope: CallScope,
    abort: Option<PolicyAbort>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for CallPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallPlugins")
            .field("call_ref", &self.scope.info.call_ref)
            .field("plugins", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl CallPlugins {
    /// The call as plugins see it.
    pub fn info(&self) -> &CallInfo {
        &self.scope.info
    }

    /// True if some plugin still in the call takes `hook`: lets the caller skip building a view of a
    /// message nobody will look at.
    pub fn wants(&self, hook: Hook) -> bool {
        self.slots
            .iter()
            .any(|s| !matches!(s.state, SlotState::Out) && s.plugin.hooks().contains(hook))
    }

    /// The names of the chain's plugins, for the call detail record.
    pub fn plugin_names(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| s.plugin.name().to_string())
            .collect()
    }

    /// Instances this call holds now.
    pub fn live_instances(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Live(_)))
            .count()
    }

    /// The call's set-up is decided (`on-invite` and `recording-policy` ran): drops the instances
    /// of plugins that take no later hook, so that an established call holds only the instances
    /// it may still need. A header policy plugin then costs memory only while a call is set up.
    pub fn setup_done(&mut self) {
        for slot in &mut self.slots {
            let later = slot
                .plugin
                .hooks()
                .hooks()
                .any(|h| !matches!(h, Hook::Init | Hook::Invite | Hook::Recording));
            if !later {
                slot.state = SlotState::Out;
            }
        }
    }

    /// Records the B leg's Call-ID, passed to every later hook.
    pub fn set_b_call_id(&mut self, id: String) {
        if let Some(lowered) = &mut self.lowered {
            lowered.b_call_id = Some(id.clone());
        }
        self.scope.info.b_call_id = Some(id);
    }

    /// Commands plugins gave through `call-control` since the last call, in order.
    pub fn take_commands(&mut self) -> Vec<IssuedCommand> {
        std::mem::take(&mut self.scope.commands)
    }

    /// A `reject` failure policy that fired since the last call, if any.
    pub fn take_abort(&mut self) -> Option<PolicyAbort> {
        self.abort.take()
    }

    /// The chain's shared per-call state.
    pub fn state(&self) -> &[(String, String)] {
        &self.scope.state
    }

    /// The chain's shared per-call state, taken at the call's end for its detail record.
    pub fn into_state(self) -> Vec<(String, String)> {
        self.scope.state
    }

    /// Runs the chain's `on-invite`: the first reject or redirect wins, forwards merge in order. A
    /// plugin failing under the `reject` policy ends the chain with its status.
    pub async fn on_invite(&mut self, request: &RequestView<'_>) -> InviteOutcome {
        let mut merged = Forward::default();
        for i in 0..self.slots.len() {
            let decision = match self.run(i, &HookCall::Invite(request)).await {
                Some(HookReturn::Invite(d)) => match validate::check_invite(d) {
                    Ok(c) => {
                        self.note_dropped(i, &c.dropped);
                        Some(c.value)
                    }
                    Err(refusal) => {
                        self.refuse(i, Hook::Invite, &refusal);
                        None
                    }
                },
                _ => None,
            };
            if let Some(a) = self.abort.take() {
                return InviteOutcome {
                    decision: InviteDecision::Reject(Reject {
                        status: a.status,
                        reason: None,
                        headers: Vec::new(),
                    }),
                    decided_by: Some(a.plugin),
                };
            }
            match decision {
                Some(InviteDecision::Forward(f)) => merge_forward(&mut merged, f),
                Some(final_answer) => {
                    return InviteOutcome {
                        decision: final_answer,
                        decided_by: Some(self.slots[i].plugin.name_arc()),
                    };
                }
                None => {}
            }
        }
        InviteOutcome {
            decision: InviteDecision::Forward(merged),
            decided_by: None,
        }
    }

    /// Runs the chain's `on-response` for a response arriving on `leg`; edits accumulate in order.
    pub async fn on_response(
        &mut self,
        leg: Leg,
        method: &str,
        response: &ResponseView<'_>,
    ) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        for i in 0..self.slots.len() {
            if let Some(HookReturn::Response(e)) = self
                .run(i, &HookCall::Response(leg, method, response))
                .await
            {
                let c = validate::check_edits(e);
                self.note_dropped(i, &c.dropped);
                append(&mut edits.add, c.value.add);
                append(&mut edits.remove, c.value.remove);
            }
        }
        edits
    }

    /// Runs the chain's `on-refer`: the first decision other than no-opinion wins.
    pub async fn on_refer(&mut self, leg: Leg, transfer: &TransferRequest) -> ReferDecision {
        for i in 0..self.slots.len() {
            if let Some(HookReturn::Refer(d)) = self.run(i, &HookCall::Refer(leg, transfer)).await {
                match validate::check_refer(d) {
                    Ok(c) => {
                        self.note_dropped(i, &c.dropped);
                        if c.value != ReferDecision::NoOpinion {
                            return c.value;
                        }
                    }
                    Err(refusal) => self.refuse(i, Hook::Refer, &refusal),
                }
            }
        }
        ReferDecision::NoOpinion
    }

    /// Runs the chain's `recording-policy`: record if any plugin says so; later legs and start
    /// override earlier ones, tags accumulate.
    pub async fn recording_policy(&mut self) -> Option<RecordOptions> {
        let mut merged: Option<RecordOptions> = None;
        for i in 0..self.slots.len() {
            if let Some(HookReturn::Recording(d)) = self.run(i, &HookCall::Recording).await
                && let RecordingDecision::Record(o) = validate::check_recording(d).value
            {
                match &mut merged {
                    None => merged = Some(o),
                    Some(m) => {
                        m.legs = o.legs;
                        m.start = o.start;
                        m.tags.extend(o.tags);
                    }
                }
            }
        }
        merged
    }

    /// Delivers a media-state change to every plugin that asked for it.
    pub async fn on_media_state(&mut self, leg: Leg, change: MediaChange) {
        self.broadcast(&HookCall::MediaState(leg, change)).await;
    }

    /// Delivers a DTMF digit to every plugin that asked for it.
    pub async fn on_dtmf(&mut self, leg: Leg, dtmf: Dtmf) {
        self.broadcast(&HookCall::Dtmf(leg, dtmf)).await;
    }

    /// Delivers the end of the call, then drops every instance. Only plugins that already have an
    /// instance for this call, or that asked for nothing but `on-call-end`, are told: a plugin that
    /// never saw the call does not need a fresh instance to hear that it ended.
    pub async fn on_call_end(&mut self, summary: &CallSummary) {
        let call = HookCall::CallEnd(summary);
        for i in 0..self.slots.len() {
            let only_end = self.slots[i]
                .plugin
                .hooks()
                .hooks()
                .all(|h| h == Hook::CallEnd || h == Hook::Init);
            if matches!(self.slots[i].state, SlotState::Live(_)) || only_end {
                self.run(i, &call).await;
            }
            self.slots[i].state = SlotState::Out;
        }
    }

    async fn broadcast(&mut self, call: &HookCall<'_>) {
        for i in 0..self.slots.len() {
            self.run(i, call).await;
        }
    }

    /// Runs one plugin's hook, creating its instance first if needed. `None` if the plugin does not
    /// take this hook, is out of the call, or failed now (the failure is handled here).
    async fn run(&mut self, i: usize, call: &HookCall<'_>) -> Option<HookReturn> {
        let hook = call.hook();
        let slot = &mut self.slots[i];
        if !slot.plugin.hooks().contains(hook) {
            return None;
        }
        if matches!(slot.state, SlotState::Idle) {
            let plugin = slot.plugin.clone();
            match plugin
                .instantiate(self.scope.info.call_ref, plugin.deadline())
                .await
            {
                Ok((live, _)) => self.slots[i].state = SlotState::Live(Box::new(live)),
                Err(e) => {
                    self.fail(i, Hook::Init, e.into_failure());
                    return None;
                }
            }
        }
        let slot = &mut self.slots[i];
        let SlotState::Live(live) = &mut slot.state else {
            return None;
        };
        if live.hooks.takes_call_info() && self.lowered.is_none() {
            self.lowered = Some((&self.scope.info).into());
        }
        live.store.data_mut().scope = Some(std::mem::take(&mut self.scope));
        arm_store(&mut live.store, slot.plugin.deadline());
        let started = Instant::now();
        let res = contract::call_hook(live, self.lowered.as_ref(), call).await;
        slot.plugin.stats().record_call(hook, started.elapsed());
        self.scope = live.store.data_mut().scope.take().unwrap_or_default();
        match res {
            Ok(r) => Some(r),
            Err(e) => {
                let f = Failure::from_guest(&e, live.store.data());
                self.fail(i, hook, f);
                None
            }
        }
    }

    /// Ends plugin `i`'s part in the call and applies its failure policy.
    fn fail(&mut self, i: usize, hook: Hook, f: Failure) {
        let slot = &mut self.slots[i];
        slot.state = SlotState::Out;
        let plugin = slot.plugin.name_arc();
        slot.plugin.stats().record_failure(hook, f.kind);
        tracing::warn!(
            plugin = %plugin,
            call_ref = self.scope.info.call_ref,
            call_id = %self.scope.info.call_id,
            hook = hook.name(),
            kind = f.kind.name(),
            reason = %f.reason,
            "plugin failed; its part in this call is over"
        );
        if let FailurePolicy::Reject { status } = slot.plugin.policy()
            && self.abort.is_none()
        {
            self.abort = Some(PolicyAbort {
                reason: format!(
                    "plugin {plugin} failed in {}: {}",
                    hook.name(),
                    f.kind.name()
                ),
                plugin,
                status,
            });
        }
    }

    fn refuse(&mut self, i: usize, hook: Hook, refusal: &Refusal) {
        self.fail(
            i,
            hook,
            Failure {
                kind: FailureKind::BadDecision,
                reason: refusal.to_string(),
            },
        );
    }

    fn note_dropped(&self, i: usize, dropped: &[Refusal]) {
        if dropped.is_empty() {
            return;
        }
        let plugin = &self.slots[i].plugin;
        plugin.stats().record_refused_headers(dropped.len());
        for r in dropped {
            tracing::warn!(
                plugin = plugin.name(),
                call_ref = self.scope.info.call_ref,
                "refused: {r}"
            );
        }
    }
}

/// Folds a later plugin's forward decision into the chain's: lists accumulate, a target or media
/// mode overrides.
fn merge_forward(into: &mut Forward, f: Forward) {
    if f.target.is_some() {
        into.target = f.target;
    }
    if f.media.is_some() {
        into.media = f.media;
    }
    append(&mut into.invite_headers, f.invite_headers);
    append(&mut into.pass_through, f.pass_through);
    append(&mut into.remove_headers, f.remove_headers);
    append(&mut into.response_headers, f.response_headers);
}

/// Appends a later plugin's list to the chain's. The first list is taken as it is: with one plugin
/// (the usual chain) that is every list, and extending an empty one was an allocation and a copy.
fn append<T>(into: &mut Vec<T>, items: Vec<T>) {
    if into.is_empty() {
        *into = items;
    } else {
        into.extend(items);
    }
}
