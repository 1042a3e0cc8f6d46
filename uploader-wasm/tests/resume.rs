//! Resuming: a new uploader instance sends only what the server misses; records that are
//! expired or corrupt are ignored.

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use droppr_protocol::js_number::u64_from_f64;
use droppr_protocol::resume::{FileIdentity, SessionRecord, RECORD_TTL_MS};
use droppr_uploader::ParallelUploader;
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::File;

wasm_bindgen_test_configure!(run_in_browser);

const CHUNK: u32 = 128 * KIB;

fn options(file: &File) -> Vec<(&'static str, JsValue)> {
    vec![
        ("file", file.clone().into()),
        ("uploadUrl", open_url().into()),
        ("chunkSize", CHUNK.into()),
        ("maxParallelChunks", 2.into()),
    ]
}

fn storage() -> web_sys::Storage {
    web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .expect("localStorage")
}

fn record_key(file: &File) -> String {
    FileIdentity {
        upload_url: &open_url(),
        name: &file.name(),
        size: u64_from_f64(file.size()).expect("a size"),
        last_modified: u64_from_f64(file.last_modified()).expect("a date"),
    }
    .record_key()
}

/// Starts an upload and pauses it once `fraction` of the file is sent. Returns the paused
/// uploader and its upload id, after the server has finished every request it had.
async fn upload_part_of(file: &File, fraction: f64) -> (ParallelUploader, String) {
    let slot: Rc<RefCell<Option<ParallelUploader>>> = Rc::new(RefCell::new(None));
    let handle = slot.clone();
    let paused = Rc::new(Cell::new(false));
    let flag = paused.clone();
    let total = file.size();
    let progress = Recorder::with(move |args| {
        if !flag.get() && args[0].as_f64().unwrap_or(0.0) >= total * fraction {
            flag.set(true);
            if let Some(u) = handle.borrow().as_ref() {
                u.pause();
            }
        }
    });
    let mut pairs = options(file);
    pairs.push(("onProgress", progress.function.clone().into()));
    *slot.borrow_mut() =
        Some(ParallelUploader::new(object(&pairs).unchecked_ref()).expect("options"));
    // The promise stays pending while paused; it is not awaited.
    let _pending = slot.borrow().as_ref().expect("set").start();
    for _ in 0..200 {
        if paused.get() {
            break;
        }
        sleep(20).await;
    }
    assert!(paused.get(), "the upload reached {fraction} and paused");
    let up = slot.borrow_mut().take().expect("set");
    assert_eq!(
        get_f64(&up.get_stats(), "activeUploads"),
        0.0,
        "pause cancels requests in flight"
    );
    let id = up.upload_id().expect("session open");
    assert_eq!(settle(&id, 3000).await, 0.0);
    (up, id)
}

/// Chunks needed to send the server's missing ranges at `CHUNK` bytes each.
fn chunks_for(status: &JsValue) -> f64 {
    let ranges: js_sys::Array = get(status, "missing_ranges").unchecked_into();
    ranges
        .iter()
        .map(|r| {
            let r: js_sys::Array = r.unchecked_into();
            let len = r.get(1).as_f64().unwrap_or(0.0) - r.get(0).as_f64().unwrap_or(0.0) + 1.0;
            (len / f64::from(CHUNK)).ceil()
        })
        .sum()
}

