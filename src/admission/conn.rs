//! What one client can make a TLS listener hold: at most `--max-connections`
//! connections, a TLS handshake bounded by `--tls-handshake-timeout`, and a
//! connection on which the client sends nothing, or reads no answer, for
//! `--idle-timeout` closed.
//!
//! The cap is taken before `accept(2)`, not after: over it, new connections
//! wait in the kernel's backlog, which costs this process no memory and no
//! file descriptor, and are served in order as soon as one closes. Closing
//! them instead would turn a burst (a load generator falling behind, a
//! client reconnecting everything at once) into failed webhook calls, for
//! which the API server applies the failurePolicy; a connection the kernel
//! holds is served late rather than refused, within the API server's timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::{AddrListener, Address, Handle, Server};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::runtime::metrics::{ListenerLabel, ListenerReasonLabels, Metrics};

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The address type of a capped listener (axum-server picks the listener
/// and stream types from it).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Address for Peer {
    type Stream = Conn;
    type Listener = CappedListener;
}

/// A TLS server on `listener` under `limits`; `name` (`webhook`, `peer`)
/// labels its metrics.
pub fn server(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    limits: Limits,
    name: &'static str,
    metrics: &Metrics,
) -> io::Result<Server<Peer, RustlsAcceptor>> {
    listener.set_nonblocking(true)?;
    let watch = ListenerMetrics::new(metrics, name);
    let capped = CappedListener {
        inner: TcpListener::from_std(listener)?,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        idle_timeout: limits.idle_timeout,
        metrics: watch.clone(),
    };
    let acceptor = RustlsAcceptor::new(tls).handshake_timeout(limits.handshake_timeout);
    let mut server = Server::from_listener(capped).acceptor(acceptor);
    // A client that dribbles a request head keeps sending bytes, so the idle
    // timeout alone would let it hold its connection for ever.
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.idle_timeout);
    Ok(
        server.accept_error_handler(move |peer: Option<&Peer>, e: &io::Error| {
            watch.accept_error(peer.is_some(), e)
        }),
    )
}

/// A handle for [`server`]'s graceful shutdown.
pub fn handle() -> Handle<Peer> {
    Handle::new()
}

#[derive(Clone)]
struct ListenerMetrics {
    name: &'static str,
    open: Gauge,
    at_cap: Counter,
    metrics: Metrics,
}

impl ListenerMetrics {
    fn new(metrics: &Metrics, name: &'static str) -> Self {
        let label = ListenerLabel {
            listener: name.into(),
        };
        ListenerMetrics {
            name,
            open: metrics.connections_open.get_or_create(&label).clone(),
            at_cap: metrics.connections_at_cap.get_or_create(&label).clone(),
            metrics: metrics.clone(),
        }
    }

    fn dropped(&self, reason: &str) {
        self.metrics
            .connections_dropped
            .get_or_create(&ListenerReasonLabels {
                listener: self.name.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// `accepted`: the TCP connection was accepted and its TLS handshake
    /// failed; otherwise `accept(2)` itself failed (e.g. out of descriptors).
    fn accept_error(&self, accepted: bool, e: &io::Error) {
        if !accepted {
            tracing::warn!(listener = self.name, error = %e, "cannot accept a connection");
            return;
        }
        if e.get_ref().is_some_and(|inner| inner.is::<IdleTimeout>()) {
            // Counted where it happened.
            return;
        }
        let reason = if e.kind() == io::ErrorKind::TimedOut {
            "handshake-timeout"
        } else {
            "handshake-failed"
        };
        // Anyone who reaches the port can cause these: debug, not a warning
        // per attempt; the counter shows the rate.
        tracing::debug!(listener = self.name, reason, error = %e, "TLS handshake failed");
        self.dropped(reason);
    }
}

/// A TCP listener that accepts only while it holds fewer than its cap.
pub struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
    metrics: ListenerMetrics,
}

impl AddrListener<Conn, Peer> for CappedListener {
    fn bind_to(_: Peer) -> impl Future<Output = io::Result<Self>> + Send {
        // Only built from a bound listener (`server`), with its limits.
        std::future::ready(Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a capped listener is made from a bound socket",
        )))
    }

