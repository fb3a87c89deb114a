//! Data directories from before a bucket's first range saved its seed (issue #37).

use super::*;

/// A log without a seed or snapshot, written before a bucket's first range saved its seed:
/// only a first range can have one (a split's right half starts from its seed, a replica
/// added later from its leader's snapshot), and its log then still begins at index 0 with the
/// membership the range was created with. Its first state is known exactly — the bucket's
/// whole keyspace at generation 1, empty, on those voters — so the seed is written from that,
/// never from today's metadata. A log that does not begin so is left alone: the state machine
/// then refuses to start.
pub(super) async fn upgrade_first_range(
    log: &mut crate::log_store::LogStore,
    files: &RangeFiles,
    descriptor: &pb::RangeDescriptor,
) -> Result<(), EtcdError> {
    use openraft::storage::RaftLogReader;
    let first = log.try_get_log_entries(0..1).await.map_err(internal)?;
    let Some(Entry {
        payload: EntryPayload::Membership(membership),
        log_id,
    }) = first.into_iter().next()
    else {
        return Ok(());
    };
    if log_id.index != 0 {
        return Ok(());
    }
    let mut voters: Vec<NodeId> = membership.voter_ids().collect();
    voters.sort_unstable();
    let created = pb::RangeDescriptor {
        id: descriptor.id,
        bucket: descriptor.bucket.clone(),
        start: Vec::new(),
        end: None,
        replicas: voters
            .into_iter()
            .map(|member| pb::RangeReplica {
                member,
                learner: false,
            })
            .collect(),
        generation: 1,
        sticky: false,
        merged_right_generation: 0,
    };
    tracing::warn!(
        range = descriptor.id,
        "range log without a seed (written before first ranges saved one): its first state is \
         written as the bucket's empty first range the log began with"
    );
    let files = files.clone();
    tokio::task::spawn_blocking(move || files.save_first_seed(&created))
        .await
        .map_err(internal)?
        .map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_first_range_log_from_before_seeds_gets_the_seed_it_began_with() {
        // A first range's replica written before seeds existed: a log from index 0, no files.
        // Its seed is rebuilt from the log's first membership — the whole keyspace at
        // generation 1 —, not from today's (merged, narrower) descriptor.
        let dir = tempfile::tempdir().expect("temp dir");
        let store = storage::LogStore::open(&dir.path().join("log.redb")).expect("open log");
        let writer = LogWriter::start(store).expect("writer");
        writer
            .create_group(5, [2, 1].into_iter().collect())
            .expect("create group");
        let mut log = writer.open_group(5).expect("open group");
        let files = RangeFiles::new(dir.path().join("ranges"), 1 << 20).expect("files");
        let today = pb::RangeDescriptor {
            id: 5,
            bucket: "b".into(),
            end: Some(b"k150".to_vec()),
            generation: 4,
            ..Default::default()
        };
        upgrade_first_range(&mut log, &files, &today)
            .await
            .expect("upgrade");
        let machine = RangeStateMachine::open(files, &today, true).expect("opens");
        let held = machine.descriptor();
        assert_eq!(
            (held.generation, held.end, held.start),
            (1, None, Vec::new())
        );
        let members: Vec<u64> = held.replicas.iter().map(|r| r.member).collect();
        assert_eq!(members, vec![1, 2]);
    }
}
