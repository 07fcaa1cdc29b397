//! Snapshot files: a whole output held against a committed file. One switch
//! for every snapshot (the CLI outputs in `tests/snapshots/`, the service
//! templates in `tests/golden/`, the edit cases' `out/`):
//! `XTASK_SNAPSHOT=overwrite` writes what the code produced instead of
//! comparing; review the change with `git diff` and commit it.
//!
//! Hand-written rather than insta: about forty lines, no new crate in a
//! cold build, and the files stay plain text a reviewer reads in the diff.
#![allow(dead_code)]

use std::path::Path;

/// Whether the run accepts new output (`XTASK_SNAPSHOT=overwrite`).
pub fn overwrite() -> bool {
    std::env::var("XTASK_SNAPSHOT").as_deref() == Ok("overwrite")
}

/// Compares `actual` with the file at `path` (or writes it, with the
/// switch); a difference panics with a unified diff and the way to accept it.
pub fn assert_snapshot(path: &Path, actual: &str) {
    if overwrite() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; `XTASK_SNAPSHOT=overwrite cargo test ...` writes it",
            path.display()
        )
    });
    if want != actual {
        let diff = similar::TextDiff::from_lines(want.as_str(), actual);
        panic!(
            "{} differs from the output:\n{}\n`XTASK_SNAPSHOT=overwrite cargo test ...` accepts the new output",
            path.display(),
            diff.unified_diff().header("snapshot", "output")
        );
    }
}

/// A command's whole result as a snapshot's text: the exit code, stdout and
/// stderr, with the repository's temporary path written `[ROOT]`.
pub fn render(root: &Path, o: &std::process::Output) -> String {
    let root = root.display().to_string();
    let out = |b: &[u8]| String::from_utf8_lossy(b).replace(&root, "[ROOT]");
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        out(&o.stdout),
        out(&o.stderr)
    )
}

/// `assert_snapshot` on `tests/snapshots/<name>.txt`.
pub fn assert_cli(name: &str, actual: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    assert_snapshot(&dir.join(format!("{name}.txt")), actual);
}

/// `text` with every `#` and 64 hex digits (a Redis ACL's password hash,
/// new with every generated secret) written `#[SHA256]`.
pub fn hide_hashes(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('#') {
        out += &rest[..=i];
        rest = &rest[i + 1..];
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == 64 {
            out += "[SHA256]";
            rest = &rest[64..];
        }
    }
    out + rest
}
