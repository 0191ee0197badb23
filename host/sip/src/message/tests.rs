use super::*;

const INVITE: &str = "INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.a.example:5060;branch=z9hG4bK776asdhds;rport, SIP/2.0/UDP p1.example;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/TCP p2.example;branch=z9hG4bKp2\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@b.example>\r\n\
From: \"Alice, A.\" <sip:alice@a.example>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.a.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.a.example>\r\n\
P-Asserted-Identity: <sip:alice@a.example>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn parse(s: &str) -> Result<SipMessage, ParseError> {
    SipMessage::parse(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn indexes_an_invite() {
    let m = parse(INVITE).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.request_uri(), Some("sip:bob@b.example"));
    let v = m.top_via();
    assert_eq!(v.transport(), "UDP");
    assert_eq!(v.host(), "pc33.a.example");
    assert_eq!(v.port(), Some(5060));
    assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(v.rport(), Some(None));
    assert_eq!(m.vias().count(), 3);
    assert_eq!(m.call_id(), "a84b4c76e66710@pc33.a.example");
    assert_eq!((m.cseq(), m.cseq_method()), (314159, &Method::Invite));
    assert_eq!(m.from_tag(), Some("1928301774"));
    assert_eq!(m.from_uri(), "sip:alice@a.example");
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.to_uri(), "sip:bob@b.example");
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.content_type(), Some("application/sdp"));
    assert_eq!(m.contact_uri(), Some("sip:alice@pc33.a.example"));
    assert_eq!(&m.body()[..], b"v=0\n");
    assert_eq!(
        m.header("p-asserted-identity"),
        Some("<sip:alice@a.example>")
    );
    let rsip = m.to_rsip().unwrap();
    assert!(rsip.is_request());
}

#[test]
fn compact_forms_and_folding() {
    let s = "BYE sip:bob@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:a@a>\r\n ;tag=ft\r\n\
t: <sip:b@b>;tag=tt\r\ni: cid\r\nCSeq: 2 BYE\r\nl: 0\r\nSubject: a\r\n\tb\r\n\r\n";
    let m = parse(s).unwrap();
    assert_eq!(m.from_tag(), Some("ft"));
    assert_eq!(m.to_tag(), Some("tt"));
    assert_eq!(m.call_id(), "cid");
    assert_eq!(m.header("s"), Some("a b"));
    assert_eq!(m.max_forwards(), None, "absent Max-Forwards is accepted");
}

#[test]
fn udp_extra_bytes_are_discarded_and_short_body_is_an_error() {
    let extra = INVITE.replace("v=0\n", "v=0\ngarbage");
    assert_eq!(&parse(&extra).unwrap().body()[..], b"v=0\n");
    assert_eq!(&parse(&extra).unwrap().wire_bytes()[..], INVITE.as_bytes());
    let short = INVITE.replace("v=0\n", "v=");
    let err = parse(&short).unwrap_err();
    assert_eq!(err.kind, ParseErrorKind::ContentLengthMismatch);
    assert_eq!(err.reason_phrase(), "Bad Request (Content-Length mismatch)");
    let req = err.respondable().expect("answerable with 400");
    let resp = build_response(req, 400, &err.reason_phrase(), &[], Some("x"), None).unwrap();
    let r = SipMessage::parse(resp.bytes().clone()).unwrap();
    assert_eq!(r.reason(), Some("Bad Request (Content-Length mismatch)"));
}

