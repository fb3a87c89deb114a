//! Compatibility with Debian's `etcdctl` (3.4): the real etcd command-line client against a
//! Quorate cluster. `.ci/run` installs it; a missing etcdctl fails the test.

use super::*;

fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("run etcdctl (apt-get install etcd-client)");
    (output.status.success(), output_text(&output))
}

#[tokio::test]
async fn etcdctl_drives_a_quorate_cluster() {
    // Goal: etcd's own client works unchanged. Method: the common etcdctl commands, checking
    // their printed results.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    // Bare host:port, as etcdctl users write it (with a scheme, etcdctl 3.4 sends an authority
    // that no HTTP/2 server accepts on `endpoint status`).
    let endpoint = format!("127.0.0.1:{}", cluster.members[2].client);
    let run = |args: &[&str]| {
        let (ok, text) = etcdctl(&endpoint, args);
        assert!(ok, "etcdctl {args:?} failed: {text}");
        text
    };
    assert_eq!(run(&["put", "greeting", "hello"]).trim(), "OK");
    assert_eq!(run(&["get", "greeting"]), "greeting\nhello\n");
    run(&["put", "greeting2", "hi"]);
    assert_eq!(
        run(&["get", "greet", "--prefix", "--keys-only"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["greeting", "greeting2"]
    );
    let json = run(&["get", "greeting", "-w", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("etcdctl json");
    assert_eq!(value["count"], 1);
    assert!(value["header"]["revision"].as_i64().expect("revision") >= 3);
    assert_eq!(
        run(&["get", "greeting", "--consistency=s"]),
        "greeting\nhello\n"
    );
    assert_eq!(run(&["del", "greeting2"]).trim(), "1");
    let status = run(&["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status json");
    assert_ne!(
        status[0]["Status"]["leader"].as_u64().unwrap_or(0),
        0,
        "{status}"
    );
    let members = run(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    // A Txn through etcdctl's interactive form: compares, success ops, failure ops.
    let mut command = etcdctl_at(&endpoint);
    command.arg("txn");
    let text = "value(\"greeting\") = \"hello\"\n\nput greeting bye\n\nput greeting never\n\n";
    let output = run_with_stdin(command, text);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("SUCCESS"), "{text}");
    assert_eq!(
        run(&["get", "greeting", "--print-value-only"]).trim(),
        "bye"
    );
    let (ok, text) = etcdctl(&endpoint, &["put", "", "v"]);
    assert!(!ok && text.contains("key is not provided"), "{text}");
}

#[tokio::test]
async fn etcdctl_watch_replays_and_follows_changes() {
    // Goal: etcdctl's watch works unchanged. Method: `etcdctl watch --prefix --rev` from before
    // a known history; read its output lines until every event printed, then stop it.
    use std::io::{BufRead, BufReader};
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let first = client
        .put("ew/a", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.put("ew/b", "2", None).await.expect("put");
    client.delete("ew/a", None).await.expect("delete");
    let endpoint = format!("127.0.0.1:{}", cluster.members[1].client);
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["watch", "ew/", "--prefix", "--prev-kv"])
        .arg(format!("--rev={first}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl watch");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        // An event is its kind, then (with --prev-kv, when there was one) the previous key and
        // value, then the key and value.
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(16)
            .collect();
        lines
    });
    // One more change: delivered live or replayed, the output is the same.
    client.put("ew/b", "3", None).await.expect("put");
    let deadline = Instant::now() + DEADLINE;
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "etcdctl watch printed too little"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = reader.join().expect("reader");
    assert_eq!(
        lines,
        [
            "PUT", "ew/a", "1", "PUT", "ew/b", "2", "DELETE", "ew/a", "1", "ew/a", "", "PUT",
            "ew/b", "2", "ew/b", "3",
        ],
    );
}
