//! Every parser of untrusted input in `droppr-protocol`, fed generated input (proptest, bounded
//! cases): `Content-Range`, plain numbers, upload ids and request hashes, `Retry-After`, the
//! received-range record the server stores, the JSON bodies both sides read, and the resume
//! record from `localStorage`. Each must refuse garbage without panicking, and whatever it
//! accepts must hold the type's invariants and survive a round trip.

use droppr_protocol::resume::{FileIdentity, SessionRecord};
use droppr_protocol::retry::parse_retry_after;
use droppr_protocol::wire::{
    is_valid_request_hash, is_valid_upload_id, parse_u64, CreateRequest, ErrorBody, RequestInfo,
    SessionStatus,
};
use droppr_protocol::{ContentRange, ReceivedRanges};
use proptest::prelude::*;

/// Strings that look like a header value might: mostly the alphabet of ranges, some anything.
fn header_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ bytes0-9/*+=,-]{0,40}",
        "bytes [0-9]{1,21}-[0-9]{1,21}/[0-9]{1,21}",
        " *bytes *[0-9]{1,3} *- *[0-9]{1,3} */ *[0-9]{1,3} *",
        ".{0,60}",
    ]
}

/// JSON-ish text: real JSON objects with odd values, and near-JSON.
fn json_like() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        // Small numbers mostly, so that many records are consistent and get loaded.
        6 => (0u64..64).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec!["1e400", "-0", "18446744073709551616", "null", "\"7\""])
            .prop_map(str::to_owned),
    ];
    let pair = (number.clone(), number.clone()).prop_map(|(a, b)| format!("[{a},{b}]"));
    prop_oneof![
        (number.clone(), prop::collection::vec(pair, 0..8)).prop_map(|(t, r)| format!(
            r#"{{"total_size":{t},"received_ranges":[{}]}}"#,
            r.join(",")
        )),
        (number.clone(), ".{0,20}", number).prop_map(|(a, s, b)| format!(
            r#"{{"upload_id":{s:?},"complete":false,"size":{a},"received_bytes":{b},"missing_ranges":[],"offset":0,"chunk_size":1,"chunk_alignment":1,"max_chunk_size":1,"expires_at":""}}"#
        )),
        ".{0,80}",
        "[\\[\\]{}:,\"0-9a-z_ ]{0,80}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn content_range_accepts_only_ranges_inside_the_file(value in header_like()) {
        if let Some(r) = ContentRange::parse(&value) {
            prop_assert!(r.start <= r.end && r.end < r.total);
            prop_assert_eq!(r.len(), r.end - r.start + 1);
            prop_assert_eq!(ContentRange::parse(&r.header_value()), Some(r));
        }
    }

    #[test]
    fn content_range_round_trips(start in any::<u64>(), len in any::<u64>(), extra in any::<u64>()) {
        let end = start.saturating_add(len % (u64::MAX - start).max(1));
        let total = end.saturating_add(1 + extra % 1000);
        prop_assume!(end < total);
        let r = ContentRange { start, end, total };
        prop_assert_eq!(ContentRange::parse(&r.header_value()), Some(r));
        prop_assert_eq!(ContentRange::parse(&format!("  bytes   {start}-{end}/{total} ")), Some(r));
        prop_assert_eq!(ContentRange::parse(&format!("bytes {start}-{end}/{end}")), None);
    }

    #[test]
    fn numbers_are_digits_only(value in "[ +\\-0-9a]{0,25}") {
        let expected = {
            let t = value.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) { t.parse::<u64>().ok() } else { None }
        };
        prop_assert_eq!(parse_u64(&value), expected);
    }

    #[test]
    fn ids_and_hashes_follow_their_alphabet(value in ".{0,70}") {
        let alphabet = value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        prop_assert_eq!(is_valid_upload_id(&value), alphabet && (8..=64).contains(&value.len()));
        prop_assert_eq!(is_valid_request_hash(&value), alphabet && (1..=64).contains(&value.len()));
    }

    #[test]
    fn retry_after_never_panics_and_bounds_dates(value in ".{0,40}", now in any::<u64>()) {
        let _ = parse_retry_after(&value, now);
        if let Some(ms) = parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) {
            prop_assert!(ms <= 784_111_777_000);
        }
    }

    #[test]
    fn stored_range_records_load_only_when_consistent(json in json_like()) {
        if let Ok(set) = serde_json::from_str::<ReceivedRanges>(&json) {
            let ranges = set.ranges();
            for &(s, e) in ranges {
                prop_assert!(s <= e && e < set.total_size());
            }
            for w in ranges.windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0, "not sorted, disjoint and apart: {:?}", ranges);
            }
            let again: ReceivedRanges = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
            prop_assert_eq!(again, set);
        }
    }

    #[test]
    fn json_bodies_refuse_garbage_without_panicking(json in json_like()) {
        let _ = serde_json::from_str::<SessionStatus>(&json);
        let _ = serde_json::from_str::<CreateRequest>(&json);
        let _ = serde_json::from_str::<RequestInfo>(&json);
        if let Ok(e) = serde_json::from_str::<ErrorBody>(&json) {
            prop_assert!((400..600).contains(&e.code.status()));
        }
        if let Ok(s) = serde_json::from_str::<SessionStatus>(&json) {
            let again: SessionStatus = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
            prop_assert_eq!(again, s);
        }
    }

    #[test]
    fn resume_records_are_validated_not_trusted(
        json in prop_oneof![
            ".{0,120}",
            (".{0,30}", prop::collection::vec(any::<u64>(), 0..6), any::<u64>(), any::<u64>()).prop_map(
                |(id, chunks, ts, next)| serde_json::json!({
                    "uploadId": id, "completedChunks": chunks, "timestamp": ts, "uploadUrl": "/u",
                    "name": "a.mp4", "size": 10, "lastModified": 5, "nextChunkIndex": next,
                }).to_string()
            ),
        ],
        now in any::<u64>(),
    ) {
        let file = FileIdentity { upload_url: "/u", name: "a.mp4", size: 10, last_modified: 5 };
        if let Ok(record) = SessionRecord::load(&json, &file, now) {
            prop_assert!(is_valid_upload_id(&record.upload_id));
            prop_assert!(record.completed_chunks.windows(2).all(|w| w[0] < w[1]));
            // Never behind the last acknowledged chunk (saturating at u64::MAX).
            prop_assert!(record.completed_chunks.last().is_none_or(|&l| record.next_chunk_index >= l));
            prop_assert_eq!(record.size, 10);
        }
    }
}
