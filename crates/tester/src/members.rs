//! The members of a check run: `quorate node` child processes on loopback with their own data
//! directories (real fsync), which the nemesis kills (SIGKILL) and restarts on the same ports
//! and data, pauses (SIGSTOP) and resumes (SIGCONT), or partitions through the members'
//! fault-injection API (they run with `--unsafe-fault-injection`). Each member's log goes to
//! `<dir>/<name>.log`. It never judges anything; it only starts, stops, cuts and asks who
//! leads.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use client::faults::Fault;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::{RangeRequest, StatusRequest};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::error::CheckError;

/// Attempts and deadline of one fault-injection call to a member.
const FAULT_ATTEMPTS: usize = 3;
const FAULT_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// One member slot: its ports and directory survive kills and restarts.
struct Slot {
    name: String,
    client: u16,
    peer: u16,
    metrics: u16,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Slot {
    /// A slot named `name` with fresh ports and its directory under `dir`; nothing runs yet.
    fn new(name: String, dir: &Path) -> Result<Slot, CheckError> {
        Ok(Slot {
            dir: dir.join(&name),
            name,
            client: free_port()?,
            peer: free_port()?,
            metrics: free_port()?,
            child: None,
            paused: false,
        })
    }
}

/// How a run starts its members.
pub struct Launch {
    /// The `quorate` executable.
    pub exe: PathBuf,
    /// Extra `quorate node` flags for every member (a planted bug, for canaries).
    pub extra_args: Vec<String>,
    /// The members' log filter (`QUORATE_LOG`).
    pub log_filter: String,
}

/// The members of one run.
pub struct Members {
    launch: Launch,
    slots: Vec<Slot>,
    /// The member the `join-leave` nemesis adds and removes again (not in `slots`: the other
    /// faults and the clients know only the members the run started with).
    joiner: Option<Slot>,
    /// Where the joiner's directory goes.
    dir: PathBuf,
}

/// Member ports come from below the kernel's ephemeral range (32768 and up on Linux), so no
/// outgoing connection or port-0 bind can take one between the pick and the member's bind, or
/// while a killed member is down (a port-0 pick was such a port, and a member then failed to
/// start). Above the slices the cluster tests use (10000 to 29200).
const PORTS_FIRST: u32 = 29_300;
const PORTS_END: u32 = 32_700;

/// Returns a loopback port free right now: picks walk the range from a start that depends on
/// this process's id (so concurrent runs start apart), each checked by binding it.
fn free_port() -> Result<u16, CheckError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = PORTS_END - PORTS_FIRST;
    let start = std::process::id().wrapping_mul(97) % span;
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (PORTS_FIRST + (start + offset) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(CheckError::NoFreePort {
        first: PORTS_FIRST,
        end: PORTS_END,
    })
}

impl Members {
    /// Starts `count` members as `launch` says, with data under `dir`.
    pub fn start(launch: Launch, count: usize, dir: &Path) -> Result<Members, CheckError> {
        let mut slots = Vec::with_capacity(count);
        for i in 1..=count {
            slots.push(Slot::new(format!("n{i}"), dir)?);
        }
        let mut members = Members {
            launch,
            slots,
            joiner: None,
            dir: dir.to_owned(),
        };
        for i in 0..count {
            members.spawn(i)?;
        }
        Ok(members)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.slots[i].name
    }

    /// Client endpoints, `127.0.0.1:port`, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.client))
            .collect()
    }

    fn spawn(&mut self, i: usize) -> Result<(), CheckError> {
        let initial_cluster = self
            .slots
            .iter()
            .map(|s| format!("{}=http://127.0.0.1:{}", s.name, s.peer))
            .collect::<Vec<_>>()
            .join(",");
        spawn_slot(&self.launch, &mut self.slots[i], &initial_cluster, false)
    }

    /// The joiner's name and peer URL, its slot made (with fresh ports) on first use and its
    /// directory wiped (each join is a new member).
    pub fn prepare_joiner(&mut self) -> Result<(String, String), CheckError> {
        if self.joiner.is_none() {
            let name = format!("n{}", self.slots.len() + 1);
            self.joiner = Some(Slot::new(name, &self.dir)?);
        }
        let slot = self
            .joiner
            .as_ref()
            .expect("the joiner's slot was just made");
        if slot.dir.exists() {
            std::fs::remove_dir_all(&slot.dir).map_err(CheckError::file("wipe", &slot.dir))?;
        }
        Ok((slot.name.clone(), format!("http://127.0.0.1:{}", slot.peer)))
    }