    async fn accept_stream(&self) -> io::Result<(Conn, Peer)> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.metrics.at_cap.inc();
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(io::Error::other)?
            }
        };
        let (tcp, addr) = self.inner.accept().await?;
        // An answer goes out in more than one write (TLS records, hyper's
        // head and body): with Nagle's algorithm the last waits for the
        // client's delayed ACK, up to 40 ms on Linux.
        if let Err(e) = tcp.set_nodelay(true) {
            // The connection works without it, only slower.
            tracing::debug!(listener = self.metrics.name, error = %e, "cannot set TCP_NODELAY");
        }
        Ok((
            Conn::new(tcp, permit, self.idle_timeout, self.metrics.clone()),
            Peer(addr),
        ))
    }

    fn get_local_addr(&self) -> io::Result<Peer> {
        self.inner.local_addr().map(Peer)
    }
}

/// The error a read or write gets once the client has been silent, or has
/// read nothing, for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client sent or read nothing for the idle timeout")]
pub struct IdleTimeout;

/// An accepted connection: holds its listener's permit until dropped, and
/// fails once the client has sent nothing for the idle timeout (during the
/// handshake, before a first request, between requests) or has left a
/// write blocked that long (it reads no answer: pipelined requests whose
/// answers fill the socket buffers would otherwise hold the connection with
/// no read pending, and so no timer).
pub struct Conn {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle_timeout: Duration,
    /// When the client last sent a byte. Each timer is moved to its deadline
    /// only when it fires, not on every read or write.
    last_read: Instant,
    read_timer: Pin<Box<Sleep>>,
    /// Since when a write has made no progress (None: not blocked).
    write_blocked: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    timed_out: bool,
    metrics: ListenerMetrics,
}

impl Conn {
    fn new(
        tcp: TcpStream,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
        metrics: ListenerMetrics,
    ) -> Self {
        metrics.open.inc();
        let now = Instant::now();
        Conn {
            tcp,
            _permit: permit,
            idle_timeout,
            last_read: now,
            read_timer: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            write_blocked: None,
            write_timer: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            timed_out: false,
            metrics,
        }
    }

    /// Ready once `since + idle_timeout` has passed; `since()` is read again
    /// each time the timer fires, as it may have moved meanwhile.
    fn poll_expired(
        timer: &mut Pin<Box<Sleep>>,
        cx: &mut Context<'_>,
        idle_timeout: Duration,
        since: impl Fn() -> Instant,
    ) -> Poll<()> {
        loop {
            ready!(timer.as_mut().poll(cx));
            let deadline = since() + idle_timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
    }

    /// The error of every read and write once timed out (counted once).
    fn time_out(&mut self) -> io::Error {
        if !self.timed_out {
            self.timed_out = true;
            self.metrics.dropped("idle-timeout");
        }
        io::Error::new(io::ErrorKind::TimedOut, IdleTimeout)
    }

    /// A write's result, with the write-stall timer armed while it is
    /// pending.
    fn on_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.write_blocked = None;
            return result;
        }
        let since = match self.write_blocked {
            Some(since) => since,
            None => {
                let now = Instant::now();
                self.write_blocked = Some(now);
                self.write_timer.as_mut().reset(now + self.idle_timeout);
                now
            }
        };
        ready!(Self::poll_expired(
            &mut self.write_timer,
            cx,
            self.idle_timeout,
            || since
        ));
        Poll::Ready(Err(self.time_out()))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(this.time_out()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last_read = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let last_read = this.last_read;
                ready!(Self::poll_expired(
                    &mut this.read_timer,
                    cx,
                    this.idle_timeout,
                    || last_read
                ));
                Poll::Ready(Err(this.time_out()))
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(this.time_out()));
        }
        let result = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.on_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(this.time_out()));
        }
        let result = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.on_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nagle's algorithm held the last write of an answer until the
    /// client's delayed ACK: wrk saw 31–43 ms for one answer in 10,000 at
    /// 100k bindings, where the decision took under 1 ms.
    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let capped = CappedListener {
            inner: listener,
            permits: Arc::new(Semaphore::new(1)),
            idle_timeout: Duration::from_secs(5),
            metrics: ListenerMetrics::new(&Metrics::new(), "webhook"),
        };
        let _client = TcpStream::connect(addr).await.unwrap();
        let (conn, _) = capped.accept_stream().await.unwrap();
        assert!(conn.tcp.nodelay().unwrap());
    }
}
