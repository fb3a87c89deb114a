//! Quiescence of one range's Raft group, so a thousand idle ranges cost next to nothing. A
//! leader that has seen no activity for `leader_idle_ticks` ticks, whose followers have all
//! acknowledged its last entry and are live, stops heartbeating. A follower that has heard
//! nothing from its leader for `follower_idle_ticks` ticks while the failure detector holds
//! the leader's member live stops its election timer: the leader is there, only quiet. Any
//! activity wakes the group (a proposal or read on the leader, an append — even an empty
//! heartbeat — on a follower), and so does the failure detector suspecting the leader's
//! member: its followers wake, their election timers run again, and one of them takes over.
//! A quiesced group therefore relies on the member-level failure detector (SWIM and phi)
//! rather than on per-range heartbeats, as CockroachDB's quiesced ranges rely on node
//! liveness. Sleeping never touches safety — it only decides whether a replica may start an
//! election — so a wrong decision costs at most an election or a wait for the detector.
//!
//! A follower's idle ticks must stay well under its election timeout: it must stop its timer
//! before the quiet leader's silence makes it campaign.

/// How long a group stays busy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct QuiesceConfig {
    /// Ticks without activity before a leader stops heartbeating.
    pub leader_idle_ticks: u32,
    /// Ticks without hearing from a live leader before a follower stops its election timer.
    pub follower_idle_ticks: u32,
}

/// Idle ticks before a leader quiesces by default: with the driver's tick at the heartbeat
/// interval (100 ms), two seconds — a few election timeouts' worth of heartbeats carry the
/// last commit index to every follower first.
pub const LEADER_IDLE_TICKS_DEFAULT: u32 = 20;

/// Silent ticks before a follower sleeps by default: three heartbeat intervals, a third of
/// the shortest election timeout (1 s) at the default settings.
pub const FOLLOWER_IDLE_TICKS_DEFAULT: u32 = 3;

impl Default for QuiesceConfig {
    fn default() -> QuiesceConfig {
        QuiesceConfig {
            leader_idle_ticks: LEADER_IDLE_TICKS_DEFAULT,
            follower_idle_ticks: FOLLOWER_IDLE_TICKS_DEFAULT,
        }
    }
}

/// What happened to the group.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QuiesceInput {
    /// A tick on the leader, with whether every follower has acknowledged the leader's last
    /// entry and whether every follower's member is live.
    LeaderTick {
        followers_caught_up: bool,
        followers_live: bool,
    },
    /// A tick on a follower: whether the leader sent anything since the last tick, and
    /// whether a leader is known and its member is live.
    FollowerTick {
        heard_from_leader: bool,
        leader_live: bool,
    },
    /// A proposal or read on the leader.
    Activity,
    /// This replica's role changed (it became leader, follower or candidate): start awake.
    RoleChanged,
}

/// What the driver does.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QuiesceOutput {
    /// Nothing changes.
    Stay,
    /// Leader: stop heartbeats.
    Quiesce,
    /// Follower: stop the election timer.
    Sleep,
    /// Resume heartbeats (leader) or the election timer (follower).
    Wake,
}

/// The quiescence state of one replica of one group.
#[derive(Clone, Debug)]
pub struct Quiescer {
    config: QuiesceConfig,
    idle_ticks: u32,
    quiesced: bool,
}

impl Quiescer {
    pub fn new(config: QuiesceConfig) -> Quiescer {
        Quiescer {
            config,
            idle_ticks: 0,
            quiesced: false,
        }
    }

    /// Whether the group is asleep here.
    pub fn is_quiesced(&self) -> bool {
        self.quiesced
    }

    /// Takes one input; returns what the driver must do.
    pub fn handle(&mut self, input: QuiesceInput) -> QuiesceOutput {
        match input {
            QuiesceInput::LeaderTick {
                followers_caught_up,
                followers_live,
            } => {
                if self.quiesced {
                    return QuiesceOutput::Stay;
                }
                self.idle_ticks = self.idle_ticks.saturating_add(1);
                if self.idle_ticks >= self.config.leader_idle_ticks
                    && followers_caught_up
                    && followers_live
                {
                    self.quiesced = true;
                    return QuiesceOutput::Quiesce;
                }
                QuiesceOutput::Stay
            }
            QuiesceInput::FollowerTick {
                heard_from_leader,
                leader_live,
            } => {
                if heard_from_leader || !leader_live {
                    self.idle_ticks = 0;
                    return self.wake();
                }
                if self.quiesced {
                    return QuiesceOutput::Stay;
                }
                self.idle_ticks = self.idle_ticks.saturating_add(1);
                if self.idle_ticks >= self.config.follower_idle_ticks {
                    self.quiesced = true;
                    return QuiesceOutput::Sleep;
                }
                QuiesceOutput::Stay
            }
            QuiesceInput::Activity | QuiesceInput::RoleChanged => {
                self.idle_ticks = 0;
                self.wake()
            }
        }
    }

    fn wake(&mut self) -> QuiesceOutput {
        if self.quiesced {
            self.quiesced = false;
            QuiesceOutput::Wake
        } else {
            QuiesceOutput::Stay
        }
    }
}
