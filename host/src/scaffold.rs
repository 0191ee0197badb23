//! The plugin developer loop behind `callgate plugin new` and `callgate plugin build`: a new plugin
//! in Rust, C or Python that builds and passes its own test out of the box, and a build that runs
//! that test through the real runtime.
//!
//! Every scaffold carries `callgate-test.json`: cases of a config and the headers `on-invite` must
//! add under it. `plugin build` builds the component and then loads it as the gateway would (compile,
//! link, `init` with each case's config) and checks each case, whatever the plugin's language.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use callgate_plugin_build::Lang;
use serde_json::json;

use crate::plugin::decision::{CallInfo, InviteDecision, RequestView};
use crate::plugin::{Chain, ControlSupport, PluginSpec, Runtime, RuntimeConfig};

/// The source tree this binary was built from: the Rust SDK and the contract come from it.
const SOURCE_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The contract's WIT files, copied into C and Python scaffolds (their bindings are generated from
/// them at build time).
const WIT: [(&str, &str); 3] = [
    (
        "types.wit",
        include_str!("../../wit/since_v0.1.2/types.wit"),
    ),
    ("host.wit", include_str!("../../wit/since_v0.1.2/host.wit")),
    (
        "hooks.wit",
        include_str!("../../wit/since_v0.1.2/hooks.wit"),
    ),
];

/// The test file every scaffold carries.
pub const TEST_FILE: &str = "callgate-test.json";

/// Parses `rust`, `c` or `python`.
pub fn parse_lang(s: &str) -> Result<Lang, String> {
    match s {
        "rust" => Ok(Lang::Rust),
        "c" => Ok(Lang::C),
        "python" | "py" => Ok(Lang::Python),
        other => Err(format!("unknown language {other:?}: rust, c or python")),
    }
}

/// Writes a new plugin named after `dir`'s last component into `dir`, which must not exist yet.
pub fn new_plugin(dir: &Path, lang: Lang) -> anyhow::Result<Vec<PathBuf>> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .with_context(|| {
            format!(
                "{}: the plugin's name is its directory's name, in lower case, digits and '-'",
                dir.display()
            )
        })?
        .to_string();
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let greeting = format!("hello from {name}");
    let test = json!([
        { "config": {}, "invite-headers": [["X-Hello", greeting]] },
        { "config": { "greeting": "hi" }, "invite-headers": [["X-Hello", if lang == Lang::C { greeting.as_str() } else { "hi" }]] },
    ]);
    let mut files: Vec<(PathBuf, String)> = vec![(
        PathBuf::from(TEST_FILE),
        format!("{}\n", serde_json::to_string_pretty(&test)?),
    )];
    match lang {
        Lang::Rust => {
            let sdk = std::path::absolute(Path::new(SOURCE_ROOT).join("plugin-sdk"))?;
            files.push(("Cargo.toml".into(), rust_manifest(&name, &sdk)));
            files.push(("src/lib.rs".into(), rust_lib(&greeting)));
        }
        Lang::C => {
            files.push((
                format!("{}.c", name.replace('-', "_")).into(),
                c_source(&greeting),
            ));
        }
        Lang::Python => files.push(("app.py".into(), python_source(&greeting))),
    }
    if lang != Lang::Rust {
        for (file, text) in WIT {
            files.push((Path::new("wit").join(file), text.to_string()));
        }
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The WIT a plugin directory builds against: its own `wit/` (scaffolds carry one), else the
/// contract of the source tree this binary came from.
pub fn wit_dir(dir: &Path) -> PathBuf {
    let own = dir.join("wit");
    if own.join("hooks.wit").is_file() {
        own
    } else {
        Path::new(SOURCE_ROOT).join("wit").join("since_v0.1.2")
    }
}

/// Runs the cases of `dir/callgate-test.json` against `component`; returns how many passed, or the
/// first failure.
pub async fn run_tests(dir: &Path, component: &Path) -> anyhow::Result<usize> {
    let file = dir.join(TEST_FILE);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&text).with_context(|| format!("{}", file.display()))?;
    // Compiled once for all cases (a Python component takes seconds to compile); pre-initialising
    // would compile a snapshot per case for no gain in a test.
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 8,
        cache_dir: component.parent().map(|d| d.join("cache")),
        ..Default::default()
    })?;
    for (i, case) in cases.iter().enumerate() {
        let mut spec = PluginSpec::new("under-test", component)
            .with_config(case.get("config").cloned().unwrap_or_else(|| json!({})));
        spec.pre_init = false;
        let plugin = runtime
            .load(&spec)
            .await
            .with_context(|| format!("case {i}: loading"))?;
        let chain = Chain::new(vec![plugin]);
        let mut call = chain
            .start_call(sample_call(), ControlSupport::default())
            .map_err(|e| anyhow::anyhow!("case {i}: {e}"))?;
        let outcome = call.on_invite(&sample_invite()).await;
        let got: Vec<(String, String)> = match outcome.decision {
            InviteDecision::Forward(f) => f
                .invite_headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            other => bail!("case {i}: expected a forward decision, got {other:?}"),
        };
        let want: Vec<(String, String)> =
            serde_json::from_value(case.get("invite-headers").cloned().unwrap_or(json!([])))
                .with_context(|| {
                    format!("case {i}: `invite-headers` is a list of [name, value]")
                })?;
        if got != want {
            bail!("case {i}: on-invite added {got:?}, the test expects {want:?}");
        }
    }
    Ok(cases.len())
}

