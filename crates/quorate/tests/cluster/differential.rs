//! The differential test: the same etcdctl script (`differential.txt`) runs against a real
//! three-member etcd (Debian's `etcd-server`, which `.ci/run` installs) and against three
//! Quorate members started with the very same flags; after normalizing what must differ (ids,
//! ports, timings, terms), the outputs must be identical, line by line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};

use regex::Regex;

use super::*;

/// Starts a three-member cluster of `binary` (etcd or quorate) with etcd's flags.
struct Processes {
    _root: tempfile::TempDir,
    children: Vec<Child>,
    endpoint: String,
    /// Every member's endpoint, comma-separated.
    all: String,
}

impl Processes {
    fn start(binary: &str, quorate: bool) -> Processes {
        let root = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let initial = (0..3)
            .map(|i| format!("m{}=http://127.0.0.1:{}", i + 1, ports[i].1))
            .collect::<Vec<_>>()
            .join(",");
        let children = (0..3)
            .map(|i| {
                let (client, peer, metrics) = ports[i];
                let mut command = Command::new(binary);
                if quorate {
                    command.arg("node");
                    command.args([
                        "--listen-metrics-urls",
                        &format!("http://127.0.0.1:{metrics}"),
                    ]);
                    command.env("QUORATE_LOG", "error");
                } else {
                    command.args([
                        "--listen-metrics-urls",
                        &format!("http://127.0.0.1:{metrics}"),
                    ]);
                }
                command
                    .args(["--name", &format!("m{}", i + 1)])
                    .arg("--data-dir")
                    .arg(root.path().join(format!("m{i}")))
                    .args([
                        "--listen-client-urls",
                        &format!("http://127.0.0.1:{client}"),
                    ])
                    .args([
                        "--advertise-client-urls",
                        &format!("http://127.0.0.1:{client}"),
                    ])
                    .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                    .args([
                        "--initial-advertise-peer-urls",
                        &format!("http://127.0.0.1:{peer}"),
                    ])
                    .args(["--initial-cluster", &initial])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", "differential"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("start {binary} (apt-get install etcd-server): {e}"))
            })
            .collect();
        Processes {
            _root: root,
            children,
            endpoint: format!("127.0.0.1:{}", ports[0].0),
            all: ports
                .iter()
                .map(|(client, _, _)| format!("127.0.0.1:{client}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn etcdctl_command(endpoint: &str, args: &[String]) -> Command {
    let mut command = etcdctl_at(endpoint);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Splits a script line into words; double quotes group (and may be empty).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(current);
    }
    out
}

/// Runs the script against `endpoint` (`all` lines against `all`) and returns one normalized
/// transcript.
fn run_script(endpoint: &str, all: &str, script: &str) -> Vec<String> {
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    let id = Regex::new(r"\b[0-9a-f]{12,16}\b").expect("regex");
    let mut transcript = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let written = line.to_string();
        let mut line = line.to_string();
        for (name, value) in &variables {
            line = line.replace(&format!("${name}"), value);
        }
        let mut args = words(&line);
        let retry = args[0] == "retry";
        if retry {
            args.remove(0);
        }
        let run = |endpoint: &str, args: &[String], stdin: Option<&str>| {
            let deadline = Instant::now() + DEADLINE;
            loop {
                let output = run(endpoint, args, stdin);
                if !retry || output.ends_with("[exit 0]") || Instant::now() > deadline {
                    return output;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        let (output, sort) = match args[0].as_str() {
            directive @ ("capture" | "quiet") => {
                let name = args[1].clone();
                let output = run(endpoint, &args[2..], None);
                let found = id
                    .find(&output)
                    .unwrap_or_else(|| panic!("no id in {output:?}"));
                variables.insert(name, found.as_str().to_string());
                let shown = if directive == "quiet" {
                    "<ID>".to_string()
                } else {
                    output
                };
                (shown, false)
            }
            "all" => (run(all, &args[1..], None), false),
            "lines" => {
                let count: usize = args[1].parse().expect("line count");
                (run_lines(endpoint, &args[2..], count), false)
            }
            "txn" => {
                let text = line["txn ".len()..].replace("\\n", "\n");
                (run(endpoint, &["txn".to_string()], Some(&text)), false)
            }
            "sorted" => {
                args.remove(0);
                (run(endpoint, &args, None), true)
            }
            _ => (run(endpoint, &args, None), false),
        };
        let mut lines: Vec<String> = normalize(&output).lines().map(str::to_string).collect();
        if sort {
            lines.sort();
        }
        transcript.push(format!("$ {written}"));
        transcript.extend(lines);
    }
    transcript
}

fn run(endpoint: &str, args: &[String], stdin: Option<&str>) -> String {
    let mut child = etcdctl_command(endpoint, args)
        .spawn()
        .expect("run etcdctl (apt-get install etcd-client)");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let output = child.wait_with_output().expect("etcdctl output");
    format!(
        "{}{}[exit {}]",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status.code().unwrap_or(-1)
    )
}

/// Runs a command that does not end by itself and keeps its first `count` output lines.
fn run_lines(endpoint: &str, args: &[String], count: usize) -> String {
    let mut child = etcdctl_command(endpoint, args)
        .spawn()
        .expect("run etcdctl");
    drop(child.stdin.take());
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut lines = Vec::new();
    while lines.len() < count {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(remaining) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines.join("\n") + "\n"
}

/// Replaces what legitimately differs between two clusters.
fn normalize(text: &str) -> String {
    let rules = [
        // Decimal ids first: one of 12 to 16 digits would otherwise pass for a hex id below.
        (r#""(cluster_id|member_id|raft_term)":\d+"#, "\"$1\":<N>"),
        (r#""(ClusterID|MemberID|RaftTerm)" : \d+"#, "\"$1\" : <N>"),
        (r#""ts":"[^"]*""#, "\"ts\":<TS>"),
        (r"client-[0-9a-f-]+", "client-<UUID>"),
        (r"\b[0-9a-f]{12,16}\b", "<ID>"),
        // etcdctl pads ids to 16 digits with spaces (`%16x`, member and cluster ids alike), so
        // an id with a leading zero digit gets one more space before it.
        (r" +<ID>", " <ID>"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<PORT>"),
        (r"took = \S+", "took = <T>"),
        (r"remaining\(\d+s\)", "remaining(<N>s)"),
        // Endpoint status: version, database size, term and indexes are the product's own.
        (
            r"(<ID>), [0-9.]+, [0-9.]+ [kMGT]?B, (true|false), (true|false), \d+, \d+, \d+,",
            "$1, <VERSION>, <SIZE>, $2, $3, <TERM>, <INDEX>, <APPLIED>,",
        ),
    ];
    let mut out = text.to_string();
    for (pattern, replacement) in rules {
        out = Regex::new(pattern)
            .expect("regex")
            .replace_all(&out, replacement)
            .into_owned();
    }
    // MemberAdd's environment lists the members in id order, and ids differ.
    let listed = Regex::new(r#"ETCD_INITIAL_CLUSTER="([^"]*)""#).expect("regex");
    listed
        .replace_all(&out, |found: &regex::Captures| {
            let mut members: Vec<&str> = found[1].split(',').collect();
            members.sort_unstable();
            format!("ETCD_INITIAL_CLUSTER=\"{}\"", members.join(","))
        })
        .into_owned()
}

/// Polls until `endpoint` answers a put (the cluster has a leader).
fn await_ready(endpoint: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let args = ["endpoint".to_string(), "health".to_string()];
        let output = run(endpoint, &args, None);
        if output.contains("is healthy") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} never healthy: {output}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn etcdctl_answers_the_same_from_etcd_and_quorate() {
    let script = include_str!("differential.txt");
    let etcd = Processes::start("etcd", false);
    let quorate = Processes::start(env!("CARGO_BIN_EXE_quorate"), true);
    await_ready(&etcd.endpoint);
    await_ready(&quorate.endpoint);
    let theirs = run_script(&etcd.endpoint, &etcd.all, script);
    let ours = run_script(&quorate.endpoint, &quorate.all, script);
    if std::env::var_os("DIFFERENTIAL_PRINT").is_some() {
        eprintln!("{}", ours.join("\n"));
    }
    let mut differences = Vec::new();
    for (i, (a, b)) in theirs.iter().zip(&ours).enumerate() {
        if a != b {
            differences.push(format!("line {i}:\n  etcd:    {a}\n  quorate: {b}"));
        }
    }
    if theirs.len() != ours.len() {
        differences.push(format!(
            "{} lines from etcd, {} from quorate",
            theirs.len(),
            ours.len()
        ));
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}\n\nfull etcd transcript:\n{}",
        differences.len(),
        differences.join("\n"),
        theirs.join("\n")
    );
}
