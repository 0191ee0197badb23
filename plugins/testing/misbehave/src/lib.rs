//! `misbehave`: a testing plugin that fails on request, to exercise the gateway's limits (deadline,
//! memory cap, traps) and failure policies. Not an example: see README.md for the exact contract.

use core::hint::black_box;

use callgate_sdk::prelude::*;

/// The plugin: no state.
pub struct Misbehave;

/// What the `X-Misbehave` header asks for.
fn wanted(value: Option<&str>) -> Option<&'static str> {
    match value?.trim() {
        v if v.eq_ignore_ascii_case("loop") => Some("loop"),
        v if v.eq_ignore_ascii_case("hog") => Some("hog"),
        v if v.eq_ignore_ascii_case("trap") => Some("trap"),
        _ => None,
    }
}

/// Spins forever; `black_box` keeps the optimiser from proving anything about the loop.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks of non-zero bytes (so every page is touched) until the memory cap stops it
/// (an allocation failure aborts: a trap).
fn hog_forever() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(black_box(vec![0xA5u8; 1 << 20]));
        black_box(&blocks);
    }
}

#[callgate_sdk::plugin]
impl Plugin for Misbehave {
    fn new(config: &Config) -> Result<Self, String> {
        match config.get_str("on-init") {
            Some("fail") => Err("misbehave: init refused by config".to_owned()),
            Some("loop") => spin_forever(),
            _ => Ok(Misbehave),
        }
    }

    fn on_invite(&mut self, _call: &CallInfo, request: &Request) -> InviteDecision {
        match wanted(request.header("X-Misbehave")) {
            Some("loop") => spin_forever(),
            Some("hog") => hog_forever(),
            Some("trap") => panic!("misbehave: asked to trap"),
            _ => Forward::new().invite_header("X-Survived", "yes").into(),
        }
    }

    fn on_response(
        &mut self,
        _call: &CallInfo,
        _leg: Leg,
        _method: &str,
        response: &Response,
    ) -> HeaderEdits {
        if wanted(response.header("X-Misbehave")) == Some("trap") {
            panic!("misbehave: asked to trap");
        }
        HeaderEdits::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_sdk::__private::{Export, HookSet};

    #[test]
    fn asks_for_invite_and_response_only() {
        assert_eq!(
            <Misbehave as Export>::hooks(),
            HookSet::INVITE | HookSet::RESPONSE
        );
    }

    #[test]
    fn init_fails_on_request() {
        let c = Config::from_json(r#"{"on-init": "fail"}"#).unwrap();
        assert_eq!(
            Misbehave::new(&c).err().as_deref(),
            Some("misbehave: init refused by config")
        );
        assert!(Misbehave::new(&Config::default()).is_ok());
    }

    #[test]
    fn header_values() {
        assert_eq!(wanted(Some("loop")), Some("loop"));
        assert_eq!(wanted(Some(" HOG ")), Some("hog"));
        assert_eq!(wanted(Some("trapped")), None);
        assert_eq!(wanted(None), None);
    }
}