    /// Starts the joiner (added to the cluster already) as a member of the existing cluster.
    pub fn spawn_joiner(&mut self) -> Result<(), CheckError> {
        let Some(joiner) = self.joiner.as_mut() else {
            return Ok(());
        };
        let initial_cluster = self
            .slots
            .iter()
            .chain(std::iter::once(&*joiner))
            .map(|s| format!("{}=http://127.0.0.1:{}", s.name, s.peer))
            .collect::<Vec<_>>()
            .join(",");
        spawn_slot(&self.launch, joiner, &initial_cluster, true)
    }

    /// SIGKILLs the joiner (removed from the cluster already) and wipes its directory.
    pub async fn stop_joiner(&mut self) {
        if let Some(joiner) = self.joiner.as_mut() {
            if let Some(mut child) = joiner.child.take() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            let _ = std::fs::remove_dir_all(&joiner.dir);
        }
    }
}

/// Starts `slot`'s member: of the cluster `initial_cluster` describes, a new one joining it
/// when `existing`.
fn spawn_slot(
    launch: &Launch,
    slot: &mut Slot,
    initial_cluster: &str,
    existing: bool,
) -> Result<(), CheckError> {
    std::fs::create_dir_all(&slot.dir).map_err(CheckError::file("create", &slot.dir))?;
    let log_path = slot.dir.with_extension("log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(CheckError::file("open", &log_path))?;
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let state = if existing { "existing" } else { "new" };
    let child = Command::new(&launch.exe)
        .arg("node")
        .args(["--name", &slot.name])
        .arg("--data-dir")
        .arg(&slot.dir)
        .args(["--listen-client-urls", &url(slot.client)])
        .args(["--advertise-client-urls", &url(slot.client)])
        .args(["--listen-peer-urls", &url(slot.peer)])
        .args(["--initial-advertise-peer-urls", &url(slot.peer)])
        .args(["--listen-metrics-urls", &url(slot.metrics)])
        .args(["--initial-cluster", initial_cluster])
        .args(["--initial-cluster-state", state])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .args(["--request-timeout", "2000"])
        .arg("--unsafe-fault-injection")
        .args(&launch.extra_args)
        .env("QUORATE_LOG", &launch.log_filter)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CheckError::Process {
            what: "start",
            member: slot.name.clone(),
            source,
        })?;
    slot.child = Some(child);
    slot.paused = false;
    Ok(())
}

