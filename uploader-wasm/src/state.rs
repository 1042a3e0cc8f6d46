//! The glue's one state enum and what the JS-facing methods do to it.
//!
//! [`Glue`] is the only state the glue keeps beside the scheduler (which owns every upload rule):
//! before `start()` only the policy and a possible `pause()` exist; while the session is being
//! opened an abort handle joins them; while running, the scheduler holds everything else. The
//! `RefCell` is only borrowed for short, synchronous steps, never while a JS callback runs or
//! across an `await`.

use std::cell::RefCell;

use droppr_protocol::network::NetworkHints;
use droppr_protocol::scheduler::{ChunkScheduler, Stats};
use droppr_protocol::tuning::Tuning;
use futures::future::AbortHandle;

use crate::browser;
use crate::events::{self, Event, EventSender};
use crate::options::Options;

/// What exists before the scheduler does.
#[derive(Debug)]
pub struct Pending {
    pub tuning: Tuning,
    pub paused: bool,
    /// The id this uploader chose for its new session (`X-Upload-New-Id`), once chosen.
    pub chosen_id: Option<String>,
}

#[derive(Debug)]
pub enum Glue {
    /// Constructed, not started.
    Idle(Pending),
    /// `start()` was called; the session is being opened or resumed.
    Opening {
        pending: Pending,
        abort: AbortHandle,
    },
    /// Chunks are being sent.
    Running {
        scheduler: Box<ChunkScheduler>,
        upload_id: String,
        abort: AbortHandle,
    },
    /// Over: complete, failed or aborted. The last numbers stay readable.
    Done {
        upload_id: Option<String>,
        stats: Option<Stats>,
    },
}

impl Glue {
    /// Over before anything happened.
    pub fn done() -> Self {
        Glue::Done {
            upload_id: None,
            stats: None,
        }
    }
}

/// Everything an uploader holds, shared by its JS object and its task.
#[derive(Debug)]
pub struct Shared {
    pub options: Options,
    pub state: RefCell<Glue>,
    /// Wakes the task (and carries the events of its requests).
    pub events: EventSender,
}

impl Shared {
    pub fn new(options: Options, tuning: Tuning, events: EventSender) -> Self {
        Self {
            options,
            state: RefCell::new(Glue::Idle(Pending {
                tuning,
                paused: false,
                chosen_id: None,
            })),
            events,
        }
    }

    fn wake(&self) {
        events::notify(&self.events, Event::Wake);
    }

    /// Runs `f` on the scheduler while the upload runs.
    pub fn with_scheduler<T>(&self, f: impl FnOnce(&mut ChunkScheduler) -> T) -> Option<T> {
        match &mut *self.state.borrow_mut() {
            Glue::Running { scheduler, .. } => Some(f(scheduler)),
            _ => None,
        }
    }

    /// `Opening` becomes `Running` with this scheduler (a `pause()` made meanwhile carries
    /// over). False if the upload is no longer opening (it was aborted).
    pub fn begin_running(&self, mut scheduler: ChunkScheduler, upload_id: &str) -> bool {
        let mut state = self.state.borrow_mut();
        let Glue::Opening { pending, abort } = &*state else {
            return false;
        };
        if pending.paused {
            let _ = scheduler.pause();
        }
        let abort = abort.clone();
        *state = Glue::Running {
            scheduler: Box::new(scheduler),
            upload_id: upload_id.to_owned(),
            abort,
        };
        true
    }

    /// `pause()` was called before the scheduler exists (nothing may be sent yet).
    pub fn paused_before_running(&self) -> bool {
        match &*self.state.borrow() {
            Glue::Idle(p) | Glue::Opening { pending: p, .. } => p.paused,
            _ => false,
        }
    }

    /// The tuning the scheduler will start from.
    pub fn pending_tuning(&self) -> Option<Tuning> {
        match &*self.state.borrow() {
            Glue::Idle(p) | Glue::Opening { pending: p, .. } => Some(p.tuning.clone()),
            _ => None,
        }
    }

