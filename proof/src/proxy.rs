//! A fault-injecting HTTP/1.1 proxy for loopback tests, in the spirit of toxiproxy but aware of
//! request boundaries, so that a fault hits one request at a known point of its life:
//!
//! - [`Fault::DropMidBody`]: part of the body goes to the server, then both connections close
//!   (the server must record nothing).
//! - [`Fault::ResetBeforeAnswer`]: the whole request goes to the server, then the client's
//!   connection is reset before any answer (the server may or may not have recorded the range).
//! - [`Fault::LoseAnswer`]: the server's whole answer is read and thrown away, then the client is
//!   reset (the range *was* recorded; a client that asks for the status need not resend it).
//! - [`Fault::Latency`]: the request is held back before it is forwarded.
//! - [`Fault::Status`]: 502 or 503 answered by the proxy itself; the server never sees it.
//!
//! Each connection draws its faults from its own RNG, seeded from the plan's seed and the
//! connection's number, so a run is repeatable up to the order in which connections arrive.

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::wire::{copy_chunked, copy_exact, read_head, Head};

/// Which requests may be hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Requests to the upload URL with a body (chunks).
    Chunks,
    /// Every request to the upload URL (opens, status queries and aborts too).
    UploadApi,
}

/// How often each fault strikes a request in scope (shares between 0 and 1, summing to at most 1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaultPlan {
    pub seed: u64,
    pub scope: Scope,
    pub drop_mid_body: f64,
    pub reset_before_answer: f64,
    pub lose_answer: f64,
    /// Answered 502 or 503 (half each) by the proxy.
    pub bad_gateway: f64,
    pub latency: f64,
    /// The most latency added to a delayed request, in milliseconds.
    pub max_latency_ms: u64,
}

impl FaultPlan {
    /// A plan that injects nothing.
    pub fn none(seed: u64) -> Self {
        Self {
            seed,
            scope: Scope::Chunks,
            drop_mid_body: 0.0,
            reset_before_answer: 0.0,
            lose_answer: 0.0,
            bad_gateway: 0.0,
            latency: 0.0,
            max_latency_ms: 0,
        }
    }

    /// Every fault, each for about `share` of the requests in scope.
    pub fn every_fault(seed: u64, share: f64) -> Self {
        Self {
            seed,
            scope: Scope::Chunks,
            drop_mid_body: share,
            reset_before_answer: share,
            lose_answer: share,
            bad_gateway: share,
            latency: share,
            max_latency_ms: 200,
        }
    }

    fn draw(&self, rng: &mut fastrand::Rng) -> Fault {
        let mut x = rng.f64();
        for (share, fault) in [
            (self.drop_mid_body, Fault::DropMidBody),
            (self.reset_before_answer, Fault::ResetBeforeAnswer),
            (self.lose_answer, Fault::LoseAnswer),
            (
                self.bad_gateway,
                Fault::Status(if rng.bool() { 502 } else { 503 }),
            ),
            (
                self.latency,
                Fault::Latency(rng.u64(1..=self.max_latency_ms.max(1))),
            ),
        ] {
            if x < share {
                return fault;
            }
            x -= share;
        }
        Fault::None
    }
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Latency(u64),
    DropMidBody,
    ResetBeforeAnswer,
    LoseAnswer,
    Status(u16),
}

/// Counters of what the proxy saw and did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// Body bytes of upload requests received from clients (chunks; all attempts).
    pub chunk_body_bytes: AtomicU64,
    /// Declared lengths of chunks whose request a fault made useless (dropped mid-body, reset
    /// before the answer, answered 502/503): bytes a client is forced to send again.
    pub forced_bytes: AtomicU64,
    /// Declared lengths of chunks whose answer was lost after the server recorded them.
    pub lost_answer_bytes: AtomicU64,
    pub drop_mid_body: AtomicU64,
    pub reset_before_answer: AtomicU64,
    pub lose_answer: AtomicU64,
    pub bad_gateway: AtomicU64,
    pub latency: AtomicU64,
}

/// A snapshot of [`ProxyStats`], for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ProxyFigures {
    pub connections: u64,
    pub requests: u64,
    pub chunk_body_bytes: u64,
    pub forced_bytes: u64,
    pub lost_answer_bytes: u64,
    pub drop_mid_body: u64,
    pub reset_before_answer: u64,
    pub lose_answer: u64,
    pub bad_gateway: u64,
    pub latency: u64,
}

