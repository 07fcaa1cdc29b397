//! Postgres from a cached, initialised data directory.
//!
//! A fresh Postgres spends seconds in initdb and its init scripts (3 of a
//! 7 s warm verify on the example stack), and what they leave depends only
//! on the image, the container's environment and command, and the files
//! mounted into it. So the first run with a given set of those initialises
//! a throwaway copy of the container (no network, volumes of its own),
//! stops it cleanly and keeps its data directory as a tar under
//! `<target dir>/xtask/pg-seed/<key>.tar` (0600: it holds password
//! verifiers). Every run then copies that tar into its fresh container
//! before the start, and the image's entrypoint finds PGDATA initialised
//! and skips init, as on a dev stack's second `up`. Any change of the
//! inputs is a new key; `--no-seed` turns the cache off.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters as q;
use bollard::Docker;
use futures_util::StreamExt;

use super::matrix;
use super::probe;
use super::report::indent;
use super::run::Run;
use crate::diag::{Diagnostic, Error};
use crate::docker::{self, engine_error};
use crate::model::compose::Service;
use crate::model::repo::Repo;

/// The service whose data directory is seeded (the house rules' name).
pub const SERVICE: &str = "postgres";
/// Seeds kept per repository (one per key; the oldest go first).
const KEEP: usize = 3;
/// The most bytes of mounted files hashed into a key; a service that
/// mounts more is not seeded (hashing would cost what seeding saves).
const HASH_BUDGET: u64 = 64 << 20;
/// Bumped when what a seed holds or how it is made changes.
const FORMAT: &str = "pg-seed 2";
/// The largest WAL segment held in memory to test for zeros (16 MiB
/// unless initdb's --wal-segsize said otherwise; larger ones are kept).
const SEGMENT_MAX: u64 = 64 << 20;

pub(super) struct Seeding<'a> {
    pub probe_image: &'a str,
    pub timeout: u64,
    /// (builds that know whether they must build, whether any must).
    pub decided: tokio::sync::watch::Receiver<(usize, bool)>,
    /// How many images the run builds or finds.
    pub builds: usize,
}

/// A usable seed: the tar (open: pruning by another run cannot take it
/// away any more) and the folder it unpacks into.
pub(super) struct Seed {
    tar: std::fs::File,
    file: PathBuf,
    parent: String,
    /// The run's data volume is a copy-on-write overlay of the seed
    /// (pgcow.rs): nothing to unpack.
    cow: bool,
}

/// Where the seeds of `root` live: next to its build output.
pub fn seed_dir(root: &Path) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => root.join(t),
        None => root.join("target"),
    };
    target.join("xtask").join("pg-seed")
}

fn say(what: &str) {
    eprintln!("  seed   {SERVICE:<12} {what}");
}

