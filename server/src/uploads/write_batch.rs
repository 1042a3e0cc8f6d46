//! The memory of the chunk write path. Bytes taken off the socket wait, as the `Bytes` pieces
//! they arrived in (never copied), in a batch of up to [`WRITE_BATCH`] bytes, written by one
//! vectored positioned write on the blocking pool. A process-wide [`WriteBudget`] counts the
//! bytes of every batch being filled or written: a chunk reserves a batch's worth before it reads
//! the bytes to fill it, and waits (reading nothing, so TCP holds the sender back) while the
//! budget is spent. Each chunk fills one batch while its previous one is written. A chunk holds
//! at most two batches and one piece read before its reservation, and gives its reservation back
//! when its client goes quiet.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::claims::Segment;
use crate::error::Result;
use crate::store::RangeWriter;

/// Bytes gathered before one hand-off to the blocking pool (measured in docs/BENCHMARKS.md:
/// 128 KiB hand-offs cost more CPU per GiB; larger batches gain little more and hold more).
pub const WRITE_BATCH: usize = 1024 * 1024;

/// The smallest budget the server accepts (`--write-buffer-budget`).
pub const MIN_WRITE_BUFFER_BUDGET: u64 = 64 * 1024;

/// Bytes of chunk bodies that all chunks in flight may hold between the socket and the store.
#[derive(Debug, Clone)]
pub struct WriteBudget {
    bytes: Arc<Semaphore>,
    batch: usize,
}

impl WriteBudget {
    /// A budget of `bytes` (validated by the configuration: at least the minimum).
    pub fn new(bytes: u64) -> Self {
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(bytes)),
            batch: WRITE_BATCH.min(bytes),
        }
    }

    /// Waits for one batch's worth of the budget; it goes back when the permit is dropped.
    async fn reserve(&self) -> OwnedSemaphorePermit {
        let batch = u32::try_from(self.batch).unwrap_or(u32::MAX);
        match self.bytes.clone().acquire_many_owned(batch).await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => unreachable!("the write budget's semaphore was closed"),
        }
    }

    /// Reserves a batch's worth for `batch` unless it holds one.
    pub(super) async fn ensure(&self, batch: &mut Batch) {
        if !batch.is_reserved() {
            batch.reserve(self.reserve().await);
        }
    }

    /// Bytes of the budget not reserved right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// One batch being filled: pieces at their file offsets, under a reservation of the budget.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pieces: Vec<(u64, Bytes)>,
    /// Body bytes taken into this batch (those outside the claimed segments included).
    taken: usize,
    room: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Batch {
    pub(super) fn is_reserved(&self) -> bool {
        self.permit.is_some()
    }

    /// Gives the reservation back (the batch must have been handed off: it holds nothing).
    pub(super) fn release(&mut self) {
        debug_assert!(self.pieces.is_empty());
        *self = Self::default();
    }

    fn reserve(&mut self, permit: OwnedSemaphorePermit) {
        self.room = permit.num_permits();
        self.permit = Some(permit);
    }

    pub(super) fn is_full(&self) -> bool {
        self.taken >= self.room
    }

    /// Takes what fits of `piece` (the body's bytes from file offset `at`), keeping only the
    /// bytes inside `segments`; returns the rest, for the next batch.
    pub(super) fn take(&mut self, at: u64, mut piece: Bytes, segments: &[Segment]) -> Bytes {
        let fits = piece.len().min(self.room - self.taken);
        let head = piece.split_to(fits);
        self.taken += fits;
        self.pieces.extend(pieces_within(at, &head, segments));
        piece
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
    /// keeps its reservation for the next bytes.
    pub(super) async fn hand_off(
        &mut self,
        batch: &mut Batch,
        writer: impl std::future::Future<Output = Result<Arc<dyn RangeWriter>>>,
    ) -> Result<()> {
        if batch.pieces.is_empty() {
            batch.taken = 0;
            return Ok(());
        }
        let w = match &self.writer {
            Some(w) => w.clone(),
            None => self.writer.insert(writer.await?).clone(),
        };
        let full = std::mem::take(batch);
        self.finish().await?;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            // The reservation goes back once the bytes are in the store.
            let Batch { pieces, permit, .. } = full;
            let written = w.write_pieces(&pieces);
            drop(permit);
            written
        }));
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

/// The parts of `data` (which starts at file offset `at`) that fall inside `segments`, as
/// (file offset, bytes) pairs; slicing `Bytes` copies nothing.
pub(super) fn pieces_within(at: u64, data: &Bytes, segments: &[Segment]) -> Vec<(u64, Bytes)> {
    let end = at + data.len() as u64; // exclusive
    segments
        .iter()
        .filter_map(|&(s, e)| {
            let from = s.max(at);
            let to = (e + 1).min(end);
            (from < to).then(|| {
                let lo = usize::try_from(from - at).unwrap_or(0);
                let hi = usize::try_from(to - at).unwrap_or(0);
                (from, data.slice(lo..hi))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bytes_inside_the_claimed_segments_are_written() {
        let data = Bytes::from_static(b"0123456789");
        let got = pieces_within(100, &data, &[(95, 101), (104, 105), (109, 200)]);
        let got: Vec<(u64, &[u8])> = got.iter().map(|(o, d)| (*o, d.as_ref())).collect();
        assert_eq!(got, vec![(100, &b"01"[..]), (104, b"45"), (109, b"9")]);
        assert!(pieces_within(0, &data, &[(10, 20)]).is_empty());
    }

    #[tokio::test]
    async fn a_batch_takes_what_its_reservation_holds_and_returns_the_rest() {
        let budget = WriteBudget::new(MIN_WRITE_BUFFER_BUDGET);
        let mut batch = Batch::default();
        budget.ensure(&mut batch).await;
        assert_eq!(budget.available(), 0);
        let piece = Bytes::from(vec![7u8; 100 * 1024]);
        let rest = batch.take(0, piece, &[(0, 1 << 20)]);
        assert!(batch.is_full());
        assert_eq!(rest.len(), 36 * 1024);
        assert_eq!(batch.pieces[0].1.len(), 64 * 1024);
        drop(batch);
        assert_eq!(budget.available(), 64 * 1024);
    }
}
