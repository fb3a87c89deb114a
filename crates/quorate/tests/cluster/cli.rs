//! The `quorate` client commands against a real cluster: put/get/del/txn/endpoint status/member
//! list, in both output formats. `quorate txn` is checked against `etcdctl txn` on the same text.

use super::*;

fn quorate(endpoints: &str, args: &[&str], stdin: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quorate"));
    command.args(["--endpoints", endpoints]).args(args);
    let output = run_with_stdin(command, stdin);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "quorate {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn etcdctl_txn(endpoint: &str, text: &str) -> String {
    let mut command = etcdctl_at(endpoint);
    command.arg("txn");
    let output = run_with_stdin(command, text);
    assert!(
        output.status.success(),
        "etcdctl txn failed on {text:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn client_commands_read_write_and_report() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoints = cluster.endpoints_except(None).join(",");
    let run = |args: &[&str]| quorate(&endpoints, args, "");

    assert_eq!(run(&["put", "cli/a", "1"]), "OK\n");
    assert_eq!(run(&["put", "cli/b", "2"]), "OK\n");
    assert_eq!(run(&["get", "cli/", "--prefix"]), "cli/a\n1\ncli/b\n2\n");
    assert_eq!(
        run(&[
            "get",
            "cli/",
            "--prefix",
            "--consistency",
            "serializable",
            "--keys-only"
        ]),
        "cli/a\ncli/b\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["-w", "json", "get", "cli/a"])).expect("json");
    assert_eq!(json["kvs"][0]["value"], "1");
    assert_eq!(json["kvs"][0]["version"], 1);
    let first_rev = json["kvs"][0]["mod_revision"].as_i64().expect("revision");
    assert_eq!(run(&["put", "cli/a", "3", "--prev-kv"]), "OK\ncli/a\n1\n");
    assert_eq!(
        run(&["get", "cli/a", "--rev", &first_rev.to_string()]),
        "cli/a\n1\n"
    );

    let status: serde_json::Value =
        serde_json::from_str(&run(&["-w", "json", "endpoint", "status"])).expect("json");
    let rows = status.as_array().expect("one row per endpoint");
    assert_eq!(rows.len(), 3);
    let leaders: std::collections::BTreeSet<_> =
        rows.iter().map(|row| row["leader"].to_string()).collect();
    assert_eq!(leaders.len(), 1, "members disagree on the leader: {status}");
    for row in rows {
        let size = row["db_size"].as_i64().expect("db_size");
        let in_use = row["db_size_in_use"].as_i64().expect("db_size_in_use");
        assert!(size > 0 && (1..=size).contains(&in_use), "{row}");
    }

    let members: serde_json::Value =
        serde_json::from_str(&run(&["-w", "json", "member", "list"])).expect("json");
    assert_eq!(members["members"].as_array().expect("members").len(), 3);

    assert_eq!(run(&["del", "cli/", "--prefix"]), "2\n");
    assert_eq!(run(&["get", "cli/", "--prefix", "--count-only"]), "0\n");
}

#[tokio::test]
async fn quorate_txn_prints_what_etcdctl_txn_prints() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoint = format!("127.0.0.1:{}", cluster.members[0].client);
    let run = |args: &[&str], stdin: &str| quorate(&endpoint, args, stdin);
    run(&["put", "t/k1", "v1"], "");
    run(&["put", "t/k2", "v2"], "");

    // Each text runs twice, through quorate and through etcdctl; it is written so that the
    // second run takes the same branch with the same output.
    let texts = [
        "value(\"t/k1\") = \"v1\"\n\nput t/k3 \"three\"\nget t/k2\n\nput t/k3 \"never\"\n\n",
        "version(\"t/k1\") > \"5\"\n\nput t/x y\n\nget t/ --prefix --keys-only\ndel t/nothing\n\n",
        "mod(\"t/k2\") > \"0\"\ncreate(\"t/k1\") != \"0\"\n\nget t/k1 t/k3\n\n\n",
    ];
    for text in texts {
        let ours = run(&["txn"], text);
        let theirs = etcdctl_txn(&endpoint, text);
        assert_eq!(ours, theirs, "txn text {text:?}");
    }
    let first = run(&["txn"], texts[0]);
    assert_eq!(first, "SUCCESS\n\nOK\n\nt/k2\nv2\n");

    let json: serde_json::Value =
        serde_json::from_str(&run(&["-w", "json", "txn"], texts[1])).expect("json");
    assert_eq!(json["succeeded"], false);
    assert_eq!(json["responses"].as_array().expect("responses").len(), 2);

    let mut command = Command::new(env!("CARGO_BIN_EXE_quorate"));
    command.args(["--endpoints", &endpoint, "txn"]);
    let output = run_with_stdin(command, "size(\"t/k1\") = \"1\"\n");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 1") && stderr.contains("unknown comparison target"),
        "{stderr}"
    );
}

