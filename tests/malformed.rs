//! The malformed-message corpus (`tests/malformed/`) against the in-process gateway over UDP and
//! TCP. The gateway set-up and the call check reuse the flow tests' user agent.

#[path = "support/b2b_ua.rs"]
mod b2b_ua;

use std::path::PathBuf;
use std::time::Duration;

use b2b_ua::{Ua, answered_call, gateway};
use tokio::net::UdpSocket;

/// What `tests/malformed/expected.tsv` allows for one file: status codes, silence, or (for a
/// message that is valid on the wire after all) a normal call.
struct Expected {
    codes: Vec<u16>,
    drop: bool,
    accept: bool,
}

fn expectations() -> Vec<(String, Expected)> {
    let tsv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/malformed/expected.tsv"
    ))
    .unwrap();
    tsv.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let mut e = Expected {
                codes: Vec::new(),
                drop: false,
                accept: false,
            };
            for v in cols[1].split(',').chain(cols[2].split(',')) {
                match v.trim() {
                    "drop" => e.drop = true,
                    "accept" => e.accept = true,
                    "-" | "" => {}
                    code => e
                        .codes
                        .push(code.parse().expect("a status code in expected.tsv")),
                }
            }
            (cols[0].to_string(), e)
        })
        .collect()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The malformed corpus (`tests/malformed/`), each file sent raw over UDP and over TCP: each gets
/// an answer its row of `expected.tsv` allows (400, a more specific error, or silence), and the
/// gateway keeps serving calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_or_are_dropped_and_calls_go_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/malformed"));
    let expected = expectations();
    assert!(
        expected.len() >= 100,
        "the corpus has {} files",
        expected.len()
    );

    let callee = Ua::new().await;
    let gw = gateway(callee.addr, vec![], |c| {
        c.listen.tcp = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (udp_addr, tcp_addr) = (gw.gateway.udp_addr(), gw.gateway.tcp_addr().unwrap());

    let mut tasks = Vec::new();
    for (name, exp) in expected {
        let bytes = std::fs::read(dir.join(&name)).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut udp = Vec::new();
            // UDP: one datagram, if it fits in one.
            if bytes.len() <= 65_000 {
                let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                sock.send_to(&bytes, udp_addr).await.unwrap();
                while let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
                {
                    udp.push(String::from_utf8_lossy(&buf[..n]).to_string());
                }
            }
            // TCP: the bytes on a fresh connection (framing differs: an incomplete message just
            // waits for more bytes, which is silence here).
            let mut tcp = String::new();
            if let Ok(mut conn) = tokio::net::TcpStream::connect(tcp_addr).await {
                let _ = conn.write_all(&bytes).await;
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    tcp.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
            (name, exp, udp, tcp)
        }));
    }
    let mut answered = 0;
    let mut wrong = Vec::new();
    for t in tasks {
        let (name, exp, udp, tcp) = t.await.unwrap();
        if exp.accept {
            continue;
        }
        if udp.is_empty() && !exp.drop && !name.contains("oversize") {
            wrong.push(format!(
                "{name}: no answer over UDP, expected one of {:?}",
                exp.codes
            ));
        }
        for a in udp.iter().chain((!tcp.is_empty()).then_some(&tcp)) {
            if !status_of(a).is_some_and(|s| exp.codes.contains(&s)) {
                let first = a.lines().next().unwrap_or("");
                wrong.push(format!(
                    "{name}: expected {:?}{}, got {first}",
                    exp.codes,
                    if exp.drop { " or nothing" } else { "" }
                ));
            }
            answered += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} files answered wrongly:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        answered > 50,
        "answerable faults get their 400 ({answered} did)"
    );

    // And the gateway still serves calls.
    answered_call(&gw, &callee, &[]).await;
}
