//! A link emulator for loopback, in user space (this kernel has no `netem`).
//!
//! A TCP proxy: every connection through it shares one bottleneck per direction, and every byte
//! pays a one-way delay of RTT/2 each way. How:
//! - The bottleneck is a virtual clock of when the link is next free ([`Bottleneck`]). A piece of
//!   `n` bytes read from a socket leaves at `max(now, free_at) + n / rate`, whoever sent it, so
//!   all connections share the rate the way packets share a router's queue (no burst credit).
//! - A reader never runs more than [`AHEAD`] ahead of that clock: what the link cannot carry yet
//!   stays in the sender's socket, so senders feel the bottleneck as they would on a real link.
//! - Each piece is held in a timed queue until it has crossed the link plus RTT/2, then written;
//!   many pieces are in flight at once, so throughput is not bounded by the delay.
//! - A connection's first byte leaves no earlier than one RTT after it was accepted (the TCP
//!   handshake a real link would charge).
//! - Per connection and direction, at most `window` bytes may be unacknowledged (an ack comes
//!   back RTT/2 after delivery): a TCP receive window, which also bounds the proxy's memory.
//!
//! What it does not model: the proxy terminates TCP on loopback, so the sender's congestion
//! window (slow start, restart after idle) never sees the long RTT; losses are not emulated.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, Instant};

/// How far a reader may run ahead of the bottleneck's clock. Timers tick in milliseconds and this
/// machine's two cores are shared: a reader woken late must still find the link busy with what it
/// queued before, or the link idles and the rate falls short (2 ms lost a fifth of 1 Gbit/s under
/// load). Bytes still leave the link at its rate; only the sender's socket drains this much early.
const AHEAD: Duration = Duration::from_millis(25);

/// A link: rate per direction (None: unshaped) and round-trip time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    pub rate_bps: Option<f64>,
    pub rtt: Duration,
    /// Most unacknowledged bytes per connection and direction.
    pub window: usize,
}

impl LinkSpec {
    pub fn new(rate_mbit: Option<f64>, rtt_ms: f64, window: usize) -> Self {
        Self {
            rate_bps: rate_mbit.filter(|r| *r > 0.0).map(|r| r * 1e6),
            rtt: Duration::from_secs_f64(rtt_ms.max(0.0) / 1e3),
            window,
        }
    }

    fn one_way(&self) -> Duration {
        self.rtt / 2
    }

    /// Bytes read at once: about a millisecond or two of the link, so connections interleave
    /// finely on slow links and the proxy stays cheap on fast ones.
    fn read_size(&self) -> usize {
        self.rate_bps.map_or(64 * 1024, |bps| {
            let per_2ms = bps / 8.0 / 500.0;
            if per_2ms >= 65536.0 {
                65536
            } else if per_2ms <= 4096.0 {
                4096
            } else {
                // In (4096, 65536): exact in a usize.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = per_2ms as usize;
                n
            }
        })
    }
}

/// One direction of the bottleneck, shared by every connection.
#[derive(Debug)]
struct Bottleneck {
    bytes_per_sec: Option<f64>,
    free_at: Mutex<Instant>,
}

