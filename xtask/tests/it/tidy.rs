//! Tests that check the repository itself: the docs say what the code does.

use crate::common::*;

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

// --- layering: the module graph ARCHITECTURE.md promises ------------------

/// Every module-to-module edge allowed between the top-level modules of
/// `xtask/src/` (ARCHITECTURE.md, "Modules"). Read as "may use".
const ALLOWED: &[(&str, &[&str])] = &[
    ("cli", &["docker"]),
    (
        "cmd",
        &["cli", "diag", "docker", "edit", "export", "model", "plan"],
    ),
    ("check", &["diag", "edit", "model", "plan"]),
    (
        "verify",
        &["check", "cli", "diag", "docker", "model", "plan"],
    ),
    ("export", &["diag", "model", "plan"]),
    ("plan", &["diag", "edit", "model"]),
    ("edit", &["diag", "model"]),
    ("docker", &["diag", "model"]),
    ("model", &["diag"]),
    ("diag", &[]),
    ("proptests", &["edit", "model"]),
];

/// A file's module path: `src/model/repo.rs` is `model::repo`,
/// `src/verify/mod.rs` is `verify`, `src/lib.rs` is the crate (empty).
fn module_of(rel: &std::path::Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The paths a `use` tree names: `crate::{a::b, c::{d, e}}` gives
/// `crate::a::b`, `crate::c::d`, `crate::c::e`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let (head, body) = (&tree[..open], &tree[open + 1..tree.rfind('}').unwrap()]);
    let (mut items, mut depth, mut cur) = (vec![], 0, String::new());
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .filter(|i| !i.is_empty())
        .flat_map(|i| expand_use(&format!("{head}{i}")))
        .collect()
}

/// Every (from file module, to file module, "file:line") that a
/// `use crate::…`/`use super::…` or an inline `crate::…::` path makes.
fn module_edges(src: &std::path::Path) -> Vec<(Vec<String>, Vec<String>, String)> {
    let mut files = vec![];
    rust_files(src, &mut files);
    files.sort();
    let modules: std::collections::BTreeSet<Vec<String>> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(src).unwrap()))
        .collect();
    // The longest prefix of `path` that is a file's module.
    let resolve = |path: &[String]| {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
    };
    let mut out = vec![];
    for f in &files {
        let rel = f.strip_prefix(src).unwrap();
        let me = module_of(rel);
        let is_mod = matches!(
            rel.file_name().and_then(|n| n.to_str()),
            Some("mod.rs" | "lib.rs")
        );
        let parent: Vec<String> = if is_mod {
            me.clone()
        } else {
            me[..me.len().saturating_sub(1)].to_vec()
        };
        let text = std::fs::read_to_string(f).unwrap();
        // Code only: line comments (docs included) name modules in prose.
        let code: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let line_at = |i: usize| code[..i].matches('\n').count() + 1;
        let mut add = |path: Vec<String>, at: usize| {
            if let Some(to) = resolve(&path) {
                if to != me && !to.is_empty() {
                    out.push((me.clone(), to, format!("{}:{}", rel.display(), line_at(at))));
                }
            }
        };
        let segs = |p: &str| -> Vec<String> {
            p.split("::")
                .map(|s| s.split(" as ").next().unwrap().to_string())
                .filter(|s| !s.is_empty() && s != "*" && s != "self")
                .collect()
        };
        let mut from = 0;
        while let Some(i) = code[from..].find("use ").map(|i| i + from) {
            from = i + 4;
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + 4..];
            if !rest.starts_with("crate::") && !rest.starts_with("super::") {
                continue;
            }
            let Some(end) = rest.find(';') else { break };
            for p in expand_use(&rest[..end]) {
                if let Some(p) = p.strip_prefix("crate::") {
                    add(segs(p), i);
                } else if let Some(p) = p.strip_prefix("super::") {
                    // `super::x` in a file names a sibling (in its `mod
                    // tests`, `super::*` is the file itself: skipped).
                    let s = segs(p);
                    if !s.is_empty() && !is_mod {
                        let mut path = parent.clone();
                        path.extend(s);
                        add(path, i);
                    }
                }
            }
        }
        // Inline paths: `crate::plan::certs::ensure(…)`.
        for (i, _) in code.match_indices("crate::") {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let tail: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            add(segs(&tail), i);
        }
    }
    out
}