fn sample_call() -> CallInfo {
    CallInfo {
        call_ref: 1,
        call_id: "plugin-test@127.0.0.1".into(),
        from: "sip:alice@127.0.0.1".into(),
        to: "sip:bob@127.0.0.1".into(),
        request_uri: "sip:bob@127.0.0.1".into(),
        source: "udp:127.0.0.1:5070".into(),
        ..Default::default()
    }
}

fn sample_invite() -> RequestView<'static> {
    RequestView {
        method: "INVITE",
        uri: "sip:bob@127.0.0.1",
        headers: vec![],
        body_type: Some("application/sdp"),
    }
}

fn rust_manifest(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# A plugin is a component: `callgate plugin build` builds it for wasm32-unknown-unknown (no WASI)
# and makes the module a component; `[package.metadata.callgate] wasi = true` builds for wasm32-wasip2.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
callgate-sdk = {{ path = "{sdk}" }}

# Its own workspace, so that it builds wherever it lives.
[workspace]

# Plugins are instantiated per call: small and fast to instantiate.
[profile.plugin]
inherits = "release"
opt-level = "s"
lto = true
strip = true
panic = "abort"
codegen-units = 1
"#,
        sdk = sdk.display()
    )
}

fn rust_lib(greeting: &str) -> String {
    format!(
        r##"//! A Callgate plugin: adds `X-Hello` to every outgoing INVITE. Config: `greeting` (optional).

use callgate_sdk::prelude::*;

pub struct Hello {{
    greeting: String,
}}

#[callgate_sdk::plugin]
impl Plugin for Hello {{
    fn new(config: &Config) -> Result<Self, String> {{
        let greeting = config.opt_str("greeting")?.unwrap_or("{greeting}");
        Ok(Self {{ greeting: greeting.to_owned() }})
    }}

    fn on_invite(&mut self, _call: &CallInfo, _request: &Request) -> InviteDecision {{
        Forward::new().invite_header("X-Hello", &self.greeting).into()
    }}
}}

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn the_greeting_comes_from_config() {{
        let p = Hello::new(&Config::from_json(r#"{{"greeting": "hi"}}"#).unwrap()).unwrap();
        assert_eq!(p.greeting, "hi");
    }}
}}
"##
    )
}

