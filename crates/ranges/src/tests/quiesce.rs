//! Quiescence: an idle, caught-up leader stops heartbeating; a follower stops its election
//! timer only while a live leader is silent; any activity, and the leader's member being
//! suspected, wakes the group.

use crate::quiesce::{QuiesceConfig, QuiesceInput, QuiesceOutput, Quiescer};

fn tick(caught_up: bool, live: bool) -> QuiesceInput {
    QuiesceInput::LeaderTick {
        followers_caught_up: caught_up,
        followers_live: live,
    }
}

#[test]
fn an_idle_caught_up_leader_quiesces_and_activity_wakes_it() {
    let mut leader = Quiescer::new(config(3, 3));
    assert_eq!(leader.handle(tick(true, true)), QuiesceOutput::Stay);
    assert_eq!(leader.handle(tick(true, true)), QuiesceOutput::Stay);
    assert_eq!(leader.handle(tick(true, true)), QuiesceOutput::Quiesce);
    assert!(leader.is_quiesced());
    assert_eq!(
        leader.handle(tick(true, true)),
        QuiesceOutput::Stay,
        "asleep, nothing to send"
    );
    assert_eq!(leader.handle(QuiesceInput::Activity), QuiesceOutput::Wake);
    assert_eq!(leader.handle(QuiesceInput::Activity), QuiesceOutput::Stay);
    // Activity restarts the idle count.
    assert_eq!(leader.handle(tick(true, true)), QuiesceOutput::Stay);
    assert!(!leader.is_quiesced());
}

#[test]
fn a_leader_with_a_lagging_or_dead_follower_stays_awake() {
    let mut leader = Quiescer::new(config(1, 1));
    for _ in 0..10 {
        assert_eq!(leader.handle(tick(false, true)), QuiesceOutput::Stay);
        assert_eq!(leader.handle(tick(true, false)), QuiesceOutput::Stay);
    }
    assert_eq!(leader.handle(tick(true, true)), QuiesceOutput::Quiesce);
}

fn follower(heard: bool, live: bool) -> QuiesceInput {
    QuiesceInput::FollowerTick {
        heard_from_leader: heard,
        leader_live: live,
    }
}

fn config(leader: u32, follower: u32) -> QuiesceConfig {
    QuiesceConfig {
        leader_idle_ticks: leader,
        follower_idle_ticks: follower,
    }
}

#[test]
fn a_follower_sleeps_only_when_a_live_leader_is_silent_and_wakes_when_it_speaks_or_dies() {
    let mut replica = Quiescer::new(config(20, 2));
    // Heartbeats keep it awake however long they go on.
    for _ in 0..10 {
        assert_eq!(replica.handle(follower(true, true)), QuiesceOutput::Stay);
    }
    assert_eq!(replica.handle(follower(false, true)), QuiesceOutput::Stay);
    assert_eq!(replica.handle(follower(false, true)), QuiesceOutput::Sleep);
    assert!(replica.is_quiesced());
    assert_eq!(replica.handle(follower(false, true)), QuiesceOutput::Stay);
    assert_eq!(
        replica.handle(follower(false, false)),
        QuiesceOutput::Wake,
        "the detector suspects the leader's member"
    );
    assert_eq!(
        replica.handle(follower(false, false)),
        QuiesceOutput::Stay,
        "never sleeps while its leader is suspected or unknown"
    );
    assert_eq!(replica.handle(follower(false, false)), QuiesceOutput::Stay);
    assert!(!replica.is_quiesced());
    assert_eq!(replica.handle(follower(false, true)), QuiesceOutput::Stay);
    assert_eq!(replica.handle(follower(false, true)), QuiesceOutput::Sleep);
    assert_eq!(
        replica.handle(follower(true, true)),
        QuiesceOutput::Wake,
        "an append"
    );
    assert_eq!(
        replica.handle(follower(false, true)),
        QuiesceOutput::Stay,
        "silence counts again from the append"
    );
    assert_eq!(replica.handle(follower(false, true)), QuiesceOutput::Sleep);
    assert_eq!(
        replica.handle(QuiesceInput::RoleChanged),
        QuiesceOutput::Wake
    );
}
