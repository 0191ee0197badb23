//! The UDP driver: receive threads on a group of sockets sharing the port, sends from any thread.
//!
//! The receive loop is an OS thread blocked in `recvfrom`, not a tokio task woken by epoll. With
//! the socket in tokio's epoll set, every datagram that arrived while one worker was busy woke
//! another worker parked in `epoll_wait`, which found nothing to do and parked again: on a 2-core
//! box that was ~1.4 context switches per call and most of why two workers cost ~20% more CPU per
//! call than one. A thread blocked in `recvfrom` is woken only by its own datagrams, as a Kamailio
//! worker is. The handler runs on this thread inside the runtime's context (it may spawn and
//! arm timers), so it must not block.

use std::net::{SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, error, warn};

use super::{Handler, TransportError, log_out, on_receive};
use crate::TransportKind;

/// Receive buffer requested from the kernel: a busy gateway socket must ride out bursts while the
/// receive thread works (the kernel may cap it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 8 * 1024 * 1024;

/// How long a receive thread may block before it looks at the stop flag anyway. On Linux, stopping
/// wakes the threads at once (see [`Stopper::stop`]); this bounds the wait where it does not.
const STOP_POLL: Duration = Duration::from_millis(200);

/// A bound UDP port. Cloning shares it; the receive threads stop on [`UdpTransport::close`], when
/// the last clone drops, or when the runtime it was bound in shuts down.
#[derive(Clone, Debug)]
pub struct UdpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Sends go out of the first socket; every socket of the group has the same address.
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    stopper: Stopper,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stopper.stop();
    }
}

impl UdpTransport {
    /// Binds `addr` with `receivers` sockets (at least one) and a receive thread each, which calls
    /// `handler` for every message in the context of the calling tokio runtime. Must be called
    /// inside a tokio runtime.
    ///
    /// Several receivers form one `SO_REUSEPORT` group: the kernel hashes each peer's address to one
    /// socket, so a peer's datagrams stay on one thread and in order, while different peers (the
    /// two legs of a call, the UAC and the UAS) are received in parallel. A single peer sending
    /// everything (one SBC in front) still lands on one thread.
    pub fn bind(
        addr: SocketAddr,
        receivers: usize,
        handler: Handler,
    ) -> Result<UdpTransport, TransportError> {
        let receivers = receivers.max(1);
        let runtime = tokio::runtime::Handle::current();
        let mut sockets: Vec<Arc<UdpSocket>> = Vec::with_capacity(receivers);
        let mut local = addr;
        for _ in 0..receivers {
            let domain = socket2::Domain::for_address(addr);
            let sock =
                socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
            if let Err(e) = sock.set_recv_buffer_size(RECV_BUFFER) {
                warn!(error = %e, "could not enlarge the UDP receive buffer");
            }
            if receivers > 1 {
                // Linux lets only sockets of the same user join a group, so another user cannot
                // bind into ours and take a share of the traffic.
                sock.set_reuse_port(true)?;
            }
            // The first socket fixes the port when 0 was asked; the others join its group.
            sock.bind(&local.into())?;
            // Blocking receive with a timeout; sends never block (MSG_DONTWAIT).
            sock.set_read_timeout(Some(STOP_POLL))?;
            let socket = Arc::new(UdpSocket::from(sock));
            local = socket.local_addr()?;
            sockets.push(socket);
        }
        let stopper = Stopper {
            stop: Arc::new(AtomicBool::new(false)),
            sockets: sockets.clone(),
        };
        // The threads must also stop with the runtime they serve: their handler usually holds
        // what holds this transport, so a forgotten close would keep both alive. A task that
        // never ends holds a guard; the runtime dropping its tasks drops it.
        let guard = StopOnDrop(stopper.clone());
        runtime.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
        for (i, socket) in sockets.iter().enumerate() {
            let (socket, stop, handler, runtime) = (
                socket.clone(),
                stopper.stop.clone(),
                handler.clone(),
                runtime.clone(),
            );
            std::thread::Builder::new()
                .name(format!("sip-udp-{}-{i}", local.port()))
                .spawn(move || {
                    let _in_runtime = runtime.enter();
                    recv_loop(&socket, local, &handler, &stop);
                })?;
        }
        Ok(UdpTransport {
            inner: Arc::new(Inner {
                socket: sockets[0].clone(),
                local,
                stopper,
            }),
        })
    }

    /// Stops the receive threads; sends still work.
    pub fn close(&self) {
        self.inner.stopper.stop();
    }

    /// The bound address (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Sends one datagram.
    pub async fn send(&self, bytes: &[u8], dest: SocketAddr) -> Result<(), TransportError> {
        self.try_send(bytes, dest)
    }

    /// Sends one datagram without waiting. A full socket buffer surfaces as an `Io` error of kind
    /// `WouldBlock` (treat as loss: UDP timers retransmit).
    pub fn try_send(&self, bytes: &[u8], dest: SocketAddr) -> Result<(), TransportError> {
        log_out(bytes, dest, TransportKind::Udp);
        send_nowait(&self.inner.socket, bytes, dest)?;
        Ok(())
    }
}

/// Stops every receive thread of a group at once.
#[derive(Clone, Debug)]
struct Stopper {
    stop: Arc<AtomicBool>,
    sockets: Vec<Arc<UdpSocket>>,
}

impl Stopper {
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for socket in &self.sockets {
            // Linux wakes a thread blocked in recvfrom on an unconnected UDP socket when its
            // receive side is shut down (the call itself reports ENOTCONN, which changes nothing).
            // A datagram to ourselves would reach only the one socket of the group our address
            // hashes to; elsewhere the read timeout bounds the wait.
            let _ = socket2::SockRef::from(&**socket).shutdown(std::net::Shutdown::Read);
        }
    }
}

/// Stops the receive threads when dropped (with the runtime's tasks).
struct StopOnDrop(Stopper);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn send_nowait(socket: &UdpSocket, bytes: &[u8], dest: SocketAddr) -> std::io::Result<usize> {
    socket2::SockRef::from(socket).send_to_with_flags(bytes, &dest.into(), libc::MSG_DONTWAIT)
}

fn recv_loop(socket: &UdpSocket, local: SocketAddr, handler: &Handler, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_535];
    while !stop.load(Ordering::Relaxed) {
        let (n, source) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP port unreachable surfaces here on some platforms; the socket is still fine.
                debug!(error = %e, "udp recv error");
                continue;
            }
        };
        if n == 0 {
            continue; // a shut-down socket, or an empty datagram (no SIP message)
        }
        let bytes = Bytes::copy_from_slice(&buf[..n]);
        // A bug tripped by one datagram must not stop the socket's only receiver: the datagram is
        // lost (a UDP peer retransmits), the thread goes on.
        let received = std::panic::catch_unwind(AssertUnwindSafe(|| {
            on_receive(bytes, source, local, TransportKind::Udp, handler)
        }));
        match received {
            Ok(Some((resp, _, dest))) => {
                log_out(&resp, dest, TransportKind::Udp);
                if let Err(e) = send_nowait(socket, &resp, dest) {
                    debug!(error = %e, %dest, "could not send 400");
                }
            }
            Ok(None) => {}
            Err(_) => error!(%source, "handling a datagram panicked; it is dropped"),
        }
    }
}
