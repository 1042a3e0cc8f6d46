//! The emulated path's self-check, run at every benchmark run: `path-sink` in the server namespace,
//! `path-probe` in the client namespace (with the CUBIC preload, as Chromium runs).
//!
//! - RTT and loss: a ping-like UDP probe (numbered datagrams echoed by the sink); the round-trip
//!   loss `r` of datagrams gives the loss per direction as `1 - sqrt(1 - r)`.
//! - Rate: bulk TCP over one connection and over six at once; the sink measures each connection's
//!   receive rate over the last 60 % of its transfer (after slow start) and sends it back.
//! - The congestion control the probe's sockets actually use (read back from the kernel).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Connections of the parallel bulk transfer (as many as Chromium opens to one host).
const PARALLEL: usize = 6;
const PING_BYTES: usize = 64;

/// Runs the sink on `bind` (TCP and UDP on the same port) until killed.
pub fn sink(bind: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(bind)?;
    let udp = UdpSocket::bind(bind)?;
    writeln!(io::stdout().lock(), "listening on {bind}")?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    for conn in listener.incoming() {
        let conn = conn?;
        std::thread::spawn(move || {
            let _ = receive_bulk(conn);
        });
    }
    Ok(())
}

/// Reads until the sender closes, then answers with the receive rate (bits per second, f64) over
/// the last 60 % of the transfer.
fn receive_bulk(mut conn: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut marks: Vec<(Instant, u64)> = Vec::with_capacity(1 << 16);
    let mut total = 0u64;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        marks.push((Instant::now(), total));
    }
    let rate = match (marks.first(), marks.last()) {
        (Some(&(t0, _)), Some(&(t1, end))) if t1 > t0 => {
            let from = t0 + (t1 - t0).mul_f64(0.4);
            let (tm, at) = marks
                .iter()
                .copied()
                .find(|(t, _)| *t >= from)
                .unwrap_or((t0, 0));
            let secs = (t1 - tm).as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let bits = (end - at) as f64 * 8.0;
            if secs > 0.0 {
                bits / secs
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    conn.write_all(&rate.to_be_bytes())?;
    Ok(())
}

/// The settings the check compares with.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Expected {
    pub rate_mbit: Option<f64>,
    pub rtt_ms: f64,
    pub jitter_ms: f64,
    pub loss_pct: f64,
}

#[derive(Debug, Serialize)]
pub struct PathCheck {
    pub profile: String,
    pub set: Expected,
    /// Congestion control of the probe's TCP sockets as the kernel reports it.
    pub congestion_control: String,
    pub pings_sent: u64,
    pub pings_lost: u64,
    pub rtt_ms_median: f64,
    pub rtt_ms_p95: f64,
    /// Loss per direction estimated from the round-trip loss of the pings (percent).
    pub loss_pct_measured: f64,
    pub one_connection_mbit: f64,
    pub six_connections_mbit: f64,
    pub checks: Vec<String>,
    pub ok: bool,
}

/// Runs the whole check against a sink at `target`.
pub fn check(
    profile: &str,
    target: SocketAddr,
    set: Expected,
    seconds: f64,
) -> io::Result<PathCheck> {
    warm_up(target, set)?;
    eprintln!("[path-probe] pings");
    let pings = ping(target, set)?;
    eprintln!("[path-probe] congestion control");
    let congestion_control = {
        let s = TcpStream::connect(target)?;
        let cc = rustix::net::sockopt::tcp_congestion(&s)?;
        s.shutdown(Shutdown::Both)?;
        cc
    };
    eprintln!("[path-probe] one connection");
    let one = bulk(target, 1, seconds)?;
    eprintln!("[path-probe] six connections");
    let six = bulk(target, PARALLEL, seconds)?;
    eprintln!("[path-probe] done");
    let mut result = PathCheck {
        profile: profile.to_owned(),
        set,
        congestion_control,
        pings_sent: pings.sent,
        pings_lost: pings.lost,
        rtt_ms_median: pings.median_ms,
        rtt_ms_p95: pings.p95_ms,
        loss_pct_measured: pings.loss_per_direction * 100.0,
        one_connection_mbit: one / 1e6,
        six_connections_mbit: six / 1e6,
        checks: Vec::new(),
        ok: true,
    };
    judge(&mut result, set);
    Ok(result)
}

/// Fills `checks` (what failed, in words) and `ok`.
fn judge(r: &mut PathCheck, set: Expected) {
    let mut failed = Vec::new();
    if r.congestion_control != "cubic" {
        failed.push(format!(
            "sockets send with {} (want cubic)",
            r.congestion_control
        ));
    }
    // Order-preserving jitter on a dense stream delays packets towards its maximum, each way.
    let rtt_max = set.rtt_ms + 2.0 * set.jitter_ms + (set.rtt_ms * 0.1).max(3.0);
    if r.rtt_ms_median < set.rtt_ms || r.rtt_ms_median > rtt_max {
        failed.push(format!(
            "RTT {:.1} ms outside {:.1}..{:.1} ms",
            r.rtt_ms_median, set.rtt_ms, rtt_max
        ));
    }
    // Round-trip losses are binomial: allow four standard deviations (and two pings).
    let p = set.loss_pct / 100.0;
    #[allow(clippy::cast_precision_loss)]
    let expected = r.pings_sent as f64 * (1.0 - (1.0 - p) * (1.0 - p));
    #[allow(clippy::cast_precision_loss)]
    let lost = r.pings_lost as f64;
    if (lost - expected).abs() > 4.0 * expected.sqrt() + 2.0 {
        failed.push(format!(
            "{} of {} pings lost, expected about {expected:.0}",
            r.pings_lost, r.pings_sent
        ));
    }
    if let Some(rate) = set.rate_mbit {
        for (what, got) in [
            ("one connection", r.one_connection_mbit),
            ("six connections", r.six_connections_mbit),
        ] {
            if got > rate * 1.05 {
                failed.push(format!(
                    "{what}: {got:.1} Mbit/s over the set {rate} Mbit/s"
                ));
            }
        }
        // Without loss six CUBIC connections fill the bottleneck.
        if set.loss_pct == 0.0 && r.six_connections_mbit < rate * 0.9 {
            failed.push(format!(
                "six connections: {:.1} Mbit/s, under 90 % of {rate} Mbit/s",
                r.six_connections_mbit
            ));
        }
    }
    r.ok = failed.is_empty();
    r.checks = failed;
}

#[derive(Debug)]
struct Pings {
    sent: u64,
    lost: u64,
    median_ms: f64,
    p95_ms: f64,
    loss_per_direction: f64,
}

/// Waits (at most 10 s) until a datagram makes the round trip: the far end was configured a moment
/// ago, and the first packets of a fresh namespace may meet a device that is not up yet.
fn warm_up(target: SocketAddr, set: Expected) -> io::Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(target)?;
    let wait = Duration::from_secs_f64((set.rtt_ms * 2.0 + set.jitter_ms * 2.0 + 200.0) / 1000.0);
    socket.set_read_timeout(Some(wait))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // A marker no ping uses (pings start with their sequence number, below 2^31).
        socket.send(&[0xff; 12])?;
        if socket.recv(&mut buf).is_ok() {
            // Let the rest of that round trip's packets drain before measuring.
            std::thread::sleep(wait);
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "no datagram made the round trip in 10 s",
    ))
}