impl Bottleneck {
    fn new(rate_bps: Option<f64>) -> Self {
        Self {
            bytes_per_sec: rate_bps.map(|r| r / 8.0),
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// Puts `bytes` on the link no earlier than `not_before`; returns when the last one is across.
    fn transmit(&self, bytes: usize, not_before: Instant) -> Instant {
        let Some(rate) = self.bytes_per_sec else {
            return not_before;
        };
        let mut free_at = self.free_at.lock().unwrap_or_else(PoisonError::into_inner);
        let start = (*free_at).max(not_before);
        let done = start + Duration::from_secs_f64(bytes as f64 / rate);
        *free_at = done;
        done
    }
}

/// The emulated link: both directions' bottlenecks and the spec.
#[derive(Debug)]
pub struct Link {
    spec: LinkSpec,
    up: Arc<Bottleneck>,
    down: Arc<Bottleneck>,
}

/// What travels through a direction's timed queue.
#[derive(Debug)]
enum Piece {
    Data {
        deliver_at: Instant,
        bytes: Bytes,
        window: OwnedSemaphorePermit,
    },
    /// The sender closed its side; close ours once everything before it is delivered.
    End { deliver_at: Instant },
}

impl Link {
    pub fn new(spec: LinkSpec) -> Arc<Self> {
        Arc::new(Self {
            spec: LinkSpec {
                window: spec.window.max(spec.read_size()),
                ..spec
            },
            up: Arc::new(Bottleneck::new(spec.rate_bps)),
            down: Arc::new(Bottleneck::new(spec.rate_bps)),
        })
    }

    /// Accepts connections forever and carries each to `upstream` through the link.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        upstream: SocketAddr,
    ) -> io::Result<()> {
        loop {
            let (client, _) = listener.accept().await?;
            let link = self.clone();
            tokio::spawn(async move {
                // A connection that fails ends alone; the peers see it closed, as on a real link.
                let _ = link.carry(client, upstream).await;
            });
        }
    }

    async fn carry(&self, client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
        let accepted = Instant::now();
        let server = TcpStream::connect(upstream).await?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        // SYN and SYN-ACK: the client's first byte leaves one round trip after it connected.
        let up = tokio::spawn(direction(
            client_read,
            server_write,
            self.up.clone(),
            self.spec,
            accepted + self.spec.rtt,
        ));
        let down = direction(
            server_read,
            client_write,
            self.down.clone(),
            self.spec,
            accepted,
        )
        .await;
        let up = up.await.map_err(io::Error::other)?;
        up.and(down)
    }
}

/// Carries one direction of one connection: read, queue on the bottleneck, deliver after the delay.
async fn direction(
    mut from: OwnedReadHalf,
    to: OwnedWriteHalf,
    link: Arc<Bottleneck>,
    spec: LinkSpec,
    first_departure: Instant,
) -> io::Result<()> {
    let (queue, timed) = mpsc::unbounded_channel();
    let delivery = tokio::spawn(deliver(timed, to, spec.one_way()));
    let window = Arc::new(Semaphore::new(spec.window));
    let mut buf = vec![0u8; spec.read_size()];
    let mut not_before = first_departure;
    let read_result = loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let permits = u32::try_from(n).unwrap_or(u32::MAX);
        let Ok(permit) = window.clone().acquire_many_owned(permits).await else {
            break Ok(());
        };
        let across = link.transmit(n, Instant::now().max(not_before));
        not_before = across;
        let piece = Piece::Data {
            deliver_at: across + spec.one_way(),
            bytes: Bytes::copy_from_slice(&buf[..n]),
            window: permit,
        };
        if queue.send(piece).is_err() {
            // The receiving side is gone: nothing more can be delivered.
            break Ok(());
        }
        if across > Instant::now() + AHEAD {
            sleep_until(across - AHEAD).await;
        }
    };
    let _ = queue.send(Piece::End {
        deliver_at: Instant::now().max(not_before) + spec.one_way(),
    });
    drop(queue);
    let delivered = delivery.await.map_err(io::Error::other)?;
    read_result.and(delivered)
}

async fn deliver(
    mut timed: mpsc::UnboundedReceiver<Piece>,
    mut to: OwnedWriteHalf,
    one_way: Duration,
) -> io::Result<()> {
    while let Some(piece) = timed.recv().await {
        match piece {
            Piece::Data {
                deliver_at,
                bytes,
                window,
            } => {
                sleep_until(deliver_at).await;
                to.write_all(&bytes).await?;
                // The ack takes the other half of the round trip to free the sender's window.
                let acked = deliver_at + one_way;
                tokio::spawn(async move {
                    sleep_until(acked).await;
                    drop(window);
                });
            }
            Piece::End { deliver_at } => {
                sleep_until(deliver_at).await;
                break;
            }
        }
    }
    to.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bottleneck_serialises_senders() {
        let link = Bottleneck::new(Some(8e6)); // 1 MB/s
        let t0 = Instant::now() + Duration::from_secs(1);
        let a = link.transmit(1000, t0);
        let b = link.transmit(1000, t0);
        assert_eq!(a - t0, Duration::from_millis(1));
        assert_eq!(b - t0, Duration::from_millis(2));
        // An idle link gives no credit: the next piece starts when it is sent.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            link.transmit(500, later) - later,
            Duration::from_micros(500)
        );
    }

    #[test]
    fn read_size_follows_the_rate() {
        let w = 1 << 20;
        assert_eq!(LinkSpec::new(Some(10.0), 100.0, w).read_size(), 4096);
        assert_eq!(LinkSpec::new(Some(100.0), 50.0, w).read_size(), 25_000);
        assert_eq!(LinkSpec::new(Some(1000.0), 50.0, w).read_size(), 65536);
        assert_eq!(LinkSpec::new(None, 0.0, w).read_size(), 65536);
    }
}
