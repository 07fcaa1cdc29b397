//! Building the static probe for the host's Linux architecture, wherever
//! cargo puts it (`CARGO_TARGET_DIR`, `build.target-dir`): cargo's own
//! `--message-format=json` names the executable, so no path is guessed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::diag::{Diagnostic, Error};

/// The flag that makes the probe a static binary (it runs FROM scratch).
const STATIC: &str = "target-feature=+crt-static";

/// The Linux target of this host: the probe runs in containers on this
/// machine's Docker daemon, and on the host itself (the NGINX routes).
pub fn host_triple() -> Result<&'static str, Error> {
    host_triple_for(std::env::consts::OS, std::env::consts::ARCH)
}

fn host_triple_for(os: &str, arch: &str) -> Result<&'static str, Error> {
    match (os, arch) {
        ("linux", "x86_64") => Ok("x86_64-unknown-linux-gnu"),
        ("linux", "aarch64") => Ok("aarch64-unknown-linux-gnu"),
        ("linux", _) => Err(Diagnostic::error(format!("verify's probe is built for x86_64 or aarch64 Linux; this host is {arch} Linux"))
            .fix("run `cargo xtask verify` on an x86_64 or aarch64 Linux machine, or build `probe/` for this architecture with `-C target-feature=+crt-static` yourself and set XTASK_PROBE_BIN=<path to it>")),
        _ => Err(Diagnostic::error(format!(
            "verify runs its probe inside Linux containers and on the host, so it needs a Linux host; this one is {os} ({arch})"
        ))
        .fix("run it inside a Linux container with the Docker socket mounted, e.g. `docker run --rm -it -v /var/run/docker.sock:/var/run/docker.sock -v \"$PWD\":/repo -w /repo rust:1-bookworm cargo xtask verify`, or in a Linux VM (the other commands work here)")),
    }
}

/// The environment that keeps the user's flags and adds `+crt-static`.
/// Cargo reads `CARGO_ENCODED_RUSTFLAGS` first (fields separated by 0x1f;
/// set means used, even empty), then `RUSTFLAGS`, then the config's
/// `target.<triple>.rustflags`/`build.rustflags`; we extend whichever cargo
/// would use. With neither variable set, setting RUSTFLAGS hides rustflags
/// from cargo config files, as every RUSTFLAGS does (cargo's rule).
pub fn rustflags_env(encoded: Option<&str>, plain: Option<&str>) -> (&'static str, String) {
    match (encoded, plain) {
        (Some(""), _) => ("CARGO_ENCODED_RUSTFLAGS", format!("-C\x1f{STATIC}")),
        (Some(e), _) => ("CARGO_ENCODED_RUSTFLAGS", format!("{e}\x1f-C\x1f{STATIC}")),
        (None, Some(p)) if !p.trim().is_empty() => {
            ("RUSTFLAGS", format!("{} -C {STATIC}", p.trim_end()))
        }
        _ => ("RUSTFLAGS", format!("-C {STATIC}")),
    }
}

/// The executable of the `probe` binary from cargo's JSON messages.
pub fn executable_from_messages(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "probe")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// `cargo build --release -p probe --target <host>`; cargo decides whether
/// anything is rebuilt. Returns the executable's path.
pub fn build(root: &Path) -> Result<PathBuf, Error> {
    let mut child = spawn(root, &cargo())?;
    let mut out = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = std::io::Read::read_to_end(&mut s, &mut out);
    }
    finish(&out, child.wait())
}

/// The cargo that runs the xtask (`CARGO`), or the one on PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The build started with `cargo`: its JSON messages come on the child's
/// stdout, its diagnostics go to the terminal as they come.
pub fn spawn(root: &Path, cargo: &str) -> Result<Child, Error> {
    let triple = host_triple()?;
    let (key, flags) = rustflags_env(
        std::env::var("CARGO_ENCODED_RUSTFLAGS").ok().as_deref(),
        std::env::var("RUSTFLAGS").ok().as_deref(),
    );
    Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "probe",
            "--target",
            triple,
            "--message-format=json-render-diagnostics",
        ])
        .env(key, flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            Diagnostic::error(format!("cannot run `{cargo}` to build the probe: {e}")).fix(
                "install Rust with rustup (https://rustup.rs), or set CARGO to the cargo binary",
            )
        })
}

