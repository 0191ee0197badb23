//! `contract-0-1-0`: a testing plugin built against `callgate:plugin@0.1.0`, frozen in
//! `wit/since_v0.1.0`. It adds `X-Contract: 0.1.0` to the outgoing INVITE and logs through the 0.1.0
//! `log` import, so a test sees both its exports and its imports work on a newer gateway. It also
//! passes on the A leg's Call-ID it was given (`X-Contract-Call`).

// Only the wasm build is a plugin; a native build of the workspace compiles this crate to nothing, as
// it has no host to import from.
#[cfg(target_arch = "wasm32")]
mod plugin {
    wit_bindgen::generate!({
        path: "../../../wit/since_v0.1.0",
        world: "plugin",
    });

    use callgate::plugin::log::{Level, log};
    use callgate::plugin::types::{
        CallInfo, CallSummary, Dtmf, Header, HeaderEdits, Leg, MediaChange, Request, Response,
    };
    use exports::callgate::plugin::hooks::{
        Forward, Guest, HookSet, InviteDecision, PluginInfo, RecordingDecision, ReferDecision,
        TransferRequest,
    };

    struct Contract010;

    impl Guest for Contract010 {
        fn init(_config: String) -> Result<PluginInfo, String> {
            Ok(PluginInfo {
                hooks: HookSet::INVITE,
            })
        }

        fn on_invite(call: CallInfo, _request: Request) -> InviteDecision {
            log(
                Level::Info,
                &format!("contract 0.1.0 plugin forwards {}", call.call_id),
            );
            InviteDecision::Forward(Forward {
                target: None,
                invite_headers: vec![
                    Header {
                        name: "X-Contract".into(),
                        value: "0.1.0".into(),
                    },
                    // The call's facts, which `hooks` receive as an argument, for a test to check.
                    Header {
                        name: "X-Contract-Call".into(),
                        value: call.call_id.clone(),
                    },
                ],
                pass_through: vec![],
                remove_headers: vec![],
                response_headers: vec![],
                media: None,
            })
        }

        // `init` asks for `on-invite` only; the host never calls these.
        fn on_response(_: CallInfo, _: Leg, _: String, _: Response) -> HeaderEdits {
            HeaderEdits {
                add: vec![],
                remove: vec![],
            }
        }

        fn on_refer(_: CallInfo, _: Leg, _: TransferRequest) -> ReferDecision {
            ReferDecision::NoOpinion
        }

        fn recording_policy(_: CallInfo) -> RecordingDecision {
            RecordingDecision::None
        }

        fn on_media_state(_: CallInfo, _: Leg, _: MediaChange) {}

        fn on_dtmf(_: CallInfo, _: Leg, _: Dtmf) {}

        fn on_call_end(_: CallInfo, _: CallSummary) {}
    }

    export!(Contract010);
}
