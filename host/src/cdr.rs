//! Call detail records: one JSON object per line, appended and flushed when a call ends, so that a
//! crash loses at most the calls still in progress.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::plugin::decision::{CallOutcome, Initiator};

/// One finished call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    /// The host's number for the call.
    pub call_ref: u64,
    /// The caller's Call-ID.
    pub a_call_id: String,
    /// The Call-ID of the leg the gateway placed, if any.
    pub b_call_id: Option<String>,
    /// The caller (A-leg From URI).
    pub from: String,
    /// Whom the caller dialled (A-leg To URI).
    pub to: String,
    /// Where the B leg was sent.
    pub b_target: Option<String>,
    /// When the INVITE arrived, Unix time in milliseconds.
    pub start_unix_ms: u64,
    /// INVITE to answer (or end).
    pub setup_ms: u64,
    /// Answer to end.
    pub talk_ms: u64,
    /// How it ended.
    pub outcome: CallOutcome,
    /// The final status sent to the caller.
    pub status: u16,
    /// Why, for people.
    pub reason: String,
    /// Who ended it.
    pub ended_by: Initiator,
    /// The plugins of the chain the call ran through.
    pub plugins: Vec<String>,
    /// The chain's shared per-call state at the end.
    pub state: Vec<(String, String)>,
}

/// Appends records to a file.
#[derive(Debug)]
pub struct CdrWriter {
    file: Mutex<std::fs::File>,
}

impl CdrWriter {
    /// Opens (creating) the file for appending.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("opening CDR file {}: {e}", path.display()))?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Writes one record as a line and flushes it.
    pub fn write(&self, r: &CallRecord) {
        let mut line = match serde_json::to_vec(r) {
            Ok(l) => l,
            Err(e) => return tracing::error!("CDR not serialisable: {e}"),
        };
        line.push(b'\n');
        if let Ok(mut f) = self.file.lock()
            && let Err(e) = f.write_all(&line).and_then(|()| f.flush())
        {
            tracing::error!("writing CDR: {e}");
        }
    }
}
