//! Range: which keys a (key, range_end) pair selects, and the etcd Range request with its
//! revision, limit, sort, count and revision filters.

use std::collections::BTreeMap;
use std::ops::Bound;

use base::{EtcdError, Revision};
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::{RangeRequest, RangeResponse};
use proto::mvccpb::KeyValue;

use crate::keyspace::{IndexEntry, Keyspace, RecordSource, Write, to_key_value, visible};

/// Returns the index entries selected by etcd's key/range_end convention: an empty range_end
/// selects `key` alone, range_end `"\0"` selects every key from `key` on, anything else the
/// half-open interval `[key, range_end)`.
pub(crate) fn keys_in<'a>(
    index: &'a BTreeMap<Vec<u8>, Vec<IndexEntry>>,
    key: &[u8],
    range_end: &[u8],
) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Vec<IndexEntry>)> + 'a> {
    if range_end.is_empty() {
        return Box::new(index.get_key_value(key).into_iter());
    }
    let start = Bound::Included(key.to_vec());
    if range_end == [0] {
        return Box::new(index.range((start, Bound::Unbounded)));
    }
    if range_end <= key {
        return Box::new(std::iter::empty());
    }
    Box::new(index.range((start, Bound::Excluded(range_end.to_vec()))))
}

impl Keyspace {
    /// Answers a Range at the request's revision (0 or less: the current one). The header is
    /// left for the caller, who knows the member and term.
    pub fn range(
        &self,
        source: &dyn RecordSource,
        request: &RangeRequest,
    ) -> Result<RangeResponse, EtcdError> {
        range_at(self, source, request, self.current, &|source, rev| {
            source.record(rev)
        })
    }
}

impl Write<'_> {
    /// Answers a Range inside a Txn, seeing the Txn's earlier writes.
    pub(crate) fn range(
        &self,
        source: &dyn RecordSource,
        request: &RangeRequest,
    ) -> Result<RangeResponse, EtcdError> {
        range_at(
            self.keyspace,
            source,
            request,
            self.read_revision(),
            &|source, rev| self.record(source, rev),
        )
    }
}

type Fetch<'f> = dyn Fn(&dyn RecordSource, crate::Rev) -> Result<crate::Record, EtcdError> + 'f;

fn range_at(
    keyspace: &Keyspace,
    source: &dyn RecordSource,
    request: &RangeRequest,
    current: Revision,
    fetch: &Fetch<'_>,
) -> Result<RangeResponse, EtcdError> {
    let at = if request.revision <= 0 {
        current
    } else {
        request.revision
    };
    if at > current {
        return Err(EtcdError::FutureRevision);
    }
    if at < keyspace.compacted {
        return Err(EtcdError::Compacted);
    }
    let sort_order = SortOrder::try_from(request.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(request.sort_target).unwrap_or(SortTarget::Key);
    // etcd sorts ascending by default when the target is not the key, and never re-sorts by
    // key ascending, because results come in key order already.
    let sort_order = match (sort_target, sort_order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (SortTarget::Key, order) => order,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, order) => order,
    };
    let filtered = request.min_mod_revision != 0
        || request.max_mod_revision != 0
        || request.min_create_revision != 0
        || request.max_create_revision != 0;
    // With sorting or filtering every match is read, then cut; otherwise only `limit`.
    let fetch_limit = if sort_order != SortOrder::None || filtered || request.limit <= 0 {
        usize::MAX
    } else {
        request.limit as usize
    };

    let mut count: i64 = 0;
    let mut kvs: Vec<KeyValue> = Vec::new();
    for (_, entries) in keys_in(&keyspace.index, &request.key, &request.range_end) {
        let Some(entry) = visible(entries, at) else {
            continue;
        };
        count += 1;
        if request.count_only || kvs.len() >= fetch_limit {
            continue;
        }
        kvs.push(to_key_value(fetch(source, entry.rev)?));
    }

    if filtered {
        kvs.retain(|kv| {
            !(request.max_mod_revision != 0 && kv.mod_revision > request.max_mod_revision
                || request.min_mod_revision != 0 && kv.mod_revision < request.min_mod_revision
                || request.max_create_revision != 0
                    && kv.create_revision > request.max_create_revision
                || request.min_create_revision != 0
                    && kv.create_revision < request.min_create_revision)
        });
    }
    if sort_order != SortOrder::None {
        // A stable sort keeps key order among equal targets.
        match sort_target {
            SortTarget::Key => kvs.sort_by(|a, b| a.key.cmp(&b.key)),
            SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
            SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
            SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
            SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
        }
        if sort_order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    let mut more = false;
    if request.limit > 0 && kvs.len() > request.limit as usize {
        kvs.truncate(request.limit as usize);
        more = true;
    } else if request.limit > 0 && !request.count_only && count > kvs.len() as i64 && !filtered {
        more = true;
    }
    if request.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: None,
        kvs,
        more,
        count,
    })
}