fn c_source(greeting: &str) -> String {
    let prefix = "exports_callgate_plugin_hooks";
    format!(
        r#"/* A Callgate plugin in C: adds `X-Hello` to every outgoing INVITE. `callgate plugin build`
 * generates plugin.h/plugin.c from wit/ and links this file into a component. Arguments passed to
 * an export belong to it (free them); everything returned must be heap-allocated. */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

bool {prefix}_init(plugin_string_t *config, {prefix}_plugin_info_t *ret, plugin_string_t *err) {{
    (void)err;
    plugin_string_free(config);
    ret->hooks = EXPORTS_CALLGATE_PLUGIN_HOOKS_HOOK_SET_INVITE;
    return true;
}}

void {prefix}_on_invite({prefix}_call_info_t *call, {prefix}_request_t *request,
                        {prefix}_invite_decision_t *ret) {{
    {prefix}_call_info_free(call);
    {prefix}_request_free(request);
    memset(ret, 0, sizeof *ret);
    ret->tag = EXPORTS_CALLGATE_PLUGIN_HOOKS_INVITE_DECISION_FORWARD;
    {prefix}_list_header_t *h = &ret->val.forward.invite_headers;
    h->len = 1;
    h->ptr = calloc(1, sizeof *h->ptr);
    plugin_string_dup(&h->ptr[0].name, "X-Hello");
    plugin_string_dup(&h->ptr[0].value, "{greeting}");
}}

/* Hooks init does not ask for are never called, but every export must exist. */

void {prefix}_on_response({prefix}_call_info_t *call, {prefix}_leg_t leg, plugin_string_t *method,
                          {prefix}_response_t *response, {prefix}_header_edits_t *ret) {{
    (void)leg;
    {prefix}_call_info_free(call);
    plugin_string_free(method);
    {prefix}_response_free(response);
    memset(ret, 0, sizeof *ret);
}}

void {prefix}_on_refer({prefix}_call_info_t *call, {prefix}_leg_t leg,
                       {prefix}_transfer_request_t *transfer, {prefix}_refer_decision_t *ret) {{
    (void)leg;
    {prefix}_call_info_free(call);
    {prefix}_transfer_request_free(transfer);
    memset(ret, 0, sizeof *ret);
    ret->tag = EXPORTS_CALLGATE_PLUGIN_HOOKS_REFER_DECISION_NO_OPINION;
}}

void {prefix}_recording_policy({prefix}_call_info_t *call, {prefix}_recording_decision_t *ret) {{
    {prefix}_call_info_free(call);
    memset(ret, 0, sizeof *ret);
    ret->tag = EXPORTS_CALLGATE_PLUGIN_HOOKS_RECORDING_DECISION_NONE;
}}

void {prefix}_on_media_state({prefix}_call_info_t *call, {prefix}_leg_t leg,
                             {prefix}_media_change_t *change) {{
    (void)leg, (void)change;
    {prefix}_call_info_free(call);
}}

void {prefix}_on_dtmf({prefix}_call_info_t *call, {prefix}_leg_t leg, {prefix}_dtmf_t *digit) {{
    (void)leg, (void)digit;
    {prefix}_call_info_free(call);
}}

void {prefix}_on_call_end({prefix}_call_info_t *call, {prefix}_call_summary_t *summary) {{
    {prefix}_call_info_free(call);
    {prefix}_call_summary_free(summary);
}}
"#
    )
}

fn python_source(greeting: &str) -> String {
    format!(
        r#""""A Callgate plugin in Python: adds `X-Hello` to every outgoing INVITE.

Config: `greeting` (optional). `callgate plugin build` componentizes it against wit/.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import hooks
from wit_world.imports import types

GREETING = "{greeting}"


class Hooks(exports.Hooks):
    def init(self, config):
        global GREETING
        greeting = json.loads(config or "{{}}").get("greeting", GREETING)
        if not isinstance(greeting, str):
            raise Err("`greeting` must be a string")
        GREETING = greeting
        return hooks.PluginInfo(hooks=hooks.HookSet.INVITE)

    def on_invite(self, call, request):
        return hooks.InviteDecision_Forward(
            hooks.Forward(
                target=None,
                invite_headers=[types.Header(name="X-Hello", value=GREETING)],
                response_headers=[],
                pass_through=[],
                remove_headers=[],
                media=None,
            )
        )

    # Hooks init does not ask for are never called, but every export must exist.

    def on_response(self, call, leg, method, response):
        return types.HeaderEdits(add=[], remove=[])

    def on_refer(self, call, leg, transfer):
        return hooks.ReferDecision_NoOpinion()

    def recording_policy(self, call):
        return hooks.RecordingDecision_None_()

    def on_media_state(self, call, leg, change):
        pass

    def on_dtmf(self, call, leg, digit):
        pass

    def on_call_end(self, call, summary):
        pass
"#
    )
}
