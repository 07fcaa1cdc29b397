//! The stamp that lets `check` skip `scripts/gen_proto.py --check` while
//! nothing it reads changed, as git's index skips re-reading files whose
//! stat data is unchanged.
//!
//! After a full check found the code current, the stamp records every file
//! involved: all of src/proto and src/common/gen (Python's caches skipped,
//! as the script skips them), the script, protoc (as found on PATH) and the
//! gRPC plugin, and the imports the script found outside src/proto (its
//! `--manifest` names them). Each with (size, mtime ns, ctime ns, device,
//! inode, mode) and the hash of the content the check found right. A later
//! check trusts it only when the same files are there with the same stat
//! data; any difference (a file added, removed, touched, edited, another
//! tool) runs the script again. ctime cannot be set back by `touch -d`, so a
//! same-size edit with a restored mtime is still seen.
//!
//! Racy files (git's "racy clean" problem): a file changed within a clock
//! tick of the moment the check read it can keep its stat data while its
//! content changes. So a file whose mtime or ctime is less than `RACY`
//! before the check started is never trusted on its stat data: its content
//! is hashed and compared with what the check verified.
//!
//! The stamp lives outside the repository, next to the script's cache (the
//! same folder resolution: $GEN_PROTO_CACHE, else
//! $XDG_CACHE_HOME/xtask-gen-proto, else ~/.cache/xtask-gen-proto), one file
//! per repository named by the hash of its canonical path, written
//! atomically (temporary file, then rename). A committed record could be
//! edited along with a generated file; this one is written only here, right
//! after the script vouched for the files. A damaged or unknown stamp (bad
//! header, bad checksum, another root) is ignored.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::model::digest::sha256_hex;

/// The generator's layout. Defined here, the lower of the two modules
/// (`proto` runs the script and re-exports them), so the stamp does not
/// depend on the runner.
pub const SCRIPT: &str = "scripts/gen_proto.py";
pub const PROTO_DIR: &str = "src/proto";
pub const GEN_DIR: &str = "src/common/gen";

const HEADER: &str = "xtask proto stamp 1";
/// The plugin the script runs (its `PLUGIN`).
const PLUGIN: &str = "/usr/bin/grpc_python_plugin";
/// Files changed this close to the check are hashed, not trusted on stat
/// data: more than the timestamp granularity of any file system in use
/// (1 s on some, 2 s on FAT) and the kernel's coarse clock tick.
const RACY_NS: i128 = 2_000_000_000;

/// What a file's stat says; equal stat data means an unchanged file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime: i128,
    ctime: i128,
    dev: u64,
    ino: u64,
    mode: u32,
}

impl Stat {
    fn of(m: &Metadata) -> Stat {
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        Stat {
            size: m.size(),
            mtime: ns(m.mtime(), m.mtime_nsec()),
            ctime: ns(m.ctime(), m.ctime_nsec()),
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
        }
    }
}

/// One file: repository-relative, or absolute (tools, outside imports).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    path: String,
    stat: Stat,
    /// The sha256 of the content the check found right, when it read it.
    sha: Option<String>,
}

/// The script's cache folder (its `Cache.__init__`), or None when the cache
/// is turned off (GEN_PROTO_CACHE="") or there is no home.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k);
    if let Some(d) = env("GEN_PROTO_CACHE") {
        return (!d.is_empty()).then(|| PathBuf::from(d));
    }
    let base = match env("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env("HOME").filter(|d| !d.is_empty())?).join(".cache"),
    };
    Some(base.join("xtask-gen-proto"))
}

/// The stamp file of the repository at `root` and its canonical path.
fn location(root: &Path) -> Option<(PathBuf, String)> {
    let canon = root.canonicalize().ok()?.to_str()?.to_string();
    Some((
        cache_dir()?
            .join("stamps")
            .join(sha256_hex(canon.as_bytes())),
        canon,
    ))
}

/// `protoc` as the script finds it (`shutil.which`): the first executable
/// file of that name on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

fn resolve(root: &Path, path: &str) -> PathBuf {
    if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        root.join(path)
    }
}