/// The executable from a finished build's stdout and the wait for its
/// exit status.
pub fn finish(stdout: &[u8], status: std::io::Result<ExitStatus>) -> Result<PathBuf, Error> {
    let status = status.map_err(|e| {
        Diagnostic::error(format!("waiting for cargo's build of the probe: {e}"))
            .fix("run `cargo build --release -p probe` by hand to see why, or set XTASK_PROBE_BIN")
    })?;
    let triple = host_triple()?;
    let stdout = String::from_utf8_lossy(stdout);
    if !status.success() {
        return Err(Diagnostic::error(format!("building the probe for {triple} failed (cargo's messages are above)"))
            .fix(format!("if the target is missing, `rustup target add {triple}`; for a static glibc binary the C toolchain needs static libc (Debian: `apt-get install libc6-dev`)")));
    }
    executable_from_messages(&stdout).ok_or_else(|| {
        Diagnostic::error("cargo built the probe but named no executable in its JSON messages")
            .fix("run `cargo build --release -p probe` by hand to see why, or set XTASK_PROBE_BIN")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_per_host() {
        assert_eq!(
            host_triple_for("linux", "x86_64").unwrap(),
            "x86_64-unknown-linux-gnu"
        );
        assert_eq!(
            host_triple_for("linux", "aarch64").unwrap(),
            "aarch64-unknown-linux-gnu"
        );
        let e = host_triple_for("macos", "aarch64").unwrap_err();
        assert!(
            e.message.contains("macos") && e.fix.unwrap().contains("docker run"),
            "{}",
            e.message
        );
        assert_eq!(e.severity.exit(), crate::diag::Exit::Failure);
        assert!(host_triple_for("linux", "riscv64")
            .unwrap_err()
            .fix
            .unwrap()
            .contains("XTASK_PROBE_BIN"));
    }

    #[test]
    fn user_flags_are_kept() {
        assert_eq!(
            rustflags_env(None, None),
            ("RUSTFLAGS", "-C target-feature=+crt-static".into())
        );
        assert_eq!(
            rustflags_env(None, Some("  ")),
            ("RUSTFLAGS", "-C target-feature=+crt-static".into())
        );
        assert_eq!(
            rustflags_env(None, Some("-C debuginfo=1")),
            (
                "RUSTFLAGS",
                "-C debuginfo=1 -C target-feature=+crt-static".into()
            )
        );
        // The encoded form wins over RUSTFLAGS, as in cargo.
        assert_eq!(
            rustflags_env(Some("--cfg\x1fx y"), Some("-C debuginfo=1")),
            (
                "CARGO_ENCODED_RUSTFLAGS",
                "--cfg\x1fx y\x1f-C\x1ftarget-feature=+crt-static".into()
            )
        );
        assert_eq!(
            rustflags_env(Some(""), Some("-C debuginfo=1")),
            (
                "CARGO_ENCODED_RUSTFLAGS",
                "-C\x1ftarget-feature=+crt-static".into()
            )
        );
    }

    #[test]
    fn executable_comes_from_the_artifact_message() {
        let msgs = r#"{"reason":"compiler-artifact","target":{"name":"rustls","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"probe","kind":["bin"]},"executable":"/ci/cache/x86_64-unknown-linux-gnu/release/probe"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(msgs),
            Some(PathBuf::from(
                "/ci/cache/x86_64-unknown-linux-gnu/release/probe"
            ))
        );
        assert_eq!(
            executable_from_messages("{\"reason\":\"build-finished\",\"success\":true}"),
            None
        );
    }
}
