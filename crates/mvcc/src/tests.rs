//! Unit and property tests of the keyspace: etcd's documented answers for hand-picked cases,
//! and random command sequences checked against a model that keeps a full copy of the
//! keyspace at every revision.

use std::collections::BTreeMap;

use base::EtcdError;
use proptest::prelude::*;
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use proto::mvccpb::KeyValue;

use crate::{ChangeSet, Indexed, Keyspace, Record, RecordSource, Rev, WatchFilter};

/// The records a keyspace wrote, kept in memory as storage would keep them.
#[derive(Default)]
struct Records(BTreeMap<Rev, Record>);

impl RecordSource for Records {
    fn record(&self, rev: Rev) -> Result<Record, EtcdError> {
        self.0
            .get(&rev)
            .cloned()
            .ok_or_else(|| EtcdError::Internal(format!("no record at {rev:?}")))
    }
}

impl Records {
    fn persist(&mut self, changes: ChangeSet) {
        for (rev, record) in changes.puts {
            // Round-trip through the codec so every test also exercises it.
            let decoded = Record::decode(&record.encode()).expect("decode what was encoded");
            self.0.insert(rev, decoded);
        }
        for rev in changes.removed {
            assert!(
                self.0.remove(&rev).is_some(),
                "compaction removed unknown {rev:?}"
            );
        }
    }
}

/// One place that drives a keyspace so the tests read as sequences of etcd calls.
#[derive(Default)]
struct Check {
    keyspace: Keyspace,
    records: Records,
}

impl Check {
    fn put(&mut self, key: &str, value: &str) -> i64 {
        let request = PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        let (_, changes) = self.keyspace.put(&self.records, &request).expect("put");
        self.records.persist(changes);
        self.keyspace.current_revision()
    }
    fn delete(&mut self, key: &str, range_end: &str) -> i64 {
        let request = DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        };
        let (response, changes) = self
            .keyspace
            .delete_range(&self.records, &request)
            .expect("delete");
        self.records.persist(changes);
        response.deleted
    }
    fn range(&self, request: RangeRequest) -> Result<Vec<KeyValue>, EtcdError> {
        self.keyspace.range(&self.records, &request).map(|r| r.kvs)
    }
    fn get(&self, key: &str) -> Option<KeyValue> {
        let request = RangeRequest {
            key: key.into(),
            ..Default::default()
        };
        self.range(request).expect("get").into_iter().next()
    }
    fn txn(&mut self, request: TxnRequest) -> Result<bool, EtcdError> {
        let (response, changes) = self.keyspace.txn(&self.records, &request)?;
        self.records.persist(changes);
        Ok(response.succeeded)
    }
    /// A keyspace rebuilt from the stored records, as a member rebuilds it on start.
    fn restored(&self) -> Keyspace {
        Keyspace::restore(
            self.keyspace.current_revision(),
            self.keyspace.compacted_revision(),
            self.records
                .0
                .iter()
                .map(|(rev, record)| Indexed::of(*rev, record.clone())),
        )
    }
    fn compact(&mut self, revision: i64) -> Result<(), EtcdError> {
        let (_, changes) = self.keyspace.compact(&CompactionRequest {
            revision,
            physical: false,
        })?;
        self.records.persist(changes);
        Ok(())
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

fn version_equals(key: &str, version: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Version as i32,
        key: key.into(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::Version(version)),
    }
}

#[test]
fn fresh_keyspace_starts_at_revision_one_and_puts_advance_it() {
    let mut check = Check::default();
    assert_eq!(check.keyspace.current_revision(), 1);
    assert_eq!(check.put("a", "1"), 2);
    assert_eq!(check.put("a", "2"), 3);
    let kv = check.get("a").expect("a exists");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(kv.value, b"2");
}

#[test]
fn delete_resets_version_and_create_revision() {
    let mut check = Check::default();
    check.put("a", "1");
    assert_eq!(check.delete("a", ""), 1);
    assert_eq!(check.get("a"), None);
    // Deleting a missing key changes nothing, so the revision stays.
    let before = check.keyspace.current_revision();
    assert_eq!(check.delete("a", ""), 0);
    assert_eq!(check.keyspace.current_revision(), before);
    let revision = check.put("a", "2");
    let kv = check.get("a").expect("a exists again");
    assert_eq!((kv.create_revision, kv.version), (revision, 1));
}

