use super::*;

/// A fresh directory per test, removed at the end (no tempfile crate in the tree).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("inspectd-outbox-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn alarm(i: u32) -> Vec<u8> {
    format!(r#"{{"v":1,"alarm_id":"a-{i}"}}"#).into_bytes()
}

fn payloads(outbox: &Outbox) -> Vec<String> {
    outbox.iter().map(|e| String::from_utf8(e.payload.clone()).expect("utf-8")).collect()
}

#[test]
fn entries_come_out_in_arrival_order() {
    let tmp = TempDir::new("order");
    let mut outbox = Outbox::open(&tmp.0, 100).expect("opens");
    for i in 0..12 {
        outbox.push("p/n/cam/alarm", &alarm(i)).expect("stored");
    }
    let seqs: Vec<u64> = outbox.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    assert_eq!(outbox.first().map(|e| e.payload.clone()), Some(alarm(0)));
}

#[test]
fn entries_survive_a_restart_byte_for_byte() {
    let tmp = TempDir::new("restart");
    let mut outbox = Outbox::open(&tmp.0, 100).expect("opens");
    for i in 0..3 {
        outbox.push("p/n/cam/alarm", &alarm(i)).expect("stored");
    }
    let before = payloads(&outbox);
    drop(outbox);

    let mut reopened = Outbox::open(&tmp.0, 100).expect("reopens");
    assert_eq!(payloads(&reopened), before);
    assert_eq!(reopened.first().map(|e| e.topic.as_str()), Some("p/n/cam/alarm"));
    // New entries continue after the survivors, so order holds across restarts.
    let seq = reopened.push("p/n/cam/alarm", &alarm(3)).expect("stored");
    assert_eq!(seq, 4);
}

#[test]
fn removal_on_ack_is_durable() {
    let tmp = TempDir::new("remove");
    let mut outbox = Outbox::open(&tmp.0, 100).expect("opens");
    let first = outbox.push("t", &alarm(0)).expect("stored");
    outbox.push("t", &alarm(1)).expect("stored");
    assert!(outbox.remove(first).expect("removed"));
    assert!(!outbox.remove(first).expect("second removal is a no-op"));
    assert_eq!(outbox.depth(), 1);
    drop(outbox);
    assert_eq!(
        payloads(&Outbox::open(&tmp.0, 100).expect("reopens")),
        vec![String::from_utf8(alarm(1)).expect("utf-8")]
    );
}

#[test]
fn a_full_outbox_refuses_new_alarms_and_keeps_the_stored_ones() {
    let tmp = TempDir::new("bound");
    let mut outbox = Outbox::open(&tmp.0, 3).expect("opens");
    for i in 0..3 {
        outbox.push("t", &alarm(i)).expect("stored");
    }
    for i in 3..6 {
        let err = outbox.push("t", &alarm(i)).expect_err("full");
        assert!(matches!(err, OutboxError::Full { max: 3 }), "{err}");
    }
    assert_eq!(outbox.depth(), 3);
    assert_eq!(outbox.first().map(|e| e.payload.clone()), Some(alarm(0)), "the oldest stays");

    // Room again after an ack: the next alarm is accepted and queued behind the survivors.
    outbox.remove(1).expect("removed");
    assert_eq!(outbox.push("t", &alarm(6)).expect("stored"), 4);
    assert_eq!(payloads(&outbox).last().cloned(), Some(String::from_utf8(alarm(6)).expect("utf-8")));
}

#[test]
fn a_reopened_outbox_over_a_smaller_bound_keeps_everything() {
    let tmp = TempDir::new("shrunk");
    let mut outbox = Outbox::open(&tmp.0, 10).expect("opens");
    for i in 0..5 {
        outbox.push("t", &alarm(i)).expect("stored");
    }
    drop(outbox);
    let mut smaller = Outbox::open(&tmp.0, 2).expect("reopens");
    assert_eq!(smaller.depth(), 5, "stored alarms are never dropped");
    assert!(smaller.push("t", &alarm(5)).is_err());
}

#[test]
fn corrupt_entries_are_moved_aside_and_the_rest_load() {
    let tmp = TempDir::new("corrupt");
    let mut outbox = Outbox::open(&tmp.0, 10).expect("opens");
    for i in 0..3 {
        outbox.push("t", &alarm(i)).expect("stored");
    }
    drop(outbox);
    let damaged = tmp.0.join(format!("{:020}.json", 2));
    fs::write(&damaged, b"{\"topic\": \"t\", \"payl").expect("truncate");
    fs::write(tmp.0.join(format!("{:020}.json.tmp", 9)), b"half").expect("leftover");

    let outbox = Outbox::open(&tmp.0, 10).expect("a corrupt entry is not fatal");
    assert_eq!(outbox.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3]);
    assert!(tmp.0.join("corrupt").join(format!("{:020}.json", 2)).exists(), "kept for a person to inspect");
    assert!(!damaged.exists());
    assert!(!tmp.0.join(format!("{:020}.json.tmp", 9)).exists(), "incomplete writes are discarded");
}

#[test]
fn an_entry_whose_payload_is_not_json_counts_as_corrupt() {
    let tmp = TempDir::new("notjson");
    fs::create_dir_all(&tmp.0).expect("mkdir");
    fs::write(tmp.0.join(format!("{:020}.json", 5)), br#"{"topic":"t","payload":"{oops"}"#).expect("write");
    let outbox = Outbox::open(&tmp.0, 10).expect("opens");
    assert_eq!(outbox.depth(), 0);
    assert!(tmp.0.join("corrupt").join(format!("{:020}.json", 5)).exists());
}

#[test]
fn an_unusable_directory_is_an_error_naming_it() {
    let tmp = TempDir::new("notadir");
    fs::create_dir_all(tmp.0.parent().expect("parent")).expect("mkdir");
    fs::write(&tmp.0, b"a file, not a directory").expect("write");
    let err = Outbox::open(&tmp.0, 10).expect_err("not a directory");
    assert!(err.to_string().contains(&tmp.0.display().to_string()), "{err}");
    let _ = fs::remove_file(&tmp.0);
}
