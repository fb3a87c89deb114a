//! `quorate fault`: drives the fault-injection API of members started with
//! `--unsafe-fault-injection` — block a member's messages to some peers (one direction of a
//! partition; block on both sides for a full one), delay or drop its peer messages, skew its
//! clock, heal, or show what is in force. Every endpoint given is changed in turn.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use client::faults::Fault;
use proto::quorate::fault::v1 as pb;
use serde_json::{Value, json};

/// The fault subcommands.
#[derive(Subcommand, Debug)]
pub enum FaultCommand {
    /// Block the members' messages to these peers (member names or peer URLs), on top of
    /// those already blocked.
    Block {
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<String>,
    },
    /// Delay every outgoing peer message by this many milliseconds (0 to stop).
    Delay {
        #[arg(long)]
        ms: u64,
    },
    /// Drop this share (0 to 1) of outgoing peer messages.
    Drop {
        #[arg(long)]
        ratio: f64,
    },
    /// Skew the members' clocks (what their lease timers and timestamps read): step to an
    /// offset from the host's time and/or run at a rate. Heal removes the skew.
    Clock {
        /// Offset from the host's clock in milliseconds, negative for behind (a step now).
        #[arg(long, allow_hyphen_values = true, required_unless_present = "rate")]
        offset_ms: Option<i64>,
        /// How fast the clock runs from now on (1 = the host's rate; 0.01 to 100).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Remove every fault, the clock skew included.
    Heal,
    /// Show the faults in force and what they did.
    Status,
}

/// Runs a fault subcommand against every endpoint.
pub async fn run(
    endpoints: &[String],
    command: FaultCommand,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<()> {
    let mut states = Vec::new();
    for endpoint in endpoints {
        let state = client::faults::inject(endpoint, &Fault::from(&command), timeout)
            .await
            .with_context(|| format!("fault injection at {endpoint}"))?;
        states.push((endpoint.clone(), state));
    }
    if json_out {
        let all: Vec<Value> = states.iter().map(|(e, s)| state_json(e, s)).collect();
        println!("{}", Value::Array(all));
    } else {
        for (endpoint, state) in &states {
            println!(
                "{endpoint} ({}): blocked [{}], delay {} ms, drop {}, clock {:+} ms at rate {}; \
                 {} messages blocked, {} dropped",
                state.member,
                state.blocked_peer_urls.join(", "),
                state.delay_ms,
                state.drop_ratio,
                state.clock_offset_ms,
                state.clock_rate,
                state.blocked_messages,
                state.dropped_messages
            );
        }
    }
    Ok(())
}

impl From<&FaultCommand> for Fault {
    fn from(command: &FaultCommand) -> Fault {
        match command {
            FaultCommand::Block { peers } => Fault::Block {
                peers: peers.clone(),
            },
            FaultCommand::Delay { ms } => Fault::Delay { ms: *ms },
            FaultCommand::Drop { ratio } => Fault::Drop { ratio: *ratio },
            FaultCommand::Clock { offset_ms, rate } => Fault::Clock {
                offset_ms: *offset_ms,
                rate: *rate,
            },
            FaultCommand::Heal => Fault::Heal,
            FaultCommand::Status => Fault::Status,
        }
    }
}

fn state_json(endpoint: &str, state: &pb::FaultState) -> Value {
    json!({
        "endpoint": endpoint,
        "member": state.member,
        "blocked_peer_urls": state.blocked_peer_urls,
        "delay_ms": state.delay_ms,
        "drop_ratio": state.drop_ratio,
        "blocked_messages": state.blocked_messages,
        "dropped_messages": state.dropped_messages,
        "clock_offset_ms": state.clock_offset_ms,
        "clock_rate": state.clock_rate,
    })
}
