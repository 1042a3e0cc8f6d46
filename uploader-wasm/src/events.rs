//! One queue for everything the running upload waits for: XHR events, timer ticks and
//! `online`. Callbacks only push; the upload's single task pops and decides, so no callback ever
//! runs upload logic while another piece of it is half-way through.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::xhr::HttpAnswer;

/// Which request an XHR event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Opening, querying or deleting the session.
    Control,
    /// The chunk with this index.
    Chunk(u64),
}

#[derive(Debug)]
pub enum Event {
    /// Upload progress: `loaded` bytes of the request body have left the browser.
    Progress { tag: Tag, loaded: f64 },
    /// The server answered (any status).
    Answered { tag: Tag, answer: HttpAnswer },
    /// No answer: network error.
    NetworkFailure { tag: Tag },
    /// A timer the upload set has fired, or something changed that needs a look (pause,
    /// resume, abort, connection change).
    Wake,
    /// The browser is online again.
    Online,
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Event>,
    waker: Option<Waker>,
}

/// A single-consumer event queue for one upload.
#[derive(Debug, Clone, Default)]
pub struct EventQueue(Rc<RefCell<State>>);

impl EventQueue {
    /// Adds an event and wakes the upload task (on the next microtask, never synchronously).
    pub fn push(&self, event: Event) {
        let waker = {
            let mut state = self.0.borrow_mut();
            state.events.push_back(event);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits for the next event.
    pub fn next(&self) -> NextEvent<'_> {
        NextEvent(self)
    }

    /// Drops whatever is queued (stale events after a restart of the upload's task).
    pub fn clear(&self) {
        self.0.borrow_mut().events.clear();
    }
}

/// Future of [`EventQueue::next`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct NextEvent<'a>(&'a EventQueue);

impl Future for NextEvent<'_> {
    type Output = Event;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Event> {
        let mut state = (self.0).0.borrow_mut();
        match state.events.pop_front() {
            Some(event) => Poll::Ready(event),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
