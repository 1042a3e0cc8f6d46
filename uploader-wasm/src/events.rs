//! What the running upload waits for, in one channel: the events of its chunk requests, and
//! wake-ups from the JS-facing methods (`pause`, `resume`, `abort`) and browser listeners.
//! Callbacks only send; the upload's single task receives and decides, so no callback ever runs
//! upload logic while another piece of it is half-way through.

use futures::channel::mpsc;

use crate::xhr::XhrEvent;

#[derive(Debug)]
pub enum Event {
    /// An event of the request of chunk `index`.
    Chunk { index: u64, event: XhrEvent },
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