/// The seed for the container `body` of `s`, made now if there is none.
/// `None` (after saying why) when this container cannot be seeded; the
/// run then initialises it in place, as without the cache.
pub(super) async fn prepare(
    repo: &Repo,
    run: &Run,
    s: &Service,
    body: &ContainerCreateBody,
    uploads: &[(PathBuf, String)],
    seeding: &Seeding<'_>,
) -> Result<Option<Seed>, Error> {
    let d = &run.d;
    let image = body.image.clone().unwrap_or_default();
    let inspect = d
        .inspect_image(&image)
        .await
        .map_err(|e| engine_error(format!("inspecting `{image}`"), e))?;
    let env = body.env.clone().unwrap_or_default();
    let Some(pgdata) = pgdata_of(&env, &inspect) else {
        return Ok(None);
    };
    if !uploads.is_empty() {
        say("not seeded: certificates are copied into it");
        return Ok(None);
    }
    let binds = body
        .host_config
        .as_ref()
        .and_then(|h| h.binds.clone())
        .unwrap_or_default();
    let key = match key(
        inspect.id.as_deref().unwrap_or(&image),
        &pgdata,
        &env,
        body.cmd.as_deref().unwrap_or(&[]),
        &binds,
    ) {
        Ok(k) => k,
        Err(why) => {
            say(&format!("not seeded: {why}"));
            return Ok(None);
        }
    };
    let parent = Path::new(&pgdata)
        .parent()
        .map(|p| p.display().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let dir = seed_dir(&repo.root);
    let file = dir.join(format!("{key}.tar"));
    let rel = file
        .strip_prefix(&repo.root)
        .unwrap_or(&file)
        .display()
        .to_string();
    if let Ok(tar) = std::fs::File::open(&file) {
        // Recently used: pruning removes the least recently used first.
        let _ = tar.set_modified(SystemTime::now());
        let seed = Seed::new(run, body, &pgdata, tar, file, parent, seeding).await;
        say(&format!(
            "data directory from the cache ({rel}){}",
            if seed.cow { ", copy-on-write" } else { "" }
        ));
        return Ok(Some(seed));
    }
    // A run that builds images waits for them: Postgres initialises in
    // place in their shadow (on 2 cores, making the seed beside the builds
    // slowed them), and the next run without builds makes the seed.
    let mut decided = seeding.decided.clone();
    let building = decided
        .wait_for(|(n, _)| *n >= seeding.builds)
        .await
        .map(|v| v.1)
        .unwrap_or(false);
    if building {
        say("no cached data directory; images are being built, so it initialises in place this time (the next run caches it)");
        return Ok(None);
    }
    let t = Instant::now();
    say("no cached data directory for this image, environment and init scripts: initialising it once");
    if !make(repo, run, s, body, &pgdata, &dir, &file, seeding).await? {
        say(&format!("not seeded: its data directory is over {} MiB (caching it would cost about what it saves)", max_bytes() >> 20));
        return Ok(None);
    }
    say(&format!(
        "cached in {:.1}s ({rel})",
        t.elapsed().as_secs_f64()
    ));
    let tar = std::fs::File::open(&file).map_err(|e| {
        Diagnostic::error(format!("reading the cached data directory: {e}"))
            .at_path(&file)
            .fix("make the cache folder readable, or pass `--no-seed`")
    })?;
    prune(&dir, &file);
    super::pgcow::prune(&run.d).await;
    Ok(Some(
        Seed::new(run, body, &pgdata, tar, file, parent, seeding).await,
    ))
}

/// Makes the run's volume at PGDATA a copy-on-write overlay of the seed
/// `file` (pgcow.rs); false, after saying why, when it cannot be (the seed
/// is unpacked into it then). Only a volume of the run mounted at PGDATA
/// itself is replaced.
async fn copy_on_write(
    run: &Run,
    body: &ContainerCreateBody,
    pgdata: &str,
    file: &Path,
    seeding: &Seeding<'_>,
) -> bool {
    let binds = body
        .host_config
        .as_ref()
        .and_then(|h| h.binds.clone())
        .unwrap_or_default();
    let ours = run.name("");
    let volume = binds.iter().find_map(|b| {
        let mut parts = b.split(':');
        let (src, target, opts) = (parts.next()?, parts.next()?, parts.next());
        (target == pgdata && src.starts_with(&ours) && opts.is_none()).then_some(src)
    });
    let Some(volume) = volume else {
        return false;
    };
    let base = Path::new(pgdata)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let t = Instant::now();
    match super::pgcow::attach(run, file, &base, volume, seeding.probe_image).await {
        Ok(()) => {
            if super::run::tracing() {
                say(&format!(
                    "copy-on-write in {:.2}s",
                    t.elapsed().as_secs_f64()
                ));
            }
            true
        }
        Err(why) => {
            say(&format!("unpacked, not copy-on-write: {why}"));
            false
        }
    }
}

/// PGDATA as the service or else the image sets it, when it is a plain
/// absolute folder; None after saying why not.
fn pgdata_of(env: &[String], inspect: &bollard::models::ImageInspect) -> Option<String> {
    let image_env = inspect
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    let Some(pgdata) = env
        .iter()
        .chain(image_env.iter())
        .find_map(|e| e.strip_prefix("PGDATA="))
        .map(str::to_string)
    else {
        say("not seeded: neither the image nor the service sets PGDATA");
        return None;
    };
    if let Err(why) = plain_dir(&pgdata) {
        say(&format!(
            "not seeded: PGDATA `{}` {why}",
            pgdata.escape_debug()
        ));
        return None;
    }
    Some(pgdata)
}

/// The key: the image's id, PGDATA, the environment, the command, and
/// every mount (a named volume by its target; a host folder or file by
/// its target, options and content).
fn key(
    image_id: &str,
    pgdata: &str,
    env: &[String],
    cmd: &[String],
    binds: &[String],
) -> Result<String, String> {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut put = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    put(FORMAT.as_bytes());
    put(image_id.as_bytes());
    put(pgdata.as_bytes());
    let mut env = env.to_vec();
    env.sort();
    for e in &env {
        put(e.as_bytes());
    }
    put(b"cmd");
    for c in cmd {
        put(c.as_bytes());
    }
    let mut budget = HASH_BUDGET;
    for b in binds {
        let (src, rest) = b
            .split_once(':')
            .ok_or_else(|| format!("a mount without a target: {b}"))?;
        let target = rest.split(':').next().unwrap_or(rest);
        put(b"mount");
        put(rest.as_bytes());
        if src.starts_with('/') {
            if pgdata == target || pgdata.starts_with(&format!("{}/", target.trim_end_matches('/')))
            {
                return Err(format!(
                    "its data directory {pgdata} is the host folder {src}"
                ));
            }
            hash_tree(Path::new(src), &mut put, &mut budget)?;
        }
    }
    let digest = h.finish();
    Ok(digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Names, kinds, modes and bytes of everything under `p` (sorted), within
/// `budget` bytes.
fn hash_tree(p: &Path, put: &mut impl FnMut(&[u8]), budget: &mut u64) -> Result<(), String> {
    let md = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    put(&md.mode().to_le_bytes());
    if md.file_type().is_symlink() {
        let to = std::fs::read_link(p).map_err(|e| format!("{}: {e}", p.display()))?;
        put(to.as_os_str().as_encoded_bytes());
        // What the container sees is what the link names.
        if let Ok(real) = std::fs::canonicalize(p) {
            return hash_tree(&real, put, budget);
        }
        return Ok(());
    }
    if md.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        put(&(names.len() as u64).to_le_bytes());
        for n in names {
            put(n.as_encoded_bytes());
            hash_tree(&p.join(&n), put, budget)?;
        }
        return Ok(());
    }
    if !md.is_file() {
        return Err(format!("{} is neither a file nor a folder", p.display()));
    }
    if md.len() > *budget {
        return Err(format!(
            "it mounts more than {} MiB of files",
            HASH_BUDGET >> 20
        ));
    }
    *budget -= md.len();
    let mut f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut buf = Vec::with_capacity(md.len() as usize);
    f.read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    put(&buf);
    Ok(())
}

/// Initialises a throwaway copy of the container (no network, fresh
/// volumes of its own), waits until it answers, stops it cleanly and
/// writes its data directory to `file` (whole or not at all).
#[allow(clippy::too_many_arguments)]
async fn make(
    repo: &Repo,
    run: &Run,
    s: &Service,
    body: &ContainerCreateBody,
    pgdata: &str,
    dir: &Path,
    file: &Path,
    seeding: &Seeding<'_>,
) -> Result<bool, Error> {
    let d = &run.d;
    let mut prep = body.clone();
    let mut binds = vec![];
    for (i, b) in prep
        .host_config
        .as_ref()
        .and_then(|h| h.binds.clone())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let (src, rest) = b.split_once(':').unwrap_or((&b, ""));
        if src.starts_with('/') {
            binds.push(b.clone());
            continue;
        }
        let vol = run.name(&format!("seed-{i}"));
        d.create_volume(VolumeCreateRequest {
            name: Some(vol.clone()),
            labels: Some(run.labels()),
            ..Default::default()
        })
        .await
        .map_err(|e| engine_error(format!("creating volume {vol}"), e))?;
        binds.push(format!("{vol}:{rest}"));
    }
    let mut labels = run.labels();
    labels.insert("monorepo.verify.seed".into(), s.name.clone());
    prep.labels = Some(labels);
    prep.exposed_ports = None;
    prep.networking_config = None;
    prep.host_config = Some(HostConfig {
        binds: Some(binds),
        network_mode: Some("none".into()),
        ..Default::default()
    });
    let name = run.name(&format!("{}-seed", s.name));
    let id = d
        .create_container(
            Some(q::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            prep,
        )
        .await
        .map_err(|e| engine_error(format!("creating {name}"), e))?
        .id;
    d.start_container(&id, None::<q::StartContainerOptions>)
        .await
        .map_err(|e| engine_error(format!("starting {name}"), e))?;
    let target = matrix::target(repo, s).ok_or_else(|| {
        super::load::at_key(
            repo,
            &s.name,
            "ports",
            Diagnostic::error(format!("`{}` publishes no port to probe", s.name)).fix(format!(
                "give `{}` its port (`expose: [\"5432\"]`), or pass `--no-seed`",
                s.name
            )),
        )
    })?;
    if let Err(why) =
        probe::wait_ready(d, run, seeding.probe_image, &target, &id, seeding.timeout).await
    {
        let logs = docker::logs(d, &id, 15).await;
        return Err(Diagnostic::error(run.mask(&format!("{} never became ready while initialising its data directory: {why}\n    last log lines:\n{}", s.name, indent(&logs))))
            .fix("fix what the log lines name (an init script under /docker-entrypoint-initdb.d, a setting); `--no-seed` initialises it inside the stack instead (with its networks)"));
    }
    // A clean shutdown (the image's stop signal; SIGKILL only after 60 s):
    // the tar must be of a cluster that needs no recovery.
    let _ = d
        .stop_container(
            &id,
            Some(q::StopContainerOptions {
                t: Some(60),
                ..Default::default()
            }),
        )
        .await;
    let code = probe::exited(d, &id).await;
    if code != Some(0) {
        let logs = docker::logs(d, &id, 15).await;
        return Err(Diagnostic::error(run.mask(&format!("{} did not shut down cleanly after initialising (exit code {code:?})\n    last log lines:\n{}", s.name, indent(&logs))))
            .fix("`--no-seed` initialises it inside the stack instead"));
    }
    let r = download(d, &id, pgdata, dir, file).await;
    run.reap(&id);
    r.map_err(|e| {
        Diagnostic::error(format!("caching the data directory of `{}`: {e}", s.name))
            .at_path(dir)
            .fix("make the folder writable, or pass `--no-seed`")
    })
}

/// A WAL segment file (24 hex digits in `pg_wal`, or `pg_xlog` before
/// Postgres 10) small enough to hold while its data is tested: one that
/// is all zeros holds no record, only space Postgres preallocated for
/// later (a quarter of the example's seed, 16 of 68 MB, written to disk on
/// every run). Left out, Postgres creates it when it gets there, as after
/// any fresh initdb.
fn spare_wal_segment(path: &str, size: u64) -> bool {
    let mut parts = path.trim_start_matches("./").split('/');
    let (Some(_), Some(dir), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(dir, "pg_wal" | "pg_xlog")
        && name.len() == 24
        && name.bytes().all(|b| b.is_ascii_hexdigit())
        && size <= SEGMENT_MAX
}

/// An absolute path with no `.` or `..` part: the seed is read from and
/// unpacked at it, and from its parent.
fn plain_dir(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("is not an absolute path");
    }
    if p.chars().any(char::is_control) {
        return Err("holds a control character");
    }
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        return Err("is the root folder");
    }
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err("has a `.` or `..` part");
    }
    Ok(())
}