impl ProxyStats {
    pub fn figures(&self) -> ProxyFigures {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyFigures {
            connections: get(&self.connections),
            requests: get(&self.requests),
            chunk_body_bytes: get(&self.chunk_body_bytes),
            forced_bytes: get(&self.forced_bytes),
            lost_answer_bytes: get(&self.lost_answer_bytes),
            drop_mid_body: get(&self.drop_mid_body),
            reset_before_answer: get(&self.reset_before_answer),
            lose_answer: get(&self.lose_answer),
            bad_gateway: get(&self.bad_gateway),
            latency: get(&self.latency),
        }
    }

    fn count(&self, fault: Fault, declared: u64) {
        let (counter, forced) = match fault {
            Fault::None => return,
            Fault::Latency(_) => (&self.latency, false),
            Fault::DropMidBody => (&self.drop_mid_body, true),
            Fault::ResetBeforeAnswer => (&self.reset_before_answer, true),
            Fault::LoseAnswer => (&self.lose_answer, false),
            Fault::Status(_) => (&self.bad_gateway, true),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if forced {
            self.forced_bytes.fetch_add(declared, Ordering::Relaxed);
        } else if fault == Fault::LoseAnswer {
            self.lost_answer_bytes
                .fetch_add(declared, Ordering::Relaxed);
        }
    }
}

/// A running proxy; it stops accepting when dropped (connections in progress run out).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr, plan: FaultPlan) -> io::Result<Self> {
        Self::bind(
            "127.0.0.1:0".parse().map_err(io::Error::other)?,
            upstream,
            plan,
        )
    }

    /// Listens on `listen` and forwards to `upstream`.
    pub fn bind(listen: SocketAddr, upstream: SocketAddr, plan: FaultPlan) -> io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ProxyStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        std::thread::Builder::new()
            .name("faultproxy-accept".into())
            .spawn(move || accept(&listener, upstream, plan, &s, &st))?;
        Ok(Self { addr, stats, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept(
    listener: &TcpListener,
    upstream: SocketAddr,
    plan: FaultPlan,
    stats: &Arc<ProxyStats>,
    stop: &AtomicBool,
) {
    for (n, client) in listener.incoming().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = client else { continue };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        let seed = plan
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(n as u64);
        let spawned = std::thread::Builder::new()
            .name("faultproxy-conn".into())
            .spawn(move || {
                let mut conn = Connection {
                    plan,
                    stats: &stats,
                    rng: fastrand::Rng::with_seed(seed),
                    upstream_addr: upstream,
                    upstream: None,
                };
                // A connection ends on any error of either side: nothing to report.
                let _ = conn.serve(client);
            });
        if spawned.is_err() {
            continue;
        }
    }
}

struct Connection<'a> {
    plan: FaultPlan,
    stats: &'a ProxyStats,
    rng: fastrand::Rng,
    upstream_addr: SocketAddr,
    upstream: Option<(TcpStream, BufReader<TcpStream>)>,
}

