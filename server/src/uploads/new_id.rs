//! Opening under an id the client chose (`X-Upload-New-Id`). Sending the same open again (after
//! an answer that never arrived, on any instance) finds the same session instead of opening a
//! second upload of one file, and the client knows its upload id before the first answer, so it
//! can keep it for a resume from the start.

use droppr_protocol::wire::ErrorCode;

use super::{blocking, client_error, target_free, OpenUpload, Uploads};
use crate::error::Result;
use crate::meta::{SessionState, UploadRequest, UploadSession};

/// How often, and how long, a repeated open waits for the first copy to make the bytes' place.
const PLACE_CHECKS: u32 = 40;
const PLACE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
/// A session this much older than its missing place lost the request that claimed it.
const ORPHANED_AFTER_SECS: i64 = 30;

/// How an open got its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// This request made it.
    Created,
    /// An earlier request with the same `X-Upload-New-Id` made it.
    Found,
}

impl Uploads {
    /// Opens a session, under `new_id` when the client chose one; an open session of the same
    /// upload (link, path, size) under that id is answered instead, any other is 409
    /// `upload-id-taken`.
    pub async fn open_as(
        &self,
        request: &UploadRequest,
        open: OpenUpload,
        client: &str,
        new_id: Option<String>,
    ) -> Result<(UploadSession, Opened)> {
        let Some(id) = new_id else {
            return Ok((self.open(request, open, client).await?, Opened::Created));
        };
        if let Some(found) = self.same_upload(request, &id, &open).await? {
            return Ok((found, Opened::Found));
        }
        match self.claim_new_id(request, &open, client, &id).await {
            Ok(session) => Ok((self.after_open(request, session).await?, Opened::Created)),
            // A twin of this request may have claimed the id first.
            Err(e) => match self.same_upload(request, &id, &open).await? {
                Some(found) => Ok((found, Opened::Found)),
                None => Err(e),
            },
        }
    }

    /// The session under `id`, if it is this upload's; 409 if it is another upload's.
    async fn same_upload(
        &self,
        request: &UploadRequest,
        id: &str,
        open: &OpenUpload,
    ) -> Result<Option<UploadSession>> {
        let (meta, owned) = (self.meta.clone(), id.to_owned());
        let Some(session) = blocking(move || meta.session(&owned)).await? else {
            return Ok(None);
        };
        let same = session.request_hash == request.hash
            && session.rel_path == open.path.as_str()
            && session.size() == open.size;
        if !same {
            return Err(client_error(
                ErrorCode::UploadIdTaken,
                "Another upload has that id: choose a new X-Upload-New-Id.",
            ));
        }
        tracing::debug!(upload = %super::log_tag(id), "open repeated: the session exists");
        self.wait_for_place(&session).await?;
        Ok(Some(session))
    }

    /// A session found under a chosen id has its metadata row; its bytes' place is made right
    /// after by the request that claimed the id, which may still be at it (a copy of the same
    /// open on another connection or instance), or may have died between the two steps.
    async fn wait_for_place(&self, session: &UploadSession) -> Result<()> {
        // Bytes recorded, or finished: the place was made (and may be gone into the file).
        if session.state != SessionState::Open || session.ranges.received_bytes() > 0 {
            return Ok(());
        }
        for _ in 0..PLACE_CHECKS {
            let (store, id) = (self.store.clone(), session.id.clone());
            if blocking(move || Ok(store.age(&id)?)).await?.is_some() {
                return Ok(());
            }
            if crate::now_secs().saturating_sub(session.created_at) > ORPHANED_AFTER_SECS {
                // Its claimer is gone: this request makes the place (nothing was written yet,
                // since nothing can be written without it).
                let (store, id, size) = (self.store.clone(), session.id.clone(), session.size());
                blocking(move || Ok(store.create(&id, size)?)).await?;
                return Ok(());
            }
            tokio::time::sleep(PLACE_CHECK_INTERVAL).await;
        }
        Err(client_error(
            ErrorCode::SessionConflict,
            "The upload is still being opened by another copy of this request: send it again.",
        ))
    }

    /// Stores a new session under `id`. The metadata row comes first: its primary key admits one
    /// session per id on every instance that shares the metadata, and only the request that
    /// got it makes the bytes' place (two requests making one id's place at once could not tell
    /// their bytes apart).
    async fn claim_new_id(
        &self,
        request: &UploadRequest,
        open: &OpenUpload,
        client: &str,
        id: &str,
    ) -> Result<UploadSession> {
        let session = self.new_session(request, open, client, id.to_owned())?;
        let (store, meta, space, s) = (
            self.store.clone(),
            self.meta.clone(),
            self.space.clone(),
            session.clone(),
        );
        let (folder, path) = (request.folder.clone(), open.path.clone());
        let caps = self.config.resources.reserve;
        blocking(move || {
            target_free(&*store, &folder, &path)?;
            space.check_room(s.size())?;
            meta.insert_session(&s, caps)?;
            if let Err(e) = store.create(&s.id, s.size()) {
                let _ = meta.delete_session(&s.id);
                return Err(e.into());
            }
            Ok(())
        })
        .await?;
        Ok(session)
    }
}
