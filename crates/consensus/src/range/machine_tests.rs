//! The range state machine on the member's range data: a replica restarts from its record
//! (no replay of what it applied, no whole-range read), splits seed their right half in
//! place, merges void the local copy of the range they take, and the layout of before (one
//! snapshot file per range) is imported.

use super::*;
use crate::range::files::encode_file;
use openraft::vote::RaftLeaderId;

fn descriptor(id: u64, generation: u64, start: &[u8], end: Option<&[u8]>) -> pb::RangeDescriptor {
    pb::RangeDescriptor {
        id,
        bucket: "b".into(),
        start: start.to_vec(),
        end: end.map(<[u8]>::to_vec),
        replicas: vec![pb::RangeReplica {
            member: 1,
            learner: false,
        }],
        generation,
        ..Default::default()
    }
}

fn files() -> (tempfile::TempDir, RangeFiles) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = RangeFiles::new(dir.path().join("ranges"), 1 << 20).expect("range files");
    (dir, files)
}

fn entry(index: u64, op: pb::range_command::Op) -> Entry {
    Entry {
        log_id: LogId::new(LeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request(pb::Command {
            op: Some(pb::command::Op::Range(pb::RangeCommand {
                op: Some(op),
                ..Default::default()
            })),
        })),
    }
}

fn put(index: u64, key: &[u8]) -> Entry {
    entry(
        index,
        pb::range_command::Op::Put(pb::RangePut {
            key: key.to_vec(),
            value: key.to_vec(),
            ts: Some(pb::Timestamp {
                micros: index * 10,
                logical: 0,
            }),
        }),
    )
}

/// The keys a read of `machine` at a late time sees.
fn keys(machine: &RangeStateMachine) -> Vec<Vec<u8>> {
    machine
        .read_data(|m, _, view| {
            let state = m.state();
            state
                .scan(view, &state.descriptor().start, None, LATE, 1000)
                .expect("store")
                .expect("scan")
                .entries
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        })
        .expect("read")
}

/// A read time after every write of these tests.
const LATE: base::HlcTimestamp = base::HlcTimestamp {
    physical: 1 << 40,
    logical: 0,
};

#[test]
fn a_replica_with_a_log_but_no_state_refuses_to_start() {
    // Issue #37: a bucket's first range, merged since (its descriptor in the metadata now
    // ends at k150), restarted with only its log: building its state from that descriptor
    // and replaying [split, merge] over it lost the merged keys. It must refuse instead.
    let (_dir, files) = files();
    let merged = descriptor(1, 4, b"", Some(b"k150"));
    let refused = RangeStateMachine::open(files.clone(), &merged, true);
    assert!(refused.is_err(), "started from a guessed state");
    // Without a log it is a replica added without state: it starts, awaiting a snapshot.
    assert!(RangeStateMachine::open(files, &merged, false).is_ok());
}

#[test]
fn a_first_range_restarts_from_the_seed_it_was_created_with_not_from_the_metadata() {
    let (_dir, files) = files();
    files
        .save_first_seed(&descriptor(1, 1, b"", None))
        .expect("first seed");
    let merged = descriptor(1, 4, b"", Some(b"k150"));
    let machine = RangeStateMachine::open(files, &merged, true).expect("opens");
    let held = machine.descriptor();
    assert_eq!(held.generation, 1);
    assert_eq!(held.end, None);
}