#[test]
fn range_reads_history_until_compaction() {
    let mut check = Check::default();
    let first = check.put("a", "1");
    check.put("a", "2");
    let old = RangeRequest {
        key: "a".into(),
        revision: first,
        ..Default::default()
    };
    assert_eq!(check.range(old.clone()).expect("history")[0].value, b"1");
    check.compact(first + 1).expect("compact");
    assert_eq!(check.range(old), Err(EtcdError::Compacted));
    assert_eq!(check.compact(first), Err(EtcdError::Compacted));
    assert_eq!(check.compact(100), Err(EtcdError::FutureRevision));
    let future = RangeRequest {
        key: "a".into(),
        revision: 100,
        ..Default::default()
    };
    assert_eq!(check.range(future), Err(EtcdError::FutureRevision));
}

#[test]
fn range_limit_sort_and_count() {
    let mut check = Check::default();
    for (key, value) in [("k1", "c"), ("k2", "a"), ("k3", "b")] {
        check.put(key, value);
    }
    let request = RangeRequest {
        key: "k".into(),
        range_end: "l".into(),
        limit: 2,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Value as i32,
        ..Default::default()
    };
    let response = check
        .keyspace
        .range(&check.records, &request)
        .expect("range");
    let keys: Vec<&[u8]> = response.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![b"k1".as_slice(), b"k3"]);
    assert_eq!(response.count, 3);
    assert!(response.more);
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        ..Default::default()
    };
    let response = check.keyspace.range(&check.records, &all).expect("count");
    assert_eq!((response.count, response.kvs.len()), (3, 0));
}

#[test]
fn txn_compares_then_writes_at_one_revision() {
    let mut check = Check::default();
    check.put("a", "1");
    let request = TxnRequest {
        compare: vec![version_equals("a", 1)],
        success: vec![put_op("a", "2"), put_op("b", "2")],
        failure: vec![put_op("c", "3")],
    };
    assert_eq!(check.txn(request.clone()), Ok(true));
    let (a, b) = (check.get("a").expect("a"), check.get("b").expect("b"));
    assert_eq!(a.mod_revision, b.mod_revision, "one Txn, one revision");
    assert_eq!(check.txn(request), Ok(false));
    assert_eq!(check.get("c").expect("failure branch ran").value, b"3");
}

#[test]
fn txn_value_compare_on_missing_key_fails() {
    let mut check = Check::default();
    let compare = Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: "missing".into(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::Value(Vec::new())),
    };
    let request = TxnRequest {
        compare: vec![compare],
        success: vec![],
        failure: vec![],
    };
    assert_eq!(check.txn(request), Ok(false));
    let missing_is_version_zero = TxnRequest {
        compare: vec![version_equals("missing", 0)],
        success: vec![],
        failure: vec![],
    };
    assert_eq!(check.txn(missing_is_version_zero), Ok(true));
}

#[test]
fn put_with_ignore_value_on_missing_key_is_refused_and_writes_nothing() {
    let mut check = Check::default();
    let request = PutRequest {
        key: "a".into(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(
        check.keyspace.put(&check.records, &request).err(),
        Some(EtcdError::KeyNotFound)
    );
    assert_eq!(check.keyspace.current_revision(), 1);
    let in_txn = TxnRequest {
        compare: vec![],
        success: vec![
            put_op("b", "1"),
            RequestOp {
                request: Some(Request::RequestPut(request)),
            },
        ],
        failure: vec![],
    };
    assert_eq!(check.txn(in_txn), Err(EtcdError::KeyNotFound));
    assert_eq!(check.get("b"), None, "a refused Txn writes nothing");
}

#[test]
fn validation_refuses_duplicate_keys_and_too_many_ops() {
    use crate::validate;
    let twice = TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "1"), put_op("a", "2")],
        failure: vec![],
    };
    assert_eq!(validate::txn(&twice, 128), Err(EtcdError::DuplicateKey));
    let delete_then_put = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: "a".into(),
                    range_end: "c".into(),
                    ..Default::default()
                })),
            },
            put_op("b", "1"),
        ],
        failure: vec![],
    };
    assert_eq!(
        validate::txn(&delete_then_put, 128),
        Err(EtcdError::DuplicateKey)
    );
    let branches = TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "1")],
        failure: vec![put_op("a", "2")],
    };
    assert_eq!(validate::txn(&branches, 128), Ok(()));
    let nested_both_branches = TxnRequest {
        compare: vec![],
        success: vec![RequestOp {
            request: Some(Request::RequestTxn(branches)),
        }],
        failure: vec![],
    };
    assert_eq!(validate::txn(&nested_both_branches, 128), Ok(()));
    let many = TxnRequest {
        compare: vec![],
        success: (0..3).map(|i| put_op(&i.to_string(), "v")).collect(),
        failure: vec![],
    };
    assert_eq!(validate::txn(&many, 2), Err(EtcdError::TooManyOps));
    let empty = PutRequest::default();
    assert_eq!(validate::put(&empty), Err(EtcdError::EmptyKey));
}

