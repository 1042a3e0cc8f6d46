//! The link emulator's self-check: one bulk transfer through it must reach the set rate, and a
//! small request on an open connection must pay the set round trip.
//!
//! Both ends run in this process: a sink behind the link answers `p` with `p` (a ping), and
//! `b` + 8-byte length + that many bytes with `k` once it has them all.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::link::{Link, LinkSpec};
use crate::Result;

/// Allowed error on the rate (the issue asks for ±5 %).
const RATE_TOLERANCE: f64 = 0.05;
/// Connections of the parallel bulk transfer (as many as Chromium opens to one host).
const PARALLEL: u64 = 6;

#[derive(Debug, Serialize)]
pub struct LinkCheck {
    pub profile: String,
    pub rate_mbit: Option<f64>,
    pub rtt_ms: f64,
    /// Bytes of the bulk transfer.
    pub bulk_bytes: u64,
    pub measured_mbit: Option<f64>,
    /// The same bytes over [`PARALLEL`] connections at once: the shared bottleneck's total.
    pub measured_parallel_mbit: Option<f64>,
    /// Median of the pings on an open connection.
    pub measured_rtt_ms: f64,
    /// The first request of a new connection (handshake plus one round trip: about 2 RTT).
    pub first_request_ms: f64,
    pub ok: bool,
}

/// Checks one link for about `seconds` of bulk transfer.
pub async fn check(profile: &str, spec: LinkSpec, seconds: f64) -> Result<LinkCheck> {
    let sink = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink.local_addr()?;
    let sink_task = tokio::spawn(run_sink(sink));
    let proxy = TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = proxy.local_addr()?;
    let proxy_task = tokio::spawn(Link::new(spec).serve(proxy, sink_addr));
    let outcome = measure(profile, spec, seconds, proxy_addr).await;
    sink_task.abort();
    proxy_task.abort();
    outcome
}

async fn measure(
    profile: &str,
    spec: LinkSpec,
    seconds: f64,
    proxy_addr: SocketAddr,
) -> Result<LinkCheck> {
    let started = Instant::now();
    let mut conn = TcpStream::connect(proxy_addr).await?;
    conn.set_nodelay(true)?;
    ping(&mut conn).await?;
    let first_request = started.elapsed();
    let mut pings = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        ping(&mut conn).await?;
        pings.push(t.elapsed());
    }
    pings.sort();
    let rtt = pings[pings.len() / 2];

    let rtt_set = spec.rtt.as_secs_f64();
    let rtt_ok =
        rtt.as_secs_f64() >= rtt_set && rtt.as_secs_f64() <= rtt_set + (rtt_set * 0.1).max(0.003);
    let (bulk_bytes, measured, parallel) = match spec.rate_bps {
        Some(bps) => {
            // Whole 64 KiB pieces, at least 1 MiB, a multiple of the parallel connections.
            let pieces = (bps / 8.0 * seconds / 65536.0).ceil().max(16.0);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let pieces = (pieces as u64).div_ceil(PARALLEL) * PARALLEL;
            let bytes = pieces * 65536;
            // The last byte crosses the link and RTT/2, and the answer comes back in RTT/2.
            let rate = |elapsed: Duration| bytes as f64 * 8.0 / (elapsed - spec.rtt).as_secs_f64();
            let one = rate(bulk(&mut conn, bytes).await?);
            let many = rate(bulk_parallel(proxy_addr, bytes).await?);
            (bytes, Some(one), Some(many))
        }
        None => (0, None, None),
    };
    let within = |got: Option<f64>| match (spec.rate_bps, got) {
        (Some(set), Some(got)) => (got / set - 1.0).abs() <= RATE_TOLERANCE,
        _ => true,
    };
    let rate_ok = within(measured) && within(parallel);
    Ok(LinkCheck {
        profile: profile.to_owned(),
        rate_mbit: spec.rate_bps.map(|r| r / 1e6),
        rtt_ms: rtt_set * 1e3,
        bulk_bytes,
        measured_mbit: measured.map(|r| r / 1e6),
        measured_parallel_mbit: parallel.map(|r| r / 1e6),
        measured_rtt_ms: rtt.as_secs_f64() * 1e3,
        first_request_ms: first_request.as_secs_f64() * 1e3,
        ok: rate_ok && rtt_ok,
    })
}

async fn ping(conn: &mut TcpStream) -> Result<()> {
    conn.write_all(b"p").await?;
    let mut answer = [0u8; 1];
    conn.read_exact(&mut answer).await?;
    Ok(())
}

/// Sends `bytes` and waits for the sink to say it has them all; returns the time taken.
async fn bulk(conn: &mut TcpStream, bytes: u64) -> Result<Duration> {
    let piece = vec![0x5au8; 65536];
    let t = Instant::now();
    conn.write_all(b"b").await?;
    conn.write_all(&bytes.to_be_bytes()).await?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(65536)).unwrap_or(65536);
        conn.write_all(&piece[..n]).await?;
        left -= n as u64;
    }
    let mut answer = [0u8; 1];
    conn.read_exact(&mut answer).await?;
    Ok(t.elapsed())
}

/// `bytes` split over [`PARALLEL`] new connections (each warmed by a ping first); the time from
/// the first byte to the last answer.
async fn bulk_parallel(proxy: SocketAddr, bytes: u64) -> Result<Duration> {
    let mut conns = Vec::new();
    for _ in 0..PARALLEL {
        let mut c = TcpStream::connect(proxy).await?;
        c.set_nodelay(true)?;
        ping(&mut c).await?;
        conns.push(c);
    }
    let t = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| tokio::spawn(async move { bulk(&mut c, bytes / PARALLEL).await }))
        .collect();
    for task in tasks {
        task.await.map_err(std::io::Error::other)??;
    }
    Ok(t.elapsed())
}

async fn run_sink(listener: TcpListener) -> Result<()> {
    loop {
        let (mut conn, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = sink_connection(&mut conn).await;
        });
    }
}

async fn sink_connection(conn: &mut TcpStream) -> Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = vec![0u8; 65536];
    loop {
        let mut op = [0u8; 1];
        if conn.read(&mut op).await? == 0 {
            return Ok(());
        }
        match op[0] {
            b'p' => conn.write_all(b"p").await?,
            b'b' => {
                let mut len = [0u8; 8];
                conn.read_exact(&mut len).await?;
                let mut left = u64::from_be_bytes(len);
                while left > 0 {
                    let want = usize::try_from(left.min(65536)).unwrap_or(65536);
                    let n = conn.read(&mut buf[..want]).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    left -= n as u64;
                }
                conn.write_all(b"k").await?;
            }
            _ => return Ok(()),
        }
    }
}
