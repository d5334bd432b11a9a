//! `inventory dev --events-out FILE`: the notices the snapshotter tells, as CloudEvents JSON
//! lines appended to a file (the event bus of a deployment, for a developer to `tail -f`), and
//! [`Boards`], to tell a file and a bus alike.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use inventory_core::cloud_events::CloudEvent;
use inventory_core::domain::Noticed;
use inventory_core::ports::{NoticeBoard, PublishError};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// What `inventory dev` names itself as, as the CloudEvents `source`.
pub const DEV_SOURCE: &str = "/inventory/dev";

/// A file of CloudEvents JSON lines, appended to.
#[derive(Debug)]
pub struct NoticeFile {
    file: Mutex<tokio::fs::File>,
}

impl NoticeFile {
    /// Opens `path` to append to (created if missing).
    pub async fn open(path: &Path) -> Result<Self, String> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|err| format!("cannot open {} for the events: {err}", path.display()))?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }
}

#[async_trait]
impl NoticeBoard for NoticeFile {
    async fn publish(&self, notices: &[Noticed]) -> Result<(), PublishError> {
        let mut lines = Vec::new();
        for noticed in notices {
            serde_json::to_writer(&mut lines, &CloudEvent::of(noticed, DEV_SOURCE))
                .map_err(|err| PublishError(err.to_string()))?;
            lines.push(b'\n');
        }
        let mut file = self.file.lock().await;
        file.write_all(&lines)
            .await
            .map_err(|err| PublishError(err.to_string()))?;
        file.flush()
            .await
            .map_err(|err| PublishError(err.to_string()))
    }
}

/// Several boards told the same notices, one after the other (`inventory dev --endpoint-url`
/// with `--events-out`: the bus and the file).
pub struct Boards(pub Vec<Arc<dyn NoticeBoard>>);

impl std::fmt::Debug for Boards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Boards").field(&self.0.len()).finish()
    }
}

#[async_trait]
impl NoticeBoard for Boards {
    async fn publish(&self, notices: &[Noticed]) -> Result<(), PublishError> {
        for board in &self.0 {
            board.publish(notices).await?;
        }
        Ok(())
    }
}
