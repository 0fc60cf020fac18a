//! The durable alarm outbox (design.md §3): an alarm is on disk before the MQTT client sees it
//! and leaves the disk only after the broker's PUBACK, so neither a broker outage nor a
//! restart of inspectd loses it.
//!
//! Layout: one file per alarm in the outbox directory, named by a monotonically increasing
//! sequence number (`00000000000000000042.json`), holding `{"topic": …, "payload": "…"}`. A
//! file per entry makes removal on PUBACK a single unlink instead of a log rewrite, and a
//! torn write can only ever damage the one entry being written. Writes go to `*.tmp`, are
//! fsync'd, renamed into place and the directory is fsync'd, so an entry either exists whole
//! or not at all. Removal is not followed by a directory fsync: a crash right after a PUBACK
//! can resurrect that entry, which means one duplicate delivery (consumers de-duplicate by
//! `alarm_id` + `event`) and saves an fsync per alarm.
//!
//! Bound policy (`mqtt.outbox_max_alarms`): when the outbox is full a new alarm is *refused*
//! ([`OutboxError::Full`]) and counted; nothing already on disk is ever dropped. The oldest
//! entries are the start of an incident, which is what an operator needs to reconstruct it,
//! and the caller learns synchronously that its alarm was not stored, so a loss is never
//! silent. The current alarm state still reaches a PLC through the retained `alarm/state`
//! topic, which does not go through the outbox. One warning is logged per fill episode; the
//! episode ends when the outbox has drained below 90 % of the bound.
//!
//! Files that cannot be read back at start are moved to `corrupt/` with a warning instead of
//! stopping the daemon: one damaged alarm must not hold back the others.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// File name suffix of a complete entry.
const ENTRY_SUFFIX: &str = ".json";
/// File name suffix of an entry being written; leftovers are from a crash mid-write.
const TEMP_SUFFIX: &str = ".json.tmp";
/// Where unreadable entries are moved, for a person to look at.
const CORRUPT_DIR: &str = "corrupt";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },

    #[error("full ({max} alarms wait for the broker); the new alarm was refused")]
    Full { max: usize },
}

impl OutboxError {
    /// Both clear up by themselves: the outbox drains when the broker is back, and a disk
    /// error (full disk) may go away. A caller may retry later.
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// One stored alarm, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Order of arrival; entries are published in this order.
    pub seq: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What an entry file holds. The payload is kept as the exact string that was published, so
/// a replay is byte-identical to the first attempt.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    topic: String,
    payload: String,
}

/// The outbox directory and an in-memory copy of its entries (a few hundred bytes each, at
/// most `max` of them), so publishing never reads the disk.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    entries: BTreeMap<u64, OutboxEntry>,
    next_seq: u64,
    max: usize,
    /// A warning was logged in the current fill episode.
    full_warned: bool,
}

impl Outbox {
    /// Opens (creating) the outbox directory and loads the entries left by a previous run.
    pub fn open(dir: &Path, max: usize) -> Result<Outbox, OutboxError> {
        fs::create_dir_all(dir).map_err(io_err("create the outbox directory", dir))?;
        let mut entries = BTreeMap::new();
        let listing = fs::read_dir(dir).map_err(io_err("list the outbox directory", dir))?;
        for item in listing {
            let path = item.map_err(io_err("list the outbox directory", dir))?.path();
            if let Some(entry) = load_path(dir, &path) {
                entries.insert(entry.seq, entry);
            }
        }
        let next_seq = entries.keys().next_back().map_or(1, |last| last + 1);
        let outbox = Outbox { dir: dir.to_path_buf(), entries, next_seq, max, full_warned: false };
        if outbox.depth() > 0 {
            info!(
                dir = %dir.display(),
                alarms = outbox.depth(),
                "Alarm outbox holds alarms from a previous run; they will be sent first."
            );
        }
        Ok(outbox)
    }

    /// Stores an alarm durably and returns its sequence number; refuses it when full.
    pub fn push(&mut self, topic: &str, payload: &[u8]) -> Result<u64, OutboxError> {
        if self.entries.len() >= self.max {
            return Err(self.refuse());
        }
        let seq = self.next_seq;
        let file =
            EntryFile { topic: topic.to_string(), payload: String::from_utf8_lossy(payload).into_owned() };
        let bytes = serde_json::to_vec(&file).expect("a struct of two strings always serializes");
        self.write_entry(seq, &bytes)?;
        self.next_seq += 1;
        self.entries.insert(seq, OutboxEntry { seq, topic: file.topic, payload: file.payload.into_bytes() });
        Ok(seq)
    }

