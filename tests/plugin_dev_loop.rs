//! The developer loop, through the real binary: `callgate plugin new` in each language gives a
//! plugin that `callgate plugin build` builds and whose own test cases pass when the component runs
//! in the real runtime; `callgate plugin inspect` then describes the component.

#[path = "support/tempdir.rs"]
mod tempdir;

use std::path::Path;
use std::process::Command;

fn callgate(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running callgate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn new_build_inspect(lang: &str) {
    let tmp = tempdir::Dir::new(&format!("dev-loop-{lang}"));
    let dir = tmp.path().join(format!("hello-{lang}"));
    let (ok, out) = callgate(&[
        "plugin".as_ref(),
        "new".as_ref(),
        dir.as_os_str(),
        "--lang".as_ref(),
        lang.as_ref(),
    ]);
    assert!(ok, "plugin new: {out}");
    assert!(dir.join("callgate-test.json").is_file());

    let (ok, out) = callgate(&["plugin".as_ref(), "build".as_ref(), dir.as_os_str()]);
    assert!(ok, "plugin build: {out}");
    assert!(out.contains("2 test case(s) passed"), "{out}");
    let component: &Path = &dir
        .join("target/callgate")
        .join(format!("hello-{lang}.wasm"));
    assert!(component.is_file(), "{out}");

    let (ok, out) = callgate(&[
        "plugin".as_ref(),
        "inspect".as_ref(),
        component.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(ok, "plugin inspect: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect --json prints JSON");
    assert_eq!(v["contract"], "0.1.2", "{v}");

    // A broken test case fails the build's test run, naming the case.
    std::fs::write(
        dir.join("callgate-test.json"),
        r#"[{"config": {}, "invite-headers": [["X-Hello", "not what it says"]]}]"#,
    )
    .unwrap();
    let (ok, out) = callgate(&["plugin".as_ref(), "build".as_ref(), dir.as_os_str()]);
    assert!(!ok && out.contains("case 0"), "{out}");
}

#[test]
fn a_new_rust_plugin_builds_and_passes_its_test() {
    new_build_inspect("rust");
}

#[test]
fn a_new_c_plugin_builds_and_passes_its_test() {
    new_build_inspect("c");
}

#[test]
fn a_new_python_plugin_builds_and_passes_its_test() {
    new_build_inspect("python");
}

#[test]
fn new_refuses_an_existing_directory_and_a_bad_name() {
    let tmp = tempdir::Dir::new("dev-loop-refusals");
    let (ok, out) = callgate(&["plugin".as_ref(), "new".as_ref(), tmp.path().as_os_str()]);
    assert!(!ok && out.contains("already exists"), "{out}");
    let bad = tmp.path().join("Bad_Name");
    let (ok, out) = callgate(&["plugin".as_ref(), "new".as_ref(), bad.as_os_str()]);
    assert!(!ok && out.contains("lower case"), "{out}");
}
