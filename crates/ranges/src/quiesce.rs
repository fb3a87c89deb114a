//! Quiescence of one range's Raft group, so a thousand idle ranges cost next to nothing. A
//! leader that has seen no activity for `idle_ticks` ticks, whose followers have all
//! acknowledged its last entry and are live, stops heartbeating and asks its followers to
//! sleep at its term and last index; a follower sleeps (stops its election timer) only if its
//! own log ends at exactly that entry of that term — otherwise it still needs the leader's
//! appends. Any activity wakes the group (a proposal or read on the leader, an append on a
//! follower), and so does the failure detector declaring the leader's member down: its
//! followers wake, their election timers run again, and one of them takes over. A quiesced
//! leader therefore relies on the member-level failure detector (SWIM) rather than on per-
//! range heartbeats, as CockroachDB's quiesced ranges rely on node liveness.

/// How long a group stays busy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct QuiesceConfig {
    /// Ticks without activity before a leader quiesces.
    pub idle_ticks: u32,
}

/// Idle ticks before quiescing by default: with the driver's tick at the heartbeat interval,
/// a few election timeouts' worth.
pub const IDLE_TICKS_DEFAULT: u32 = 20;

impl Default for QuiesceConfig {
    fn default() -> QuiesceConfig {
        QuiesceConfig {
            idle_ticks: IDLE_TICKS_DEFAULT,
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
    /// A proposal or read (on the leader) or an append from the leader (on a follower).
    Activity,
    /// On a follower: the leader asks it to sleep at `(term, last_index)`; `own` is where the
    /// follower's log ends.
    SleepRequest {
        term: u64,
        last_index: u64,
        own_term: u64,
        own_last_index: u64,
    },
    /// The failure detector declared the leader's member down.
    LeaderDown,
    /// This replica's role changed (it became leader or follower): start awake.
    RoleChanged,
}

/// What the driver does.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QuiesceOutput {
    /// Nothing changes.
    Stay,
    /// Leader: stop heartbeats and send every follower a sleep request at the last entry.
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
                if self.idle_ticks >= self.config.idle_ticks
                    && followers_caught_up
                    && followers_live
                {
                    self.quiesced = true;
                    return QuiesceOutput::Quiesce;
                }
                QuiesceOutput::Stay
            }
            QuiesceInput::Activity => {
                self.idle_ticks = 0;
                self.wake()
            }
            QuiesceInput::SleepRequest {
                term,
                last_index,
                own_term,
                own_last_index,
            } => {
                if !self.quiesced && term == own_term && last_index == own_last_index {
                    self.quiesced = true;
                    return QuiesceOutput::Sleep;
                }
                QuiesceOutput::Stay
            }
            QuiesceInput::LeaderDown => self.wake(),
            QuiesceInput::RoleChanged => {
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
