//! One queue for everything the running upload waits for: XHR events, timer ticks and
//! `online`. Callbacks only push; the upload's single task pops and decides, so no callback ever
//! runs upload logic while another piece of it is half-way through.
//!
//! The queue also runs that task: a one-future executor, in place of `wasm-bindgen-futures`
//! (whose general task queue, wakers and promise plumbing were a fifth of the package). The
//! task only ever waits for this queue's next event, so "wake" is simply "an event was pushed":
//! each push schedules one poll on a microtask, never synchronously, so the task never runs
//! inside the callback or the JS method that pushed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use crate::xhr::HttpAnswer;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = queueMicrotask)]
    fn queue_microtask(callback: &JsValue);
}

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

/// The upload's future and the functions that settle `start()`'s promise with its output.
struct Task {
    future: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>,
    resolve: Function,
    reject: Function,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Task")
    }
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Event>,
    /// The task while it runs (and is not being polled right now).
    task: Option<Task>,
    poll_scheduled: bool,
    /// Polls the task; made once, on the first push.
    poll_callback: Option<Closure<dyn FnMut()>>,
}

/// A single-consumer event queue for one upload, and the executor of its task.
#[derive(Debug, Clone, Default)]
pub struct EventQueue(Rc<RefCell<State>>);

impl EventQueue {
    /// Adds an event and wakes the upload task (on the next microtask, never synchronously).
    pub fn push(&self, event: Event) {
        self.0.borrow_mut().events.push_back(event);
        self.schedule_poll();
    }

    /// Waits for the next event.
    pub fn next(&self) -> NextEvent<'_> {
        NextEvent(self)
    }

    /// Drops whatever is queued (stale events after a restart of the upload's task).
    pub fn clear(&self) {
        self.0.borrow_mut().events.clear();
    }

    /// Runs `task` until it finishes; the promise settles with its output.
    pub fn spawn(&self, task: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
        let mut settle = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        if let Some((resolve, reject)) = settle {
            self.0.borrow_mut().task = Some(Task {
                future: Box::pin(task),
                resolve,
                reject,
            });
            self.schedule_poll();
        }
        promise
    }

    fn schedule_poll(&self) {
        let mut state = self.0.borrow_mut();
        if state.poll_scheduled {
            return;
        }
        state.poll_scheduled = true;
        let queue = Rc::downgrade(&self.0);
        let callback = state.poll_callback.get_or_insert_with(|| {
            Closure::new(move || {
                if let Some(state) = queue.upgrade() {
                    EventQueue(state).poll();
                }
            })
        });
        queue_microtask(callback.as_ref());
    }

    /// Runs the task until it waits for an event that has not come yet, or ends.
    fn poll(&self) {
        let task = {
            let mut state = self.0.borrow_mut();
            state.poll_scheduled = false;
            state.task.take()
        };
        let Some(mut task) = task else {
            return;
        };
        // No waker: every push schedules a poll (see the module docs).
        let mut cx = Context::from_waker(Waker::noop());
        match task.future.as_mut().poll(&mut cx) {
            Poll::Pending => self.0.borrow_mut().task = Some(task),
            Poll::Ready(outcome) => {
                let (settle, value) = match outcome {
                    Ok(value) => (task.resolve, value),
                    Err(error) => (task.reject, error),
                };
                let _ = settle.call1(&JsValue::UNDEFINED, &value);
            }
        }
    }
}

/// Future of [`EventQueue::next`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct NextEvent<'a>(&'a EventQueue);

impl Future for NextEvent<'_> {
    type Output = Event;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Event> {
        match (self.0).0.borrow_mut().events.pop_front() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }
}