/// Every file the check depends on, sorted, with its stat data; None when
/// something cannot be stamped (a symbolic link under the two folders, an
/// unreadable folder, a missing tool or outside import): then only the
/// script can decide.
fn files(root: &Path, outside: &[String]) -> Option<Vec<(String, Stat)>> {
    let mut out = vec![];
    for top in [PROTO_DIR, GEN_DIR] {
        let mut todo = vec![top.to_string()];
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(root.join(&dir)).ok()? {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                let rel = format!("{dir}/{name}");
                let kind = e.file_type().ok()?;
                if kind.is_dir() {
                    if name != "__pycache__" {
                        todo.push(rel);
                    }
                } else if kind.is_file() {
                    out.push((rel, Stat::of(&e.metadata().ok()?)));
                } else {
                    return None; // a link: its target could change unseen
                }
            }
        }
    }
    let protoc = which("protoc")?.to_str()?.to_string();
    for p in [SCRIPT, PLUGIN, protoc.as_str()]
        .into_iter()
        .chain(outside.iter().map(String::as_str))
    {
        // Tools are followed through links: the file that runs is stamped.
        out.push((
            p.to_string(),
            Stat::of(&std::fs::metadata(resolve(root, p)).ok()?),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Some(out)
}

fn racy(s: &Stat, time: i128) -> bool {
    s.mtime.max(s.ctime) >= time - RACY_NS
}

/// A stamp as read: the check's start time and the entries.
struct Stamp {
    time: i128,
    entries: Vec<Entry>,
}

fn render(canon: &str, time: i128, entries: &[Entry]) -> String {
    let mut s = format!("{HEADER}\nroot\t{canon}\ntime\t{time}\n");
    for e in entries {
        let t = &e.stat;
        s += &format!(
            "f\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            e.path,
            t.size,
            t.mtime,
            t.ctime,
            t.dev,
            t.ino,
            t.mode,
            e.sha.as_deref().unwrap_or("-")
        );
    }
    let sum = sha256_hex(s.as_bytes());
    s + &format!("sum\t{sum}\n")
}

/// The stamp of `canon`, or None when it is missing, damaged, of another
/// format or of another repository.
fn parse(text: &str, canon: &str) -> Option<Stamp> {
    let body_end = text.strip_suffix('\n')?.rfind('\n')? + 1;
    let (body, last) = text.split_at(body_end);
    if last != format!("sum\t{}\n", sha256_hex(body.as_bytes())) {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != HEADER || lines.next()? != format!("root\t{canon}") {
        return None;
    }
    let time = lines.next()?.strip_prefix("time\t")?.parse().ok()?;
    let mut entries = vec![];
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        let [kind, path, size, mtime, ctime, dev, ino, mode, sha] = f[..] else {
            return None;
        };
        if kind != "f" || path.is_empty() {
            return None;
        }
        let stat = Stat {
            size: size.parse().ok()?,
            mtime: mtime.parse().ok()?,
            ctime: ctime.parse().ok()?,
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
            mode: mode.parse().ok()?,
        };
        let sha = match sha {
            "-" => None,
            h if h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()) => Some(h.to_string()),
            _ => return None,
        };
        entries.push(Entry {
            path: path.to_string(),
            stat,
            sha,
        });
    }
    Some(Stamp { time, entries })
}

/// Whether the last full check's verdict "current" still holds: the stamp
/// is sound and every file it names, and no other, is there unchanged.
pub fn trusted(root: &Path) -> bool {
    location(root).is_some_and(|(file, canon)| trusted_at(root, &file, &canon))
}

fn trusted_at(root: &Path, file: &Path, canon: &str) -> bool {
    let Some(stamp) = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| parse(&t, canon))
    else {
        return false;
    };
    let outside: Vec<String> = stamp
        .entries
        .iter()
        .filter(|e| e.path.starts_with('/') && e.sha.is_some())
        .map(|e| e.path.clone())
        .collect();
    let Some(now) = files(root, &outside) else {
        return false;
    };
    now.len() == stamp.entries.len()
        && now.iter().zip(&stamp.entries).all(|((path, stat), e)| {
            path == &e.path
                && if racy(&e.stat, stamp.time) {
                    // Too recent for its stat data to prove anything: the content decides.
                    e.sha.as_ref().is_some_and(|h| {
                        std::fs::read(resolve(root, path)).is_ok_and(|b| &sha256_hex(&b) == h)
                    })
                } else {
                    stat == &e.stat
                }
        })
}

