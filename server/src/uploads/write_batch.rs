//! The memory of the chunk write path. A chunk's bytes are gathered into a batch buffer of up to
//! [`WRITE_BATCH`] bytes, written by one positioned write on the blocking pool. The buffers come
//! from a process-wide pool, the [`WriteBudget`]: `--write-buffer-budget` bytes in all, allocated
//! once and reused, so the bytes held between the socket and the disk never exceed the budget
//! and no batch costs an allocation. A chunk takes a buffer when the first piece of a batch
//! arrives and waits (reading nothing more, so TCP holds the sender back) while none is free;
//! it fills one buffer while its previous one is written, and gives its buffer back when its
//! client goes quiet, so slow clients cannot sit on the pool (before its file is open it sets the
//! bytes aside instead of writing them: a trickle holds no file handle).
//!
//! The pieces are copied into the buffer rather than kept as they came: a kept piece pins the
//! HTTP layer's whole receive buffer, which must then allocate a new one for every read
//! (measured: more CPU per GiB and 20 MiB more peak memory at 64 streams than copying).

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::claims::Segment;
use crate::error::Result;
use crate::store::RangeWriter;

/// Bytes gathered before one hand-off to the blocking pool. Measured (docs/BENCHMARKS.md, "Server
/// ingest"): 1 MiB batches cost more CPU per GiB than 256 KiB ones (the copy no longer stays in
/// the cache before the kernel copies it again) and the hand-offs are a few per cent of the CPU.
pub const WRITE_BATCH: usize = 256 * 1024;

/// The smallest budget the server accepts (`--write-buffer-budget`).
pub const MIN_WRITE_BUFFER_BUDGET: u64 = 64 * 1024;

/// The pool of batch buffers that all chunks in flight share.
#[derive(Debug, Clone)]
pub struct WriteBudget {
    /// One permit per buffer.
    free: Arc<Semaphore>,
    /// Buffers given back, ready for reuse (fewer than the permits until all were first used).
    spare: Arc<Mutex<Vec<BytesMut>>>,
    batch: usize,
}

impl WriteBudget {
    /// A budget of `bytes` (validated by the configuration: at least the minimum): as many
    /// buffers of [`WRITE_BATCH`] bytes as fit, or one buffer of the whole budget if it is smaller.
    pub fn new(bytes: u64) -> Self {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX).max(1);
        let batch = WRITE_BATCH.min(bytes);
        let buffers = (bytes / batch).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            free: Arc::new(Semaphore::new(buffers)),
            spare: Arc::default(),
            batch,
        }
    }

    /// Gives `batch` a buffer unless it holds one, waiting while none is free.
    pub(super) async fn ensure(&self, batch: &mut Batch) {
        if batch.is_reserved() {
            return;
        }
        let Ok(permit) = self.free.clone().acquire_owned().await else {
            unreachable!("the write budget's semaphore is never closed")
        };
        let reused = self
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let mut buf = reused.unwrap_or_else(|| BytesMut::with_capacity(self.batch));
        // What the batch set aside while its client was quiet comes back into the buffer.
        buf.extend_from_slice(&std::mem::take(&mut batch.parked));
        batch.held = Some(Held {
            buf,
            _permit: permit,
            pool: self.spare.clone(),
        });
    }

    /// Buffers not in use right now.
    pub fn free_buffers(&self) -> usize {
        self.free.available_permits()
    }

    /// Bytes one batch holds at most.
    pub fn batch_len(&self) -> usize {
        self.batch
    }
}

/// A buffer taken from the pool; it goes back (emptied) when dropped.
#[derive(Debug)]
struct Held {
    buf: BytesMut,
    _permit: OwnedSemaphorePermit,
    pool: Arc<Mutex<Vec<BytesMut>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(buf);
        // The permit is dropped after this, once the buffer is back: whoever gets the permit
        // finds a buffer to reuse.
    }
}

/// One batch being filled: the bytes of the claimed segments, and the file offset of each run.
#[derive(Debug, Default)]
pub(super) struct Batch {
    held: Option<Held>,
    /// (file offset, length) of each run of adjacent bytes in the buffer, in buffer order.
    runs: Vec<(u64, usize)>,
    /// The batch's bytes while it holds no buffer (see [`Batch::park`]).
    parked: Vec<u8>,
    /// Body bytes taken into this batch (those outside the claimed segments included).
    taken: usize,
}

impl Batch {
    pub(super) fn is_reserved(&self) -> bool {
        self.held.is_some()
    }

    /// Gives the buffer back (the batch must have been handed off: it holds nothing).
    pub(super) fn release(&mut self) {
        debug_assert!(self.runs.is_empty());
        *self = Self::default();
    }

    /// Gives the buffer back but keeps its bytes aside (at most one batch, outside the budget),
    /// for a chunk whose file is not open yet: writing them now would open it, and a body that
    /// trickles a few bytes must not hold a file handle. [`WriteBudget::ensure`] puts them back.
    pub(super) fn park(&mut self) {
        if let Some(held) = self.held.take() {
            self.parked = held.buf.to_vec();
        }
    }