    /// Forgets an entry after its PUBACK. Returns false when it was not there (already removed).
    pub fn remove(&mut self, seq: u64) -> Result<bool, OutboxError> {
        if self.entries.remove(&seq).is_none() {
            return Ok(false);
        }
        let path = self.entry_path(seq);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("remove", &path)(e)),
            _ => {}
        }
        if self.full_warned && self.entries.len() * 10 <= self.max * 9 {
            self.full_warned = false;
            info!(alarms = self.depth(), "Alarm outbox has room again.");
        }
        Ok(true)
    }

    /// The oldest entry: the next one to publish.
    pub fn first(&self) -> Option<&OutboxEntry> {
        self.entries.values().next()
    }

    /// Entries in publish order.
    pub fn iter(&self) -> impl Iterator<Item = &OutboxEntry> {
        self.entries.values()
    }

    /// Alarms waiting for a PUBACK (the `inspectd_mqtt_outbox_alarms` gauge).
    pub fn depth(&self) -> usize {
        self.entries.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn refuse(&mut self) -> OutboxError {
        if !self.full_warned {
            self.full_warned = true;
            warn!(
                dir = %self.dir.display(),
                max = self.max,
                "Alarm outbox is full (mqtt.outbox_max_alarms): new alarms are refused until stored ones \
                 are acknowledged."
            );
        }
        OutboxError::Full { max: self.max }
    }

    /// Temp file, fsync, rename, directory fsync: the entry exists whole or not at all.
    fn write_entry(&self, seq: u64, bytes: &[u8]) -> Result<(), OutboxError> {
        let temp = self.dir.join(format!("{seq:020}{TEMP_SUFFIX}"));
        let path = self.entry_path(seq);
        let written = write_synced(&temp, bytes)
            .map_err(io_err("write", &temp))
            .and_then(|()| fs::rename(&temp, &path).map_err(io_err("rename into place", &path)))
            .and_then(|()| sync_dir(&self.dir));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    fn entry_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}{ENTRY_SUFFIX}"))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename durable: the new directory entry is on disk when this returns.
fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync the outbox directory", dir))
}

/// One directory item at start: an entry, a leftover to delete, or something to move aside.
fn load_path(dir: &Path, path: &Path) -> Option<OutboxEntry> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(TEMP_SUFFIX) {
        // The writer crashed before the rename, so its caller never heard "stored".
        if let Err(e) = fs::remove_file(path) {
            warn!(path = %path.display(), error = %e, "Cannot remove an incomplete outbox entry.");
        }
        return None;
    }
    let seq = name.strip_suffix(ENTRY_SUFFIX)?.parse::<u64>().ok()?;
    match read_entry(path, seq) {
        Ok(entry) => Some(entry),
        Err(reason) => {
            move_aside(dir, path, &reason);
            None
        }
    }
}

fn read_entry(path: &Path, seq: u64) -> Result<OutboxEntry, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let file: EntryFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if file.topic.is_empty() {
        return Err("empty topic".to_string());
    }
    serde_json::from_str::<serde_json::Value>(&file.payload)
        .map_err(|e| format!("payload is not JSON: {e}"))?;
    Ok(OutboxEntry { seq, topic: file.topic, payload: file.payload.into_bytes() })
}

fn move_aside(dir: &Path, path: &Path, reason: &str) {
    let aside = dir.join(CORRUPT_DIR);
    let target = aside.join(path.file_name().unwrap_or_default());
    let moved = fs::create_dir_all(&aside).and_then(|()| fs::rename(path, &target));
    match moved {
        Ok(()) => {
            warn!(
                path = %path.display(),
                moved_to = %target.display(),
                %reason,
                "Unreadable alarm outbox entry moved aside; it will not be sent."
            )
        }
        Err(e) => {
            warn!(
                path = %path.display(),
                %reason,
                error = %e,
                "Unreadable alarm outbox entry skipped; it could not be moved aside."
            )
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OutboxError {
    let path = path.to_path_buf();
    move |source| OutboxError::Io { op, path, source }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