/// The current time in ns, taken before a check starts reading.
pub fn now() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Records the files after a full check that started at `time` found the
/// code current; `manifest` is the script's `--manifest` (`sha<TAB>path`
/// lines). Nothing is written when a file cannot be stamped or is too
/// recent to be trusted without a hash the check gave; a failure to write
/// only costs the next check its shortcut.
pub fn record(root: &Path, time: i128, manifest: &str) {
    let Some((file, canon)) = location(root) else {
        return;
    };
    let mut sha = std::collections::HashMap::new();
    for l in manifest.lines() {
        let Some((h, p)) = l.split_once('\t') else {
            return;
        };
        sha.insert(p.to_string(), h.to_string());
    }
    let outside: Vec<String> = sha.keys().filter(|p| p.starts_with('/')).cloned().collect();
    let Some(now) = files(root, &outside) else {
        return;
    };
    let entries: Vec<Entry> = now
        .into_iter()
        .map(|(path, stat)| Entry {
            sha: sha.get(&path).cloned(),
            path,
            stat,
        })
        .collect();
    if entries
        .iter()
        .any(|e| e.path.contains(['\t', '\n']) || (e.sha.is_none() && racy(&e.stat, time)))
    {
        return;
    }
    let Some(dir) = file.parent() else { return };
    let tmp = dir.join(format!(
        ".{}.{}",
        file.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let ok = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, render(&canon, time, &entries)))
        .and_then(|_| std::fs::rename(&tmp, &file));
    if ok.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, sha: Option<&str>) -> Entry {
        Entry {
            path: path.into(),
            stat: Stat {
                size: 1,
                mtime: 2,
                ctime: 3,
                dev: 4,
                ino: 5,
                mode: 0o100644,
            },
            sha: sha.map(String::from),
        }
    }

    #[test]
    fn a_stamp_reads_back_and_any_damage_or_other_root_is_refused() {
        let es = vec![
            entry("src/proto/a.proto", Some(&"a".repeat(64))),
            entry("/usr/bin/protoc", None),
        ];
        let text = render("/repo", 42, &es);
        let s = parse(&text, "/repo").unwrap();
        assert_eq!((s.time, s.entries), (42, es));
        assert!(parse(&text, "/other").is_none());
        assert!(
            parse(&text.replacen("\t1\t2\t3", "\t1\t2\t4", 1), "/repo").is_none(),
            "edited without a new checksum"
        );
        assert!(parse(&text[..text.len() / 2], "/repo").is_none(), "torn");
        assert!(parse(&text.replace(HEADER, "xtask proto stamp 2"), "/repo").is_none());
        assert!(parse("", "/repo").is_none());
        // A forged line with a valid checksum but the wrong shape.
        let forged = format!("{HEADER}\nroot\t/repo\ntime\t1\nf\tx\t1\n");
        assert!(parse(
            &format!("{forged}sum\t{}\n", sha256_hex(forged.as_bytes())),
            "/repo"
        )
        .is_none());
    }

    /// A file changed within the clock tick of the check keeps its stat
    /// data: while it is recent, only its hash can vouch for it.
    #[test]
    fn a_recent_file_is_trusted_by_its_hash_not_its_stat_data() {
        if which("protoc").is_none() {
            return; // files() stamps protoc: nothing to test without it
        }
        let root = std::env::temp_dir().join(format!("xtask-stamp-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (p, b) in [
            ("src/proto/a.proto", "old"),
            ("src/common/gen/a_pb2.py", "gen"),
            (SCRIPT, "script"),
        ] {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), b).unwrap();
        }
        let canon = root.canonicalize().unwrap().to_str().unwrap().to_string();
        let file = root.join("stamp");
        let stamp = |time: i128, sha_of: &dyn Fn(&str) -> Option<String>| {
            let es: Vec<Entry> = files(&root, &[])
                .unwrap()
                .into_iter()
                .map(|(path, stat)| Entry {
                    sha: sha_of(&path),
                    path,
                    stat,
                })
                .collect();
            std::fs::write(&file, render(&canon, time, &es)).unwrap();
        };
        let content = |p: &str| {
            (!p.starts_with('/')).then(|| sha256_hex(&std::fs::read(root.join(p)).unwrap()))
        };
        stamp(now(), &content);
        assert!(
            trusted_at(&root, &file, &canon),
            "recent, and the hashes match"
        );
        // Same size, and (as within one clock tick) the stamp has the new
        // stat data, but the hash of what the check read before the change.
        let old = sha256_hex(b"old");
        std::fs::write(root.join("src/proto/a.proto"), "new").unwrap();
        let stale = |p: &str| {
            if p == "src/proto/a.proto" {
                Some(old.clone())
            } else {
                content(p)
            }
        };
        stamp(now(), &stale);
        assert!(
            !trusted_at(&root, &file, &canon),
            "a recent file whose content is not the checked one"
        );
        // Long after the change, equal stat data is proof enough.
        stamp(now() + RACY_NS + 1_000_000_000, &stale);
        assert!(trusted_at(&root, &file, &canon));
        // A file no stamp names.
        std::fs::write(root.join("src/common/gen/b_pb2.py"), "").unwrap();
        assert!(!trusted_at(&root, &file, &canon));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn recent_files_are_racy() {
        let s = |t: i128| Stat {
            size: 0,
            mtime: t,
            ctime: t,
            dev: 0,
            ino: 0,
            mode: 0,
        };
        let t = 100 * 1_000_000_000;
        assert!(racy(&s(t - RACY_NS), t) && racy(&s(t + 5), t));
        assert!(!racy(&s(t - RACY_NS - 1), t));
    }
}