    fn room(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, |h| h.buf.capacity().saturating_sub(self.taken))
    }

    pub(super) fn is_full(&self) -> bool {
        self.room() == 0
    }

    /// Copies what fits of `piece` (the body's bytes from file offset `at`), keeping only the
    /// bytes inside `segments`; returns how many bytes of `piece` it took.
    pub(super) fn take(&mut self, at: u64, piece: &[u8], segments: &[Segment]) -> usize {
        let fits = piece.len().min(self.room());
        let Some(held) = self.held.as_mut() else {
            return 0;
        };
        for (offset, lo, hi) in within(at, fits, segments) {
            held.buf.extend_from_slice(&piece[lo..hi]);
            match self.runs.last_mut() {
                Some((start, len)) if *start + *len as u64 == offset => *len += hi - lo,
                _ => self.runs.push((offset, hi - lo)),
            }
        }
        self.taken += fits;
        fits
    }

    /// Writes the batch's runs (on the blocking pool); the buffer goes back to the pool after.
    fn write(self, writer: &dyn RangeWriter) -> std::io::Result<()> {
        let bytes: &[u8] = match &self.held {
            Some(held) => &held.buf,
            None => &self.parked,
        };
        let mut from = 0;
        for &(offset, len) in &self.runs {
            writer.write_at(offset, &bytes[from..from + len])?;
            from += len;
        }
        Ok(())
    }
}

/// A chunk's writes: the upload's writer once opened, and the write in flight on the blocking pool.
#[derive(Debug, Default)]
pub(super) struct ChunkWrites {
    pub(super) writer: Option<Arc<dyn RangeWriter>>,
    pending: Option<JoinHandle<std::io::Result<()>>>,
}

impl ChunkWrites {
    /// Hands the batch to the blocking pool once the previous write has finished, so a chunk
    /// has one write in flight while it fills the next batch. A batch with nothing to write
    /// keeps its buffer for the next bytes.
    pub(super) async fn hand_off(
        &mut self,
        batch: &mut Batch,
        writer: impl std::future::Future<Output = Result<Arc<dyn RangeWriter>>>,
    ) -> Result<()> {
        if batch.runs.is_empty() {
            batch.taken = 0;
            return Ok(());
        }
        let w = match &self.writer {
            Some(w) => w.clone(),
            None => self.writer.insert(writer.await?).clone(),
        };
        let full = std::mem::take(batch);
        self.finish().await?;
        self.pending = Some(tokio::task::spawn_blocking(move || full.write(&*w)));
        Ok(())
    }

    /// Waits for the write in flight, if any.
    pub(super) async fn finish(&mut self) -> Result<()> {
        if let Some(p) = self.pending.take() {
            p.await??;
        }
        Ok(())
    }
}

/// The parts of the `len` bytes from file offset `at` that fall inside `segments`, as
/// (file offset, start, end) with start and end indices into those bytes.
fn within(
    at: u64,
    len: usize,
    segments: &[Segment],
) -> impl Iterator<Item = (u64, usize, usize)> + '_ {
    let end = at + len as u64; // exclusive
    segments.iter().filter_map(move |&(s, e)| {
        let from = s.max(at);
        let to = (e + 1).min(end);
        (from < to).then(|| {
            let lo = usize::try_from(from - at).unwrap_or(0);
            let hi = usize::try_from(to - at).unwrap_or(0);
            (from, lo, hi)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bytes_inside_the_claimed_segments_are_kept() {
        let got: Vec<_> = within(100, 10, &[(95, 101), (104, 105), (109, 200)]).collect();
        assert_eq!(got, vec![(100, 0, 2), (104, 4, 6), (109, 9, 10)]);
        assert_eq!(within(0, 10, &[(10, 20)]).count(), 0);
    }

    #[tokio::test]
    async fn a_batch_takes_what_its_buffer_holds_and_the_buffer_goes_back() {
        let budget = WriteBudget::new(MIN_WRITE_BUFFER_BUDGET);
        assert_eq!(budget.batch_len(), 64 * 1024);
        let mut batch = Batch::default();
        budget.ensure(&mut batch).await;
        assert_eq!(budget.free_buffers(), 0);
        let piece = vec![7u8; 100 * 1024];
        // Bytes 0-9 and from 20 on are claimed: the gap is skipped but counts as taken.
        let took = batch.take(0, &piece, &[(0, 9), (20, 1 << 20)]);
        assert_eq!(took, 64 * 1024);
        assert!(batch.is_full());
        assert_eq!(batch.runs, vec![(0, 10), (20, 64 * 1024 - 20)]);
        drop(batch);
        assert_eq!(budget.free_buffers(), 1);
        let mut again = Batch::default();
        budget.ensure(&mut again).await;
        assert_eq!(
            budget.spare.lock().unwrap().len(),
            0,
            "the buffer is reused"
        );
    }

    /// Records what it is asked to write.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<(u64, Vec<u8>)>>);

    impl RangeWriter for Recorder {
        fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.0.lock().unwrap().push((offset, data.to_vec()));
            Ok(())
        }
        fn sync(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_parked_batch_frees_its_buffer_and_keeps_its_bytes() {
        let budget = WriteBudget::new(MIN_WRITE_BUFFER_BUDGET);
        let everything = [(0, 1 << 20)];
        let mut batch = Batch::default();
        budget.ensure(&mut batch).await;
        assert_eq!(batch.take(100, b"abc", &everything), 3);
        batch.park();
        assert_eq!(budget.free_buffers(), 1, "the buffer went back");
        // Written as it is (the body ended while parked)...
        let recorder = Recorder::default();
        Batch {
            runs: batch.runs.clone(),
            parked: batch.parked.clone(),
            ..Batch::default()
        }
        .write(&recorder)
        .unwrap();
        assert_eq!(*recorder.0.lock().unwrap(), vec![(100, b"abc".to_vec())]);
        // ...or with more bytes once it has a buffer again.
        budget.ensure(&mut batch).await;
        assert_eq!(batch.take(103, b"de", &everything), 2);
        let recorder = Recorder::default();
        batch.write(&recorder).unwrap();
        assert_eq!(*recorder.0.lock().unwrap(), vec![(100, b"abcde".to_vec())]);
    }
}