/// The largest data directory cached (1 GiB; `XTASK_SEED_MAX_MB`).
fn max_bytes() -> u64 {
    std::env::var("XTASK_SEED_MAX_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1024)
        << 20
}

/// PGDATA of the stopped container `id` as a tar, into `file`: written to
/// a temporary name (0600, created anew), synced, then renamed. Ok(false),
/// with nothing written, when the tar grows past `max_bytes`.
async fn download(
    d: &Docker,
    id: &str,
    pgdata: &str,
    dir: &Path,
    file: &Path,
) -> Result<bool, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut stream = d.download_from_container(
        id,
        Some(q::DownloadFromContainerOptions {
            path: pgdata.to_string(),
        }),
    );
    let max = max_bytes();
    let mut read = 0u64;
    let r: Result<bool, String> = async {
        let mut f = docker::TarFilter::new(
            std::io::BufWriter::with_capacity(1 << 20, &mut out),
            spare_wal_segment,
            |_: &str, data: &[u8]| data.iter().all(|b| *b == 0),
        );
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("reading {pgdata}: {e}"))?;
            read += chunk.len() as u64;
            if read > max {
                // The stream is dropped unread: the daemon stops sending.
                return Ok(false);
            }
            f.write(&chunk)
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            crash_point("writing");
        }
        f.finish().map_err(|e| format!("{}: {e}", tmp.display()))?;
        out.sync_all()
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        crash_point("renaming");
        std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))?;
        if let Ok(dirf) = std::fs::File::open(dir) {
            let _ = dirf.sync_all();
        }
        Ok(true)
    }
    .await;
    if !matches!(r, Ok(true)) {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Test hook: `XTASK_CRASH_SEED=writing|renaming|filling` kills the
/// process with SIGKILL while the seed's temporary file is being written,
/// once it is complete and synced but not yet renamed, or once the seed's
/// volume is filled but not yet recorded (pgcow.rs).
pub(super) fn crash_point(at: &str) {
    if std::env::var("XTASK_CRASH_SEED").ok().as_deref() == Some(at) {
        // SAFETY: kill(2) on our own pid; nothing runs after it.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Keeps the `KEEP` most recently used seeds; removes temporary files of
/// runs that died while writing one (older than ten minutes).
fn prune(dir: &Path, keep: &Path) {
    let mut seeds = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(md) = e.metadata() else { continue };
        let modified = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            if modified.elapsed().unwrap_or_default() > Duration::from_secs(600) {
                let _ = std::fs::remove_file(&p);
            }
        } else if name.ends_with(".tar") && p != keep {
            seeds.push((modified, p));
        }
    }
    seeds.sort();
    let extra = seeds.len().saturating_sub(KEEP - 1);
    for (_, p) in seeds.into_iter().take(extra) {
        let _ = std::fs::remove_file(p.with_extension("cow"));
        let _ = std::fs::remove_file(&p);
    }
}

impl Seed {
    /// The seed of the open `tar` (at `file`), copy-on-write when it can be.
    async fn new(
        run: &Run,
        body: &ContainerCreateBody,
        pgdata: &str,
        tar: std::fs::File,
        file: PathBuf,
        parent: String,
        seeding: &Seeding<'_>,
    ) -> Seed {
        let cow = copy_on_write(run, body, pgdata, &file, seeding).await;
        Seed {
            tar,
            file,
            parent,
            cow,
        }
    }
    /// Unpacks the seed into the created (not started) container `id`.
    pub(super) async fn upload(self, d: &Docker, id: &str) -> Result<(), Error> {
        if self.cow {
            return Ok(());
        }
        // Ownership and modes come from the tar (no copyUIDGID).
        let chunks = docker::file_chunks(self.tar);
        let opts = q::UploadToContainerOptions {
            path: self.parent.clone(),
            ..Default::default()
        };
        let t = Instant::now();
        let r = d
            .upload_to_container(id, Some(opts), bollard::body_try_stream(chunks))
            .await;
        if super::run::tracing() {
            say(&format!("unpacked in {:.2}s", t.elapsed().as_secs_f64()));
        }
        if let Err(e) = r {
            // A damaged seed must not be used again.
            let _ = std::fs::remove_file(&self.file);
            return Err(Diagnostic::error(format!("unpacking the cached data directory into {SERVICE}: {e}; the cache file was removed"))
                .at_path(&self.file)
                .fix("run verify again (it initialises a new one), or pass `--no-seed`"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("xtask-pgseed-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn the_key_changes_with_every_input_and_only_then() {
        let dir = tmp("key");
        std::fs::write(dir.join("10-roles.sh"), "echo one\n").unwrap();
        let bind = format!("{}:/docker-entrypoint-initdb.d:ro", dir.display());
        let binds = vec![
            "mr-x-pg-data:/var/lib/postgresql/data".to_string(),
            bind.clone(),
        ];
        let env = vec![
            "POSTGRES_PASSWORD=a".to_string(),
            "POSTGRES_USER=app".to_string(),
        ];
        let k = |img: &str, env: &[String], binds: &[String]| {
            key(img, "/var/lib/postgresql/data", env, &[], binds).unwrap()
        };
        let base = k("sha256:1", &env, &binds);
        assert_eq!(
            base,
            k("sha256:1", &[env[1].clone(), env[0].clone()], &binds),
            "the order of the environment does not matter"
        );
        // The run's own volume names differ from run to run; only targets count.
        let other_run = vec![
            "mr-y-pg-data:/var/lib/postgresql/data".to_string(),
            bind.clone(),
        ];
        assert_eq!(base, k("sha256:1", &env, &other_run));
        assert_ne!(base, k("sha256:2", &env, &binds), "another image");
        assert_ne!(
            base,
            k(
                "sha256:1",
                &["POSTGRES_PASSWORD=b".to_string(), env[1].clone()],
                &binds
            ),
            "another password"
        );
        std::fs::write(dir.join("10-roles.sh"), "echo two\n").unwrap();
        assert_ne!(base, k("sha256:1", &env, &binds), "an edited init script");
        std::fs::write(dir.join("10-roles.sh"), "echo one\n").unwrap();
        assert_eq!(base, k("sha256:1", &env, &binds));
        std::fs::set_permissions(
            dir.join("10-roles.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(base, k("sha256:1", &env, &binds), "a mode");
        std::fs::set_permissions(
            dir.join("10-roles.sh"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::write(dir.join("20-more.sql"), "").unwrap();
        assert_ne!(base, k("sha256:1", &env, &binds), "a new, empty script");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pgdata_must_be_a_plain_absolute_folder() {
        for p in ["/var/lib/postgresql/data", "/pgdata/", "/a//b"] {
            assert_eq!(plain_dir(p), Ok(()), "{p}");
        }
        for p in [
            "",
            "data",
            "/",
            "//",
            "/a/../etc",
            "/a/./b",
            "/a\nb",
            "../x",
        ] {
            assert!(plain_dir(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn only_segment_files_directly_in_pg_wal_are_tested() {
        for p in [
            "data/pg_wal/000000010000000000000002",
            "./pgdata/pg_xlog/00000001000000000000000A",
        ] {
            assert!(spare_wal_segment(p, 16 << 20), "{p}");
        }
        assert!(!spare_wal_segment(
            "data/pg_wal/000000010000000000000002",
            SEGMENT_MAX + 1
        ));
        for p in [
            "data/base/1/000000010000000000000002",
            "data/pg_wal/archive_status/000000010000000000000002",
            "data/pg_wal/000000010000000000000002.partial",
            "data/pg_wal/00000002.history",
            "pg_wal/000000010000000000000002",
        ] {
            assert!(!spare_wal_segment(p, 16 << 20), "{p}");
        }
    }

    #[test]
    fn a_host_folder_as_the_data_directory_is_not_seeded() {
        let dir = tmp("hostdata");
        let binds = vec![format!("{}:/var/lib/postgresql/data", dir.display())];
        let e = key(
            "sha256:1",
            "/var/lib/postgresql/data/pgdata",
            &[],
            &[],
            &binds,
        )
        .unwrap_err();
        assert!(e.contains("host folder"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_one_in_use() {
        let dir = tmp("prune");
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            let p = dir.join(format!("{n}.tar"));
            std::fs::write(&p, "x").unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64))
                .unwrap();
        }
        prune(&dir, &dir.join("a.tar"));
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.tar", "c.tar", "d.tar"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
