//! Real-cluster tests: three `quorate node` processes on free loopback ports with temporary data
//! directories and real fsync, driven by the `etcd-client` crate and Debian's `etcdctl`. Faults
//! are real: SIGKILL of members. Every wait polls against a deadline.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// Returns a loopback port no other test process is likely to take. Ports come from below the
/// kernel's ephemeral range (so outgoing connections and port-0 binds never reuse them), from a
/// slice chosen by this process's id (so concurrent test processes use different slices), and
/// are checked free before use. Restarted members keep their ports.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 10_000;
    const SLICE: u16 = 64;
    const SLICES: u16 = 300;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = FIRST + (std::process::id() % u32::from(SLICES)) as u16 * SLICE;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            offset < SLICE,
            "this test process used up its {SLICE} ports"
        );
        let port = base + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    metrics: u16,
    dir: PathBuf,
    process: Option<Child>,
}

/// A cluster of real member processes, stopped when dropped.
struct Cluster {
    _root: tempfile::TempDir,
    members: Vec<Member>,
    extra_args: Vec<String>,
}

impl Cluster {
    fn start(size: usize, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::stopped(size, extra_args);
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster
    }

    /// Returns a cluster's ports and data dirs without starting any member.
    fn stopped(size: usize, extra_args: &[&str]) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let members: Vec<Member> = (1..=size)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                metrics: free_port(),
                dir: root.path().join(format!("m{i}")),
                process: None,
            })
            .collect();
        Cluster {
            _root: root,
            members,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Returns `--initial-cluster` for the current members.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        self.spawn_with(i, &[]);
    }

    /// Adds a slot for one more member (ports and data dir), not started; returns its index.
    fn add_slot(&mut self) -> usize {
        let i = self.members.len();
        let dir = self.members[0]
            .dir
            .parent()
            .expect("cluster root")
            .join(format!("m{}", i + 1));
        self.members.push(Member {
            name: format!("m{}", i + 1),
            client: free_port(),
            peer: free_port(),
            metrics: free_port(),
            dir,
            process: None,
        });
        i
    }

    fn spawn_with(&mut self, i: usize, extra: &[&str]) {
        let initial_cluster = self.initial_cluster();
        let m = &self.members[i];
        let child = Command::new(env!("CARGO_BIN_EXE_quorate"))
            .arg("node")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
            ])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{}", m.metrics),
            ])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.extra_args)
            .args(extra)
            .env(
                "QUORATE_LOG",
                std::env::var("TEST_QUORATE_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(member_log(&m.name))
            .spawn()
            .expect("spawn quorate node");
        self.members[i].process = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].process.take() {
            child.kill().expect("SIGKILL member");
            child.wait().expect("reap member");
        }
    }

    /// Waits until member `i` exits by itself and returns how.
    async fn await_exit(&mut self, i: usize) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        let child = self.members[i].process.as_mut().expect("member running");
        loop {
            if let Some(status) = child.try_wait().expect("poll member") {
                self.members[i].process = None;
                return status;
            }
            assert!(Instant::now() < deadline, "member {i} did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client)
    }

    fn endpoints_except(&self, skip: Option<usize>) -> Vec<String> {
        (0..self.members.len())
            .filter(|i| Some(*i) != skip)
            .map(|i| self.endpoint(i))
            .collect()
    }

    async fn client(&self, i: usize) -> Client {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match Client::connect([self.endpoint(i)], None).await {
                Ok(client) => return client,
                Err(error) if Instant::now() > deadline => panic!("connect to member {i}: {error}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Polls every live member's Status until one reports a leader; returns its index.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + DEADLINE;
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if m.process.is_none() {
                    continue;
                }
                let Ok(mut client) = Client::connect([self.endpoint(i)], None).await else {
                    continue;
                };
                let Ok(status) = client.status().await else {
                    continue;
                };
                let leader = status.leader();
                if leader == 0 {
                    continue;
                }
                if let Some(j) = self.index_of(leader).await
                    && self.members[j].process.is_some()
                {
                    return j;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn index_of(&self, member_id: u64) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.process.is_none() {
                continue;
            }
            if let Ok(mut client) = Client::connect([self.endpoint(i)], None).await
                && let Ok(status) = client.status().await
                && status.header().map(|h| h.member_id()) == Some(member_id)
            {
                return Some(i);
            }
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// Retries a write until it succeeds or the deadline passes (used only across faults, where
/// "unavailable for a while" is the documented behaviour).
async fn put_eventually(endpoints: Vec<String>, key: &str, value: &str) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(mut client) = Client::connect(endpoints.clone(), None).await {
            match client.put(key, value, None).await {
                Ok(response) => return response.header().expect("header").revision(),
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "put {key} never succeeded: {error}"
                ),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a member's serializable (local) read until `key` has `value`.
async fn await_local_value(cluster: &Cluster, i: usize, key: &str, value: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(mut client) = Client::connect([cluster.endpoint(i)], None).await
            && let Ok(response) = client
                .get(key, Some(GetOptions::new().with_serializable()))
                .await
            && response.kvs().first().map(|kv| kv.value()) == Some(value.as_bytes())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} never saw {key}={value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A finished command's stdout followed by its stderr.
fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `command` with `stdin` as its input and returns its output.
fn run_with_stdin(mut command: Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("child output")
}

/// Returns an etcdctl command (API v3) aimed at `endpoint`.
fn etcdctl_at(endpoint: &str) -> Command {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"));
    command
}

/// Reads one value from a member's `/metrics` with a plain HTTP/1.0 request.
fn metric(port: u16, name: &str) -> i64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn status_of(error: etcd_client::Error) -> (tonic::Code, String) {
    match error {
        etcd_client::Error::GRpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

mod check;
mod cli;
mod consensus;
mod differential;
mod etcdctl;
mod faults;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod membership;
mod quorum;
mod ring;
mod watch;

/// Where member `name` logs: the test's stderr, or with `TEST_MEMBER_LOG_DIR` set, its own
/// file there (appended across restarts), to tell members apart when a test fails.
fn member_log(name: &str) -> Stdio {
    match std::env::var_os("TEST_MEMBER_LOG_DIR") {
        Some(dir) => {
            let path = std::path::Path::new(&dir).join(format!("{name}.log"));
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map(Stdio::from)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        }
        None => Stdio::inherit(),
    }
}