#[tokio::test]
async fn quorate_watch_resumes_on_another_member_without_losing_or_repeating_events() {
    // Goal: the CLI's watch survives the loss of the member it reads from. Method: watch
    // through a follower listed first, write, SIGKILL that follower, write more through the
    // leader, and require every event exactly once, in order.
    use std::io::{BufRead, BufReader};
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut writer = cluster.client(leader).await;
    let start = writer
        .put("cw/0", "0", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let endpoints = format!("{},{}", cluster.endpoint(follower), cluster.endpoint(other));
    let mut child = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["--endpoints", &endpoints, "watch", "cw/", "--prefix"])
        .args(["--rev", &start.to_string(), "--max-events", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("quorate watch");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let read_lines = |lines: &mut Vec<String>, count: usize| {
        let deadline = Instant::now() + DEADLINE;
        while lines.len() < count {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(remaining) {
                Ok(line) => lines.push(line),
                Err(_) => panic!("quorate watch printed only {lines:?}"),
            }
        }
    };
    for i in 1..5 {
        writer
            .put(format!("cw/{i}"), format!("{i}"), None)
            .await
            .expect("put");
    }
    read_lines(&mut lines, 15);
    cluster.kill(follower);
    for i in 5..10 {
        writer
            .put(format!("cw/{i}"), format!("{i}"), None)
            .await
            .expect("put");
    }
    read_lines(&mut lines, 30);
    let status = child
        .wait()
        .expect("quorate watch exits after --max-events");
    assert!(status.success());
    let expected: Vec<String> = (0..10)
        .flat_map(|i| ["PUT".to_string(), format!("cw/{i}"), format!("{i}")])
        .collect();
    assert_eq!(lines, expected);
}

#[tokio::test]
async fn coordination_and_maintenance_commands() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoints = cluster.endpoints_except(None).join(",");
    let run = |args: &[&str]| quorate(&endpoints, args, "");

    let granted = run(&["lease", "grant", "60"]);
    let id = granted
        .strip_prefix("lease ")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("lease id")
        .to_string();
    assert_eq!(granted, format!("lease {id} granted with TTL(60s)\n"));
    let lease = i64::from_str_radix(&id, 16).expect("hex id");
    let mut client = cluster.client(0).await;
    client
        .put("cc/k", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put with lease");
    let ttl = run(&["lease", "timetolive", &id, "--keys"]);
    assert!(
        ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining("))
            && ttl.ends_with(", attached keys([cc/k])\n"),
        "{ttl}"
    );
    assert!(run(&["lease", "list"]).contains(&id));
    assert_eq!(
        run(&["lease", "keep-alive", &id, "--once"]),
        format!("lease {id} keepalived with TTL(60)\n")
    );
    assert_eq!(
        run(&["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    assert_eq!(run(&["get", "cc/k"]), "");

    let revision = client
        .put("cc/x", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert_eq!(
        run(&["compaction", &revision.to_string()]),
        format!("compacted revision {revision}\n")
    );
    // HashKV at a revision needs every member to have applied it.
    for i in 0..3 {
        await_local_value(&cluster, i, "cc/x", "1").await;
    }
    let hashes: serde_json::Value = serde_json::from_str(&run(&[
        "-w",
        "json",
        "endpoint",
        "hashkv",
        "--rev",
        &revision.to_string(),
    ]))
    .expect("json");
    let hashes = hashes.as_array().expect("rows");
    assert_eq!(hashes.len(), 3);
    assert!(
        hashes.iter().all(|r| r["hash"] == hashes[0]["hash"]),
        "{hashes:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("state.snap");
    let saved = run(&["snapshot", "save", file.to_str().expect("utf-8 path")]);
    assert!(saved.starts_with("Snapshot saved at"), "{saved}");
    let bytes = std::fs::read(&file).expect("snapshot file");
    assert!(bytes.starts_with(b"QSNAPv05"));
}

#[tokio::test]
async fn quorate_lock_runs_commands_one_at_a_time_with_growing_fencing_tokens() {
    // Goal: `quorate lock NAME -- CMD` excludes concurrent holders and hands each a larger
    // token. Method: three processes append start/end lines with their token to one file.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoints = cluster.endpoints_except(None).join(",");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let script = format!(
        "echo start $QUORATE_LOCK_TOKEN >> {0}; sleep 0.2; echo end $QUORATE_LOCK_TOKEN >> {0}",
        log.display()
    );
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_quorate"))
                .args([
                    "--endpoints",
                    &endpoints,
                    "lock",
                    "cl/lock",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("quorate lock")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<(&str, i64)> = text
        .lines()
        .map(|l| {
            let (what, token) = l.split_once(' ').expect("two words");
            (what, token.parse().expect("token"))
        })
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    for pair in lines.chunks(2) {
        assert_eq!(pair[0].0, "start", "{text}");
        assert_eq!(pair[1], ("end", pair[0].1), "interleaved holders: {text}");
    }
    let tokens: Vec<i64> = lines.iter().step_by(2).map(|l| l.1).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens must grow: {tokens:?}"
    );
}

#[tokio::test]
async fn quorate_member_add_and_remove_a_learner() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoints = cluster.endpoints_except(None).join(",");
    let run = |args: &[&str]| quorate(&endpoints, args, "");
    let url = format!("http://127.0.0.1:{}", free_port());
    let added = run(&["member", "add", &url, "--learner"]);
    let id = added
        .strip_prefix("Member ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{added}"))
        .to_string();
    let list = run(&["member", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(&url) && l.ends_with("true")),
        "the learner is listed: {list}"
    );
    assert!(run(&["member", "remove", &id]).starts_with(&format!("Member {id} removed")));
    assert!(!run(&["member", "list"]).contains(&url));
}

#[test]
fn bench_floor_reports_fdatasync_and_loopback_percentiles() {
    // A smoke run (no speed is asserted): the report has every field, positive and ordered,
    // and the scratch file is gone afterwards.
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["bench", "floor", "--samples", "20", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run quorate bench floor");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let field = |name: &str| {
        report[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    assert!(field("fdatasync_p50_us") > 0.0);
    assert!(field("loopback_rtt_p50_us") > 0.0);
    assert!(field("fdatasync_p99_us") >= field("fdatasync_p50_us"));
    assert!(field("loopback_rtt_p99_us") >= field("loopback_rtt_p50_us"));
    let sum = field("fdatasync_p50_us") + field("loopback_rtt_p50_us");
    assert!((field("floor_p50_us") - sum).abs() < 0.5, "{report}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn bench_workloads_run_against_a_cluster_and_report() {
    // A smoke run of every load workload against a 3-member cluster (no speed is asserted):
    // each prints a JSON summary with operations and no errors, ordered percentiles, and the
    // per-second CSV; the watch workload delivers every acknowledged put to every watcher; the
    // range workload splits its consensus bucket into the ranges asked for;
    // `bench report` turns the lines into a table and a plot.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoints = cluster.endpoints_except(None).join(",");
    let dir = tempfile::tempdir().expect("tempdir");
    let workloads: [&[&str]; 8] = [
        &["put"],
        &["get", "--consistency", "l"],
        &["get", "--consistency", "s"],
        &["mixed", "--read-ratio", "0.5"],
        &["txn"],
        &["lease"],
        &["watch", "--watchers", "3"],
        &["range-put", "--ranges", "4"],
    ];
    let mut lines = String::new();
    for (i, workload) in workloads.iter().enumerate() {
        let csv = dir.path().join(format!("{i}.csv"));
        let mut args: Vec<&str> = vec!["bench"];
        args.extend_from_slice(workload);
        args.extend_from_slice(&[
            "--clients",
            "4",
            "--conns",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--key-space",
            "50",
            "--label",
            "quorate",
            "--no-progress",
            "--csv",
        ]);
        args.push(csv.to_str().expect("utf-8 path"));
        let out = quorate(&endpoints, &args, "");
        let summary: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        let number = |name: &str| {
            summary[name]
                .as_f64()
                .unwrap_or_else(|| panic!("{name} in {summary}"))
        };
        assert!(number("ops") > 0.0, "{summary}");
        assert_eq!(number("errors"), 0.0, "{summary}");
        assert!(number("p50_ms") <= number("p99_ms"), "{summary}");
        assert!(number("p99_ms") <= number("max_ms"), "{summary}");
        assert_eq!(summary["label"], "quorate");
        let csv_text = std::fs::read_to_string(&csv).expect("csv written");
        let rows: Vec<&str> = csv_text.lines().collect();
        assert_eq!(rows[0], "second,ops", "{csv_text}");
        assert_eq!(rows.len(), 2, "{csv_text}");
        match workload[0] {
            "txn" => assert!(summary["txn_conflicts"].is_u64(), "{summary}"),
            "watch" => {
                assert_eq!(number("watchers"), 3.0);
                assert!(number("puts") > 0.0, "{summary}");
                assert_eq!(number("events"), number("events_expected"), "{summary}");
            }
            _ => {}
        }
        lines.push_str(out.trim());
        lines.push('\n');
    }
    // The range bench split its consensus bucket into the four ranges asked for.
    let listed = quorate(&endpoints, &["range", "list", "bench-ranges"], "");
    assert_eq!(listed.lines().count(), 1 + 4, "{listed}");
    let results = dir.path().join("results.jsonl");
    std::fs::write(&results, lines).expect("write results");
    let svg = dir.path().join("compare.svg");
    let table = quorate(
        &endpoints,
        &[
            "bench",
            "report",
            results.to_str().expect("utf-8"),
            "--svg",
            svg.to_str().expect("utf-8"),
        ],
        "",
    );
    for workload in [
        "put",
        "get-l",
        "get-s",
        "mixed",
        "txn",
        "lease",
        "watch",
        "range-put",
    ] {
        assert!(
            table.contains(&format!("| {workload} | 4 | – |")),
            "{table}"
        );
    }
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    assert_eq!(plot.matches("<polyline").count(), 16, "{plot}");
}

#[test]
fn bench_mixed_refuses_a_read_ratio_outside_zero_to_one() {
    // The ratio is checked before any connection is made, so no member is needed.
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["bench", "mixed", "--read-ratio", "1.5", "--duration", "1s"])
        .output()
        .expect("run quorate bench mixed");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--read-ratio must be between 0 and 1, not 1.5"),
        "{stderr}"
    );
}