#[test]
fn a_replica_restarts_from_its_record_with_what_it_applied() {
    let (dir, files) = files();
    files
        .save_first_seed(&descriptor(1, 1, b"", None))
        .expect("first seed");
    let machine =
        RangeStateMachine::open(files.clone(), &descriptor(1, 1, b"", None), true).expect("opens");
    machine
        .apply_batch(vec![put(1, b"a"), put(2, b"b"), put(3, b"c")])
        .expect("apply");
    let before = keys(&machine);
    assert_eq!(before, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    files.store().sync().expect("sync");
    drop((machine, files));
    // A restart: the record says index 3 is applied (openraft replays only after it), and
    // the versions are there without a replay.
    let files = RangeFiles::new(dir.path().join("ranges"), 1 << 20).expect("reopen");
    let mut machine =
        RangeStateMachine::open(files, &descriptor(1, 1, b"", None), true).expect("opens");
    let (applied, _) = futures::executor::block_on(machine.applied_state()).expect("state");
    assert_eq!(applied.map(|l| l.index), Some(3));
    assert_eq!(keys(&machine), before);
    assert_eq!(machine.read(|m, _| m.state().bytes()), 6);
}

#[test]
fn a_split_seeds_its_right_half_in_place_and_a_merge_voids_the_local_copy() {
    let (_dir, files) = files();
    files
        .save_first_seed(&descriptor(1, 1, b"", None))
        .expect("first seed");
    let left =
        RangeStateMachine::open(files.clone(), &descriptor(1, 1, b"", None), true).expect("opens");
    left.apply_batch(vec![put(1, b"a"), put(2, b"n"), put(3, b"p")])
        .expect("apply");
    let (l, r) = (
        descriptor(1, 2, b"", Some(b"m")),
        descriptor(2, 2, b"m", None),
    );
    left.apply_batch(vec![entry(
        4,
        pb::range_command::Op::Split(pb::RangeSplit {
            left: Some(l.clone()),
            right: Some(r.clone()),
        }),
    )])
    .expect("split");
    assert_eq!(keys(&left), vec![b"a".to_vec()]);
    assert!(
        files.has_state(RangeId(2)).expect("look"),
        "the right half's seed"
    );
    let right = RangeStateMachine::open(files.clone(), &r, false).expect("opens");
    assert_eq!(
        keys(&right),
        vec![b"n".to_vec(), b"p".to_vec()],
        "its versions, in place"
    );
    assert_eq!(right.read(|m, _| m.state().bytes()), 4);
    // The right range is frozen and merged back: its frozen state travels in the merge.
    right
        .apply_batch(vec![entry(
            1,
            pb::range_command::Op::Freeze(pb::RangeFreeze {
                generation: 2,
                into: 1,
            }),
        )])
        .expect("freeze");
    let frozen = right.frozen_snapshot_for_test();
    let merged = descriptor(1, 3, b"", None);
    left.apply_batch(vec![entry(
        5,
        pb::range_command::Op::Merge(pb::RangeMerge {
            merged: Some(merged),
            right: Some(frozen),
        }),
    )])
    .expect("merge");
    assert_eq!(
        keys(&left),
        vec![b"a".to_vec(), b"n".to_vec(), b"p".to_vec()]
    );
    assert!(
        files.is_gone(RangeId(2)).expect("look"),
        "the local copy is void"
    );
    // The void copy applies nothing to the span it lost: a write it still gets is refused.
    let replies = right.apply_batch(vec![put(2, b"q")]).expect("void apply");
    assert!(matches!(
        replies[0].op,
        Some(pb::command_response::Op::Range(pb::RangeCommandResponse {
            outcome: Some(pb::range_command_response::Outcome::Refused(_)),
            ..
        }))
    ));
    assert_eq!(
        keys(&left),
        vec![b"a".to_vec(), b"n".to_vec(), b"p".to_vec()]
    );
    // Retiring it leaves the span to the merged range.
    files.retire(RangeId(2)).expect("retire");
    assert_eq!(
        keys(&left),
        vec![b"a".to_vec(), b"n".to_vec(), b"p".to_vec()]
    );
}

#[test]
fn a_retired_replica_s_span_is_cleared_and_it_is_never_seeded_again() {
    let (_dir, files) = files();
    files
        .save_first_seed(&descriptor(1, 1, b"", None))
        .expect("first seed");
    let machine =
        RangeStateMachine::open(files.clone(), &descriptor(1, 1, b"", None), true).expect("opens");
    machine.apply_batch(vec![put(1, b"a")]).expect("apply");
    files.retire(RangeId(1)).expect("retire");
    assert!(!files.has_state(RangeId(1)).expect("look"));
    assert!(files.is_gone(RangeId(1)).expect("look"));
    let read = files.store().read().expect("read");
    let data = read.data("b").expect("table").expect("exists");
    let left = versioned::StoredVersions::new(&data, b"", None)
        .bytes()
        .expect("bytes");
    assert_eq!(left, 0, "no version of the retired replica is left");
    // The replica added back starts without state and awaits its leader's snapshot.
    files.remove(RangeId(1)).expect("forget");
    assert!(RangeStateMachine::open(files, &descriptor(1, 7, b"", None), false).is_ok());
}

#[test]
fn a_snapshot_is_refused_while_another_live_replica_here_holds_part_of_its_span() {
    let (_dir, files) = files();
    files
        .save_first_seed(&descriptor(1, 1, b"", None))
        .expect("first seed");
    let other = descriptor(2, 3, b"m", None);
    assert_eq!(files.overlapping(&other).expect("look"), Some(1));
    files.retire(RangeId(1)).expect("retire");
    assert_eq!(files.overlapping(&other).expect("look"), None);
}

#[test]
fn files_of_the_older_layout_are_imported_once_and_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ranges_dir = dir.path().join("ranges");
    std::fs::create_dir_all(&ranges_dir).expect("dir");
    // Range 1: a snapshot at index 7 with one key; range 2: a seed; range 3: retired.
    let mut machine = ranges::MemRange::new(RangeState::new(topology::descriptor_from_pb(
        &descriptor(1, 1, b"", Some(b"m")),
    )));
    machine.apply(
        1,
        None,
        RangeCommand::Put {
            key: b"a".to_vec(),
            value: b"v".to_vec(),
            ts: base::HlcTimestamp {
                physical: 5,
                logical: 0,
            },
        },
    );
    let frozen = machine.frozen();
    let snapshot = range_codec::snapshot_to_pb(&frozen.machine, "b", &frozen.versions);
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(LeaderId::new(2, 1), 7)),
        last_membership: StoredMembership::default(),
    };
    storage::SnapshotFile::new(&ranges_dir.join("1.snap"))
        .save(&encode_file(&meta, &snapshot.encode_to_vec()))
        .expect("snap");
    let seed = RangeMachine::new(RangeState::new(topology::descriptor_from_pb(&descriptor(
        2, 2, b"m", None,
    ))));
    storage::SnapshotFile::new(&ranges_dir.join("2.seed"))
        .save(&range_codec::snapshot_to_pb(&seed, "b", &[]).encode_to_vec())
        .expect("seed");
    std::fs::write(ranges_dir.join("3.gone"), b"").expect("gone");

    let files = RangeFiles::new(ranges_dir.clone(), 1 << 20).expect("import");
    let mut one =
        RangeStateMachine::open(files.clone(), &descriptor(1, 9, b"", None), true).expect("1");
    let (applied, _) = futures::executor::block_on(one.applied_state()).expect("state");
    assert_eq!(applied.map(|l| l.index), Some(7));
    assert_eq!(keys(&one), vec![b"a".to_vec()]);
    assert!(files.has_state(RangeId(2)).expect("look"));
    assert!(files.is_gone(RangeId(3)).expect("look"));
    let left: Vec<_> = std::fs::read_dir(&ranges_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".redb"))
        .collect();
    assert!(left.is_empty(), "old files removed: {left:?}");
}

