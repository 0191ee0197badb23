//! The TCP driver: a listener, one reader and one writer task per connection, Content-Length framing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::{Handler, TransportError, log_out, next_frame, on_receive};
use crate::TransportKind;

/// TCP settings.
#[derive(Debug, Clone, Copy)]
pub struct TcpConfig {
    /// Largest message (headers + body) accepted or sent; a peer exceeding it is disconnected.
    /// Default 64 KiB, the same ceiling as a UDP datagram.
    pub max_message_size: usize,
    /// Messages queued per connection before `send` reports the connection as closed. Default 256.
    pub queue: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_message_size: 65_535,
            queue: 256,
        }
    }
}

type Conns = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>>;

/// A TCP listener plus its connections, keyed by peer address. Cloning shares them.
#[derive(Clone, Debug)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    local: SocketAddr,
    conns: Conns,
    handler: Handler,
    config: TcpConfig,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpTransport {
    /// Listens on `addr`; every accepted or opened connection feeds `handler`.
    pub async fn bind(
        addr: SocketAddr,
        handler: Handler,
        config: TcpConfig,
    ) -> Result<TcpTransport, TransportError> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let conns: Conns = Arc::default();
        let task = tokio::spawn(accept_loop(
            listener,
            local,
            conns.clone(),
            handler.clone(),
            config,
        ));
        Ok(TcpTransport {
            inner: Arc::new(Inner {
                local,
                conns,
                handler,
                config,
                task,
            }),
        })
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Sends on the connection to `dest`, opening one if there is none (responses go back on the
    /// connection the request came on, since it is keyed by the peer's address).
    pub async fn send(&self, bytes: Bytes, dest: SocketAddr) -> Result<(), TransportError> {
        let max = self.inner.config.max_message_size;
        if bytes.len() > max {
            return Err(TransportError::TooLarge {
                size: bytes.len(),
                max,
            });
        }
        let existing = self.conns().get(&dest).cloned();
        let tx = match existing {
            Some(tx) => tx,
            None => {
                let stream = TcpStream::connect(dest).await?;
                spawn_connection(
                    stream,
                    dest,
                    self.inner.local,
                    self.inner.conns.clone(),
                    self.inner.handler.clone(),
                    self.inner.config,
                )
            }
        };
        log_out(&bytes, dest, TransportKind::Tcp);
        tx.try_send(bytes)
            .map_err(|_| TransportError::ConnectionClosed(dest))
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Bytes>>> {
        // A poisoned map only means a task panicked while holding it; the map itself is still valid.
        self.inner.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    conns: Conns,
    handler: Handler,
    config: TcpConfig,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                debug!(%peer, "tcp connection accepted");
                spawn_connection(stream, peer, local, conns.clone(), handler.clone(), config);
            }
            Err(e) => debug!(error = %e, "tcp accept error"),
        }
    }
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    conns: Conns,
    handler: Handler,
    config: TcpConfig,
) -> mpsc::Sender<Bytes> {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(config.queue);
    conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(peer, tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if let Err(e) = wr.write_all(&b).await {
                debug!(%peer, error = %e, "tcp write failed");
                break;
            }
        }
    });
    let reply = tx.clone();
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(8192);
        'conn: loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    debug!(%peer, error = %e, "tcp read failed");
                    break;
                }
            }
            loop {
                match next_frame(&mut buf, config.max_message_size) {
                    Ok(Some(frame)) => {
                        if let Some((resp, _, _)) =
                            on_receive(frame, peer, local, TransportKind::Tcp, &handler)
                        {
                            log_out(&resp, peer, TransportKind::Tcp);
                            let _ = reply.try_send(resp);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // We can no longer find message boundaries: the only safe move is to close.
                        debug!(%peer, error = %e, "tcp framing error, closing");
                        break 'conn;
                    }
                }
            }
        }
        conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer);
        writer.abort();
        debug!(%peer, "tcp connection closed");
    });
    tx
}
