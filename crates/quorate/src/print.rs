//! What the etcdctl-like commands print: etcdctl's simple text format and its JSON format
//! (`-w json`) for put, get, del and txn replies.

use proto::etcdserverpb::response_op::Response as OpResponse;
use proto::etcdserverpb::{DeleteRangeResponse, PutResponse, RangeResponse, TxnResponse};
use proto::mvccpb::KeyValue;
use serde_json::json;

use crate::cli::text;

pub(crate) fn kv_json(kv: &KeyValue) -> serde_json::Value {
    json!({"key": text(&kv.key), "value": text(&kv.value), "create_revision": kv.create_revision,
           "mod_revision": kv.mod_revision, "version": kv.version, "lease": kv.lease})
}

pub(crate) fn put_json(response: &PutResponse) -> serde_json::Value {
    let revision = response.header.as_ref().map_or(0, |h| h.revision);
    json!({"revision": revision, "prev_kv": response.prev_kv.as_ref().map(kv_json)})
}

pub(crate) fn range_json(response: &RangeResponse) -> serde_json::Value {
    let revision = response.header.as_ref().map_or(0, |h| h.revision);
    let kvs: Vec<_> = response.kvs.iter().map(kv_json).collect();
    json!({"revision": revision, "count": response.count, "more": response.more, "kvs": kvs})
}

pub(crate) fn delete_json(response: &DeleteRangeResponse) -> serde_json::Value {
    let revision = response.header.as_ref().map_or(0, |h| h.revision);
    let prev: Vec<_> = response.prev_kvs.iter().map(kv_json).collect();
    json!({"revision": revision, "deleted": response.deleted, "prev_kvs": prev})
}

pub(crate) fn txn_json(response: &TxnResponse) -> serde_json::Value {
    let revision = response.header.as_ref().map_or(0, |h| h.revision);
    let responses: Vec<_> = response
        .responses
        .iter()
        .map(|r| match &r.response {
            Some(OpResponse::ResponsePut(put)) => json!({"put": put_json(put)}),
            Some(OpResponse::ResponseRange(range)) => json!({"range": range_json(range)}),
            Some(OpResponse::ResponseDeleteRange(del)) => json!({"delete_range": delete_json(del)}),
            Some(OpResponse::ResponseTxn(txn)) => json!({"txn": txn_json(txn)}),
            None => serde_json::Value::Null,
        })
        .collect();
    json!({"revision": revision, "succeeded": response.succeeded, "responses": responses})
}

pub(crate) fn print_put(response: &PutResponse) {
    println!("OK");
    if let Some(kv) = &response.prev_kv {
        println!("{}\n{}", text(&kv.key), text(&kv.value));
    }
}

pub(crate) fn print_range(response: &RangeResponse, keys_only: bool, count_only: bool) {
    if count_only {
        println!("{}", response.count);
        return;
    }
    for kv in &response.kvs {
        println!("{}", text(&kv.key));
        if !keys_only {
            println!("{}", text(&kv.value));
        }
    }
}

pub(crate) fn print_delete(response: &DeleteRangeResponse) {
    println!("{}", response.deleted);
    for kv in &response.prev_kvs {
        println!("{}\n{}", text(&kv.key), text(&kv.value));
    }
}

/// Prints as `etcdctl txn` does: SUCCESS or FAILURE, then each response after a blank line.
/// As in etcdctl, a range inside a transaction prints every key and value line, whatever its
/// keys-only or count-only options.
pub(crate) fn print_txn(response: &TxnResponse) {
    println!(
        "{}",
        if response.succeeded {
            "SUCCESS"
        } else {
            "FAILURE"
        }
    );
    for r in &response.responses {
        println!();
        match &r.response {
            Some(OpResponse::ResponsePut(put)) => print_put(put),
            Some(OpResponse::ResponseRange(range)) => print_range(range, false, false),
            Some(OpResponse::ResponseDeleteRange(del)) => print_delete(del),
            Some(OpResponse::ResponseTxn(txn)) => println!("{}", txn_json(txn)),
            None => {}
        }
    }
}
