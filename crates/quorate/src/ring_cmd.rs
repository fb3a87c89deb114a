//! `quorate ring`: the token ring of quorum buckets — show it, add or remove a member (the
//! change streams copies to their new replicas before the ring switches; `--wait` follows it
//! with a progress bar), abort a change, and each member's part in it (`status`).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use proto::quorate::v1 as pb;
use proto::quorate::v1::ring_client::RingClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::cli::member_id;
use crate::quorum_cmd::{hex, status_error};

/// The ring subcommands. Member ids are hexadecimal, as `member list` prints them.
#[derive(Subcommand, Debug)]
pub enum RingCommand {
    /// The ring's members and epoch, and the change in progress.
    Show,
    /// Add a cluster member to the ring (add it to the cluster with `member add` first).
    Add {
        id: String,
        /// Follow the change until the ring switches, with a progress bar.
        #[arg(long)]
        wait: bool,
    },
    /// Remove a member from the ring; its replicas move to the other members.
    Remove {
        id: String,
        /// The member is gone for good: do not wait for it to stream (writes only it held
        /// are lost).
        #[arg(long)]
        unreachable: bool,
        #[arg(long)]
        wait: bool,
    },
    /// Drop the change in progress; the current ring stays.
    Abort,
    /// Each member's part in the current change: streaming progress and stored objects.
    Status,
}

fn ring_json(ring: &pb::ShowRingResponse) -> Value {
    json!({
        "epoch": ring.epoch,
        "members": hex(&ring.members),
        "vnodes": ring.vnodes,
        "pending": ring.pending.as_ref().map(|p| json!({
            "change": p.description,
            "members": hex(&p.members),
            "required": hex(&p.required),
            "done": hex(&p.done),
        })),
    })
}

fn ring_text(ring: &pb::ShowRingResponse) -> String {
    let mut text = format!(
        "epoch {}: members {} ({} vnodes each)",
        ring.epoch,
        hex(&ring.members).join(", "),
        ring.vnodes
    );
    if let Some(p) = &ring.pending {
        text.push_str(&format!(
            "\nchanging: {} -> members {}; {} of {} members streamed",
            p.description,
            hex(&p.members).join(", "),
            p.done.len(),
            p.required.len()
        ));
    }
    text
}

fn handoff_json(h: &pb::HandoffResponse) -> Value {
    json!({
        "member": format!("{:x}", h.member), "epoch": h.epoch, "state": h.state,
        "objects": h.objects, "scanned": h.scanned, "total": h.total, "sent": h.sent,
        "received": h.received, "created": h.created, "removed": h.removed, "error": h.error,
    })
}

/// Runs a ring subcommand.
pub async fn run(
    endpoints: &[String],
    command: RingCommand,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<()> {
    let client = client::Client::connect(endpoints, timeout).await?;
    let mut ring = RingClient::new(client.channel());
    let (epoch, wait) = match command {
        RingCommand::Show => return print_ring(&mut ring, json_out).await,
        RingCommand::Status => {
            for h in handoffs(&client, timeout).await? {
                match h {
                    Ok(h) if json_out => println!("{}", handoff_json(&h)),
                    Ok(h) => println!(
                        "{:x}: {} (epoch {}), {} objects; stream {}/{}, sent {}, received {} ({} new), removed {}{}",
                        h.member,
                        h.state,
                        h.epoch,
                        h.objects,
                        h.scanned,
                        h.total,
                        h.sent,
                        h.received,
                        h.created,
                        h.removed,
                        if h.error.is_empty() {
                            String::new()
                        } else {
                            format!("; last error: {}", h.error)
                        }
                    ),
                    Err(why) if json_out => println!("{}", json!({"error": why})),
                    Err(why) => println!("{why}"),
                }
            }
            return Ok(());
        }
        RingCommand::Add { id, wait } => {
            let member = member_id(&id)?;
            let reply = ring
                .join(pb::JoinRingRequest { member })
                .await
                .map_err(status_error)?;
            (reply.into_inner().epoch, wait)
        }
        RingCommand::Remove {
            id,
            unreachable,
            wait,
        } => {
            let member = member_id(&id)?;
            let reply = ring
                .leave(pb::LeaveRingRequest {
                    member,
                    unreachable,
                })
                .await
                .map_err(status_error)?;
            (reply.into_inner().epoch, wait)
        }
        RingCommand::Abort => {
            let reply = ring
                .abort(pb::AbortRingRequest {})
                .await
                .map_err(status_error)?;
            (reply.into_inner().epoch, false)
        }
    };
    if wait {
        follow(&client, &mut ring, epoch, timeout).await?;
    }
    print_ring(&mut ring, json_out).await
}

/// Prints the ring as the answering member shows it.
async fn print_ring(ring: &mut RingClient<Channel>, json_out: bool) -> anyhow::Result<()> {
    let shown = ring
        .show(pb::ShowRingRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    if json_out {
        println!("{}", ring_json(&shown));
    } else {
        println!("{}", ring_text(&shown));
    }
    Ok(())
}

/// Every member's handoff status, through its first client URL (an error line for a member
/// that does not answer).
async fn handoffs(
    client: &client::Client,
    timeout: Duration,
) -> anyhow::Result<Vec<Result<pb::HandoffResponse, String>>> {
    let mut members = client.clone();
    let list = members
        .member_list(false)
        .await
        .context("listing the members")?;
    let mut out = Vec::new();
    for member in list.members {
        let Some(url) = member.client_ur_ls.first() else {
            out.push(Err(format!("{:x}: not started", member.id)));
            continue;
        };
        let answer = async {
            let channel = client::channels::connect(url, timeout, Some(timeout))
                .await
                .map_err(|e| e.to_string())?;
            RingClient::new(channel)
                .handoff(pb::HandoffRequest {})
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.message().to_owned())
        }
        .await;
        out.push(answer.map_err(|why| format!("{:x}: {why}", member.id)));
    }
    Ok(out)
}

/// Follows the change started at `epoch` until the ring moves past it, with a progress bar of
/// the objects the required members have scanned (on a terminal).
async fn follow(
    client: &client::Client,
    ring: &mut RingClient<Channel>,
    epoch: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr())
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("ring [{bar:30}] {pos}/{len} objects {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    loop {
        let shown = ring
            .show(pb::ShowRingRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        if shown.epoch > epoch {
            bar.finish_and_clear();
            if shown.pending.is_some() || shown.epoch > epoch + 1 {
                anyhow::bail!(
                    "the ring moved on to epoch {} by another change or an abort",
                    shown.epoch
                );
            }
            eprintln!(
                "ring switched to epoch {} in {:.1}s",
                shown.epoch,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        let Some(pending) = shown.pending else {
            anyhow::bail!("no ring change is in progress at epoch {}", shown.epoch);
        };
        let (mut scanned, mut total, mut failing) = (0, 0, Vec::new());
        for h in handoffs(client, timeout).await?.into_iter().flatten() {
            if pending.required.contains(&h.member) && h.epoch == epoch {
                scanned += h.scanned;
                total += h.total;
                if !h.error.is_empty() {
                    failing.push(format!("{:x}: {}", h.member, h.error));
                }
            }
        }
        bar.set_length(total);
        bar.set_position(scanned.min(total));
        bar.set_message(format!(
            "{} of {} members streamed{}",
            pending.done.len(),
            pending.required.len(),
            if failing.is_empty() {
                String::new()
            } else {
                format!("; retrying: {}", failing.join("; "))
            }
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