#[test]
fn strictness_faults_are_named() {
    let cases: &[(&str, ParseErrorKind, bool)] = &[
        (
            "Content-Length: 4\r\n",
            ParseErrorKind::BadHeader("Content-Length"),
            true,
        ),
        (
            "CSeq: 314159 INVITE\r\n",
            ParseErrorKind::CSeqMethodMismatch,
            true,
        ),
        (
            "Max-Forwards: 70\r\n",
            ParseErrorKind::HeaderWithoutColon,
            true,
        ),
        (
            "Call-ID: a84b4c76e66710@pc33.a.example\r\n",
            ParseErrorKind::MissingHeader("Call-ID"),
            false,
        ),
        (
            "CSeq: 314159 INVITE\r\n",
            ParseErrorKind::BadHeader("CSeq"),
            true,
        ),
    ];
    let replacements = [
        "Content-Length: 4x\r\n",
        "CSeq: 314159 BYE\r\n",
        "Max-Forwards 70\r\n",
        "",
        "CSeq: abc INVITE\r\n",
    ];
    for ((from, kind, respondable), to) in cases.iter().zip(replacements) {
        let err = parse(&INVITE.replace(from, to)).unwrap_err();
        assert_eq!(&err.kind, kind, "replacing {from:?}");
        assert_eq!(err.respondable().is_some(), *respondable, "{kind}");
    }
    let err = parse(&INVITE.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia")).unwrap_err();
    assert_eq!(err.kind, ParseErrorKind::BadVersion);
    assert!(err.respondable().is_some());
    let err =
        parse(&INVITE.replace("INVITE sip:bob@b.example SIP/2.0", "INVITE  SIP/2.0")).unwrap_err();
    assert_eq!(err.kind, ParseErrorKind::BadStartLine);
    // Answerable: Via, From, To, Call-ID and CSeq are usable, the method comes from CSeq.
    assert_eq!(err.respondable().unwrap().method(), Some(&Method::Invite));
    assert_eq!(parse("\r\n\r\n").unwrap_err().kind, ParseErrorKind::Empty);
    assert_eq!(
        parse("INVITE sip:a SIP/2.0\r\nVia: x").unwrap_err().kind,
        ParseErrorKind::Truncated
    );
}

#[test]
fn response_copies_per_8_2_6() {
    let req = parse(INVITE).unwrap();
    let resp = build_response(
        &req,
        180,
        "Ringing",
        &[("Contact", "<sip:gw@10.0.0.1>")],
        Some("totag"),
        None,
    )
    .unwrap();
    assert_eq!(resp.status(), 180);
    let r = SipMessage::parse(resp.bytes().clone()).unwrap();
    assert_eq!(r.status(), Some(180));
    assert_eq!(r.vias().collect::<Vec<_>>(), req.vias().collect::<Vec<_>>());
    assert_eq!(r.to_tag(), Some("totag"));
    assert_eq!(r.from(), req.from());
    assert_eq!(r.call_id(), req.call_id());
    assert_eq!((r.cseq(), r.cseq_method()), (314159, &Method::Invite));
    assert_eq!(r.contact_uri(), Some("sip:gw@10.0.0.1"));
    assert_eq!(r.body().len(), 0);
    // An existing To tag is kept, not doubled.
    let r2 = SipMessage::parse(
        build_response(&r_as_request(&r), 200, "OK", &[], Some("other"), None)
            .unwrap()
            .bytes()
            .clone(),
    )
    .unwrap();
    assert_eq!(r2.to_tag(), Some("totag"));
}

fn r_as_request(r: &SipMessage) -> SipMessage {
    let text = String::from_utf8(r.wire_bytes().to_vec()).unwrap();
    let text = text.replacen("SIP/2.0 180 Ringing", "INVITE sip:bob@b.example SIP/2.0", 1);
    parse(&text).unwrap()
}

#[test]
fn builder_refuses_injection() {
    let req = parse(INVITE).unwrap();
    assert_eq!(
        build_response(&req, 200, "OK", &[("X-A", "1\r\nVia: evil")], None, None).unwrap_err(),
        BuildError::Injection("header value")
    );
    assert_eq!(
        build_response(&req, 200, "OK\n", &[], None, None).unwrap_err(),
        BuildError::Injection("reason phrase")
    );
    let b = RequestBuilder::new(Method::Invite, "sip:b@b")
        .via("UDP", "h")
        .from("<sip:a@a>", "t\0")
        .to("<sip:b@b>", None)
        .call_id("c")
        .cseq(1);
    assert_eq!(
        b.clone().build_bytes().unwrap_err(),
        BuildError::Injection("From tag"),
        "bytes-only building checks the same"
    );
    assert_eq!(b.build().unwrap_err(), BuildError::Injection("From tag"));
}

#[test]
fn bytes_only_building_writes_what_the_indexed_build_would() {
    let b = RequestBuilder::new(Method::Ack, "sip:b@10.0.0.2:5070")
        .via("UDP", "10.0.0.1:5060")
        .from("<sip:a@a>", "ft")
        .to("<sip:b@b>", Some("tt"))
        .call_id("c@gw")
        .cseq(1)
        .body("application/sdp", b"v=0\r\n");
    // The branch is drawn by `via`, so both builds of the clone write the same one.
    let bytes = b.clone().build_bytes().unwrap();
    let built = b.build().unwrap();
    assert_eq!(bytes, built.wire_bytes());
    let reparsed = parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
    assert_eq!(reparsed.to_tag(), Some("tt"));
    assert_eq!(&reparsed.body()[..], b"v=0\r\n");
}

#[test]
fn request_builder_round_trip_and_copy() {
    let a = parse(INVITE).unwrap();
    let tag = new_tag();
    let cid = new_call_id("gw");
    let m = RequestBuilder::new(Method::Invite, "sip:bob@10.0.0.2")
        .via("UDP", "10.0.0.1:5060")
        .from("<sip:alice@a.example>", &tag)
        .to("<sip:bob@b.example>", None)
        .call_id(&cid)
        .cseq(1)
        .contact("<sip:gw@10.0.0.1>")
        .route("<sip:proxy;lr>")
        .copy_headers(&a, &["p-asserted-identity", "Call-ID", "v"])
        .body("application/sdp", b"v=0\r\n")
        .build()
        .unwrap();
    assert!(m.top_via().branch().unwrap().starts_with(BRANCH_MAGIC));
    assert_eq!(m.top_via().rport(), Some(None));
    assert_eq!(m.vias().count(), 1, "Via is never copied");
    assert_eq!(m.call_id(), cid);
    assert_eq!(m.from_tag(), Some(tag.as_str()));
    assert_eq!(
        m.header("P-Asserted-Identity"),
        Some("<sip:alice@a.example>")
    );
    assert_eq!(m.routes().collect::<Vec<_>>(), ["<sip:proxy;lr>"]);
    assert_eq!(&m.body()[..], b"v=0\r\n");
    assert_eq!(m.max_forwards(), Some(70));
    assert_ne!(new_branch(), new_branch());
}

#[test]
fn received_and_rport_fill_in() {
    let m = parse(INVITE).unwrap();
    let m2 = m
        .with_via_received("192.0.2.7:40000".parse().unwrap())
        .unwrap();
    let v = m2.top_via();
    assert_eq!(v.received(), Some("192.0.2.7"));
    assert_eq!(v.rport(), Some(Some(40000)));
    assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(m2.vias().count(), 3);
    assert_eq!(m2.body(), m.body());
    let plain = INVITE
        .replace(";rport,", ",")
        .replace("pc33.a.example:5060", "192.0.2.7:5060");
    let p = parse(&plain).unwrap();
    assert!(
        p.with_via_received("192.0.2.7:5060".parse().unwrap())
            .is_none()
    );
    // IPv6 hosts compare as addresses, whatever their spelling.
    let v6 = parse(&plain.replace("192.0.2.7:5060", "[0:0::1]:5060")).unwrap();
    assert!(
        v6.with_via_received("[::1]:5060".parse().unwrap())
            .is_none()
    );
    let moved = v6
        .with_via_received("[2001:db8::9]:5060".parse().unwrap())
        .unwrap();
    assert_eq!(moved.top_via().received(), Some("2001:db8::9"));
}

/// xorshift64*: deterministic, so a failure reproduces.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_and_truncated_input_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds = [INVITE.as_bytes().to_vec(), {
        let req = parse(INVITE).unwrap();
        build_response(&req, 200, "OK", &[], Some("t"), Some(("a/b", b"xyz")))
            .unwrap()
            .bytes()
            .to_vec()
    }];
    let specials = b"\r\n:;,<>\"= \t\0\xff[]@";
    let mut parsed = 0;
    for i in 0..6000 {
        let mut m = seeds[i % 2].clone();
        for _ in 0..1 + rng.below(6) {
            let len = m.len().max(1);
            match rng.below(5) {
                0 => m.truncate(rng.below(len)),
                1 => {
                    let at = rng.below(len).min(m.len().saturating_sub(1));
                    if let Some(b) = m.get_mut(at) {
                        *b = specials[rng.below(specials.len())];
                    }
                }
                2 => {
                    let at = rng.below(len).min(m.len());
                    m.insert(at, specials[rng.below(specials.len())]);
                }
                3 => {
                    let at = rng.below(len).min(m.len());
                    let n = rng.below(20).min(m.len() - at);
                    m.drain(at..at + n);
                }
                _ => {
                    let at = rng.below(len).min(m.len());
                    m.insert(at, rng.next() as u8);
                }
            }
        }
        match SipMessage::parse(Bytes::from(m)) {
            Ok(msg) => {
                parsed += 1;
                let _ = msg.vias().count() + msg.routes().count() + msg.headers().count();
                let _ = msg.with_via_received("10.1.2.3:9".parse().unwrap());
                if msg.is_request() {
                    let _ = build_response(&msg, 487, "Terminated", &[], Some("t"), None);
                }
            }
            Err(e) => {
                if let Some(r) = e.respondable() {
                    build_response(r, 400, &e.reason_phrase(), &[], Some("t"), None).unwrap();
                }
            }
        }
    }
    assert!(
        parsed > 100,
        "the mutator should leave some messages valid ({parsed})"
    );
}

