//! Crash safety: the real binary is killed at every write step (its
//! `XTASK_CRASH_AT` points abort the process with SIGKILL) and at random
//! moments, during add-service, remove-service, sync, proto and certs. After each
//! kill the next command must find the repository exactly as it was or
//! exactly as the finished command leaves it (bytes, modes, owners, links,
//! `certs/` included), and the retried command must succeed. Plus `check`
//! beside a writer, which must never see half a change.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::fsnap::*;

const ADD: &[&str] = &[
    "add-service",
    "nsvc",
    "--grpc",
    "--pg",
    "--redis",
    "--https",
    "--public",
    "/nsvc/",
];

/// A service with a page: its folders, NGINX's endpoint, and a line in
/// NGINX's compose entry (the mount of the page).
const ADD_WEB: &[&str] = &[
    "add-service",
    "nweb",
    "--frontend",
    "--pg",
    "--public",
    "/nweb/",
];

/// What `ADD_WEB` writes besides the compose file and the data layer.
const WEB_FILES: &[&str] = &[
    "src/backend_services/nweb/Backend/server.py",
    "src/backend_services/nweb/Frontend/index.html",
    "src/backend_services/nweb/Frontend/app.js",
    "src/backend_services/nweb/Frontend/style.css",
    "src/backend_services/nweb/Dockerfile",
    "src/backend_services/nweb/service.env",
    "nginx/locations/nweb.conf",
];

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_xtask")
}

fn run(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("XTASK_CRASH_AT")
        .env_remove("XTASK_FAIL_AT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run xtask")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}:\n{}",
        o.status.code(),
        text(o)
    );
}

/// A small fixture: this repository without the sources nobody edits, so
/// that a reset by copy stays cheap.
fn fixture(dir: &Path, tag: &str) -> PathBuf {
    let c = copy(&format!("crash-fixture-{tag}"));
    let root = dir.join("fixture");
    clone_tree(&c.root, &root);
    for d in ["xtask/src", "probe/src", "bench", ".github", "xtask/tests"] {
        let _ = std::fs::remove_dir_all(root.join(d));
    }
    ok(&run(&root, &["certs"], &[]), "certs on the fixture");
    root
}

struct Case {
    name: &'static str,
    base: PathBuf,
    args: Vec<&'static str>,
    old: Snap,
    new: Snap,
    steps: Vec<String>,
    millis: u64,
}