/// What breaks the layering: edges outside ALLOWED and cycles, each named
/// by file:line.
fn layering_problems(edges: &[(Vec<String>, Vec<String>, String)]) -> Vec<String> {
    let allowed: std::collections::BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut bad = vec![];
    for (a, b, at) in edges {
        if a[0] != b[0] {
            let ok = allowed
                .get(a[0].as_str())
                .is_some_and(|to| to.contains(&b[0].as_str()));
            if !ok {
                bad.push(format!(
                    "{at}: {} -> {} (edge {} -> {} is not in tests/it/tidy.rs ALLOWED)",
                    a.join("::"),
                    b.join("::"),
                    a[0],
                    b[0]
                ));
            }
        }
    }
    // Cycles between files (modules), whichever top-level module they are
    // in: an edge a -> b closes one when b reaches a; named by each edge's
    // file:line.
    let mut graph: std::collections::BTreeMap<&[String], Vec<(&[String], &str)>> =
        Default::default();
    for (a, b, at) in edges {
        graph.entry(a).or_default().push((b, at));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (a, b, at) in edges {
        // Breadth-first from b, remembering how each module was reached.
        let mut how: std::collections::BTreeMap<&[String], (&[String], &str)> = Default::default();
        let mut queue = std::collections::VecDeque::from([b.as_slice()]);
        while let Some(m) = queue.pop_front() {
            for &(to, at) in graph.get(m).map(Vec::as_slice).unwrap_or(&[]) {
                if to != b.as_slice() && !how.contains_key(to) {
                    how.insert(to, (m, at));
                    queue.push_back(to);
                }
            }
        }
        if !how.contains_key(a.as_slice()) {
            continue;
        }
        let mut back = vec![];
        let mut nodes = vec![a.join("::")];
        let mut m = a.as_slice();
        while m != b.as_slice() {
            let (prev, at) = how[m];
            back.push(at);
            nodes.push(prev.join("::"));
            m = prev;
        }
        let mut cycle = vec![at.as_str()];
        cycle.extend(back.into_iter().rev());
        nodes.sort();
        if seen.insert(nodes.clone()) {
            bad.push(format!(
                "cycle {}: {}",
                nodes.join(", "),
                cycle.join(" -> ")
            ));
        }
    }
    bad
}

#[test]
fn module_edges_follow_the_layering_and_make_no_cycle() {
    let src = workspace().join("xtask/src");
    let edges = module_edges(&src);
    assert!(
        edges.len() > 100,
        "the edge reader found too few edges: {}",
        edges.len()
    );
    let bad = layering_problems(&edges);
    let allowed: std::collections::BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    assert!(
        bad.is_empty(),
        "module layering broken (files under xtask/src/):\n{}",
        bad.join("\n")
    );
    // The table itself is one-way.
    for (a, tos) in ALLOWED {
        for b in *tos {
            assert!(
                !allowed.get(b).is_some_and(|t| t.contains(a)),
                "ALLOWED has both {a} -> {b} and {b} -> {a}"
            );
        }
    }
}

#[test]
fn the_edge_reader_sees_every_kind_of_path() {
    assert_eq!(
        expand_use("crate::{a::b, c::{d, e as f}}"),
        ["crate::a::b", "crate::c::d", "crate::c::eas f"].map(|s| s.replace(' ', ""))
    );
    let d = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("b")).unwrap();
    std::fs::write(d.join("a/mod.rs"), "pub mod x;\npub mod y;\n").unwrap();
    std::fs::write(d.join("a/x.rs"), "use super::y::Y;\n").unwrap();
    std::fs::write(
        d.join("a/y.rs"),
        "// crate::b::z in a comment\nfn f() { crate::b::z::g() }\n",
    )
    .unwrap();
    std::fs::write(d.join("b/mod.rs"), "pub mod z;\n").unwrap();
    std::fs::write(d.join("b/z.rs"), "use crate::{a::x, a::y::{self}};\n").unwrap();
    let mut e: Vec<String> = module_edges(&d)
        .into_iter()
        .map(|(a, b, at)| format!("{} {} {at}", a.join("::"), b.join("::")))
        .collect();
    e.sort();
    let bad = layering_problems(&module_edges(&d));
    std::fs::remove_dir_all(&d).unwrap();
    assert_eq!(
        bad,
        [
            "a/y.rs:2: a::y -> b::z (edge a -> b is not in tests/it/tidy.rs ALLOWED)",
            "b/z.rs:1: b::z -> a::x (edge b -> a is not in tests/it/tidy.rs ALLOWED)",
            "b/z.rs:1: b::z -> a::y (edge b -> a is not in tests/it/tidy.rs ALLOWED)",
            "cycle a::x, a::y, b::z: a/x.rs:1 -> a/y.rs:2 -> b/z.rs:1",
            "cycle a::y, b::z: a/y.rs:2 -> b/z.rs:1",
        ]
    );
    assert_eq!(
        e,
        [
            "a::x a::y a/x.rs:1",
            "a::y b::z a/y.rs:2",
            "b::z a::x b/z.rs:1",
            "b::z a::y b/z.rs:1",
        ]
    );
}

/// `kill(pid, 0)` has a trap (EPERM means alive: another user's process);
/// `docker::pid_alive` is the one place that asks it. A second copy once
/// took EPERM for a dead run.
#[test]
fn process_liveness_is_asked_only_through_pid_alive() {
    let src = workspace().join("xtask/src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let mut bad = vec![];
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        if rel == std::path::Path::new("docker/sweep.rs") {
            continue;
        }
        for (i, l) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            if l.contains("kill(") && l.replace(' ', "").contains(",0)") {
                bad.push(format!(
                    "xtask/src/{}:{}: {}",
                    rel.display(),
                    i + 1,
                    l.trim()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "use docker::pid_alive instead of kill(pid, 0):\n{}",
        bad.join("\n")
    );
}