#[wasm_bindgen_test]
async fn a_new_instance_sends_only_the_missing_chunks() {
    let size = 2 * MIB + 100;
    let file = checked_file("resumed", size, 7);
    let (first, id) = upload_part_of(&file, 0.4).await;
    assert!(
        storage()
            .get_item(&record_key(&file))
            .ok()
            .flatten()
            .is_some(),
        "the record is saved"
    );
    let (status, before) = session_status(&open_url(), &id).await;
    assert_eq!(status, 200);
    let received = get_f64(&before, "received_bytes");
    assert!(
        received > 0.0 && received < f64::from(size),
        "partly uploaded: {received}"
    );
    let needed = chunks_for(&before);
    let (sent_before, _, _) = counters(&id).await;

    // As after a reload: a fresh instance for the same file.
    let progress = Recorder::new();
    let mut pairs = options(&file);
    pairs.push(("onProgress", progress.function.clone().into()));
    let second = ParallelUploader::new(object(&pairs).unchecked_ref()).expect("options");
    let result = settle_promise(second.start())
        .await
        .expect("the resumed upload completes");
    assert_eq!(
        get(&result, "uploadId").as_string(),
        Some(id.clone()),
        "same session"
    );
    assert_eq!(get_f64(&result, "size"), f64::from(size));
    let (sent_after, _, _) = counters(&id).await;
    assert_eq!(
        sent_after - sent_before,
        needed,
        "only the missing chunks were sent"
    );
    let loaded = progress_values(&progress, f64::from(size));
    assert!(
        loaded[0] >= received,
        "progress starts from what the server holds"
    );
    assert_eq!(loaded.last().copied(), Some(f64::from(size)));
    assert!(
        storage()
            .get_item(&record_key(&file))
            .ok()
            .flatten()
            .is_none(),
        "cleared after success"
    );
    first.abort(); // the paused instance settles; the finished file stays
}

#[wasm_bindgen_test]
async fn an_expired_record_is_ignored() {
    let size = MIB;
    let file = checked_file("expired", size, 8);
    let (first, old_id) = upload_part_of(&file, 0.3).await;
    // Age the record past 24 hours.
    let key = record_key(&file);
    let json = storage().get_item(&key).ok().flatten().expect("a record");
    let mut record: SessionRecord = serde_json::from_str(&json).expect("our record");
    record.timestamp -= RECORD_TTL_MS + 1;
    storage().set_item(&key, &record.to_json()).expect("store");

    let second = ParallelUploader::new(object(&options(&file)).unchecked_ref()).expect("options");
    let result = settle_promise(second.start())
        .await
        .expect("completes in a new session");
    let new_id = get(&result, "uploadId").as_string().expect("an id");
    assert_ne!(new_id, old_id, "the expired record's session was not used");
    let (sent, _, _) = counters(&new_id).await;
    assert_eq!(
        sent,
        f64::from(size / CHUNK),
        "the whole file was sent again"
    );
    first.abort();
}

#[wasm_bindgen_test]
async fn a_corrupt_or_foreign_record_is_ignored() {
    let file = checked_file("corrupt", 300 * KIB, 10);
    let key = record_key(&file);
    for junk in [
        "{not json",
        r#"{"uploadId":"abc123abc","completedChunks":[0,1,2,999999],"timestamp":1234567890}"#,
    ] {
        storage().set_item(&key, junk).expect("store");
        let up = ParallelUploader::new(object(&options(&file)).unchecked_ref()).expect("options");
        settle_promise(up.start())
            .await
            .expect("a bad record does not break start()");
    }
    // A record of another file under this key (stale chunk indices, other size) is not trusted either.
    let other = FileIdentity {
        upload_url: "elsewhere",
        name: "x",
        size: 1,
        last_modified: 0,
    };
    let mut foreign = SessionRecord::new(
        &other,
        "abcdefgh12345678",
        u64_from_f64(js_sys::Date::now()).expect("now"),
    );
    foreign.completed_chunks = vec![5, 6, 7_000_000];
    storage().set_item(&key, &foreign.to_json()).expect("store");
    let up = ParallelUploader::new(object(&options(&file)).unchecked_ref()).expect("options");
    let result = settle_promise(up.start()).await.expect("completes");
    assert_ne!(
        get(&result, "uploadId").as_string().as_deref(),
        Some("abcdefgh12345678")
    );
}