    /// Ends the upload: `Done`, keeping the id and the last numbers. Returns the id of the session
    /// the server may hold (also one still being opened under a chosen id: an abort deletes it).
    pub fn finish(&self) -> Option<String> {
        let now = browser::now_ms();
        let mut state = self.state.borrow_mut();
        let mut chosen = None;
        let (upload_id, stats) = match &mut *state {
            Glue::Running {
                scheduler,
                upload_id,
                ..
            } => {
                let _ = scheduler.stop();
                (Some(upload_id.clone()), Some(scheduler.stats_at(now)))
            }
            Glue::Done { upload_id, stats } => (upload_id.clone(), stats.clone()),
            Glue::Opening { pending, .. } => {
                chosen = pending.chosen_id.take();
                (None, None)
            }
            Glue::Idle(_) => (None, None),
        };
        *state = Glue::Done {
            upload_id: upload_id.clone(),
            stats,
        };
        upload_id.or(chosen)
    }

    pub fn upload_id(&self) -> Option<String> {
        match &*self.state.borrow() {
            Glue::Running { upload_id, .. } => Some(upload_id.clone()),
            Glue::Done { upload_id, .. } => upload_id.clone(),
            // `uploadId` names an open session; a chosen id is not one until the server says so.
            Glue::Idle(_) | Glue::Opening { .. } => None,
        }
    }

    /// The id chosen for the session being opened (an abort from now on deletes that session).
    pub fn choose_id(&self, id: &str) {
        if let Glue::Opening { pending, .. } = &mut *self.state.borrow_mut() {
            pending.chosen_id = Some(id.to_owned());
        }
    }

    /// `getStats()`'s numbers, also before the session is open and after the end.
    pub fn stats(&self) -> Stats {
        let now = browser::now_ms();
        let tuning = match &*self.state.borrow() {
            Glue::Running { scheduler, .. } => return scheduler.stats_at(now),
            Glue::Done {
                stats: Some(stats), ..
            } => return stats.clone(),
            Glue::Idle(p) | Glue::Opening { pending: p, .. } => Some(p.tuning.clone()),
            Glue::Done { stats: None, .. } => None,
        };
        let size = self.options.size;
        let chunk_size = tuning.as_ref().map_or(1, Tuning::chunk_size).max(1);
        Stats {
            speed: 0.0,
            eta: None,
            active_uploads: 0,
            completed_chunks: 0,
            total_chunks: size.div_ceil(chunk_size),
            failed_chunks: 0,
            loaded: 0,
            total: size,
            parallelism: tuning.as_ref().map_or(0, Tuning::parallelism),
            chunk_size,
        }
    }

    pub fn pause(&self) {
        match &mut *self.state.borrow_mut() {
            Glue::Idle(p) | Glue::Opening { pending: p, .. } => p.paused = true,
            // The task cancels the requests the scheduler took back.
            Glue::Running { scheduler, .. } => drop(scheduler.pause()),
            Glue::Done { .. } => {}
        }
        self.wake();
    }

    pub fn resume(&self) {
        match &mut *self.state.borrow_mut() {
            Glue::Idle(p) | Glue::Opening { pending: p, .. } => p.paused = false,
            Glue::Running { scheduler, .. } => scheduler.resume(),
            Glue::Done { .. } => {}
        }
        self.wake();
    }

    /// Before `start()`: over at once. After: the task is dropped (which cancels every request
    /// it owns) and its end deletes the session.
    pub fn abort(&self) {
        let mut state = self.state.borrow_mut();
        match &mut *state {
            Glue::Idle(_) => *state = Glue::done(),
            Glue::Opening { abort, .. } => abort.abort(),
            // The scheduler stops counting the requests at once; they end when the task drops.
            Glue::Running {
                abort, scheduler, ..
            } => {
                let _ = scheduler.stop();
                abort.abort();
            }
            Glue::Done { .. } => {}
        }
    }

    /// `navigator.connection` changed.
    pub fn on_hints(&self, hints: NetworkHints) {
        match &mut *self.state.borrow_mut() {
            Glue::Idle(p) | Glue::Opening { pending: p, .. } => p.tuning.on_hints(hints),
            Glue::Running { scheduler, .. } => scheduler.tuning_mut().on_hints(hints),
            Glue::Done { .. } => {}
        }
        self.wake();
    }
}
