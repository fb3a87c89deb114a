//! Runs the tidy checks over the whole repository; each failure lists every violation.

use xtask::*;

#[test]
fn every_rust_file_follows_the_source_rules() {
    // Goal: STYLE §4 and §6 hold in every file. Method: scan all Rust sources.
    let root = repo_root();
    let mut violations = Vec::new();
    for dir in ["crates", "xtask"] {
        for path in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&path).expect("read source");
            let relative = path.strip_prefix(&root).unwrap_or(&path);
            violations.extend(check_source(relative, &text));
            violations.extend(check_sizes(relative, &text));
            if !relative.starts_with("xtask") {
                violations.extend(check_error_text(relative, &text));
            }
        }
    }
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(report.is_empty(), "tidy:\n{}", report.join("\n"));
}

#[test]
fn crates_keep_their_layers() {
    // Goal: the layering of STYLE §1 holds. Method: read every crate's dependencies.
    let deps = crate_dependencies(&repo_root());
    assert!(deps.contains_key("mvcc"), "found crates: {:?}", deps.keys());
    let broken = check_layering(&deps);
    assert!(broken.is_empty(), "layering:\n{}", broken.join("\n"));
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // Goal: the tidy checks can fail. Method: feed them planted violations.
    let path = std::path::Path::new("planted.rs");
    let bad = format!(
        "use x;\nlet (tx, rx) = {}();\n// {}: later\n",
        concat!("unbounded", "_channel"),
        concat!("TO", "DO")
    );
    let rules: Vec<&str> = check_source(path, &bad).iter().map(|v| v.rule).collect();
    assert_eq!(rules.len(), 3, "{rules:?}");
    let good = format!("//! Owns x.\n// {}(#12): later\n", concat!("TO", "DO"));
    assert_eq!(check_source(path, &good), vec![]);
    let deps = [("mvcc".to_string(), vec!["redb".to_string()])].into();
    assert_eq!(check_layering(&deps).len(), 1);
    // Only the binary reads the command line; a library with clap is refused.
    let clap = |krate: &str| [(krate.to_string(), vec!["clap".to_string()])].into();
    assert_eq!(check_layering(&clap("tester")).len(), 1);
    assert_eq!(check_layering(&clap("quorate")), Vec::<String>::new());
    // A long function is refused unless its top says why; a long file always.
    let body = "    x();\n".repeat(FUNCTION_LINES_MAX);
    let long = format!("//! Owns x.\nfn long() {{\n{body}}}\n");
    assert_eq!(check_sizes(path, &long).len(), 1);
    let reasoned =
        format!("//! Owns x.\n/// {LONG_REASON} it is one table.\nfn long() {{\n{body}}}\n");
    assert_eq!(check_sizes(path, &reasoned), vec![]);
    // A trait's methods declared over several lines have no body, however long the trait.
    let methods = "    fn call(\n        &self,\n    ) -> u32;\n".repeat(FUNCTION_LINES_MAX);
    let long_trait = format!("//! Owns x.\npub trait Calls {{\n{methods}}}\n");
    assert_eq!(check_sizes(path, &long_trait), vec![]);
    // Product code decides on typed errors; tests may read the words.
    let reads = "//! Owns x.\nif status.message().contains(\"exists\") {}\n#[cfg(test)]\n\
                 mod tests { fn t() { assert!(e.to_string().contains(\"x\")); } }\n";
    assert_eq!(check_error_text(path, reads).len(), 1);
    assert_eq!(
        check_error_text(std::path::Path::new("a/tests/b.rs"), reads),
        vec![]
    );
    let big = "//! Owns x.\n".to_owned() + &"x();\n".repeat(FILE_LINES_MAX);
    assert_eq!(check_sizes(path, &big).len(), 1);
    assert_eq!(
        check_sizes(std::path::Path::new("a/tests.rs"), &big),
        vec![]
    );
}