#[test]
fn a_snapshot_s_head_names_its_range_without_its_versions() {
    // A receiver vets a snapshot's span before installing it, reading only its head.
    let snapshot = pb::RangeSnapshot {
        descriptor: Some(descriptor(4, 2, b"m", None)),
        versions: vec![pb::RangeVersion {
            key: b"n".to_vec(),
            value: Some(vec![7; 1000]),
            ts: Some(pb::Timestamp {
                micros: 1,
                logical: 0,
            }),
        }],
        applied: 9,
        ..Default::default()
    };
    let head: pb::RangeSnapshotHead =
        codec::decode(&snapshot.encode_to_vec(), "range snapshot").expect("head");
    assert_eq!(head.descriptor, snapshot.descriptor);
}

#[test]
fn freezes_and_merges_are_synced_as_they_apply_and_writes_are_not() {
    // Goal: a power cut never takes a replica back across a freeze or merge (a replica of a
    // range gone from the metadata is not started to replay its log).
    // Method: the rule that picks the batches committed durably.
    use pb::range_command::Op;
    assert!(!changes_descriptor(&put(1, b"k")));
    assert!(!changes_descriptor(&entry(
        2,
        Op::Close(pb::Timestamp {
            micros: 5,
            logical: 0
        })
    )));
    for op in [
        Op::Freeze(pb::RangeFreeze {
            generation: 1,
            into: 2,
        }),
        Op::Merge(pb::RangeMerge::default()),
    ] {
        assert!(changes_descriptor(&entry(3, op.clone())), "{op:?}");
    }
    // A replica change replays from a running range's log; a split is synced by the group
    // before the right half's log exists.
    assert!(!changes_descriptor(&entry(
        4,
        Op::SetDescriptor(descriptor(1, 2, b"", None))
    )));
    assert!(!changes_descriptor(&entry(
        5,
        Op::Split(pb::RangeSplit::default())
    )));
}
