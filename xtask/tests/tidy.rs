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

// --- layering: the module graph ARCHITECTURE.md promises ------------------

/// Every module-to-module edge allowed between the top-level modules of
/// `xtask/src/` (ARCHITECTURE.md, "Modules"). Read as "may use".
const ALLOWED: &[(&str, &[&str])] = &[
    ("cli", &["docker"]),
    (
        "cmd",
        &["cli", "diag", "docker", "edit", "export", "model", "plan"],
    ),
    ("check", &["diag", "model", "plan"]),
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
                    "{at}: {} -> {} (edge {} -> {} is not in tests/tidy.rs ALLOWED)",
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
            "a/y.rs:2: a::y -> b::z (edge a -> b is not in tests/tidy.rs ALLOWED)",
            "b/z.rs:1: b::z -> a::x (edge b -> a is not in tests/tidy.rs ALLOWED)",
            "b/z.rs:1: b::z -> a::y (edge b -> a is not in tests/tidy.rs ALLOWED)",
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
