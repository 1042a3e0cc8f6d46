//! The whole-file composite checksum, built from the digests of the file's recorded parts so that
//! neither side reads the file a second time (S3's composite checksums do the same with parts).
//!
//! The rule: a file of `size` bytes is covered by parts (inclusive byte ranges, each with the
//! SHA-256 of its bytes) that tile `[0, size)`: sorted by offset, each starts where the previous
//! ended, the last ends at the last byte. The composite is
//! `SHA-256(digest_1 || digest_2 || ... || digest_n)` over the 32-byte binary digests in offset
//! order, written `sha256:<64 lower-case hex>-<n>`. An empty file has no parts: the SHA-256 of
//! nothing, `-0`.
//!
//! The parts are the ranges the server recorded, not the chunks a client sent: a chunk that
//! overlaps bytes already received is recorded only for its new bytes, with the digest of those.
//! Both sides agree when the client knows the digest of every recorded part (the uploader keeps
//! those of its acknowledged chunks, and asks the server for the list when its own do not tile).
//!
//! SHA-256 itself is not here: the server hashes with `sha2`, the browser with WebCrypto, and
//! this module only says what goes into the hash and how the result is written.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::decimal;

/// How a composite checksum starts.
pub const COMPOSITE_PREFIX: &str = "sha256:";

/// A SHA-256 digest; lower-case hex in JSON and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(out))
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// One recorded part: bytes `start..=end` and their SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDigest {
    pub start: u64,
    /// Inclusive, as every range of the protocol.
    pub end: u64,
    pub sha256: Sha256Digest,
}

/// Why parts give no composite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompositeError {
    #[error("no part starts at byte {0}")]
    Gap(u64),
    #[error("two parts cover byte {0}")]
    Overlap(u64),
    #[error("a part ends past the file or before it starts")]
    BadPart,
}

/// What the composite hashes: the parts' digests in offset order, and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeInput {
    digests: Vec<u8>,
    parts: u64,
}

impl CompositeInput {
    /// Checks that `parts`, in offset order (as the server lists them and resume records keep
    /// them), tile `[0, size)`, and lines up their digests. No sorting here: a sort is kilobytes
    /// of wasm, and a part out of order is refused as a gap or an overlap.
    pub fn new(size: u64, parts: &[PartDigest]) -> Result<Self, CompositeError> {
        let mut next = 0u64;
        let mut digests = Vec::with_capacity(parts.len() * 32);
        for part in parts {
            if part.end < part.start || part.end >= size {
                return Err(CompositeError::BadPart);
            }
            if part.start > next {
                return Err(CompositeError::Gap(next));
            }
            if part.start < next {
                return Err(CompositeError::Overlap(part.start));
            }
            digests.extend_from_slice(&part.sha256.0);
            next = part.end + 1;
        }
        if next != size {
            return Err(CompositeError::Gap(next));
        }
        Ok(Self {
            digests,
            parts: u64::try_from(parts.len()).unwrap_or(u64::MAX),
        })
    }

    /// The bytes to hash: the binary digests, concatenated in offset order.
    pub fn bytes(&self) -> &[u8] {
        &self.digests
    }

    pub fn parts(&self) -> u64 {
        self.parts
    }

    /// The checksum as reported, given the SHA-256 of [`Self::bytes`].
    pub fn checksum(&self, digest_of_bytes: &Sha256Digest) -> String {
        [
            COMPOSITE_PREFIX,
            &digest_of_bytes.to_hex(),
            "-",
            &decimal(self.parts),
        ]
        .concat()
    }
}