/// Every file of tests/malformed gets a parse outcome allowed by expected.tsv. A 4xx/5xx expectation
/// means a respondable error with an allowed status (488 means: parses, and `check_sdp` refuses the
/// body); `drop` means not respondable; `accept` means it parses.
#[test]
fn malformed_corpus_outcomes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/malformed");
    let tsv = std::fs::read_to_string(format!("{dir}/expected.tsv")).unwrap();
    let mut failures = Vec::new();
    for line in tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, expect, also) = (cols[0], cols[1], cols.get(2).copied().unwrap_or("-"));
        let allowed: Vec<&str> = std::iter::once(expect)
            .chain(also.split(',').filter(|s| *s != "-"))
            .collect();
        let bytes = std::fs::read(format!("{dir}/{file}")).unwrap();
        let got = match SipMessage::parse(bytes::Bytes::from(bytes)) {
            Ok(m) => {
                let sdp = allowed.contains(&"488")
                    && m.content_type() == Some("application/sdp")
                    && crate::message::check_sdp(&m.body()).is_err();
                if sdp {
                    "488".to_string()
                } else {
                    "accept".to_string()
                }
            }
            Err(e) => match e.respondable() {
                Some(req) => {
                    // The answer must build from the (possibly raw) values.
                    build_response(req, e.status(), &e.reason_phrase(), &[], Some("t"), None)
                        .unwrap();
                    e.status().to_string()
                }
                None => "drop".to_string(),
            },
        };
        if !allowed.contains(&got.as_str()) {
            failures.push(format!("{file}: allowed {allowed:?}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each new strictness check refuses its fault with the right status, and a valid counterpart parses.
#[test]
fn new_checks_refuse_faults_and_keep_valid_sip() {
    let cases: [(&str, &str, u16, &str); 14] = [
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INV@TE sip:bob@b.example SIP/2.0",
            400,
            "method",
        ),
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE <sip:bob@b.example> SIP/2.0",
            400,
            "<uri>",
        ),
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE foo:bob@b.example SIP/2.0",
            416,
            "scheme",
        ),
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE sip:bob@b.example:70000 SIP/2.0",
            400,
            "port",
        ),
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE sip:b%zzob@b.example SIP/2.0",
            400,
            "escape",
        ),
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE sip:bob@ SIP/2.0",
            400,
            "no host",
        ),
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE sip:bob@b.example HTTP/1.1",
            505,
            "version",
        ),
        ("Call-ID: ", "Call-ID: a b\r\nX-Old: ", 400, "call-id space"),
        ("CSeq: 314159 INVITE", "CSeq: 314159", 400, "cseq method"),
        (
            "CSeq: 314159 INVITE",
            "CSeq: -1 INVITE",
            400,
            "cseq negative",
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nExpires: soon",
            400,
            "expires",
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nSubject: a\x1b[1m",
            400,
            "ctl",
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nRoute: <>",
            400,
            "route",
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nContact: *",
            400,
            "contact *",
        ),
    ];
    parse(INVITE).unwrap();
    for (from, to, status, what) in cases {
        assert!(INVITE.contains(from), "{what}");
        let err = parse(&INVITE.replacen(from, to, 1)).unwrap_err();
        assert_eq!(err.status(), status, "{what}: {err}");
        let req = err
            .respondable()
            .unwrap_or_else(|| panic!("{what} not respondable"));
        build_response(req, status, &err.reason_phrase(), &[], Some("t"), None).unwrap();
    }
    // Valid counterparts: IPv6 hosts, tel:, sips:, params and headers, name-addr Route, folding.
    for (from, to) in [
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE sip:bob@[2001:db8::1]:5060;transport=udp SIP/2.0",
        ),
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE tel:+15551234;phone-context=x SIP/2.0",
        ),
        (
            "INVITE sip:bob@b.example SIP/2.0",
            "INVITE sips:b%20ob@b.example?subject=x SIP/2.0",
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nRoute: <sip:p1;lr>, \"P\" <sip:p2>\r\nExpires: 30",
        ),
        ("Max-Forwards: 70", "Max-Forwards: 70\r\nSubject: a\r\n\tb"),
    ] {
        parse(&INVITE.replacen(from, to, 1)).unwrap_or_else(|e| panic!("{to}: {e}"));
    }
}

