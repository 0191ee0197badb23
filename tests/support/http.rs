//! One HTTP/1.0 request to the gateway's metrics or admin endpoint, or to a test server: enough for
//! tests, and no client crate.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `method path` on `addr`: the status and the body, or none if nothing answers.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let out = String::from_utf8(out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// `GET /metrics` on `addr`: the exposition text.
pub async fn metrics(addr: SocketAddr) -> String {
    let (status, body) = request(addr, "GET", "/metrics")
        .await
        .expect("metrics endpoint answers");
    assert_eq!(status, 200, "{body}");
    body
}

/// A loopback TCP port free at the time of the call, for a test server.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