#[test]
fn codec_refuses_corrupt_records() {
    let record = Record {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        create_revision: 2,
        mod_revision: 3,
        version: 2,
        lease: 0,
        tombstone: false,
    };
    let mut bytes = record.encode();
    assert_eq!(Record::decode(&bytes), Ok(record));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    assert!(matches!(
        Record::decode(&bytes),
        Err(crate::CodecError::Checksum { .. })
    ));
    assert_eq!(
        Record::decode(&bytes[..3]),
        Err(crate::CodecError::Truncated)
    );
}

#[test]
fn restore_rebuilds_the_same_index() {
    let mut check = Check::default();
    check.put("a", "1");
    check.put("b", "1");
    check.delete("a", "");
    let restored = check.restored();
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    assert_eq!(
        restored.range(&check.records, &all),
        check.keyspace.range(&check.records, &all)
    );
}

// ---- Property test against a model ----

type WatchedEvent = (i64, bool, KeyValue, Option<KeyValue>);

/// Replays history in batches of `batch`, as a lagging watcher would, resolving prev_kv.
fn replay(
    check: &Check,
    filter: &WatchFilter,
    from: i64,
    batch: usize,
) -> Result<Vec<WatchedEvent>, EtcdError> {
    let mut out = Vec::new();
    let mut next = from;
    while next <= check.keyspace.current_revision() {
        let history = check
            .keyspace
            .history(&check.records, filter, next, batch)?;
        assert!(history.next > next, "history made no progress from {next}");
        for change in history.changes {
            let event = change.to_event(None);
            let prev = match change.prev {
                Some(rev) => Some(to_kv(check.records.record(rev)?)),
                None => None,
            };
            let deleted = event.r#type == proto::mvccpb::event::EventType::Delete as i32;
            out.push((change.rev.main, deleted, event.kv.expect("kv"), prev));
        }
        next = history.next;
    }
    Ok(out)
}

fn to_kv(record: Record) -> KeyValue {
    KeyValue {
        key: record.key,
        create_revision: record.create_revision,
        mod_revision: record.mod_revision,
        version: record.version,
        value: record.value,
        lease: record.lease,
    }
}

/// The model: a full copy of the keyspace at every revision; index = revision.
struct Model {
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compacted: i64,
}

impl Model {
    fn new() -> Model {
        // Revision 0 does not exist; revision 1 is the empty start.
        Model {
            states: vec![BTreeMap::new(), BTreeMap::new()],
            compacted: 0,
        }
    }
    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }
    fn latest(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        self.states.last().expect("never empty")
    }
    fn put(&mut self, key: String, value: String) {
        let mut next = self.latest().clone();
        let main = self.current() + 1;
        let previous = next.get(key.as_bytes()).cloned();
        let kv = KeyValue {
            key: key.clone().into_bytes(),
            create_revision: previous.as_ref().map_or(main, |p| p.create_revision),
            mod_revision: main,
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            value: value.into_bytes(),
            lease: 0,
        };
        next.insert(key.into_bytes(), kv);
        self.states.push(next);
    }
    /// Returns every change since `from` as (revision, deleted, key-value, previous
    /// key-value), derived by comparing consecutive states.
    fn events(&self, filter: &WatchFilter, from: i64) -> Vec<WatchedEvent> {
        let mut out = Vec::new();
        for revision in from.max(2)..=self.current() {
            let before = &self.states[revision as usize - 1];
            let after = &self.states[revision as usize];
            let keys: std::collections::BTreeSet<&Vec<u8>> =
                before.keys().chain(after.keys()).collect();
            for key in keys {
                let deleted = !after.contains_key(key);
                if !filter.matches(key, deleted) {
                    continue;
                }
                // Compaction at `revision` removed what preceded the changes made at it.
                let prev = before
                    .get(key)
                    .cloned()
                    .filter(|_| revision > self.compacted);
                match after.get(key) {
                    Some(kv) if kv.mod_revision == revision => {
                        out.push((revision, false, kv.clone(), prev));
                    }
                    Some(_) => {}
                    None if before.contains_key(key) => {
                        let kv = KeyValue {
                            key: key.clone(),
                            mod_revision: revision,
                            ..Default::default()
                        };
                        out.push((revision, true, kv, prev));
                    }
                    None => {}
                }
            }
        }
        out
    }
    fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
        match end {
            [] => key == start,
            [0] => key >= start,
            end => key >= start && key < end,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(String, String),
    Delete(String, String),
    Range(String, String, i64),
    Compact(i64),
    SwapIfVersion(String, i64, String),
    Watch(String, String, i64, usize, u8),
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "ab", "b", "ba", "c"]).prop_map(str::to_string)
}

