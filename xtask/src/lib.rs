//! Tidy checks of the repository's own rules (STYLE.md), run as tests by `xtask/tests/tidy.rs`:
//! every Rust file opens with a `//!` header, no unbounded channels, to-do markers only with an
//! issue number, sizes a newcomer can read (no non-test file over `FILE_LINES_MAX` lines, no
//! function over `FUNCTION_LINES_MAX` without a reason at its top), and the crate layering of
//! ARCHITECTURE.md. It reads files only; it never edits them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One broken rule, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: PathBuf,
    pub line: usize,
    pub rule: &'static str,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.rule)
    }
}

/// Returns the repository root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository root")
        .to_path_buf()
}

/// Returns every `.rs` file under `dir`, skipping build output.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Checks the text of one Rust file against the per-file rules.
pub fn check_source(path: &Path, text: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let violation = |line: usize, rule: &'static str| Violation {
        path: path.to_path_buf(),
        line,
        rule,
    };
    let first = text.lines().find(|line| !line.trim().is_empty());
    if !first.is_some_and(|line| line.starts_with("//!")) {
        out.push(violation(
            1,
            "file must open with a `//!` header saying what it owns",
        ));
    }
    // Split so this file does not trip its own rules.
    let unbounded = concat!("unbounded", "_channel");
    let todo = concat!("TO", "DO");
    for (number, line) in text.lines().enumerate() {
        if line.contains(unbounded) {
            out.push(violation(
                number + 1,
                "unbounded channels are not allowed (STYLE §4)",
            ));
        }
        let mut rest = line;
        while let Some(at) = rest.find(todo) {
            let after = &rest[at + todo.len()..];
            let numbered = after
                .strip_prefix("(#")
                .is_some_and(|tail| tail.starts_with(|c: char| c.is_ascii_digit()));
            if !numbered {
                out.push(violation(
                    number + 1,
                    concat!("write TO", "DO(#issue), not a bare marker"),
                ));
            }
            rest = after;
        }
    }
    out
}

/// Lines a non-test source file may have.
pub const FILE_LINES_MAX: usize = 800;
/// Lines a function may have unless a comment at its top says why it is longer.
pub const FUNCTION_LINES_MAX: usize = 100;
/// The words that state the reason for a longer function (in its doc comment or a comment
/// just above it).
pub const LONG_REASON: &str = "Long because";

/// Whether `path` holds tests rather than product code (`tests.rs`, `*_tests.rs`, files under
/// `tests/`).
pub fn is_test_source(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name == "tests.rs" || name.ends_with("_tests.rs"))
        || path.components().any(|c| c.as_os_str() == "tests")
}

/// Checks the sizes of one non-test Rust file: its length, and the length of every function
/// before its `#[cfg(test)]` part (a function ends at the first line that closes it at its own
/// indentation).
pub fn check_sizes(path: &Path, text: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    if is_test_source(path) {
        return out;
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() > FILE_LINES_MAX {
        out.push(Violation {
            path: path.to_path_buf(),
            line: FILE_LINES_MAX + 1,
            rule: "file longer than FILE_LINES_MAX lines: split it by what its parts own",
        });
    }
    let product = lines
        .iter()
        .position(|l| l.starts_with("#[cfg(test)]"))
        .unwrap_or(lines.len());
    for (at, line) in lines[..product].iter().enumerate() {
        let Some(indent) = function_indent(line) else {
            continue;
        };
        // A signature over several lines that ends in `;` declares a trait method: no body.
        let declared = lines[at..product]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with('{') || l.ends_with(';'))
            .is_some_and(|l| l.ends_with(';'));
        if declared {
            continue;
        }
        let close = format!("{indent}}}");
        let Some(end) = lines[at + 1..product].iter().position(|l| **l == close) else {
            continue;
        };
        let length = end + 2;
        let above = lines[..at]
            .iter()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("//") || l.starts_with("#[")
            })
            .any(|l| l.contains(LONG_REASON));
        if length > FUNCTION_LINES_MAX && !above {
            out.push(Violation {
                path: path.to_path_buf(),
                line: at + 1,
                rule: "function longer than FUNCTION_LINES_MAX lines without a `Long because` \
                       reason at its top",
            });
        }
    }
    out
}

