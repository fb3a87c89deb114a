//! Leases as replicated state: each lease's id, granted TTL and last checkpointed remaining
//! TTL, and which live keys are attached to it. Grant, revoke (deleting every attached key at
//! one revision) and checkpoint are deterministic commands. It must never keep time: when a
//! lease expires is the lessor's decision on the leader, which then proposes a revoke.

use std::collections::{BTreeMap, BTreeSet};

use base::EtcdError;
use proto::etcdserverpb::alarm_request::AlarmAction;
use proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DeleteRangeRequest,
    LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse,
};

use crate::keyspace::{ChangeSet, Keyspace, RecordSource};

/// Largest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`).
pub const LEASE_TTL_MAX: i64 = 9_000_000_000;

/// One lease as every member knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// The TTL granted, in seconds.
    pub ttl: i64,
    /// The remaining TTL last checkpointed by a leader (0: none since the last renewal), so a
    /// new leader or a restarted cluster does not restart the full TTL.
    pub remaining: i64,
    /// Live keys attached to the lease.
    pub keys: BTreeSet<Vec<u8>>,
}

/// The lease table and key attachments of a keyspace.
#[derive(Debug, Clone, Default)]
pub(crate) struct Leases {
    pub(crate) by_id: BTreeMap<i64, Lease>,
    /// Live key → its lease, for keys attached to one.
    pub(crate) of_key: BTreeMap<Vec<u8>, i64>,
}

impl Leases {
    /// Records that `key` now holds `lease` (0: none, or the key was deleted).
    pub(crate) fn attach(&mut self, key: &[u8], lease: i64) {
        if let Some(old) = self.of_key.remove(key)
            && let Some(entry) = self.by_id.get_mut(&old)
        {
            entry.keys.remove(key);
        }
        if lease != 0
            && let Some(entry) = self.by_id.get_mut(&lease)
        {
            entry.keys.insert(key.to_vec());
            self.of_key.insert(key.to_vec(), lease);
        }
    }
}

impl Keyspace {
    /// Grants a lease; the id is chosen by the caller (the member that received the request)
    /// so every member applies the same one.
    pub fn lease_grant(
        &mut self,
        request: &LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        if request.id <= 0 {
            return Err(EtcdError::Internal(format!(
                "lease id {} must be positive",
                request.id
            )));
        }
        if request.ttl > LEASE_TTL_MAX {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        if self.no_space() {
            return Err(EtcdError::NoSpace);
        }
        if self.leases.by_id.contains_key(&request.id) {
            return Err(EtcdError::LeaseExists);
        }
        let lease = Lease {
            id: request.id,
            ttl: request.ttl,
            remaining: 0,
            keys: BTreeSet::new(),
        };
        self.leases.by_id.insert(request.id, lease);
        Ok(LeaseGrantResponse {
            header: None,
            id: request.id,
            ttl: request.ttl,
            error: String::new(),
        })
    }

    /// Revokes a lease and deletes its keys, all at one new revision.
    pub fn lease_revoke(
        &mut self,
        source: &dyn RecordSource,
        request: &LeaseRevokeRequest,
    ) -> Result<(LeaseRevokeResponse, ChangeSet), EtcdError> {
        let keys = match self.leases.by_id.get(&request.id) {
            Some(lease) => lease.keys.clone(),
            None => return Err(EtcdError::LeaseNotFound),
        };
        let mut write = self.begin_write();
        for key in &keys {
            let delete = DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            };
            write.delete_range(source, &delete)?;
        }
        let changes = write.finish();
        self.leases.by_id.remove(&request.id);
        Ok((LeaseRevokeResponse { header: None }, changes))
    }

    /// Records leaders' remaining-TTL checkpoints (unknown leases are ignored: they were
    /// revoked meanwhile).
    pub fn lease_checkpoint(&mut self, request: &LeaseCheckpointRequest) {
        for checkpoint in &request.checkpoints {
            if let Some(lease) = self.leases.by_id.get_mut(&checkpoint.id) {
                lease.remaining = checkpoint.remaining_ttl;
            }
        }
    }

    /// Returns the lease with `id`.
    pub fn lease(&self, id: i64) -> Option<&Lease> {
        self.leases.by_id.get(&id)
    }

    /// Returns every lease, by id.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.by_id.values()
    }

    /// Restores the lease table (without keys) after [`Keyspace::restore`], attaching every
    /// live key whose latest record names one of these leases.
    pub fn restore_leases(
        &mut self,
        leases: impl IntoIterator<Item = (i64, i64, i64)>,
        key_leases: impl IntoIterator<Item = (Vec<u8>, i64)>,
    ) {
        self.leases = Leases::default();
        for (id, ttl, remaining) in leases {
            let lease = Lease {
                id,
                ttl,
                remaining,
                keys: BTreeSet::new(),
            };
            self.leases.by_id.insert(id, lease);
        }
        for (key, lease) in key_leases {
            self.leases.attach(&key, lease);
        }
    }
}

impl Keyspace {
    /// Raises or clears an alarm; answers the alarms after the change. While a NOSPACE alarm is
    /// raised, writes that add data (Put, Txn with a Put, LeaseGrant) fail with `NoSpace`;
    /// deletes and compaction still work, so space can be freed.
    pub fn alarm(&mut self, request: &AlarmRequest) -> AlarmResponse {
        let entry = (request.member_id, request.alarm);
        match AlarmAction::try_from(request.action) {
            Ok(AlarmAction::Activate) if request.alarm != AlarmType::None as i32 => {
                self.alarms.insert(entry);
            }
            Ok(AlarmAction::Deactivate) => {
                self.alarms.remove(&entry);
            }
            _ => {}
        }
        self.alarm_list(request.member_id, request.alarm)
    }

    /// Returns the raised alarms, of `member` (0: every member) and `kind` (NONE: every kind).
    pub fn alarm_list(&self, member: u64, kind: i32) -> AlarmResponse {
        let alarms = self
            .alarms
            .iter()
            .filter(|(m, k)| (member == 0 || *m == member) && (kind == 0 || *k == kind))
            .map(|(member_id, alarm)| AlarmMember {
                member_id: *member_id,
                alarm: *alarm,
            })
            .collect();
        AlarmResponse {
            header: None,
            alarms,
        }
    }

    /// Returns true while a NOSPACE alarm is raised.
    pub fn no_space(&self) -> bool {
        self.alarms
            .iter()
            .any(|(_, kind)| *kind == AlarmType::Nospace as i32)
    }

    /// Replaces the alarms (restore from storage or a snapshot).
    pub fn restore_alarms(&mut self, alarms: impl IntoIterator<Item = (u64, i32)>) {
        self.alarms = alarms.into_iter().collect();
    }
}