fn end_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "", "b", "c", "z", "\0"]).prop_map(str::to_string)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key_strategy(), "[x-z]{0,2}").prop_map(|(k, v)| Op::Put(k, v)),
        1 => (key_strategy(), end_strategy()).prop_map(|(k, e)| Op::Delete(k, e)),
        3 => (key_strategy(), end_strategy(), 0i64..12).prop_map(|(k, e, r)| Op::Range(k, e, r)),
        1 => (0i64..12).prop_map(Op::Compact),
        2 => (key_strategy(), 0i64..3, "[x-z]{1}").prop_map(|(k, v, s)| Op::SwapIfVersion(k, v, s)),
        2 => (key_strategy(), end_strategy(), 1i64..12, 1usize..4, 0u8..3)
            .prop_map(|(k, e, from, batch, filters)| Op::Watch(k, e, from, batch, filters)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn keyspace_matches_model(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let mut check = Check::default();
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Put(key, value) => {
                    let revision = check.put(&key, &value);
                    model.put(key, value);
                    prop_assert_eq!(revision, model.current());
                }
                Op::Delete(key, end) => {
                    let deleted = check.delete(&key, &end);
                    let mut next = model.latest().clone();
                    next.retain(|k, _| !Model::in_range(k, key.as_bytes(), end.as_bytes()));
                    let expected = (model.latest().len() - next.len()) as i64;
                    prop_assert_eq!(deleted, expected);
                    if expected > 0 {
                        model.states.push(next);
                    }
                }
                Op::Range(key, end, revision) => {
                    let request = RangeRequest {
                        key: key.clone().into(), range_end: end.clone().into(), revision,
                        ..Default::default()
                    };
                    let got = check.range(request);
                    let at = if revision <= 0 { model.current() } else { revision };
                    if at > model.current() {
                        prop_assert_eq!(got, Err(EtcdError::FutureRevision));
                    } else if at < model.compacted {
                        prop_assert_eq!(got, Err(EtcdError::Compacted));
                    } else {
                        let expected: Vec<KeyValue> = model.states[at as usize]
                            .iter()
                            .filter(|(k, _)| Model::in_range(k, key.as_bytes(), end.as_bytes()))
                            .map(|(_, v)| v.clone())
                            .collect();
                        prop_assert_eq!(got, Ok(expected));
                    }
                }
                Op::Compact(revision) => {
                    let got = check.compact(revision);
                    if revision <= model.compacted {
                        prop_assert_eq!(got, Err(EtcdError::Compacted));
                    } else if revision > model.current() {
                        prop_assert_eq!(got, Err(EtcdError::FutureRevision));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        model.compacted = revision;
                    }
                }
                Op::Watch(key, end, from, batch, filters) => {
                    let filter = WatchFilter {
                        key: key.clone().into(),
                        range_end: end.clone().into(),
                        no_put: filters == 1,
                        no_delete: filters == 2,
                    };
                    let got = replay(&check, &filter, from, batch);
                    if from < model.compacted {
                        prop_assert_eq!(got, Err(EtcdError::Compacted));
                    } else {
                        prop_assert_eq!(got, Ok(model.events(&filter, from)));
                    }
                }
                Op::SwapIfVersion(key, version, value) => {
                    let request = TxnRequest {
                        compare: vec![version_equals(&key, version)],
                        success: vec![put_op(&key, &value)],
                        failure: vec![],
                    };
                    let actual = model.latest().get(key.as_bytes()).map_or(0, |kv| kv.version);
                    let got = check.txn(request);
                    prop_assert_eq!(got, Ok(actual == version));
                    if actual == version {
                        model.put(key, value);
                    }
                }
            }
            prop_assert_eq!(check.keyspace.current_revision(), model.current());
        }
    }
}

#[test]
fn puts_take_create_revision_and_version_from_the_index_even_after_restore() {
    // Goal: a put without prev_kv reads nothing from storage, yet versions and create
    // revisions stay right across deletes and a rebuilt index. Method: the record source is
    // emptied before the last puts, so any storage read would fail the put.
    let mut check = Check::default();
    let created = check.put("a", "1");
    check.put("a", "2");
    check.delete("a", "");
    let recreated = check.put("a", "3");
    check.put("a", "4");
    check.keyspace = check.restored();
    check.records = Records::default();
    let request = PutRequest {
        key: "a".into(),
        value: "5".into(),
        ..Default::default()
    };
    let (_, changes) = check.keyspace.put(&check.records, &request).expect("put");
    let (_, record) = &changes.puts[0];
    assert_ne!(created, recreated);
    assert_eq!(record.create_revision, recreated);
    assert_eq!(record.version, 3);
    // With prev_kv the previous record is needed, and an empty source is an error.
    let with_prev = PutRequest {
        prev_kv: true,
        ..request
    };
    assert!(check.keyspace.put(&check.records, &with_prev).is_err());
}