#[test]
fn register_star_contact_and_sizes() {
    let reg = "REGISTER sip:b.example SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
        From: <sip:a@b.example>;tag=1\r\nTo: <sip:a@b.example>\r\nCall-ID: r1\r\nCSeq: 2 REGISTER\r\n\
        Contact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n";
    parse(reg).unwrap();
    let err = parse(&reg.replace("Expires: 0", "Expires: 60")).unwrap_err();
    assert_eq!(err.kind, ParseErrorKind::BadHeader("Contact"));
    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let err = parse(&reg.replace("Expires: 0\r\n", &format!("Expires: 0\r\n{many}"))).unwrap_err();
    assert_eq!((err.status(), err.kind.status()), (513, 513));
    assert!(err.respondable().is_some());
    let long = format!("X-Big: {}\r\n", "a".repeat(40_000));
    let err = parse(&reg.replace("Expires: 0\r\n", &format!("Expires: 0\r\n{long}"))).unwrap_err();
    assert_eq!(err.status(), 513);
}

/// What a header line says of its name agrees with the name lookups: `is_stack` with
/// `is_stack_header`, `is_routing` with Via, Route and Record-Route in any case or compact form.
#[test]
fn header_lines_know_their_names() {
    let names = [
        "Via",
        "v",
        "V",
        "ROUTE",
        "Record-Route",
        "record-route",
        "From",
        "f",
        "To",
        "t",
        "Call-ID",
        "i",
        "CSeq",
        "Contact",
        "m",
        "Max-Forwards",
        "Content-Type",
        "c",
        "Subject",
        "s",
        "X-Route",
        "Routes",
        "Supported",
        "k",
        "RSeq",
    ];
    let mut text = String::from(
        "OPTIONS sip:b@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
         To: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
    );
    for n in names {
        let value = match canonical_name(n).to_ascii_lowercase().as_str() {
            "via" => "SIP/2.0/UDP h2;branch=z9hG4bK2",
            "from" | "to" | "contact" | "route" | "record-route" => "<sip:p@q>;tag=2",
            "call-id" | "content-type" => "x/y",
            "cseq" => "1 OPTIONS",
            "max-forwards" => "70",
            _ => "v",
        };
        text.push_str(&format!("{n}: {value}\r\n"));
    }
    text.push_str("\r\n");
    // Duplicates of single-valued headers are refused, but the lines are still indexed.
    let msg = match SipMessage::parse(Bytes::from(text)) {
        Ok(m) => m,
        Err(e) => *e.request.expect("a request"),
    };
    let mut seen = 0;
    for line in msg.header_lines() {
        assert_eq!(line.is_stack(), is_stack_header(line.name), "{}", line.name);
        let canonical = canonical_name(line.name).to_ascii_lowercase();
        assert_eq!(
            line.is_routing(),
            ["via", "route", "record-route"].contains(&canonical.as_str()),
            "{}",
            line.name
        );
        seen += 1;
    }
    assert_eq!(seen, 6 + names.len());
}

