//! Runtime thresholds kept in the state directory (`{state_dir}/thresholds.json`), so a
//! threshold an operator set survives a restart. Written whole, to a temporary file that is
//! fsync'd and renamed over the old one: a crash leaves the old file or the new, never half.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decision::RuntimeThreshold;

const FILE_NAME: &str = "thresholds.json";
const FORMAT_VERSION: u32 = 1;

/// The persisted file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdStoreError {
    #[error("cannot read runtime thresholds from {path}: {reason}; fix or delete the file (deleting it returns every camera to its configured threshold)")]
    Read { path: PathBuf, reason: String },
    #[error("cannot save runtime thresholds to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    v: u32,
    /// Camera id → its runtime threshold. Cameras no longer configured keep their entry, so
    /// a camera taken out of the config and put back finds its threshold again.
    cameras: BTreeMap<String, RuntimeThreshold>,
}

/// The runtime thresholds of every camera, owned by the decision stage.
#[derive(Debug)]
pub struct ThresholdStore {
    path: PathBuf,
    file: StoreFile,
}

impl ThresholdStore {
    /// Reads `{state_dir}/thresholds.json`; a missing file means no runtime thresholds.
    pub fn open(state_dir: &Path) -> Result<ThresholdStore, ThresholdStoreError> {
        let path = state_dir.join(FILE_NAME);
        let read_err = |reason: String| ThresholdStoreError::Read { path: path.clone(), reason };
        let file = match fs::read(&path) {
            Ok(bytes) => {
                let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))?;
                if file.v != FORMAT_VERSION {
                    return Err(read_err(format!("format version {} is not {FORMAT_VERSION}", file.v)));
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                StoreFile { v: FORMAT_VERSION, ..StoreFile::default() }
            }
            Err(e) => return Err(read_err(e.to_string())),
        };
        Ok(ThresholdStore { path, file })
    }

    pub fn get(&self, camera: &str) -> Option<&RuntimeThreshold> {
        self.file.cameras.get(camera)
    }

    /// Sets (or, with `None`, removes) a camera's runtime threshold and saves the file.
    /// The entry stays changed in memory even when the save fails, so the running daemon
    /// applies what it echoed; the error says the value will not survive a restart.
    pub fn set(
        &mut self,
        camera: &str,
        runtime: Option<RuntimeThreshold>,
    ) -> Result<(), ThresholdStoreError> {
        match runtime {
            Some(r) => self.file.cameras.insert(camera.to_string(), r),
            None => self.file.cameras.remove(camera),
        };
        self.save().map_err(|source| ThresholdStoreError::Write { path: self.path.clone(), source })
    }

    fn save(&self) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&self.file).map_err(std::io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("inspectd-thresholds-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn runtime(t: f32) -> RuntimeThreshold {
        RuntimeThreshold {
            threshold: t,
            sensitivity: None,
            set_by: "plc".into(),
            set_at: "2026-12-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn values_survive_reopening_and_a_reset_removes_them() {
        let d = dir("roundtrip");
        let mut store = ThresholdStore::open(&d).expect("no file yet is fine");
        store.set("cam1", Some(runtime(2.5))).expect("saved");
        store.set("cam2", Some(runtime(3.0))).expect("saved");
        store.set("cam2", None).expect("saved");
        let again = ThresholdStore::open(&d).expect("readable");
        assert_eq!(again.get("cam1"), Some(&runtime(2.5)));
        assert_eq!(again.get("cam2"), None);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_file_is_an_error_that_names_it_and_the_fix() {
        let d = dir("damaged");
        fs::create_dir_all(&d).expect("dir");
        fs::write(d.join(FILE_NAME), b"{\"v\": 1, \"cameras\": {\"cam1\": ").expect("write");
        let err = ThresholdStore::open(&d).expect_err("damaged").to_string();
        assert!(err.contains("thresholds.json") && err.contains("delete the file"), "{err}");
        let _ = fs::remove_dir_all(&d);
    }
}
