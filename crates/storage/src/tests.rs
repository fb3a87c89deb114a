//! Tests of the storage files: what is written reads back, corruption is refused, and the log
//! survives reopening.

use crate::{GroupWrite, LogStore, SnapshotFile, StateStore, StateWrite, frame, unframe};

#[test]
fn log_entries_survive_reopen_and_truncate_and_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    {
        let log = LogStore::open(&path).expect("open");
        let entries: Vec<(u64, Vec<u8>)> = (1..=5).map(|i| (i, vec![i as u8; 3])).collect();
        log.append(0, &entries).expect("append");
        log.put_hard_state(0, "vote", b"v1", true).expect("vote");
    }
    let log = LogStore::open(&path).expect("reopen");
    assert_eq!(log.last(0).expect("last"), Some((5, vec![5; 3])));
    assert_eq!(
        log.hard_state(0, "vote").expect("vote"),
        Some(b"v1".to_vec())
    );
    log.truncate_from(0, 4).expect("truncate");
    log.purge_upto(0, 1, b"purged-1").expect("purge");
    let indexes: Vec<u64> = log
        .entries(0, ..)
        .expect("entries")
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(indexes, vec![2, 3]);
    assert_eq!(
        log.hard_state(0, "purged").expect("purged"),
        Some(b"purged-1".to_vec())
    );
}

#[test]
fn groups_share_one_batch_and_stay_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = LogStore::open(&dir.path().join("log.redb")).expect("open");
    let a: Vec<(u64, Vec<u8>)> = (1..=4).map(|i| (i, vec![b'a'; i as usize])).collect();
    let b: Vec<(u64, Vec<u8>)> = (1..=6).map(|i| (i, vec![b'b'; i as usize])).collect();
    // One transaction (one fsync) for both groups' appends and a hard-state value.
    log.write_batch(
        &[
            GroupWrite {
                group: 7,
                entries: &a,
                hard_state: &[("committed", b"c7")],
            },
            GroupWrite {
                group: 9,
                entries: &b,
                hard_state: &[],
            },
        ],
        true,
    )
    .expect("batch");
    assert_eq!(log.groups().expect("groups"), vec![7, 9]);
    assert_eq!(log.last(7).expect("last").map(|(i, _)| i), Some(4));
    assert_eq!(log.last(9).expect("last").map(|(i, _)| i), Some(6));
    assert_eq!(log.last(8).expect("last"), None);
    assert_eq!(log.hard_state(9, "committed").expect("read"), None);
    // Truncating and purging one group leaves the other whole.
    log.truncate_from(9, 5).expect("truncate");
    log.purge_upto(7, 2, b"p7").expect("purge");
    let indexes = |group| -> Vec<u64> {
        log.entries(group, ..)
            .expect("entries")
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(indexes(7), vec![3, 4]);
    assert_eq!(indexes(9), vec![1, 2, 3, 4]);
    assert_eq!(
        log.entries(9, 2..4).expect("range"),
        vec![(2, b"bb".to_vec()), (3, b"bbb".to_vec())]
    );
    // A group that leaves takes its entries and hard state with it.
    log.remove_group(7).expect("remove");
    assert_eq!(log.groups().expect("groups"), vec![9]);
    assert_eq!(log.hard_state(7, "committed").expect("read"), None);
    assert_eq!(log.hard_state(7, "purged").expect("read"), None);
    assert_eq!(indexes(9), vec![1, 2, 3, 4]);
}

#[test]
fn a_log_from_before_groups_becomes_group_zero() {
    use redb::TableDefinition;
    const OLD_ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
    const OLD_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_hard_state");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let tx = db.begin_write().expect("tx");
        {
            let mut entries = tx.open_table(OLD_ENTRIES).expect("table");
            for i in 1..=3u64 {
                entries
                    .insert(i, frame(&[i as u8]).as_slice())
                    .expect("insert");
            }
            let mut state = tx.open_table(OLD_STATE).expect("table");
            state
                .insert("vote", frame(b"v").as_slice())
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let log = LogStore::open(&path).expect("open and migrate");
    assert_eq!(log.groups().expect("groups"), vec![0]);
    assert_eq!(
        log.entries(0, ..).expect("entries"),
        vec![(1, vec![1]), (2, vec![2]), (3, vec![3])]
    );
    assert_eq!(
        log.hard_state(0, "vote").expect("vote"),
        Some(b"v".to_vec())
    );
    drop(log);
    // Opening again finds nothing left to move and keeps the data.
    let log = LogStore::open(&path).expect("reopen");
    assert_eq!(log.last(0).expect("last"), Some((3, vec![3])));
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
