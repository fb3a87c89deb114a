//! `quorate watch`: etcdctl's watch command over the client, printing events as etcdctl does
//! and resuming on another member without losing or repeating events.

use std::time::Duration;

use anyhow::bail;
use client::Client;
use serde_json::json;

use crate::cli::text;
use crate::print::kv_json;

pub(crate) struct WatchArgs {
    pub(crate) key: Vec<u8>,
    pub(crate) range_end: Vec<u8>,
    pub(crate) rev: i64,
    pub(crate) prev_kv: bool,
    pub(crate) max_events: u64,
}

/// Prints events until `max_events` (or forever). When a stream breaks, reconnects to any
/// endpoint and resumes at the revision after the last one printed, so nothing is lost or
/// printed twice; a compacted start revision is an error.
pub(crate) async fn watch(
    endpoints: &[String],
    timeout: Duration,
    args: WatchArgs,
    json_out: bool,
) -> anyhow::Result<()> {
    use proto::etcdserverpb::WatchCreateRequest;
    use proto::mvccpb::event::EventType;
    let mut next = args.rev;
    let mut printed = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        let create = WatchCreateRequest {
            key: args.key.clone(),
            range_end: args.range_end.clone(),
            start_revision: next,
            prev_kv: args.prev_kv,
            ..Default::default()
        };
        let stream = match Client::connect(endpoints, timeout).await {
            Ok(client) => client.watch(create).await.map_err(anyhow::Error::from),
            Err(error) => Err(error.into()),
        };
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                eprintln!("watch: {error:#}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => break,
                Err(status) => {
                    eprintln!("watch: {}; resuming at revision {next}", status.message());
                    break;
                }
            };
            backoff = Duration::from_millis(100);
            if response.compact_revision != 0 {
                bail!(
                    "watch: revision {next} was compacted (compacted revision {}); start at {} or later",
                    response.compact_revision,
                    response.compact_revision
                );
            }
            if response.canceled {
                bail!("watch cancelled: {}", response.cancel_reason);
            }
            if response.created && next <= 0 {
                // From now on: pin the start so a resume neither skips nor repeats.
                next = response.header.as_ref().map_or(0, |h| h.revision) + 1;
            }
            for event in &response.events {
                let Some(kv) = &event.kv else { continue };
                if json_out {
                    let kind = if event.r#type == EventType::Delete as i32 {
                        "DELETE"
                    } else {
                        "PUT"
                    };
                    println!(
                        "{}",
                        json!({"type": kind, "kv": kv_json(kv), "prev_kv": event.prev_kv.as_ref().map(kv_json)})
                    );
                } else {
                    println!(
                        "{}",
                        if event.r#type == EventType::Delete as i32 {
                            "DELETE"
                        } else {
                            "PUT"
                        }
                    );
                    if let Some(prev) = &event.prev_kv {
                        println!("{}\n{}", text(&prev.key), text(&prev.value));
                    }
                    println!("{}\n{}", text(&kv.key), text(&kv.value));
                }
                next = kv.mod_revision + 1;
                printed += 1;
                if args.max_events != 0 && printed >= args.max_events {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
