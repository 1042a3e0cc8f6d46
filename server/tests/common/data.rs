//! Test data and the tests' own model of received ranges: deterministic file contents, digests,
//! and the gaps a set of ranges leaves.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Deterministic pseudo-random bytes (xorshift64*), different for each seed.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The first bytes of an ISO base media file (`ftyp isom`): what an `.mp4` must start with.
pub const MP4_HEAD: &[u8; 16] = b"\0\0\0\x18ftypisom\0\0\x02\0";

/// Pseudo-random bytes that sniff as an MP4.
pub fn mp4_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = pseudo_random(seed, len);
    let n = MP4_HEAD.len().min(len);
    data[..n].copy_from_slice(&MP4_HEAD[..n]);
    data
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Inclusive `[start, end]` pairs from a JSON array of pairs (`missing_ranges`).
pub fn pairs(value: &Value) -> Vec<(u64, u64)> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|p| {
            (
                p[0].as_u64().expect("range start"),
                p[1].as_u64().expect("range end"),
            )
        })
        .collect()
}

/// The received ranges a status implies: everything its `missing_ranges` leave out.
pub fn received_ranges(status: &Value) -> Vec<(u64, u64)> {
    let size = status["size"].as_u64().expect("size");
    let mut out = Vec::new();
    let mut next = 0;
    for (s, e) in pairs(&status["missing_ranges"]) {
        if s > next {
            out.push((next, s - 1));
        }
        next = e + 1;
    }
    if next < size {
        out.push((next, size - 1));
    }
    out
}

/// The union of inclusive ranges, merged (adjacent ones too), sorted: the test's own model.
pub fn merged(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in sorted {
        match out.last_mut() {
            Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The gaps an upload of `size` bytes still has, given the received ranges (the model's answer).
pub fn gaps(received: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = 0;
    for &(s, e) in &merged(received) {
        if s > next {
            out.push((next, s - 1));
        }
        next = e + 1;
    }
    if next < size {
        out.push((next, size - 1));
    }
    out
}

/// What a client sees of a session's progress: complete, received bytes, missing ranges, offset.
pub type Progress = (bool, u64, Vec<(u64, u64)>, u64);

/// The [`Progress`] in a status answer (all of it but the sliding expiry and the limits).
pub fn progress(status: &Value) -> Progress {
    (
        status["complete"].as_bool().expect("complete"),
        status["received_bytes"].as_u64().expect("received_bytes"),
        pairs(&status["missing_ranges"]),
        status["offset"].as_u64().expect("offset"),
    )
}

/// The whole-file composite checksum, computed here from the file and the part boundaries
/// (inclusive): SHA-256 over the parts' binary SHA-256 digests in offset order (docs/PROTOCOL.md).
pub fn composite(data: &[u8], parts: &[(usize, usize)]) -> String {
    let digests: Vec<[u8; 32]> = parts
        .iter()
        .map(|&(s, e)| Sha256::digest(&data[s..=e]).into())
        .collect();
    composite_of_digests(&digests)
}

/// The composite of given part digests (in offset order).
pub fn composite_of_digests(digests: &[[u8; 32]]) -> String {
    let mut outer = Sha256::new();
    for d in digests {
        outer.update(d);
    }
    format!("sha256:{}-{}", hex(&outer.finalize()), digests.len())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
