//! The emulated path between the client and the server namespaces (`droppr-bench path`): a
//! user-space forwarder between a TUN device in each namespace that applies, per direction, a
//! bottleneck rate with a drop-tail queue, a one-way delay, jitter and random loss. Both kernels'
//! TCP stacks see the round trip, the queue and the losses (as with Mahimahi's `mm-delay` and
//! `mm-loss`; this kernel has no `netem`).
//!
//! One queue per direction: a reader thread waits for its device with `poll`, reads every packet
//! that is ready (non-blocking, up to [`BATCH`] per wake-up), decides each packet's fate and due
//! time, and appends the batch to the queue under one lock; a writer thread sleeps until the head
//! of the queue is due and writes every due packet to the other device. Packets are never
//! reordered: jitter only ever delays a packet to no earlier than the one before it.

pub mod probe;
mod tun;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::time::Timespec;

/// Packets read per wake-up of a reader at most.
const BATCH: usize = 256;
/// The largest packet a device hands over (its MTU is 1500; headroom for a larger one).
const MAX_PACKET: usize = 65_536;

/// What the path does to each direction's packets.
#[derive(Debug, Clone, Copy)]
pub struct PathSpec {
    /// Bottleneck rate in bits per second (`None`: no bottleneck).
    pub rate_bps: Option<f64>,
    pub one_way: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per packet (order kept).
    pub jitter: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// A packet that would wait longer than this in the bottleneck queue is dropped (drop-tail).
    pub queue_limit: Duration,
}

impl PathSpec {
    /// The bench profile's settings: `rtt_ms` split evenly, the queue one round trip long (a
    /// buffer of one bandwidth-delay product, at least 20 ms).
    pub fn from_profile(
        rate_mbit: Option<f64>,
        rtt_ms: f64,
        jitter_ms: f64,
        loss_pct: f64,
    ) -> Self {
        Self {
            rate_bps: rate_mbit.map(|m| m * 1e6),
            one_way: Duration::from_secs_f64(rtt_ms.max(0.0) / 2000.0),
            jitter: Duration::from_secs_f64(jitter_ms.max(0.0) / 1000.0),
            loss: (loss_pct / 100.0).clamp(0.0, 1.0),
            queue_limit: Duration::from_secs_f64(rtt_ms.max(20.0) / 1000.0),
        }
    }
}

/// Decides when each packet of one direction arrives, or that it does not.
#[derive(Debug)]
pub struct Shaper {
    spec: PathSpec,
    rng: fastrand::Rng,
    /// When the bottleneck has sent everything admitted so far.
    link_free: Instant,
    last_due: Instant,
}

/// A packet's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    DueAt(Instant),
    Lost,
    QueueFull,
}

impl Shaper {
    pub fn new(spec: PathSpec, seed: u64, now: Instant) -> Self {
        Self {
            spec,
            rng: fastrand::Rng::with_seed(seed),
            link_free: now,
            last_due: now,
        }
    }

    /// The fate of a packet of `len` bytes that arrived at `now`.
    pub fn admit(&mut self, now: Instant, len: usize) -> Fate {
        let leaves = match self.spec.rate_bps {
            Some(bps) => {
                let start = self.link_free.max(now);
                if start.duration_since(now) > self.spec.queue_limit {
                    return Fate::QueueFull;
                }
                #[allow(clippy::cast_precision_loss)]
                let on_wire = Duration::from_secs_f64(len as f64 * 8.0 / bps);
                self.link_free = start + on_wire;
                self.link_free
            }
            None => now,
        };
        // Lost on the wire, after the bottleneck (so a lost packet still took its slot).
        if self.spec.loss > 0.0 && self.rng.f64() < self.spec.loss {
            return Fate::Lost;
        }
        let jitter = self.spec.jitter.mul_f64(self.rng.f64());
        let due = (leaves + self.spec.one_way + jitter).max(self.last_due);
        self.last_due = due;
        Fate::DueAt(due)
    }
}

#[derive(Debug)]
struct Packet {
    due: Instant,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct Queue {
    packets: Mutex<VecDeque<Packet>>,
    ready: Condvar,
}

/// Opens both devices and forwards until killed. Prints `path ready` once both exist.
pub fn run(client_netns: &str, server_netns: &str, device: &str, spec: PathSpec) -> io::Result<()> {
    let client = tun::open_in_namespace(client_netns, device)?;
    let server = tun::open_in_namespace(server_netns, device)?;
    let up = start_direction(
        "up",
        client.try_clone()?,
        server.try_clone()?,
        spec,
        0x5eed_0001,
    )?;
    let down = start_direction("down", server, client, spec, 0x5eed_0002)?;
    eprintln!(
        "path ready: rate {:?} bit/s, one way {:?}, jitter {:?}, loss {}, queue {:?}",
        spec.rate_bps, spec.one_way, spec.jitter, spec.loss, spec.queue_limit
    );
    writeln!(io::stdout().lock(), "path ready")?;
    for handle in up.into_iter().chain(down) {
        match handle.join() {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::other("a forwarder thread panicked")),
        }
    }
    Ok(())
}

