//! The subscriptions as stored: `webhooks.json` in the data directory, written whole to a
//! temporary file, fsynced and renamed over the old one, so a crash leaves either the old file
//! or the new. It holds each subscription with its cursor (every event up to it was delivered
//! or dead-lettered) and the dead letters kept for inspection.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The file's name in the data directory.
pub const FILE: &str = "webhooks.json";

/// The stored format's version.
const VERSION: u32 = 1;

/// A subscription as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// `wh-` and 16 hex digits.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// The signing secret (`whsec_...`).
    pub secret: String,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Paused when false: nothing is sent, the cursor waits.
    pub enabled: bool,
    /// Deliveries in flight at once (events of one lead, broker or experiment go one at a time,
    /// in journal order).
    pub concurrency: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Every event from a journal record up to this one was delivered or dead-lettered.
    pub cursor: u64,
}

/// An event given up on after the last attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The subscription.
    pub subscription_id: String,
    /// The event's id (`Webhook-Id`).
    pub webhook_id: String,
    /// Its journal record.
    pub seq: u64,
    /// Its type.
    pub event_type: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's failure.
    pub last_error: String,
    /// When it was given up on.
    pub failed_at: DateTime<Utc>,
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// Subscriptions, oldest first.
    pub subscriptions: Vec<Subscription>,
    /// Dead letters, oldest first, bounded per subscription.
    #[serde(default)]
    pub dead_letters: Vec<DeadLetter>,
}

/// The file in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Reads the file; an absent file is no subscriptions.
pub fn load(path: &Path) -> Result<Stored> {
    match fs::read(path) {
        Ok(bytes) => {
            let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                field: path.display().to_string(),
                reason: format!("unreadable webhook subscriptions: {e}"),
            })?;
            if stored.version > VERSION {
                return Err(Error::Config {
                    field: path.display().to_string(),
                    reason: format!("written by a newer version ({})", stored.version),
                });
            }
            Ok(stored)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored { version: VERSION, ..Stored::default() }),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the file with `stored`, durably.
pub fn save(path: &Path, stored: &Stored) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes =
        serde_json::to_vec_pretty(&Stored { version: VERSION, ..stored.clone() }).map_err(|e| Error::Io(std::io::Error::other(e)))?;
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_back_and_absent_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert!(load(&p).unwrap().subscriptions.is_empty());
        let now = Utc::now();
        let sub = Subscription {
            id: "wh-1".into(),
            url: "http://127.0.0.1:9/x".into(),
            events: vec!["lead.assigned".into()],
            secret: "whsec_x".into(),
            description: None,
            enabled: true,
            concurrency: 2,
            created_at: now,
            updated_at: now,
            cursor: 41,
        };
        let stored = Stored { version: 1, subscriptions: vec![sub], dead_letters: vec![] };
        save(&p, &stored).unwrap();
        assert_eq!(load(&p).unwrap(), stored);
        assert!(!p.with_extension("json.tmp").exists());
        fs::write(&p, b"{").unwrap();
        assert!(matches!(load(&p), Err(Error::Config { .. })));
    }
}