/// For each part the server recorded (in its order), the digest a client knows for exactly that
/// range (`known` sorted by offset, as resume records keep them), or the inclusive range it must
/// hash from the file because it knows none.
pub fn known_digests(
    recorded: &[PartDigest],
    known: &[PartDigest],
) -> Vec<Result<PartDigest, (u64, u64)>> {
    recorded
        .iter()
        .map(|r| {
            known
                .binary_search_by_key(&r.start, |k| k.start)
                .ok()
                .map(|at| known[at])
                .filter(|k| k.end == r.end)
                .ok_or((r.start, r.end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    // The vectors below were computed with Python's hashlib when this test was written:
    //   a = sha256(b"hello ").digest(); b = sha256(b"world").digest()
    //   sha256(a + b).hexdigest(), sha256(sha256(b"hello world").digest()).hexdigest(),
    //   sha256(b"").hexdigest()
    const HELLO_: &str = "5e3235a8346e5a4585f8c58562f5052b8fe26a3bb122e1e96c76784964dfc461";
    const WORLD: &str = "486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7";
    const HELLO_WORLD_TWO_PARTS: &str =
        "66189ed7991e1e0fce065399c5ca05fc15c281865a7a2991bdd667c1466a91a4";
    const HELLO_WORLD_ONE_PART: &str =
        "bc62d4b80d9e36da29c16c5d4d9f11731f36052c72401a76c23c0fb5a9b74423";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn part(start: u64, end: u64, hex: &str) -> PartDigest {
        PartDigest {
            start,
            end,
            sha256: Sha256Digest::from_hex(hex).unwrap(),
        }
    }

    fn composite(size: u64, parts: &[PartDigest]) -> String {
        let input = CompositeInput::new(size, parts).unwrap();
        let digest = Sha256Digest(sha2::Sha256::digest(input.bytes()).into());
        input.checksum(&digest)
    }

    #[test]
    fn the_composite_hashes_the_part_digests_in_offset_order() {
        let expected = ["sha256:", HELLO_WORLD_TWO_PARTS, "-2"].concat();
        // "hello world" as "hello " + "world"; out of order the parts are refused.
        assert_eq!(
            composite(11, &[part(0, 5, HELLO_), part(6, 10, WORLD)]),
            expected
        );
        assert_eq!(
            CompositeInput::new(11, &[part(6, 10, WORLD), part(0, 5, HELLO_)]),
            Err(CompositeError::Gap(0))
        );
        let input = CompositeInput::new(11, &[part(0, 5, HELLO_), part(6, 10, WORLD)]).unwrap();
        assert_eq!(to_hex(input.bytes()), [HELLO_, WORLD].concat());
    }

    #[test]
    fn other_boundaries_give_another_composite() {
        let whole = Sha256Digest(sha2::Sha256::digest(b"hello world").into()).to_hex();
        assert_eq!(
            composite(11, &[part(0, 10, &whole)]),
            ["sha256:", HELLO_WORLD_ONE_PART, "-1"].concat()
        );
    }

    #[test]
    fn an_empty_file_has_the_digest_of_nothing() {
        assert_eq!(composite(0, &[]), ["sha256:", EMPTY, "-0"].concat());
    }

    #[test]
    fn parts_must_tile_the_file() {
        let p = |s, e| part(s, e, HELLO_);
        assert_eq!(
            CompositeInput::new(11, &[p(0, 5)]),
            Err(CompositeError::Gap(6))
        );
        assert_eq!(
            CompositeInput::new(11, &[p(0, 4), p(6, 10)]),
            Err(CompositeError::Gap(5))
        );
        assert_eq!(
            CompositeInput::new(11, &[p(0, 6), p(6, 10)]),
            Err(CompositeError::Overlap(6))
        );
        assert_eq!(
            CompositeInput::new(11, &[p(0, 5), p(6, 11)]),
            Err(CompositeError::BadPart)
        );
        assert_eq!(
            CompositeInput::new(11, &[p(5, 4)]),
            Err(CompositeError::BadPart)
        );
        assert_eq!(
            CompositeInput::new(0, &[p(0, 0)]),
            Err(CompositeError::BadPart)
        );
    }

    #[test]
    fn a_client_hashes_only_the_recorded_parts_it_has_no_digest_of() {
        let p = |s, e, b| PartDigest {
            start: s,
            end: e,
            sha256: Sha256Digest([b; 32]),
        };
        // The server recorded [0,9] [10,14] [15,19]; the client knows [0,9] exactly, [10,19] as
        // one chunk (recorded in two parts: another copy of [10,14] came first).
        let recorded = [p(0, 9, 9), p(10, 14, 9), p(15, 19, 9)];
        let known = [p(0, 9, 1), p(10, 19, 2)];
        assert_eq!(
            known_digests(&recorded, &known),
            vec![Ok(p(0, 9, 1)), Err((10, 14)), Err((15, 19))]
        );
        assert_eq!(known_digests(&recorded, &[]).len(), 3);
    }

    #[test]
    fn digests_travel_as_hex() {
        let p = part(0, 5, HELLO_);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            [r#"{"start":0,"end":5,"sha256":""#, HELLO_, r#""}"#].concat()
        );
        assert_eq!(serde_json::from_str::<PartDigest>(&json).unwrap(), p);
        assert_eq!(
            Sha256Digest::from_hex(&HELLO_.to_uppercase()),
            Some(p.sha256)
        );
        for bad in ["", "zz", &HELLO_[..63], &[HELLO_, "0"].concat()] {
            assert_eq!(Sha256Digest::from_hex(bad), None, "{bad}");
        }
        assert!(serde_json::from_str::<PartDigest>(r#"{"start":0,"end":5,"sha256":"x"}"#).is_err());
    }
}
