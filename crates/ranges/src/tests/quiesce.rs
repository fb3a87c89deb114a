//! Quiescence: an idle, caught-up leader sleeps; followers sleep only at its last entry; any
//! activity, and the leader's member going down, wakes the group.

use crate::quiesce::{QuiesceConfig, QuiesceInput, QuiesceOutput, Quiescer};

fn tick(caught_up: bool, live: bool) -> QuiesceInput {
    QuiesceInput::LeaderTick {
        followers_caught_up: caught_up,
        followers_live: live,
    }
}

#[test]
fn an_idle_caught_up_leader_quiesces_and_activity_wakes_it() {
    let mut leader = Quiescer::new(QuiesceConfig { idle_ticks: 3 });
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
    let mut leader = Quiescer::new(QuiesceConfig { idle_ticks: 1 });
    for _ in 0..10 {
        assert_eq!(leader.handle(tick(false, true)), QuiesceOutput::Stay);
        assert_eq!(leader.handle(tick(true, false)), QuiesceOutput::Stay);
    }
    assert_eq!(leader.handle(tick(true, true)), QuiesceOutput::Quiesce);
}

#[test]
fn a_follower_sleeps_only_at_the_leaders_last_entry_and_wakes_when_it_dies() {
    let mut follower = Quiescer::new(QuiesceConfig::default());
    let request = |own_term, own_last_index| QuiesceInput::SleepRequest {
        term: 4,
        last_index: 17,
        own_term,
        own_last_index,
    };
    assert_eq!(
        follower.handle(request(4, 16)),
        QuiesceOutput::Stay,
        "behind"
    );
    assert_eq!(
        follower.handle(request(3, 17)),
        QuiesceOutput::Stay,
        "other term"
    );
    assert_eq!(follower.handle(request(4, 17)), QuiesceOutput::Sleep);
    assert_eq!(
        follower.handle(QuiesceInput::LeaderDown),
        QuiesceOutput::Wake
    );
    assert_eq!(follower.handle(request(4, 17)), QuiesceOutput::Sleep);
    assert_eq!(
        follower.handle(QuiesceInput::Activity),
        QuiesceOutput::Wake,
        "an append"
    );
    assert_eq!(follower.handle(request(4, 17)), QuiesceOutput::Sleep);
    assert_eq!(
        follower.handle(QuiesceInput::RoleChanged),
        QuiesceOutput::Wake
    );
}
