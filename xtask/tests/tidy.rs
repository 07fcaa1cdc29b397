//! Tests that check the repository itself: the docs say what the code does.

mod common;

use common::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the rule table lives (README links to it).
const RULES_DOC: &str = "docs/check.md";

#[test]
fn the_rules_table_matches_check_rules() {
    let o = xtask(&workspace(), &["check", "--rules"]);
    assert!(o.status.success());
    let table = String::from_utf8(o.stdout).unwrap();
    let doc = std::fs::read_to_string(workspace().join(RULES_DOC)).unwrap();
    assert!(
        doc.contains(&table),
        "{RULES_DOC}'s rule table is out of date; paste `cargo xtask check --rules`:\n{table}"
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

/// The commands `cargo xtask --help` lists (clap's own `help` aside).
fn help_commands() -> BTreeSet<String> {
    let o = xtask(&workspace(), &["--help"]);
    assert!(o.status.success(), "{}", text(&o));
    let help = String::from_utf8(o.stdout).unwrap();
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The commands of a Markdown table whose rows start with `` | `cargo xtask <command> ``.
fn table_commands(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `cargo xtask "))
        .filter_map(|l| l.split([' ', '`']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_command_tables_name_every_command_and_the_readme_stays_one_screen() {
    let want = help_commands();
    assert!(
        want.contains("verify") && want.contains("images"),
        "{want:?}"
    );
    for doc in ["README.md", "docs/development.md"] {
        let text = std::fs::read_to_string(workspace().join(doc)).unwrap();
        assert_eq!(
            table_commands(&text),
            want,
            "{doc}'s commands table must have one row per command of `cargo xtask --help`"
        );
    }
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let n = readme.lines().count();
    assert!(
        n <= 80,
        "README.md has {n} lines; it is one screen (at most 80): move reference text to docs/"
    );
}

/// GitHub's anchor for a heading: lowercased, punctuation dropped (`-` and
/// `_` kept), spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c.to_lowercase().next().unwrap()),
            _ => None,
        })
        .collect()
}

/// A Markdown file's lines outside fenced code blocks, with inline code removed.
fn prose(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = vec![];
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push(l.split('`').step_by(2).collect::<Vec<_>>().concat());
        }
    }
    out
}

/// The anchors of a Markdown file's headings (repeats get `-1`, `-2`, ... as on GitHub).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let Some(h) = l.strip_prefix('#').filter(|_| !fenced) else {
            continue;
        };
        let base = slug(h.trim_start_matches('#'));
        let mut a = base.clone();
        let mut n = 0;
        while !seen.insert(a.clone()) {
            n += 1;
            a = format!("{base}-{n}");
        }
    }
    seen
}

/// The relative link targets of a Markdown file: `[text](target)` in prose.
fn relative_links(text: &str) -> Vec<String> {
    let mut out = vec![];
    for l in prose(text) {
        for (i, _) in l.match_indices("](") {
            let rest = &l[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].trim();
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_string());
            }
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let ws = workspace();
    let mut files: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| ws.join(f))
        .filter(|p| p.is_file())
        .collect();
    for e in std::fs::read_dir(ws.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    files.sort();
    files
}

/// Whether `target`, a link in `from`, names an existing file (and heading).
fn broken(from: &Path, target: &str) -> Option<String> {
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let file = if path.is_empty() {
        from.to_path_buf()
    } else {
        from.parent().unwrap().join(path)
    };
    if !file.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    if anchor.is_empty() {
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    (!anchors(&text).contains(anchor))
        .then(|| format!("{} has no heading #{anchor}", file.display()))
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let files = markdown_files();
    assert!(files.len() > 3, "{files:?}");
    let mut bad = vec![];
    let mut n = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for target in relative_links(&text) {
            n += 1;
            if let Some(why) = broken(f, &target) {
                bad.push(format!("{}: ({target}): {why}", f.display()));
            }
        }
    }
    assert!(n > 10, "only {n} links found: is the link reader broken?");
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_link_reader_knows_github_anchors() {
    assert_eq!(
        slug(" On Docker Swarm (`--engine swarm`)"),
        "on-docker-swarm---engine-swarm"
    );
    assert_eq!(
        slug(" `cargo xtask check`: the house rules"),
        "cargo-xtask-check-the-house-rules"
    );
    let a = anchors("# A\n## Rules\n```\n# not a heading\n```\n## Rules\n");
    assert_eq!(
        a,
        ["a", "rules", "rules-1"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        relative_links(
            "see [x](a.md#b), `[y](code.md)` and [z](https://e.org)\n```\n[w](no.md)\n```\n"
        ),
        vec!["a.md#b".to_string()]
    );
}