type Worker = std::thread::JoinHandle<io::Result<()>>;

fn start_direction(
    name: &str,
    from: File,
    to: File,
    spec: PathSpec,
    seed: u64,
) -> io::Result<[Worker; 2]> {
    let queue = Arc::new(Queue::default());
    let q = Arc::clone(&queue);
    let reader = std::thread::Builder::new()
        .name(format!("{name}-read"))
        .spawn(move || read_loop(&from, &q, Shaper::new(spec, seed, Instant::now())))?;
    let writer = std::thread::Builder::new()
        .name(format!("{name}-write"))
        .spawn(move || write_loop(to, &queue))?;
    Ok([reader, writer])
}

fn read_loop(mut from: &File, queue: &Queue, mut shaper: Shaper) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut batch = Vec::with_capacity(BATCH);
    let wait = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    loop {
        let mut fds = [PollFd::new(&from, PollFlags::IN)];
        match poll(&mut fds, Some(&wait)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        while batch.len() < BATCH {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Fate::DueAt(due) = shaper.admit(Instant::now(), n) {
                        batch.push(Packet {
                            due,
                            data: buf[..n].to_vec(),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !batch.is_empty() {
            let mut packets = lock(&queue.packets);
            packets.extend(batch.drain(..));
            drop(packets);
            queue.ready.notify_one();
        }
    }
}

fn write_loop(mut to: File, queue: &Queue) -> io::Result<()> {
    let mut due_now = Vec::with_capacity(BATCH);
    loop {
        {
            let mut packets = lock(&queue.packets);
            loop {
                let now = Instant::now();
                match packets.front() {
                    Some(p) if p.due <= now => break,
                    Some(p) => {
                        let wait = p.due - now;
                        packets = wait_timeout(&queue.ready, packets, wait);
                    }
                    None => {
                        packets = wait_timeout(&queue.ready, packets, Duration::from_millis(500));
                    }
                }
            }
            let now = Instant::now();
            while packets.front().is_some_and(|p| p.due <= now) {
                if let Some(p) = packets.pop_front() {
                    due_now.push(p);
                }
            }
        }
        for p in due_now.drain(..) {
            // A device whose queue is full, or that is not up yet (the far end is configured a
            // moment after the near one), drops the packet, as a link would: never give up here.
            let _ = to.write(&p.data);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    wait: Duration,
) -> std::sync::MutexGuard<'a, T> {
    match cv.wait_timeout(guard, wait) {
        Ok((g, _)) => g,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate_mbit: Option<f64>, rtt_ms: f64, jitter_ms: f64, loss_pct: f64) -> PathSpec {
        PathSpec::from_profile(rate_mbit, rtt_ms, jitter_ms, loss_pct)
    }

    #[test]
    fn packets_leave_at_the_rate_after_the_one_way_delay() {
        let t0 = Instant::now();
        let mut s = Shaper::new(spec(Some(12.0), 100.0, 0.0, 0.0), 1, t0);
        // 1500 bytes at 12 Mbit/s: 1 ms on the wire each.
        let a = s.admit(t0, 1500);
        let b = s.admit(t0, 1500);
        assert_eq!(a, Fate::DueAt(t0 + Duration::from_millis(51)));
        assert_eq!(b, Fate::DueAt(t0 + Duration::from_millis(52)));
    }

    #[test]
    fn a_full_queue_drops_and_an_idle_link_does_not_bank_credit() {
        let t0 = Instant::now();
        // 20 ms of queue at 12 Mbit/s: 21 packets of 1 ms fit (the first leaves at once).
        let mut s = Shaper::new(spec(Some(12.0), 20.0, 0.0, 0.0), 1, t0);
        let fates: Vec<Fate> = (0..30).map(|_| s.admit(t0, 1500)).collect();
        let dropped = fates.iter().filter(|f| **f == Fate::QueueFull).count();
        assert_eq!(dropped, 9);
        // After a second of silence the next packet pays only its own time on the wire.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            s.admit(later, 1500),
            Fate::DueAt(later + Duration::from_millis(11))
        );
    }

    #[test]
    fn random_loss_matches_its_setting_and_jitter_never_reorders() {
        let t0 = Instant::now();
        let mut s = Shaper::new(spec(None, 80.0, 10.0, 1.0), 7, t0);
        let mut lost = 0;
        let mut last = t0;
        for i in 0..100_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 10);
            match s.admit(now, 100) {
                Fate::Lost => lost += 1,
                Fate::DueAt(due) => {
                    assert!(due >= last, "reordered");
                    assert!(due >= now + Duration::from_millis(40));
                    last = due;
                }
                Fate::QueueFull => panic!("no bottleneck, no queue"),
            }
        }
        // 1 % of 100 000: 1000, within four standard deviations (about 126).
        assert!((874..=1126).contains(&lost), "lost {lost}");
    }
}
