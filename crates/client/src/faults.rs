//! The fault-injection API of members started with `--unsafe-fault-injection`: one call to one
//! member, used by `quorate fault` and by the tester's nemesis alike.

use std::time::Duration;

use proto::quorate::fault::v1 as pb;
use proto::quorate::fault::v1::faults_client::FaultsClient;

use crate::{ClientError, channels};

/// One change to a member's faults.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Block the member's messages to these peers (names or peer URLs), on top of the rest.
    Block { peers: Vec<String> },
    /// Delay every outgoing peer message by this many milliseconds (0 to stop).
    Delay { ms: u64 },
    /// Drop this share (0 to 1) of outgoing peer messages.
    Drop { ratio: f64 },
    /// Step the member's clock to an offset from the host's and/or run it at a rate.
    Clock {
        offset_ms: Option<i64>,
        rate: Option<f64>,
    },
    /// Remove every fault, the clock skew included.
    Heal,
    /// Change nothing; report what is in force.
    Status,
}

/// Sends `fault` to the member at `endpoint` and returns its fault state afterwards.
pub async fn inject(
    endpoint: &str,
    fault: &Fault,
    timeout: Duration,
) -> Result<pb::FaultState, ClientError> {
    let channel = channels::connect(endpoint, timeout, Some(timeout)).await?;
    let mut faults = FaultsClient::new(channel);
    let reply = match fault {
        Fault::Block { peers } => {
            faults
                .block(pb::BlockRequest {
                    peers: peers.clone(),
                })
                .await
        }
        Fault::Delay { ms } => faults.delay(pb::DelayRequest { delay_ms: *ms }).await,
        Fault::Drop { ratio } => faults.drop(pb::DropRequest { ratio: *ratio }).await,
        Fault::Clock { offset_ms, rate } => {
            faults
                .clock(pb::ClockRequest {
                    offset_ms: *offset_ms,
                    rate: *rate,
                })
                .await
        }
        Fault::Heal => faults.heal(pb::HealRequest {}).await,
        Fault::Status => faults.state(pb::StateRequest {}).await,
    };
    match reply {
        Ok(state) => Ok(state.into_inner()),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            Err(ClientError::FaultInjectionOff {
                endpoint: endpoint.to_owned(),
            })
        }
        Err(status) => Err(ClientError::Status(status)),
    }
}
