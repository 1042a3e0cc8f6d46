//! What the running upload waits for, in one channel: the events of its chunk requests, and
//! wake-ups from the JS-facing methods (`pause`, `resume`, `abort`) and browser listeners.
//! Callbacks only send; the upload's single task receives and decides, so no callback ever runs
//! upload logic while another piece of it is half-way through.

use droppr_protocol::composite::Sha256Digest;
use futures::channel::mpsc;
use wasm_bindgen::JsValue;

use crate::xhr::XhrEvent;

#[derive(Debug)]
pub enum Event {
    /// An event of the request of chunk `index`.
    Chunk { index: u64, event: XhrEvent },
    /// Chunk `index` was read and hashed (its SHA-256; `None` without WebCrypto), or could not be.
    Hashed {
        index: u64,
        sha256: Result<Option<Sha256Digest>, JsValue>,
    },
    /// Something changed that needs a look (pause, resume, connection change).
    Wake,
    /// The browser is online again.
    Online,
}

pub type EventSender = mpsc::UnboundedSender<Event>;
pub type EventReceiver = mpsc::UnboundedReceiver<Event>;

pub fn channel() -> (EventSender, EventReceiver) {
    mpsc::unbounded()
}

/// Sends without caring whether the task still listens (after its end nobody does).
pub fn notify(sender: &EventSender, event: Event) {
    let _ = sender.unbounded_send(event);
}