impl Connection<'_> {
    fn serve(&mut self, client: TcpStream) -> io::Result<()> {
        client.set_nodelay(true)?;
        let mut from_client = BufReader::new(client.try_clone()?);
        let mut to_client = client;
        while let Some(head) = read_head(&mut from_client)? {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let (method, target) = head.request_line();
            let upload = target.contains("/upload-chunk");
            let declared = head.content_length().unwrap_or(0);
            let in_scope = upload
                && match self.plan.scope {
                    Scope::Chunks => declared > 0,
                    Scope::UploadApi => true,
                };
            if head.is_chunked() || head.header("expect").is_some() {
                // Not framed by a length: relayed as a plain stream, without faults.
                return self.tunnel(&head, from_client, to_client);
            }
            let fault = if in_scope {
                self.plan.draw(&mut self.rng)
            } else {
                Fault::None
            };
            self.stats.count(fault, declared);
            let head_only = method.eq_ignore_ascii_case("HEAD");
            let counted = if upload { Some(self.stats) } else { None };
            match fault {
                Fault::Status(status) => {
                    let got = copy_exact(&mut from_client, &mut io::sink(), declared)?;
                    count_body(counted, got);
                    return answer_status(&mut to_client, status);
                }
                Fault::DropMidBody => {
                    let part = if declared > 1 {
                        self.rng.u64(0..declared)
                    } else {
                        0
                    };
                    let up = self.upstream()?;
                    up.write_all(&head.raw)?;
                    let got = copy_exact(&mut from_client, up, part)?;
                    count_body(counted, got);
                    up.flush()?;
                    // Closing the write side ends the body early: the server sees it cut short.
                    let _ = up.shutdown(Shutdown::Both);
                    reset(&to_client);
                    return Ok(());
                }
                Fault::Latency(ms) => std::thread::sleep(Duration::from_millis(ms)),
                Fault::None | Fault::ResetBeforeAnswer | Fault::LoseAnswer => {}
            }
            let got = {
                let up = self.upstream()?;
                up.write_all(&head.raw)?;
                let got = copy_exact(&mut from_client, up, declared)?;
                up.flush()?;
                got
            };
            count_body(counted, got);
            if got < declared {
                // The client gave up mid-body: pass the cut on.
                self.close_upstream();
                return Ok(());
            }
            match fault {
                Fault::ResetBeforeAnswer => {
                    reset(&to_client);
                    self.close_upstream();
                    return Ok(());
                }
                Fault::LoseAnswer => {
                    self.relay_answer(&mut io::sink(), head_only)?;
                    reset(&to_client);
                    return Ok(());
                }
                _ => {}
            }
            if !self.relay_answer(&mut to_client, head_only)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn upstream(&mut self) -> io::Result<&mut TcpStream> {
        if self.upstream.is_none() {
            let stream = TcpStream::connect(self.upstream_addr)?;
            stream.set_nodelay(true)?;
            let reader = BufReader::new(stream.try_clone()?);
            self.upstream = Some((stream, reader));
        }
        match &mut self.upstream {
            Some((stream, _)) => Ok(stream),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn close_upstream(&mut self) {
        if let Some((stream, _)) = self.upstream.take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Copies the server's answer (interim 1xx heads included) to `to`. False when the
    /// connection cannot carry another request afterwards.
    fn relay_answer(&mut self, to: &mut impl Write, head_only: bool) -> io::Result<bool> {
        let Some((_, from)) = &mut self.upstream else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        loop {
            let head = read_head(from)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            to.write_all(&head.raw)?;
            let status = head.status();
            if (100..200).contains(&status) {
                continue;
            }
            let keep = !head.closes();
            if head_only || status == 204 || status == 304 {
            } else if let Some(len) = head.content_length() {
                if copy_exact(from, to, len)? < len {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            } else if head.is_chunked() {
                copy_chunked(from, to)?;
            } else {
                io::copy(from, to)?;
                to.flush()?;
                return Ok(false);
            }
            to.flush()?;
            // A fresh upstream connection for every request: the server closing an idle one
            // must never look like an injected fault to the client.
            self.close_upstream();
            return Ok(keep);
        }
    }

    /// Forwards the rest of the connection both ways as it is.
    fn tunnel(
        &mut self,
        head: &Head,
        mut from_client: BufReader<TcpStream>,
        mut to_client: TcpStream,
    ) -> io::Result<()> {
        let up = self.upstream()?.try_clone()?;
        let mut up_writer = up.try_clone()?;
        up_writer.write_all(&head.raw)?;
        let Some((_, mut from_up)) = self.upstream.take() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let upward = std::thread::spawn(move || {
            let _ = io::copy(&mut from_client, &mut up_writer);
            let _ = up_writer.shutdown(Shutdown::Write);
        });
        let _ = io::copy(&mut from_up, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
        let _ = up.shutdown(Shutdown::Both);
        let _ = upward.join();
        Ok(())
    }
}

fn count_body(stats: Option<&ProxyStats>, bytes: u64) {
    if let Some(stats) = stats {
        stats.chunk_body_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// What a gateway in trouble answers: 503 with the protocol's JSON error, 502 with a page.
fn answer_status(to: &mut TcpStream, status: u16) -> io::Result<()> {
    let (reason, kind, body) = if status == 503 {
        (
            "Service Unavailable",
            "application/json",
            r#"{"error":"The service is unavailable (fault proxy).","code":"unavailable"}"#,
        )
    } else {
        (
            "Bad Gateway",
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
    };
    write!(
        to,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    to.flush()?;
    let _ = to.shutdown(Shutdown::Both);
    Ok(())
}

/// Closes with a TCP reset (SO_LINGER 0) rather than an orderly FIN: the client sees the
/// connection fail, not an empty answer.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_shares() {
        let plan = FaultPlan::every_fault(3, 0.1);
        let mut rng = fastrand::Rng::with_seed(3);
        let draws: Vec<Fault> = (0..10_000).map(|_| plan.draw(&mut rng)).collect();
        let share = |f: fn(&Fault) -> bool| draws.iter().filter(|d| f(d)).count();
        let none = share(|d| *d == Fault::None);
        assert!((4500..5500).contains(&none), "{none}");
        let lost = share(|d| *d == Fault::LoseAnswer);
        assert!((800..1200).contains(&lost), "{lost}");
        assert!(share(|d| matches!(d, Fault::Status(502))) > 300);
        assert!(share(|d| matches!(d, Fault::Status(503))) > 300);
        assert_eq!(
            FaultPlan::none(1).draw(&mut rng),
            Fault::None,
            "an empty plan injects nothing"
        );
    }
}
