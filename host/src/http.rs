//! The deliberately small HTTP/1.1 server behind the metrics endpoint and the admin API: loopback
//! only, one request per connection, no body read. Both serve an operator's tools (a Prometheus
//! scraper, curl), not the public, so pulling in a web framework would buy nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request line, which is all these endpoints look at.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query string.
    pub path: String,
}

/// What to send back.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The Content-Type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    /// A `200 OK` with a body of `content_type`.
    pub fn ok(content_type: &'static str, body: String) -> Self {
        Self {
            status: 200,
            content_type,
            body,
        }
    }

    /// A JSON body with `status`.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: format!("{body:#}\n"),
        }
    }

    /// A plain-text error.
    pub fn error(status: u16, message: &str) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: format!("{message}\n"),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Error",
    }
}

/// Handles one request.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// Longest request head read; the endpoints take no bodies.
const MAX_HEAD: usize = 8192;

/// Binds `addr` and serves `handler` until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    handler: Handler,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(connection(sock, handler.clone()));
        }
    });
    Ok((local, task))
}

async fn connection(mut sock: tokio::net::TcpStream, handler: Handler) {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = sock.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_HEAD {
                return Some(());
            }
        }
    })
    .await;
    let response = match head {
        Ok(Some(())) => match parse(&buf) {
            Some(req) => handler(req).await,
            None => Response::error(400, "bad request"),
        },
        _ => return,
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(response.body.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn parse(head: &[u8]) -> Option<Request> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    parts.next()?.strip_prefix("HTTP/1.")?;
    let path = target.split('?').next()?.to_string();
    Some(Request { method, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_request_line_and_drops_the_query() {
        let r = parse(b"POST /plugins/reload?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/plugins/reload")
        );
        assert!(parse(b"GARBAGE\r\n\r\n").is_none());
        assert!(parse(b"GET / SMTP\r\n\r\n").is_none());
    }
}
