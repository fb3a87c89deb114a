//! Tests of the storage files: what is written reads back, corruption is refused, and the log
//! survives reopening.

use crate::{LogStore, SnapshotFile, StateStore, StateWrite, frame, unframe};

#[test]
fn log_entries_survive_reopen_and_truncate_and_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    {
        let log = LogStore::open(&path).expect("open");
        let entries: Vec<(u64, Vec<u8>)> = (1..=5).map(|i| (i, vec![i as u8; 3])).collect();
        log.append(&entries).expect("append");
        log.put_hard_state("vote", b"v1", true).expect("vote");
    }
    let log = LogStore::open(&path).expect("reopen");
    assert_eq!(log.last().expect("last"), Some((5, vec![5; 3])));
    assert_eq!(log.hard_state("vote").expect("vote"), Some(b"v1".to_vec()));
    log.truncate_from(4).expect("truncate");
    log.purge_upto(1, b"purged-1").expect("purge");
    let indexes: Vec<u64> = log
        .entries(..)
        .expect("entries")
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(indexes, vec![2, 3]);
    assert_eq!(
        log.hard_state("purged").expect("purged"),
        Some(b"purged-1".to_vec())
    );
}

#[test]
fn frame_detects_a_flipped_bit() {
    let mut bytes = frame(b"payload");
    assert_eq!(unframe(&bytes, "x").expect("valid"), b"payload");
    bytes[6] ^= 1;
    let error = unframe(&bytes, "x").expect_err("corrupt");
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
}

#[test]
fn state_write_is_atomic_and_replace_clears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateStore::open(&dir.path().join("state.redb")).expect("open");
    let write = StateWrite {
        puts: vec![
            (b"k1".to_vec(), b"a".to_vec()),
            (b"k2".to_vec(), b"b".to_vec()),
        ],
        removes: vec![],
        meta: vec![("applied", b"7".to_vec())],
    };
    state.write(&write, false).expect("write");
    state.sync().expect("sync");
    assert_eq!(state.record(b"k1").expect("read"), Some(b"a".to_vec()));
    assert_eq!(state.record_count().expect("count"), 2);
    let replacement = StateWrite {
        puts: vec![(b"k3".to_vec(), b"c".to_vec())],
        removes: vec![],
        meta: vec![],
    };
    state.replace(&replacement).expect("replace");
    assert_eq!(state.record(b"k1").expect("read"), None);
    assert_eq!(state.meta("applied").expect("meta"), None);
    assert_eq!(state.record_count().expect("count"), 1);
}

#[test]
fn snapshot_file_round_trips_and_refuses_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapshot");
    let file = SnapshotFile::new(&path);
    assert!(file.load().expect("load").is_none());
    file.save(b"state bytes").expect("save");
    assert_eq!(file.load().expect("load"), Some(b"state bytes".to_vec()));
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
    assert!(file.load().is_err(), "a corrupt snapshot is refused");
}
