//! Tests that check the repository itself: the docs say what the code does.

mod common;

use common::*;

#[test]
fn readme_rules_table_matches_check_rules() {
    let o = xtask(&workspace(), &["check", "--rules"]);
    assert!(o.status.success());
    let table = String::from_utf8(o.stdout).unwrap();
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(
        readme.contains(&table),
        "README's check-rules table is out of date; paste `cargo xtask check --rules`:\n{table}"
    );
}

#[test]
fn readme_opens_with_the_two_commands_and_ci_runs_the_test_one() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let block: Vec<&str> = readme
        .split("```")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && *l != "sh")
        .collect();
    assert_eq!(block.len(), 2, "{block:?}");
    let test_cmd = block[1].split('#').next().unwrap().trim();
    let ci = std::fs::read_to_string(workspace().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == test_cmd),
        ".ci/run must run `{test_cmd}`"
    );
}

#[test]
fn the_repository_itself_passes_check_and_sync() {
    let c = copy("self");
    let o = xtask(&c.root, &["certs"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = xtask(&c.root, &["check"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = xtask(&c.root, &["sync", "--check"]);
    assert!(o.status.success(), "{}", text(&o));
}