/// Ways of reading an error's text to decide something; product code decides on typed errors
/// (a status's `ErrorDetail`, an error enum), and only tests may look at the words.
pub const ERROR_TEXT_READS: &[&str] = &[
    ".message().contains(",
    ".message().starts_with(",
    ".message().ends_with(",
    ".message() ==",
    "refusal.contains(",
    "refusal.starts_with(",
    "refusal ==",
    ".to_string().contains(",
    ".to_string().starts_with(",
];

/// Checks that the product code of one Rust file never decides on an error's text (lines
/// before its `#[cfg(test)]` part; test files may).
pub fn check_error_text(path: &Path, text: &str) -> Vec<Violation> {
    if is_test_source(path) {
        return Vec::new();
    }
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .enumerate()
        .filter(|(_, line)| ERROR_TEXT_READS.iter().any(|read| line.contains(read)))
        .map(|(at, _)| Violation {
            path: path.to_path_buf(),
            line: at + 1,
            rule: "decide on a typed error (an enum, a status's ErrorDetail), never on its text",
        })
        .collect()
}

/// The indentation of a line that opens a function definition with a body.
fn function_indent(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let mut rest = trimmed;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let is_fn = rest.starts_with("fn ") && !line.trim_end().ends_with(';');
    is_fn.then_some(indent)
}

/// Returns each workspace crate's normal dependencies (names), read from its Cargo.toml.
pub fn crate_dependencies(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(root.join("crates")) else {
        return out;
    };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            continue;
        };
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("parse {}: {e}", manifest.display()));
        let name = table["package"]["name"]
            .as_str()
            .expect("package name")
            .to_string();
        let deps = table
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

/// The crates STYLE §1 keeps pure: no runtime, no transport, no storage engine, no anyhow.
pub const PURE_CRATES: &[&str] = &[
    "base",
    "mvcc",
    "check",
    "crdt",
    "placement",
    "quorum",
    "membership",
    "sim",
    "topology",
    "ranges",
    "versioned",
];

/// What a pure crate must not depend on, and why.
pub const PURE_FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "pure crates have no runtime"),
    ("tonic", "pure crates have no transport"),
    ("redb", "only storage touches redb"),
    (
        "storage",
        "protocol cores are pure; drivers wire them to storage",
    ),
    ("anyhow", "anyhow only in the binary, tests and xtask"),
];

/// The other layering rules of STYLE §1 that a dependency list can show: (crate, forbidden
/// dependency, why).
pub const LAYERING: &[(&str, &str, &str)] = &[
    ("consensus", "redb", "only storage touches redb"),
    ("transport", "redb", "only storage touches redb"),
    ("etcd-api", "redb", "only storage touches redb"),
    ("node", "redb", "only storage touches redb"),
    ("client", "redb", "only storage touches redb"),
    ("quorate", "redb", "only storage touches redb"),
    ("storage", "tonic", "storage knows nothing of the network"),
    (
        "storage",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    (
        "consensus",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    (
        "transport",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    (
        "etcd-api",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    (
        "node",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    (
        "client",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    (
        "workload",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    (
        "tester",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    (
        "bench",
        "anyhow",
        "anyhow only in the binary, tests and xtask",
    ),
    ("workload", "redb", "only storage touches redb"),
    ("tester", "redb", "only storage touches redb"),
    ("bench", "redb", "only storage touches redb"),
    (
        "workload",
        "node",
        "workloads reach members through client, never their code",
    ),
    (
        "tester",
        "node",
        "the tester runs members as processes, never links them",
    ),
    (
        "bench",
        "node",
        "the bench reaches members through client, never their code",
    ),
];

/// The crates that may read the command line (STYLE §1: only the binary does; xtask is the
/// tidy tool's own binary).
pub const CLI_CRATES: &[&str] = &["quorate", "xtask"];

/// Returns the layering rules the dependency lists break.
pub fn check_layering(deps: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let pure = PURE_CRATES.iter().flat_map(|krate| {
        PURE_FORBIDDEN
            .iter()
            .map(move |(dep, why)| (*krate, *dep, *why))
    });
    let cli = deps
        .keys()
        .filter(|krate| !CLI_CRATES.contains(&krate.as_str()))
        .map(|krate| {
            (
                krate.as_str(),
                "clap",
                "only quorate reads the command line",
            )
        });
    pure.chain(LAYERING.iter().copied())
        .chain(cli)
        .filter(|(krate, dep, _)| deps.get(*krate).is_some_and(|d| d.iter().any(|x| x == dep)))
        .map(|(krate, dep, why)| format!("{krate} depends on {dep}: {why}"))
        .collect()
}
