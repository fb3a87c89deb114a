//! Txn: compares evaluated against the state before the Txn (for nested Txns too, as etcd
//! does), then the chosen branch executed at one new revision.

use base::{EtcdError, Revision};
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response;
use proto::etcdserverpb::{Compare, RangeRequest, ResponseOp, TxnRequest, TxnResponse};
use proto::mvccpb::KeyValue;

use crate::keyspace::{ChangeSet, Keyspace, RecordSource, Write, to_key_value};
use crate::range::keys_in;

impl Keyspace {
    /// Applies a Txn: one new revision when the chosen branch writes anything.
    pub fn txn(
        &mut self,
        source: &dyn RecordSource,
        request: &TxnRequest,
    ) -> Result<(TxnResponse, ChangeSet), EtcdError> {
        let mut path = Vec::new();
        self.choose_path(source, request, &mut path)?;
        let mut write = self.begin_write();
        let mut cursor = 0;
        check_path(&write, request, &path, &mut cursor)?;
        cursor = 0;
        let response = execute(&mut write, source, request, &path, &mut cursor)?;
        Ok((response, write.finish()))
    }

    /// Records, depth first, which branch each (nested) Txn takes, reading the state before
    /// any of them writes.
    fn choose_path(
        &self,
        source: &dyn RecordSource,
        request: &TxnRequest,
        path: &mut Vec<bool>,
    ) -> Result<(), EtcdError> {
        let mut succeeded = true;
        for compare in &request.compare {
            if !self.compare_holds(source, compare)? {
                succeeded = false;
                break;
            }
        }
        path.push(succeeded);
        let branch = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        for op in branch {
            if let Some(Request::RequestTxn(nested)) = &op.request {
                self.choose_path(source, nested, path)?;
            }
        }
        Ok(())
    }

    fn compare_holds(
        &self,
        source: &dyn RecordSource,
        compare: &Compare,
    ) -> Result<bool, EtcdError> {
        let current = self.current;
        let mut matched: Vec<KeyValue> = Vec::new();
        for (_, entries) in keys_in(&self.index, &compare.key, &compare.range_end) {
            if let Some(entry) = crate::keyspace::visible(entries, current) {
                matched.push(to_key_value(source.record(entry.rev)?));
            }
        }
        let target = CompareTarget::try_from(compare.target).unwrap_or(CompareTarget::Version);
        if matched.is_empty() {
            // A missing key has no value to compare; every other target compares as zero.
            if target == CompareTarget::Value {
                return Ok(false);
            }
            return Ok(compare_one(compare, target, &KeyValue::default()));
        }
        Ok(matched.iter().all(|kv| compare_one(compare, target, kv)))
    }
}

fn compare_one(compare: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering = match (target, &compare.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(value))) => kv.value.as_slice().cmp(value),
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[]),
        (_, union) => {
            let expected: Revision = match union {
                Some(TargetUnion::Version(v))
                | Some(TargetUnion::CreateRevision(v))
                | Some(TargetUnion::ModRevision(v))
                | Some(TargetUnion::Lease(v)) => *v,
                _ => 0,
            };
            let actual = match target {
                CompareTarget::Version => kv.version,
                CompareTarget::Create => kv.create_revision,
                CompareTarget::Mod => kv.mod_revision,
                CompareTarget::Lease => kv.lease,
                CompareTarget::Value => unreachable!("handled above"),
            };
            actual.cmp(&expected)
        }
    };
    match CompareResult::try_from(compare.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
        CompareResult::NotEqual => ordering != Ordering::Equal,
    }
}

/// Checks the state-dependent preconditions of every Put on the chosen path before anything
/// is written, so a Txn either applies whole or not at all.
fn check_path(
    write: &Write<'_>,
    request: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
) -> Result<(), EtcdError> {
    let succeeded = path[*cursor];
    *cursor += 1;
    let branch = if succeeded {
        &request.success
    } else {
        &request.failure
    };
    for op in branch {
        match &op.request {
            Some(Request::RequestPut(put)) => write.check_put(put)?,
            Some(Request::RequestTxn(nested)) => check_path(write, nested, path, cursor)?,
            Some(Request::RequestRange(range)) => check_range(write, range)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_range(write: &Write<'_>, range: &RangeRequest) -> Result<(), EtcdError> {
    // A read inside a Txn at an impossible revision fails the Txn before it writes.
    if range.revision > write.keyspace.current_revision() {
        return Err(EtcdError::FutureRevision);
    }
    if range.revision > 0 && range.revision < write.keyspace.compacted_revision() {
        return Err(EtcdError::Compacted);
    }
    Ok(())
}

fn execute(
    write: &mut Write<'_>,
    source: &dyn RecordSource,
    request: &TxnRequest,
    path: &[bool],
    cursor: &mut usize,
) -> Result<TxnResponse, EtcdError> {
    let succeeded = path[*cursor];
    *cursor += 1;
    let branch = if succeeded {
        &request.success
    } else {
        &request.failure
    };
    let mut responses = Vec::with_capacity(branch.len());
    for op in branch {
        let response = match &op.request {
            Some(Request::RequestRange(range)) => {
                Response::ResponseRange(write.range(source, range)?)
            }
            Some(Request::RequestPut(put)) => Response::ResponsePut(write.put(source, put)?),
            Some(Request::RequestDeleteRange(delete)) => {
                Response::ResponseDeleteRange(write.delete_range(source, delete)?)
            }
            Some(Request::RequestTxn(nested)) => {
                Response::ResponseTxn(execute(write, source, nested, path, cursor)?)
            }
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}