/// Numbered datagrams at a pace that uses at most a fifth of the link, enough of them that a
/// loss setting shows (about 20 expected losses, 2 000 to 20 000 pings).
fn ping(target: SocketAddr, set: Expected) -> io::Result<Pings> {
    let p = set.loss_pct / 100.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let count = if p > 0.0 {
        (20.0 / (2.0 * p)).clamp(2_000.0, 20_000.0) as u32
    } else {
        2_000
    };
    let wire_bits = (PING_BYTES + 28) as f64 * 8.0;
    let gap = set.rate_mbit.map_or(Duration::from_micros(100), |m| {
        Duration::from_secs_f64(wire_bits / (m * 1e6 * 0.2)).max(Duration::from_micros(100))
    });
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let started = Instant::now();
    let rtts = Arc::new(Mutex::new(vec![None::<f64>; count as usize]));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let socket = socket.try_clone()?;
        let rtts = Arc::clone(&rtts);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                let mut sent_us = [0u8; 8];
                sent_us.copy_from_slice(&buf[4..12]);
                #[allow(clippy::cast_precision_loss)]
                let sent = u64::from_be_bytes(sent_us) as f64 / 1000.0;
                let now = started.elapsed().as_secs_f64() * 1000.0;
                if let Some(slot) = lock(&rtts).get_mut(seq) {
                    *slot = Some(now - sent);
                }
            }
        })
    };
    let mut payload = [0u8; PING_BYTES];
    for seq in 0..count {
        let due = started + gap * seq;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        #[allow(clippy::cast_possible_truncation)]
        let us = started.elapsed().as_micros() as u64;
        payload[4..12].copy_from_slice(&us.to_be_bytes());
        socket.send(&payload)?;
    }
    // The last replies: one RTT, the jitter and a margin.
    let linger = Duration::from_secs_f64((set.rtt_ms * 2.0 + set.jitter_ms * 2.0 + 300.0) / 1000.0);
    std::thread::sleep(linger);
    done.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    let rtts = lock(&rtts);
    let mut got: Vec<f64> = rtts.iter().flatten().copied().collect();
    got.sort_by(f64::total_cmp);
    let lost = u64::from(count) - got.len() as u64;
    let pick = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((got.len().saturating_sub(1)) as f64 * q).round() as usize;
        got.get(i).copied().unwrap_or(f64::NAN)
    };
    #[allow(clippy::cast_precision_loss)]
    let round_trip_loss = lost as f64 / f64::from(count);
    Ok(Pings {
        sent: u64::from(count),
        lost,
        median_ms: pick(0.5),
        p95_ms: pick(0.95),
        loss_per_direction: 1.0 - (1.0 - round_trip_loss).max(0.0).sqrt(),
    })
}

/// `connections` bulk senders for `seconds`; the sum of the sink's steady rates (bit/s).
fn bulk(target: SocketAddr, connections: usize, seconds: f64) -> io::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let senders: Vec<_> = (0..connections)
        .map(|_| {
            std::thread::spawn(move || -> io::Result<f64> {
                let mut conn = TcpStream::connect(target)?;
                let block = vec![0x5au8; 256 * 1024];
                while Instant::now() < deadline {
                    conn.write_all(&block)?;
                }
                conn.shutdown(Shutdown::Write)?;
                let mut answer = [0u8; 8];
                conn.read_exact(&mut answer)?;
                Ok(f64::from_be_bytes(answer))
            })
        })
        .collect();
    let mut total = 0.0;
    for s in senders {
        total += s
            .join()
            .map_err(|_| io::Error::other("a bulk sender panicked"))??;
    }
    Ok(total)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
