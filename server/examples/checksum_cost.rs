//! What the whole-file checksum costs the server, per GiB: the SHA-256 of every received byte
//! (each recorded part is hashed as it streams by, in the 128 KiB pieces the write path gathers,
//! whether or not the chunk came with `X-Chunk-Sha256`), and the composite at completion (32
//! bytes per part). Prints the CPU time of the hashing thread. Usage:
//! `cargo run --release -p droppr-server --example checksum_cost [GiB]`.

use std::io::Write;
use std::time::Duration;

use droppr_protocol::composite::{CompositeInput, PartDigest, Sha256Digest};
use sha2::{Digest, Sha256};

const PIECE: usize = 128 * 1024;
const PART: usize = 8 * 1024 * 1024;

/// CPU time of this thread so far (the first field of `/proc/thread-self/schedstat`, in ns).
fn cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("CPU time in schedstat");
    Duration::from_nanos(ns)
}

fn main() -> std::io::Result<()> {
    let gib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let total = gib << 30;
    // Bytes that are not all alike, the same buffer over and over (reading is not measured).
    let mut piece = vec![0u8; PIECE];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for b in &mut piece {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state.to_le_bytes()[0];
    }
    let started = cpu_time();
    let mut parts = Vec::with_capacity(total / PART);
    for p in 0..total / PART {
        let mut hasher = Sha256::new();
        for _ in 0..PART / PIECE {
            hasher.update(&piece);
        }
        let start = (p * PART) as u64;
        parts.push(PartDigest {
            start,
            end: start + PART as u64 - 1,
            sha256: Sha256Digest(hasher.finalize().into()),
        });
    }
    let hashed = cpu_time() - started;
    let composing = std::time::Instant::now();
    let input = CompositeInput::new(total as u64, &parts).expect("the parts tile the file");
    let composite = input.checksum(&Sha256Digest(Sha256::digest(input.bytes()).into()));
    let composed = composing.elapsed();
    let per_gib = hashed.as_secs_f64() * 1000.0 / gib as f64;
    writeln!(
        std::io::stdout().lock(),
        "[checksum-cost] server: SHA-256 of {gib} GiB in {PIECE}-byte pieces, {} parts of {PART} bytes: \
         {per_gib:.0} ms CPU per GiB ({:.0} MiB/s on one core); composite at completion: {} us ({composite})",
        parts.len(),
        1024.0 / (per_gib / 1000.0),
        composed.as_micros(),
    )
}
