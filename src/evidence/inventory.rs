//! What the evidence directory holds, oldest first, with running totals: retention
//! decides from this instead of listing the disk after every save.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::naming::ItemKey;

/// One file on disk and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredFile {
    pub path: PathBuf,
    pub bytes: u64,
}

/// How much evidence is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub files: usize,
    pub bytes: u64,
}

/// Evidence items by age. An item is the frame and heatmap of one save; they are aged out
/// together, since an alarm message points at both.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    items: BTreeMap<ItemKey, Vec<StoredFile>>,
    usage: Usage,
}

impl Inventory {
    pub(crate) fn usage(&self) -> Usage {
        self.usage
    }

    /// Records a file; a file written again at the same path (the same frame saved twice)
    /// replaces its old size instead of being counted twice.
    pub(crate) fn insert(&mut self, key: ItemKey, file: StoredFile) {
        let files = self.items.entry(key).or_default();
        if let Some(old) = files.iter_mut().find(|f| f.path == file.path) {
            self.usage.bytes = self.usage.bytes - old.bytes + file.bytes;
            old.bytes = file.bytes;
        } else {
            self.usage.files += 1;
            self.usage.bytes += file.bytes;
            files.push(file);
        }
    }

    /// Whether usage exceeds either cap.
    pub(crate) fn over(&self, max_files: usize, max_bytes: u64) -> bool {
        self.usage.files > max_files || self.usage.bytes > max_bytes
    }

    /// Takes the oldest item other than `keep` out of the inventory.
    pub(crate) fn take_oldest_except(&mut self, keep: &ItemKey) -> Option<Vec<StoredFile>> {
        let key = self.items.keys().find(|k| *k != keep)?.clone();
        let files = self.items.remove(&key)?;
        self.usage.files -= files.len();
        self.usage.bytes -= files.iter().map(|f| f.bytes).sum::<u64>();
        Some(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn key(secs: u64) -> ItemKey {
        ItemKey::new("cam", secs, UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn file(name: &str, bytes: u64) -> StoredFile {
        StoredFile { path: PathBuf::from(name), bytes }
    }

    #[test]
    fn rewriting_a_file_updates_its_size_without_counting_it_twice() {
        let mut inv = Inventory::default();
        inv.insert(key(1), file("a", 10));
        inv.insert(key(1), file("b", 5));
        inv.insert(key(1), file("a", 7));
        assert_eq!(inv.usage(), Usage { files: 2, bytes: 12 });
    }

    #[test]
    fn oldest_items_come_out_first_skipping_the_one_to_keep() {
        let mut inv = Inventory::default();
        for s in [3, 1, 2] {
            inv.insert(key(s), file(&s.to_string(), s));
        }
        assert!(inv.over(2, 100) && !inv.over(3, 100) && inv.over(3, 5));
        let first = inv.take_oldest_except(&key(1)).expect("two others");
        assert_eq!(first, vec![file("2", 2)]);
        assert_eq!(inv.usage(), Usage { files: 2, bytes: 4 });
        inv.take_oldest_except(&key(1));
        assert_eq!(inv.take_oldest_except(&key(1)), None, "only the kept item is left");
    }
}
