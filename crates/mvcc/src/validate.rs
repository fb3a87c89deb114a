//! Checks that need no state: run by the serving member before a request is proposed, so an
//! invalid request never enters the Raft log. Messages and codes are etcd's.

use std::collections::BTreeSet;

use base::EtcdError;
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// Checks a Range request.
pub fn range(request: &RangeRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Checks a Put request.
pub fn put(request: &PutRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// Checks a DeleteRange request.
pub fn delete_range(request: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Checks a Txn: operation counts per branch, every nested request, and that no key is
/// written twice on one path.
pub fn txn(request: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(request, max_txn_ops)?;
    check_writes(&request.success)?;
    check_writes(&request.failure)?;
    Ok(())
}

fn check_txn_ops(request: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    if request.compare.len() > max_txn_ops
        || request.success.len() > max_txn_ops
        || request.failure.len() > max_txn_ops
    {
        return Err(EtcdError::TooManyOps);
    }
    for compare in &request.compare {
        if compare.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
    }
    for op in request.success.iter().chain(&request.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => range(r)?,
            Some(Request::RequestPut(r)) => put(r)?,
            Some(Request::RequestDeleteRange(r)) => delete_range(r)?,
            Some(Request::RequestTxn(r)) => check_txn_ops(r, max_txn_ops)?,
            None => {}
        }
    }
    Ok(())
}

/// A deleted interval: `[start, end)`, with `end == None` meaning unbounded, and a point
/// delete stored as `[key, key\0)`.
#[derive(Clone)]
struct Deleted {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Deleted {
    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }
}

/// Returns the keys put and intervals deleted by `ops` (and nested Txns), refusing a key put
/// twice or put inside a deleted interval, following etcd's rules: the two branches of a
/// nested Txn exclude each other, so they may put the same key.
fn check_writes(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut deleted: Vec<Deleted> = Vec::new();
    for op in ops {
        if let Some(Request::RequestDeleteRange(delete)) = &op.request {
            let end = match delete.range_end.as_slice() {
                [] => {
                    let mut end = delete.key.clone();
                    end.push(0);
                    Some(end)
                }
                [0] => None,
                end => Some(end.to_vec()),
            };
            deleted.push(Deleted {
                start: delete.key.clone(),
                end,
            });
        }
    }
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, deleted_then) = check_writes(&nested.success)?;
        let (puts_else, deleted_else) = check_writes(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted.iter().any(|d| d.contains(key)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &puts_else {
            if puts.contains(key) && !puts_then.contains(key) {
                return Err(EtcdError::DuplicateKey);
            }
            if deleted.iter().any(|d| d.contains(key)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        deleted.extend(deleted_then);
        deleted.extend(deleted_else);
    }
    for op in ops {
        let Some(Request::RequestPut(put)) = &op.request else {
            continue;
        };
        if puts.contains(&put.key) || deleted.iter().any(|d| d.contains(&put.key)) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deleted))
}