/// Prepares a base repository for one command, runs the command once to
/// learn its crash points and the state it leaves.
fn case(
    dir: &Path,
    fixture: &Path,
    name: &'static str,
    args: &[&'static str],
    prepare: impl Fn(&Path),
) -> Case {
    let base = dir.join(format!("base-{name}"));
    clone_tree(fixture, &base);
    prepare(&base);
    let old = snap(&base);
    let work = dir.join(format!("ref-{name}"));
    clone_tree(&base, &work);
    let t = Instant::now();
    let o = run(&work, args, &[("XTASK_CRASH_LIST", "1")]);
    let millis = t.elapsed().as_millis() as u64;
    ok(&o, name);
    let steps: Vec<String> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("xtask: crash point "))
        .map(|l| l.split_once(": ").expect("`<n>: <step>`").1.to_string())
        .collect();
    assert!(
        steps.len() >= 5,
        "{name}: too few crash points: {steps:?}\n{}",
        text(&o)
    );
    let new = snap(&work);
    assert!(old != new, "{name}: the command changed nothing");
    Case {
        name,
        base,
        args: args.to_vec(),
        old,
        new,
        steps,
        millis,
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Old,
    New,
}

/// A secrets file with its random parts masked: values after `=`, and
/// `#<sha256>` password hashes in the Redis ACL file.
fn unrandom(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .lines()
        .map(|l| match l.split_once('=') {
            Some((k, _)) if !l.starts_with('#') => format!("{k}=*"),
            _ => l
                .split(' ')
                .map(|w| {
                    if w.starts_with('#') && w.len() == 65 {
                        "#*"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Old or new, entry by entry. Certificates and keys are random: a file the
/// command regenerates counts as new when it differs from the old one and
/// has the new one's type, mode and owner.
fn classify(c: &Case, got: &Snap) -> Result<Outcome, String> {
    if got == &c.old {
        return Ok(Outcome::Old);
    }
    let mut why = String::new();
    if got.keys().eq(c.new.keys()) {
        let bad = c.new.iter().find(|(k, want)| {
            let have = &got[*k];
            let old = c.old.get(*k);
            let random = want.kind == 'f'
                && k.starts_with("certs/")
                && old.is_none_or(|o| o.data != want.data);
            let whole_pem =
                have.data.starts_with(b"-----BEGIN ") && have.data.ends_with(b"-----\n");
            // Data-layer passwords are random too: the same variables and
            // ACL lines, whatever the values and hashes.
            let secret = want.kind == 'f' && k.starts_with("secrets/");
            have.meta() != want.meta()
                || if random {
                    old.is_some_and(|o| o.data == have.data) || !whole_pem
                } else if secret {
                    unrandom(&have.data) != unrandom(&want.data)
                } else {
                    have.data != want.data
                }
        });
        match bad {
            None => return Ok(Outcome::New),
            Some((k, _)) => why = format!("differs from the new state at {k}"),
        }
    }
    Err(format!(
        "neither old nor new: vs old: {}; vs new: {}",
        first_diff(&c.old, got).unwrap_or_default(),
        if why.is_empty() {
            first_diff(&c.new, got).unwrap_or_default()
        } else {
            why
        }
    ))
}

#[derive(Default)]
struct Tally {
    kills: usize,
    at_points: usize,
    random: usize,
    old: usize,
    new: usize,
    recovered_msgs: usize,
    recovery_kills: usize,
    failures: Vec<String>,
}

/// One kill: reset, run until killed, then the next command, the oracle,
/// and the retry.
fn one(c: &Case, work: &Path, kill: Kill, t: &Mutex<Tally>) {
    clone_tree(&c.base, work);
    let label = match &kill {
        Kill::At(n) => format!("{} killed at point {n} ({})", c.name, c.steps[*n - 1]),
        Kill::After(us) => format!("{} killed after {us} us", c.name),
    };
    let fail = |m: String| t.lock().unwrap().failures.push(format!("{label}: {m}"));
    let status = match &kill {
        Kill::At(n) => {
            let o = run(work, &c.args, &[("XTASK_CRASH_AT", &n.to_string())]);
            if o.status.signal() != Some(9) {
                fail(format!(
                    "did not die at its crash point: {:?}\n{}",
                    o.status,
                    text(&o)
                ));
                return;
            }
            o.status
        }
        Kill::After(us) => {
            let mut ch = Command::new(bin())
                .arg("--root")
                .arg(work)
                .args(&c.args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_micros(*us));
            // SAFETY: the child is ours and not yet reaped.
            unsafe { libc::kill(ch.id() as i32, libc::SIGKILL) };
            ch.wait().unwrap()
        }
    };
    let _ = status;
    // A key is never readable by others, not even in the staging area.
    let exposed = exposed_keys(work);
    if !exposed.is_empty() {
        fail(format!(
            "keys readable by others after the kill: {exposed:?}"
        ));
    }
    let pending = work.join(".xtask-txn").exists();
    // Recovery itself is killed too, at one of its first steps, then the
    // command after it must finish the job.
    let (mut recovery_kill, mut said_first) = (false, false);
    if let (true, Kill::At(n)) = (pending, &kill) {
        let m = (n % 4 + 1).to_string();
        let o = run(work, &["check"], &[("XTASK_CRASH_AT", &m)]);
        recovery_kill = o.status.signal() == Some(9);
        said_first = String::from_utf8_lossy(&o.stderr).contains("interrupted change");
    }
    // The next command recovers and says so.
    let next = run(work, &["check"], &[]);
    if next.status.code() == Some(2) {
        fail(format!("check after the kill exits 2:\n{}", text(&next)));
        return;
    }
    let said = said_first || String::from_utf8_lossy(&next.stderr).contains("interrupted change");
    if pending && !said {
        fail(format!(
            "a change was pending but the next command did not say what it recovered:\n{}",
            text(&next)
        ));
    }
    let got = snap(work);
    match classify(c, &got) {
        Err(e) => fail(e),
        Ok(out) => {
            if out == Outcome::Old {
                let again = run(work, &c.args, &[]);
                if !again.status.success() {
                    fail(format!("the retried command fails:\n{}", text(&again)));
                } else {
                    match classify(c, &snap(work)) {
                        Ok(Outcome::New) => {}
                        Ok(Outcome::Old) => fail("the retried command changed nothing".into()),
                        Err(e) => fail(format!(
                            "the retried command did not reach the new state: {e}"
                        )),
                    }
                }
            }
            let mut t = t.lock().unwrap();
            t.kills += 1;
            t.recovered_msgs += said as usize;
            t.recovery_kills += recovery_kill as usize;
            match kill {
                Kill::At(_) => t.at_points += 1,
                Kill::After(_) => t.random += 1,
            }
            if out == Outcome::Old {
                t.old += 1
            } else {
                t.new += 1
            }
        }
    }
}

enum Kill {
    At(usize),
    After(u64),
}

/// xorshift: enough randomness for kill moments, seeded and printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The writing commands, each from the state its change starts in.
fn kill_cases(dir: &Path, fx: &Path) -> Vec<Case> {
    let add_n = |root: &Path| ok(&run(root, ADD, &[]), "add nsvc");
    vec![
        case(dir, fx, "add-service", ADD, |_| {}),
        case(
            dir,
            fx,
            "remove-service",
            &["remove-service", "nsvc"],
            add_n,
        ),
        case(dir, fx, "sync", &["sync"], |root: &Path| {
            add_n(root);
            // Hand edits that make sync write three files: two branches both
            // took DNS.5, an endpoint file was lost, a Rust service appeared.
            let cnf = std::fs::read_to_string(root.join("openssl.cnf")).unwrap();
            std::fs::write(
                root.join("openssl.cnf"),
                cnf.replace("DNS.4 = nsvc\n", "DNS.4 = nsvc\nDNS.4 = other\n"),
            )
            .unwrap();
            std::fs::remove_file(root.join("nginx/locations/nsvc.conf")).unwrap();
            std::fs::create_dir_all(root.join("src/backend_services/rusty")).unwrap();
            std::fs::write(
                root.join("src/backend_services/rusty/Cargo.toml"),
                "[package]\nname = \"rusty\"\n",
            )
            .unwrap();
        }),
        case(dir, fx, "certs", &["certs", "--force"], add_n),
        case(dir, fx, "add --frontend", ADD_WEB, |_| {}),
        case(
            dir,
            fx,
            "remove --frontend",
            &["remove-service", "nweb"],
            |root: &Path| ok(&run(root, ADD_WEB, &[]), "add nweb"),
        ),
        // An API changed without regenerating, and a generated file that
        // no .proto makes: proto rewrites two files and deletes one.
        case(dir, fx, "proto", &["proto"], |root: &Path| {
            let p = root.join("src/proto/accounts/v1/accounts.proto");
            let t = std::fs::read_to_string(&p).unwrap();
            assert!(t.contains("string source = 3;"));
            std::fs::write(&p, t.replace("string source = 3;", "string source = 4;")).unwrap();
            std::fs::write(root.join("src/common/gen/stray_pb2.py"), "").unwrap();
        }),
    ]
}

#[test]
fn a_kill_at_any_moment_leaves_the_old_or_the_new_state() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("xtask-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fx = fixture(&dir, "kill");
    let cases = kill_cases(&dir, &fx);
    // The page's files are part of what must land whole or not at all.
    for (c, present) in [(&cases[4], true), (&cases[5], false)] {
        for f in WEB_FILES {
            assert_eq!(c.new.contains_key(*f), present, "{}: {f}", c.name);
            assert_eq!(c.old.contains_key(*f), !present, "{}: {f}", c.name);
        }
    }
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let mut rng = Rng(seed);
    // Every crash point of every command, and 25 random moments each within
    // 1.3x the command's uninterrupted run time.
    let mut jobs: Vec<(usize, Kill)> = vec![];
    for (i, c) in cases.iter().enumerate() {
        jobs.extend((1..=c.steps.len()).map(|n| (i, Kill::At(n))));
        for _ in 0..25 {
            jobs.push((i, Kill::After(rng.next() % (c.millis * 1300).max(1))));
        }
    }
    let tallies: Vec<Mutex<Tally>> = cases.iter().map(|_| Mutex::new(Tally::default())).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..2 {
            let (jobs, cases, tallies, next, dir) = (&jobs, &cases, &tallies, &next, &dir);
            s.spawn(move || {
                let work = dir.join(format!("work-{w}"));
                loop {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    let Some((i, kill)) = jobs.get(j) else { break };
                    let kill = match kill {
                        Kill::At(n) => Kill::At(*n),
                        Kill::After(u) => Kill::After(*u),
                    };
                    one(&cases[*i], &work, kill, &tallies[*i]);
                }
            });
        }
    });
    let mut total = 0;
    let mut failures = vec![];
    for (c, t) in cases.iter().zip(&tallies) {
        let t = t.lock().unwrap();
        println!(
            "crash {:15} {} crash points, {} kills ({} at points, {} random; run {} ms) + {} kills during recovery: {} old, {} new, {} inconsistent; {} recoveries announced",
            c.name,
            c.steps.len(),
            t.kills + t.failures.len(),
            t.at_points,
            t.random,
            c.millis,
            t.recovery_kills,
            t.old,
            t.new,
            t.failures.len(),
            t.recovered_msgs
        );
        total += t.kills + t.failures.len() + t.recovery_kills;
        failures.extend(t.failures.iter().cloned());
    }
    println!(
        "crash: {total} kills, {} inconsistent, seed {seed}, {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} kills left a bad state (seed {seed}); the first:\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(total >= 200, "only {total} kills");
}

#[test]
fn check_beside_a_writer_sees_no_half_change() {
    let dir = std::env::temp_dir().join(format!("xtask-beside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = fixture(&dir, "beside");
    ok(&run(&root, &["check"], &[]), "check on the fixture");
    let rounds = 20;
    let done = std::sync::atomic::AtomicBool::new(false);
    let (mut checks, mut spurious) = (0, vec![]);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..rounds {
                let name = format!("w{i}");
                ok(
                    &run(
                        &root,
                        &[
                            "add-service",
                            &name,
                            "--grpc",
                            "--pg",
                            "--https",
                            "--public",
                            &format!("/{name}/"),
                        ],
                        &[],
                    ),
                    "add",
                );
                ok(&run(&root, &["remove-service", &name], &[]), "remove");
            }
            done.store(true, Ordering::SeqCst);
        });
        while !done.load(Ordering::SeqCst) {
            let o = run(&root, &["check"], &[]);
            checks += 1;
            if !o.status.success() {
                spurious.push(text(&o));
            }
            let l = run(&root, &["list", "--format", "json"], &[]);
            if !l.status.success() {
                spurious.push(text(&l));
            }
        }
    });
    println!(
        "check beside a writer: {rounds} add+remove rounds, {checks} checks, {} spurious",
        spurious.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        spurious.is_empty(),
        "{} spurious results, the first:\n{}",
        spurious.len(),
        spurious[0]
    );
}