/// Resumes `file` (paused part-way by [`upload_part_of`]) after `edit` changed the part digests
/// of its record; returns the outcome, the server's status and how often the parts were asked for.
async fn resume_with_parts(
    file: &File,
    edit: impl FnOnce(&mut SessionRecord),
) -> (Result<JsValue, JsValue>, JsValue, usize) {
    let (first, id) = upload_part_of(file, 0.4).await;
    let key = record_key(file);
    let json = storage().get_item(&key).ok().flatten().expect("a record");
    let mut record: SessionRecord = serde_json::from_str(&json).expect("our record");
    assert!(
        !record.parts.is_empty(),
        "the record keeps the acknowledged chunks' digests"
    );
    edit(&mut record);
    storage().set_item(&key, &record.to_json()).expect("store");
    let requests = Recorder::new();
    let mut pairs = options(file);
    pairs.push(("onBeforeRequest", requests.function.clone().into()));
    let second = ParallelUploader::new(object(&pairs).unchecked_ref()).expect("options");
    let outcome = settle_promise(second.start()).await;
    let (_, status) = session_status(&open_url(), &id).await;
    let asked = requests
        .calls
        .borrow()
        .iter()
        .filter(|args| {
            get(&args[0], "url")
                .as_string()
                .is_some_and(|u| u.contains("parts=true"))
        })
        .count();
    first.abort();
    (outcome, status, asked)
}

#[wasm_bindgen_test]
async fn without_the_digests_of_earlier_chunks_the_checksum_still_agrees() {
    // As with a record written before digests were kept, or a chunk the server recorded after
    // the page went: the uploader asks for the recorded parts and hashes only the one it lacks.
    let file = checked_file("no-digests", 2 * MIB + 100, 11);
    let (outcome, status, asked) = resume_with_parts(&file, |r| {
        r.parts.remove(0);
    })
    .await;
    let result = outcome.expect("completes");
    let theirs = get(&status, "checksum").as_string().expect("the server's");
    assert!(theirs.starts_with("sha256:"), "{theirs}");
    assert_eq!(get(&result, "checksum").as_string(), Some(theirs));
    assert_eq!(asked, 1, "the recorded parts were asked for once");
}

#[wasm_bindgen_test]
async fn a_chunk_digest_the_server_does_not_share_fails_the_upload() {
    // The client checks the server's composite against its own digests; it does not adopt it.
    let file = checked_file("wrong-digest", 2 * MIB + 100, 12);
    let (outcome, status, asked) = resume_with_parts(&file, |r| {
        r.parts[0].sha256.0[0] ^= 1;
    })
    .await;
    let error = outcome.expect_err("the checksums differ");
    assert_eq!(
        get(&error, "code").as_string().as_deref(),
        Some("server-inconsistent")
    );
    let message = get(&error, "message").as_string().unwrap_or_default();
    assert!(message.contains("whole-file checksum"), "{message}");
    assert_eq!(get(&status, "complete").as_bool(), Some(true));
    assert_eq!(asked, 1);
}

#[wasm_bindgen_test]
fn unfinished_uploads_are_listed_newest_first() {
    // Records of a link no other test uses, written out of order; one too old to resume.
    let url = "https://size-order.test/api/droppr/requests/x/upload-chunk";
    let now = u64_from_f64(js_sys::Date::now().floor()).expect("a date");
    let ages = [
        ("b", 3_000),
        ("a", 1_000),
        ("stale", RECORD_TTL_MS + 1),
        ("c", 2_000),
    ];
    let keys: Vec<String> = ages
        .iter()
        .map(|(name, age)| {
            let file = FileIdentity {
                upload_url: url,
                name,
                size: 10,
                last_modified: 1,
            };
            let id = ["order-test-", name].concat();
            let record = SessionRecord::new(&file, &id, now - age);
            let key = file.record_key();
            let json = serde_json::to_string(&record).expect("a record");
            storage().set_item(&key, &json).expect("stored");
            key
        })
        .collect();
    let list: js_sys::Array = droppr_uploader::find_unfinished_uploads(url).unchecked_into();
    let names: Vec<String> = list
        .iter()
        .filter_map(|r| get(&r, "name").as_string())
        .collect();
    for key in &keys {
        storage().remove_item(key).expect("removed");
    }
    assert_eq!(
        names,
        ["a", "c", "b"],
        "newest first, the stale one left out"
    );
}