#[test]
fn check_sdp_sanity() {
    let ok = b"v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    check_sdp(ok).unwrap();
    check_sdp(b"garbage\r\n").unwrap_err();
    check_sdp(b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n").unwrap_err();
    check_sdp(b"v=0\r\nm=audio 4000\r\n").unwrap_err();
    check_sdp(b"v=0\r\ns=-\r\n").unwrap_err();
}

/// The byte-loop line split of `check_sdp` gives the same verdict and message as `str::split` on
/// every combination of line ends (LF, CR LF, lone CR, blank lines, none at the end) around valid and
/// invalid lines.
#[test]
fn check_sdp_agrees_with_its_split_definition() {
    use super::parse::check_sdp_reference;
    let lines = [
        "v=0",
        "v=1",
        "o=a 1 1 IN IP4 1.2.3.4",
        "s=-",
        "m=audio 4000 RTP/AVP 0",
        "m=audio 70000 RTP/AVP 0",
        "m=video 5000/2 RTP/AVP 31",
        "m=audio 4000",
        "m=audio  4000 RTP/AVP 0",
        "x",
        "X=1",
        "a=\u{e9}t\u{e9}",
        "",
    ];
    let ends = ["\n", "\r\n", "\r", "\n\n", "\r\n\r\n", ""];
    let mut checked = 0;
    for a in lines {
        for b in lines {
            for c in lines {
                for (e1, e2) in [(0, 1), (1, 1), (2, 0), (3, 5), (4, 1), (1, 5), (0, 2)] {
                    let body = format!("{a}{}{b}{}{c}{}", ends[e1], ends[e2], ends[e1]);
                    assert_eq!(
                        check_sdp(body.as_bytes()),
                        check_sdp_reference(body.as_bytes()),
                        "{body:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(
        check_sdp(&[0xff, b'\n']),
        check_sdp_reference(&[0xff, b'\n'])
    );
    assert!(checked > 10_000);
}

#[test]
fn find_unquoted_agrees_with_the_byte_at_a_time_definition() {
    use super::parse::{find_unquoted_for_test, find_unquoted_reference};
    // Strings dense in the bytes that matter, so quotes, escapes and brackets interleave.
    const ALPHABET: &[u8] = b"\"\\<>,;ab =";
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..200_000 {
        let len = rng.below(40);
        let s: Vec<u8> = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        let start = rng.below(len + 1);
        let end = start + rng.below(len - start + 1);
        for (needle, skip_angle) in [(b',', false), (b',', true), (b';', false), (b'<', false)] {
            assert_eq!(
                find_unquoted_for_test(&s, start..end, needle, skip_angle),
                find_unquoted_reference(&s, start..end, needle, skip_angle),
                "{:?} {start}..{end} {} {skip_angle}",
                String::from_utf8_lossy(&s),
                needle as char
            );
        }
    }
}

#[test]
fn the_header_scan_flags_every_control_byte_and_non_ascii_byte() {
    // Each byte value at each position of a chunk, over a background of ordinary text.
    let mut chunk = *b"Via: SIP/2.0/UDP";
    for pos in 0..16 {
        for b in 0..=255u8 {
            let keep = chunk[pos];
            chunk[pos] = b;
            assert!(
                super::parse::ctl_masks_agree(&chunk),
                "byte {b:#04x} at {pos}"
            );
            chunk[pos] = keep;
        }
    }
    assert!(super::parse::ctl_masks_agree(&[0u8; 16]));
    assert!(super::parse::ctl_masks_agree(&[0xffu8; 16]));
}

#[test]
fn a_header_name_ends_at_its_first_non_token_byte() {
    let reference = |l: &[u8]| {
        l.iter()
            .position(|&b| !super::method::is_token_char(b))
            .unwrap_or(l.len())
    };
    // Every byte value at every position of a name longer than one 16-byte chunk, in buffers that
    // end at the line and that run on past it (the fast path reads ahead).
    let base = *b"X-Some-Long-Header-Name-Here: value\r\nNext: 1\r\n";
    for pos in 0..40 {
        for b in 0..=255u8 {
            let mut buf = base;
            buf[pos] = b;
            for end in [pos + 1, 29, buf.len()] {
                let end = end.max(pos + 1).min(buf.len());
                for start in [0, 2, 17] {
                    if start > end {
                        continue;
                    }
                    assert_eq!(
                        super::parse::token_len_for_test(&buf, start..end),
                        reference(&buf[start..end]),
                        "byte {b:#04x} at {pos}, {start}..{end}"
                    );
                }
            }
        }
    }
}

#[test]
fn request_uri_host_is_after_the_last_user_at_and_before_the_headers() {
    use super::parse::check_request_uri as check;
    let bad = Err(ParseErrorKind::BadRequestUri);
    for (uri, want) in [
        ("sip:bob@b.example", Ok(())),
        ("sip:b.example:5060;transport=tcp", Ok(())),
        ("sips:[::1]:5061", Ok(())),
        ("sip:a@b@c.example", Ok(())),
        ("sip:bob@b.example?subject=x@y", Ok(())),
        ("sip:bob@b.example?to=sip:x%40y", Ok(())),
        ("sip:%62ob@b.example", Ok(())),
        ("tel:+1-555-0100", Ok(())),
        ("sip:bob@b.example?x=@:99999", Ok(())),
        ("sip:bob@", bad.clone()),
        ("sip:bob@?x=y", bad.clone()),
        ("sip:bob@b.example:0", bad.clone()),
        ("sip:bob@b.example:x", bad.clone()),
        ("sip:%zz@b.example", bad.clone()),
        ("sip:bob@b.example?x=%zz", bad.clone()),
        ("s%69p:bob@b.example", bad.clone()),
        ("sip", bad.clone()),
        ("", bad.clone()),
        ("sip:bob b", bad.clone()),
        ("1sip:bob@b", bad.clone()),
        ("ftp:bob@b", Err(ParseErrorKind::UnsupportedUriScheme)),
    ] {
        assert_eq!(check(uri.as_bytes()), want, "{uri}");
    }
}
