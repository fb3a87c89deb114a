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
