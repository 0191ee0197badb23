//! The UDP driver: one receive task per socket, sends from any task.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Handler, TransportError, log_out, on_receive};
use crate::TransportKind;

/// Receive buffer requested from the kernel: a busy gateway socket must ride out bursts while the
/// receive task is scheduled (the kernel may cap it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 8 * 1024 * 1024;

/// A bound UDP socket. Cloning shares the socket; the receive task stops when the last clone drops.
#[derive(Clone, Debug)]
pub struct UdpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpTransport {
    /// Binds `addr` (large receive buffer via socket2) and starts the receive task, which calls
    /// `handler` for every message. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, handler: Handler) -> Result<UdpTransport, TransportError> {
        let domain = socket2::Domain::for_address(addr);
        let sock =
            socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if let Err(e) = sock.set_recv_buffer_size(RECV_BUFFER) {
            warn!(error = %e, "could not enlarge the UDP receive buffer");
        }
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        let socket = Arc::new(UdpSocket::from_std(sock.into())?);
        let local = socket.local_addr()?;
        let task = tokio::spawn(recv_loop(socket.clone(), local, handler));
        Ok(UdpTransport {
            inner: Arc::new(Inner {
                socket,
                local,
                task,
            }),
        })
    }

    /// The bound address (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Sends one datagram.
    pub async fn send(&self, bytes: &[u8], dest: SocketAddr) -> Result<(), TransportError> {
        log_out(bytes, dest, TransportKind::Udp);
        self.inner.socket.send_to(bytes, dest).await?;
        Ok(())
    }

    /// Sends one datagram without awaiting, for synchronous code draining `poll_transmit`. A full
    /// socket buffer surfaces as an `Io` error of kind `WouldBlock` (treat as loss: UDP timers retransmit).
    pub fn try_send(&self, bytes: &[u8], dest: SocketAddr) -> Result<(), TransportError> {
        log_out(bytes, dest, TransportKind::Udp);
        self.inner.socket.try_send_to(bytes, dest)?;
        Ok(())
    }
}

async fn recv_loop(socket: Arc<UdpSocket>, local: SocketAddr, handler: Handler) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable surfaces here on some platforms; the socket is still fine.
                debug!(error = %e, "udp recv error");
                continue;
            }
        };
        let bytes = Bytes::copy_from_slice(&buf[..n]);
        if let Some((resp, _, dest)) =
            on_receive(bytes, source, local, TransportKind::Udp, &handler)
        {
            log_out(&resp, dest, TransportKind::Udp);
            if let Err(e) = socket.send_to(&resp, dest).await {
                debug!(error = %e, %dest, "could not send 400");
            }
        }
    }
}
