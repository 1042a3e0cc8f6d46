//! The first chunk of a file larger than `spread::sent_with_the_open`, sent beside the request
//! that opens its session, so that the file's bytes flow from the first round trip instead of
//! after the open's answer. It goes as the original protocol's first chunk under the id the
//! uploader chose (`X-Upload-New-Id`): whichever of the two requests reaches the server first
//! opens the session, the other finds it. Once the open's answer tells the session's limits, the
//! scheduler takes the chunk in flight (`ChunkScheduler::adopt_sent`), or it is cancelled and
//! its bytes are cut again (a store of S3 parts whose grid it is off).

use droppr_protocol::composite::PartDigest;
use droppr_protocol::js_number::f64_saturating;
use droppr_protocol::plan::Chunk;
use droppr_protocol::spread::first_chunk_beside_the_open;
use droppr_protocol::wire::header;

use super::{browser_refused, Request, Run, Stage, Stop};
use crate::browser;
use crate::callbacks::{self, RequestInfo};
use crate::checksum;
use crate::events::{self, Event};
use crate::state::Shared;
use crate::wire;
use crate::xhr::{self, RequestSpec};

/// A first chunk on the wire before the session's answer.
pub struct Early {
    pub request: Request,
    /// When it went on the wire (its clock for the goodput rules and the stall timer).
    pub sent_ms: f64,
}

/// Sends the first chunk under `new_id` as chunk `index`, when it may go before the open's
/// answer: not paused, online, a free place in the page's connection pool, and no credential the
/// server must check once per open (a wrong password would be counted twice, and a captcha token
/// is good for one request).
pub async fn send(
    shared: &Shared,
    run: &Run,
    new_id: &str,
    index: u64,
) -> Result<Option<Early>, Stop> {
    let options = &shared.options;
    let checked_once = |name: &str| {
        name.eq_ignore_ascii_case(header::REQUEST_PASSWORD)
            || name.eq_ignore_ascii_case(header::CAPTCHA_TOKEN)
    };
    if options.headers.iter().any(|(name, _)| checked_once(name)) {
        return Ok(None);
    }
    let Some(tuning) = shared.pending_tuning() else {
        return Ok(None);
    };
    // Offline, the open waits for `online`; a chunk sent now would only spend a retry.
    if shared.paused_before_running() || !browser::is_online() {
        return Ok(None);
    }
    let slot = match &run.pool {
        None => None,
        Some(member) => match member.try_acquire() {
            Some(slot) => Some(slot),
            None => return Ok(None),
        },
    };
    let len = first_chunk_beside_the_open(
        options.size,
        tuning.parallelism(),
        tuning.chunk_size(),
        tuning.spread_floor(),
    );
    if len == 0 {
        return Ok(None);
    }
    let chunk = Chunk {
        index,
        start: 0,
        end: len - 1,
    };
    let blob = options
        .file
        .slice_with_f64_and_f64(0.0, f64_saturating(len))
        .map_err(|e| browser_refused(&e, "the file could not be sliced"))?;
    let sha256 = if options.chunk_checksums {
        checksum::sha256(&blob)
            .await
            .map_err(|e| browser_refused(&e, "the file could not be read"))?
    } else {
        None
    };
    let info = RequestInfo::chunk(&options.upload_url, index);
    let headers = wire::first_chunk_headers(options, new_id, &chunk, sha256.map(|d| d.to_hex()));
    let headers = callbacks::before_request(&options.callbacks, info, headers)
        .await
        .map_err(Stop::Js)?;
    // A pause while it was hashed or the hook ran: the open goes alone.
    if shared.paused_before_running() {
        return Ok(None);
    }
    let spec = RequestSpec {
        method: info.method,
        url: info.url,
        headers: &headers,
        body: Some(&blob),
        with_credentials: options.with_credentials,
    };
    let sender = shared.events.clone();
    let guard = xhr::send(&spec, move |event| {
        events::notify(&sender, Event::Chunk { index, event });
    })
    .map_err(|e| browser_refused(&e, "the browser refused to send a chunk"))?;
    Ok(Some(Early {
        request: Request {
            index,
            len,
            part: sha256.map(|sha256| PartDigest {
                start: 0,
                end: len - 1,
                sha256,
            }),
            stage: Stage::Sending { _guard: guard },
            _slot: slot,
        },
        sent_ms: browser::now_ms(),
    }))
}
