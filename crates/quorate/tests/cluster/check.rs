//! `quorate check`: saved histories rechecked by `analyze`, with the verdict as exit code.

use std::process::Command;

/// Runs `quorate check analyze` on `history` and returns (exit code, stdout).
fn analyze(history: &str, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, history).expect("write history");
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["check", "analyze"])
        .arg(&file)
        .args(args)
        .output()
        .expect("run quorate check analyze");
    let code = output.status.code().expect("exited");
    (code, String::from_utf8_lossy(&output.stdout).into_owned())
}

const VALID: &str = r#"{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":10}
{"process":0,"type":"ok","f":"write","key":"x","value":null,"time":20,"revision":2,"member":"n1"}
{"process":1,"type":"invoke","f":"read","key":"x","value":null,"time":30}
{"process":1,"type":"ok","f":"read","key":"x","value":1,"time":40}
"#;

const STALE: &str = r#"{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":10}
{"process":0,"type":"ok","f":"write","key":"x","value":null,"time":20}
{"process":1,"type":"invoke","f":"read","key":"x","value":null,"time":30}
{"process":1,"type":"ok","f":"read","key":"x","value":null,"time":40}
"#;

#[test]
fn check_analyze_exit_code_is_the_verdict() {
    // Goal: a script can trust the exit code. Method: a valid register history exits 0, a
    // stale read exits 1 and names the operation, an exhausted budget exits 2 (never 0),
    // and -w json carries the same verdict.
    let (code, out) = analyze(VALID, &["--model", "register"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict: valid"), "{out}");
    assert!(
        out.contains("write               1        0        0"),
        "{out}"
    );

    let (code, out) = analyze(STALE, &["--model", "register"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not-linearizable on key x"), "{out}");
    assert!(out.contains("p1 read x -> ok"), "{out}");

    let (code, out) = analyze(VALID, &["--model", "register", "--steps-max", "1"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("verdict: unknown"), "{out}");

    let (code, out) = analyze(STALE, &["--model", "register", "-w", "json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(report["verdict"], "invalid");
    assert_eq!(report["anomalies"][0]["kind"], "not-linearizable");
    assert_eq!(report["counts"]["read"]["ok"], 1);
}

#[test]
fn check_analyze_refuses_a_malformed_history_with_its_line() {
    // Goal: a history that cannot be read is "not checked" (exit 3), never a verdict.
    let (code, _) = analyze("{\"process\":0,\"type\":\"invoke\"}\n", &["--model", "set"]);
    assert_eq!(code, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("h.jsonl");
    std::fs::write(&file, format!("{VALID}not json\n")).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["check", "analyze", "--model", "register"])
        .arg(&file)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr.contains("line 5"), "{stderr}");
}

/// Runs `quorate check` with `args` in a temporary output directory; returns the exit code,
/// the JSON report and the directory.
fn check_run(args: &[&str]) -> (i32, serde_json::Value, tempfile::TempDir) {
    check_run_on(3, args)
}

/// `check_run` with `members` members.
fn check_run_on(members: usize, args: &[&str]) -> (i32, serde_json::Value, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let members = members.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .arg("check")
        .args(args)
        .args([
            "--members",
            &members,
            "--clients",
            "4",
            "-w",
            "json",
            "--out",
        ])
        .arg(out.path())
        .env("QUORATE_LOG", "warn")
        .output()
        .expect("run quorate check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exited"), report, out)
}

/// The recorded history, as `analyze` reads it.
fn history_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("history.jsonl"))
        .expect("history written")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
fn check_register_under_member_kills_is_linearizable() {
    // Goal: the tester runs a real workload against real members while SIGKILLing them, and
    // the history it writes is judged linearizable. Method: 8 s of register operations with
    // kills every ~2 s; the fault windows must be recorded, operations must have succeeded
    // on both sides of the faults, and the saved history must recheck the same way.
    let (code, report, out) = check_run(&[
        "--workload",
        "register",
        "--nemesis",
        "kill,kill-leader",
        "--time",
        "8s",
        "--interval",
        "2s",
        "--seed",
        "11",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["verdict"], "valid", "{report}");
    assert_eq!(report["checker"], "etcd-kv");
    assert!(
        report["faults"].as_array().is_some_and(|f| !f.is_empty()),
        "{report}"
    );
    let reads_ok = report["counts"]["read"]["ok"].as_u64().unwrap_or(0);
    let writes_ok = report["counts"]["write"]["ok"].as_u64().unwrap_or(0);
    assert!(reads_ok > 20 && writes_ok > 10, "{report}");
    let faults = std::fs::read_to_string(out.path().join("faults.jsonl")).expect("faults");
    assert!(faults.contains("\"kind\""), "{faults}");
    let page = std::fs::read_to_string(out.path().join("report.html")).expect("report");
    assert!(page.contains("verdict: valid") && page.matches("<svg").count() == 2);
    let history = history_lines(out.path());
    assert!(history.iter().any(|e| e["type"] == "invoke"));
    assert!(history.iter().all(|e| e["time"].is_u64()));

    let (code, text) = analyze(
        &std::fs::read_to_string(out.path().join("history.jsonl")).expect("history"),
        &["--model", "cas-register"],
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn check_register_under_partitions_is_linearizable() {
    // Goal: partitions through the members' fault-injection hook (the leader cut off, a
    // bridge, two halves) leave the history linearizable. Method: 8 s of register operations
    // under those partitions; the windows must be recorded as cuts between members.
    let (code, report, _out) = check_run(&[
        "--workload",
        "register",
        "--nemesis",
        "partition-leader,bridge,partition-halves",
        "--time",
        "8s",
        "--interval",
        "2s",
        "--seed",
        "3",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["verdict"], "valid", "{report}");
    let faults = report["faults"].as_array().expect("faults");
    assert!(!faults.is_empty(), "{report}");
    assert!(
        faults.iter().all(|f| f["members"][0]
            .as_str()
            .is_some_and(|cut| cut.contains("-/->"))),
        "{report}"
    );
}

#[test]
fn check_set_and_bank_under_pauses_lose_nothing() {
    // Goal: the set and bank workloads run end to end under SIGSTOP/SIGCONT of members (the
    // leader among them) and are judged valid, with a final read after healing.
    for workload in ["set", "bank"] {
        let (code, report, out) = check_run(&[
            "--workload",
            workload,
            "--nemesis",
            "pause,pause-leader",
            "--time",
            "6s",
            "--interval",
            "1500ms",
            "--seed",
            "5",
        ]);
        assert_eq!(code, 0, "{workload}: {report}");
        assert_eq!(report["verdict"], "valid", "{workload}: {report}");
        assert_eq!(report["checker"], workload);
        let history = history_lines(out.path());
        let last_read = history
            .iter()
            .rev()
            .find(|e| e["f"] == "read" && e["type"] == "ok")
            .expect("a final read");
        assert!(!last_read["value"].is_null(), "{workload}: {last_read}");
    }
}

#[test]
fn check_watch_under_kills_and_partitions_misses_nothing() {
    // Goal: watchers following a prefix through member kills and partitions, re-opening on
    // another member from the next revision, deliver every revision once, in order, with
    // the values written. Method: 8 s of puts under the prefix with three watchers.
    let (code, report, out) = check_run(&[
        "--workload",
        "watch",
        "--watchers",
        "3",
        "--nemesis",
        "kill,partition-one",
        "--time",
        "8s",
        "--interval",
        "2s",
        "--seed",
        "6",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["verdict"], "valid", "{report}");
    assert_eq!(report["checker"], "watch");
    let delivered = report["counts"]["watch-events"]["ok"].as_u64().unwrap_or(0);
    let puts = report["counts"]["put"]["ok"].as_u64().unwrap_or(0);
    assert!(puts > 20 && delivered > 3, "{report}");
    let history = history_lines(out.path());
    let opens = history
        .iter()
        .filter(|e| e["f"] == "watch-open" && e["type"] == "invoke")
        .count();
    assert!(opens >= 3, "every watcher opened at least once: {opens}");
}

#[test]
fn check_lock_holders_never_overlap_under_pauses_and_partitions() {
    // Goal: fenced writes made under the lock never interleave two holds and never go back
    // to an older token, also when holders are paused past their lease or cut off. Method:
    // 8 s of lock holds with two fenced writes each, under pauses and partitions.
    let (code, report, _out) = check_run(&[
        "--workload",
        "lock",
        "--nemesis",
        "pause,partition-one",
        "--time",
        "8s",
        "--interval",
        "2s",
        "--seed",
        "2",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["verdict"], "valid", "{report}");
    assert_eq!(report["checker"], "lock");
    let fenced = report["counts"]["fenced-write"]["ok"].as_u64().unwrap_or(0);
    assert!(fenced > 10, "{report}");
}

#[test]
fn check_range_register_under_splits_merges_moves_and_drains_is_linearizable() {
    // Goal: the range nemeses change a consensus bucket's ranges under the range workloads,
    // and the histories are judged valid. Method: 12 s of range-register on four members with
    // splits, merges, moves and drains every ~2 s; valid by the register checker; the fault
    // windows say what each did, and at least one changed a range. A range nemesis with a
    // workload on no consensus bucket is refused before anything starts (exit 3).
    let (code, report, _out) = check_run_on(
        4,
        &[
            "--workload",
            "range-register",
            "--nemesis",
            "split,merge,move-range,drain",
            "--time",
            "12s",
            "--interval",
            "2s",
            "--seed",
            "5",
        ],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["checker"], "follower-register", "{report}");
    let follower_ok = report["counts"]["follower-read"]["ok"]
        .as_u64()
        .unwrap_or(0);
    assert!(follower_ok > 5, "{report}");
    let faults = report["faults"].as_array().expect("faults");
    let changed = faults.iter().any(|f| {
        let done = f["members"][0].as_str().unwrap_or("");
        !done.starts_with("nothing done") && !done.is_empty()
    });
    assert!(changed, "no range fault changed anything: {report}");
    let reads_ok = report["counts"]["read"]["ok"].as_u64().unwrap_or(0);
    assert!(reads_ok > 20, "{report}");

    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["check", "--workload", "register", "--nemesis", "split"])
        .output()
        .expect("run quorate check");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("need a range workload"), "{stderr}");
}