impl Members {
    /// Member `i`'s peer URL.
    pub fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.slots[i].peer)
    }

    /// Blocks member `i`'s messages to members `to` (one direction of a partition). A member
    /// that does not answer three attempts is left whole, with a warning: the run goes on.
    pub async fn block(&self, i: usize, to: &[usize]) {
        if !self.is_up(i) || to.is_empty() {
            return;
        }
        let peers = to.iter().map(|&j| self.peer_url(j)).collect();
        self.fault(i, &Fault::Block { peers }, "partition").await;
    }

    /// Skews member `i`'s clock (a `clock` fault command).
    pub async fn skew(&self, i: usize, command: &Fault) {
        if self.is_up(i) {
            self.fault(i, command, "skew the clock").await;
        }
    }

    /// Applies a delay or drop fault to every running member's peer messages.
    pub async fn degrade(&self, command: &Fault) {
        for i in 0..self.slots.len() {
            if self.is_up(i) {
                self.fault(i, command, "degrade the network").await;
            }
        }
    }

    /// Removes every network fault from the running members (a restarted member starts
    /// without faults).
    pub async fn heal_network(&self) {
        for i in 0..self.slots.len() {
            if self.is_up(i) {
                self.fault(i, &Fault::Heal, "heal the network").await;
            }
        }
    }

    /// Sends a fault command to member `i`, up to three times.
    async fn fault(&self, i: usize, command: &Fault, what: &str) {
        let endpoint = format!("127.0.0.1:{}", self.slots[i].client);
        let mut last_error = None;
        for _ in 0..FAULT_ATTEMPTS {
            match client::faults::inject(&endpoint, command, FAULT_CALL_TIMEOUT).await {
                Ok(_) => return,
                Err(error) => last_error = Some(error),
            }
        }
        if let Some(error) = last_error {
            tracing::warn!(member = %self.slots[i].name, %error, "{what}");
        }
    }

    /// Whether member `i` runs and is not paused.
    pub fn is_up(&self, i: usize) -> bool {
        self.slots[i].child.is_some() && !self.slots[i].paused
    }

    /// SIGKILLs member `i` and reaps it.
    pub async fn kill(&mut self, i: usize) -> Result<(), CheckError> {
        let member = self.slots[i].name.clone();
        if let Some(mut child) = self.slots[i].child.take() {
            child.start_kill().map_err(|source| CheckError::Process {
                what: "SIGKILL",
                member: member.clone(),
                source,
            })?;
            child.wait().await.map_err(|source| CheckError::Process {
                what: "reap",
                member,
                source,
            })?;
        }
        self.slots[i].paused = false;
        Ok(())
    }

    /// Restarts a killed member on its ports and data.
    pub fn restart(&mut self, i: usize) -> Result<(), CheckError> {
        if self.slots[i].child.is_none() {
            self.spawn(i)?;
        }
        Ok(())
    }

    fn signal(&self, i: usize, signal: &'static str) -> Result<(), CheckError> {
        let Some(pid) = self.slots[i].child.as_ref().and_then(Child::id) else {
            return Ok(());
        };
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .map_err(|source| CheckError::Process {
                what: "signal (run kill) for",
                member: self.slots[i].name.clone(),
                source,
            })?;
        if !status.success() {
            return Err(CheckError::Signal {
                signal,
                pid,
                status: status.to_string(),
            });
        }
        Ok(())
    }

    /// SIGSTOPs member `i`.
    pub fn pause(&mut self, i: usize) -> Result<(), CheckError> {
        if self.is_up(i) {
            self.signal(i, "-STOP")?;
            self.slots[i].paused = true;
        }
        Ok(())
    }

    /// SIGCONTs member `i`.
    pub fn resume(&mut self, i: usize) -> Result<(), CheckError> {
        if self.slots[i].paused {
            self.signal(i, "-CONT")?;
            self.slots[i].paused = false;
        }
        Ok(())
    }

    /// Restarts every killed member and resumes every paused one.
    pub fn heal(&mut self) -> Result<(), CheckError> {
        for i in 0..self.slots.len() {
            self.resume(i)?;
            self.restart(i)?;
        }
        Ok(())
    }

    /// The index of the member the running members agree leads, if any answers.
    pub async fn leader(&self) -> Option<usize> {
        for (i, endpoint) in self.endpoints().iter().enumerate() {
            if !self.is_up(i) {
                continue;
            }
            let Ok(conn) = channel(endpoint, Duration::from_millis(500)).await else {
                continue;
            };
            let mut maintenance = MaintenanceClient::new(conn);
            let Ok(status) = maintenance.status(StatusRequest::default()).await else {
                continue;
            };
            let status = status.into_inner();
            if status.leader == 0 {
                continue;
            }
            // Ask every member its id to map the leader's id to a slot.
            for j in 0..self.slots.len() {
                if self.member_id(j).await == Some(status.leader) {
                    return Some(j);
                }
            }
        }
        None
    }

    /// Member `i`'s cluster id, as it reports it (`None` while it is down or does not answer).
    pub async fn member_id(&self, i: usize) -> Option<u64> {
        if !self.is_up(i) {
            return None;
        }
        let conn = channel(&self.endpoints()[i], Duration::from_millis(500))
            .await
            .ok()?;
        let status = MaintenanceClient::new(conn)
            .status(StatusRequest::default())
            .await
            .ok()?;
        status.into_inner().header.map(|h| h.member_id)
    }

    /// Waits until every running member serves a linearizable read (`when` says at which
    /// point of the run, for the error).
    pub async fn wait_ready(
        &self,
        timeout: Duration,
        when: &'static str,
    ) -> Result<(), CheckError> {
        let deadline = Instant::now() + timeout;
        for (i, endpoint) in self.endpoints().iter().enumerate() {
            if !self.is_up(i) {
                continue;
            }
            loop {
                let ready = match channel(endpoint, Duration::from_secs(1)).await {
                    Ok(conn) => KvClient::new(conn)
                        .range(RangeRequest {
                            key: b"check/ready".to_vec(),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    Err(_) => false,
                };
                if ready {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(CheckError::NotReady {
                        when,
                        member: self.slots[i].name.clone(),
                        timeout,
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Resumes paused members and stops every member with SIGTERM, then SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        self.stop_joiner().await;
        for i in 0..self.slots.len() {
            let _ = self.resume(i);
            let _ = self.signal(i, "-TERM");
        }
        for slot in &mut self.slots {
            if let Some(mut child) = slot.child.take()
                && tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// A connected channel to `endpoint` whose calls time out after `timeout`.
async fn channel(
    endpoint: &str,
    timeout: Duration,
) -> Result<tonic::transport::Channel, client::ClientError> {
    client::channels::connect(endpoint, timeout, Some(timeout)).await
}
