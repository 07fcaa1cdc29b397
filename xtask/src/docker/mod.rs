//! The Docker Engine API (bollard) as `verify` and `images` use it: the
//! connection, build contexts as tars (honouring `.dockerignore`), image
//! builds with a content-addressed cache (classic in images.rs, BuildKit in
//! buildkit.rs), container logs and cleanup.

pub mod buildkit;
pub mod cluster;
mod connection;
mod context;
mod images;
pub mod rootfs;
mod sweep;
mod tar_filter;

/// A recipe's key (`model::digest::recipe_hash`), under the name verify
/// calls it by.
pub use crate::model::digest::recipe_hash as sha256_hex;
pub use connection::connect;
pub use context::{context_tar, file_chunks, Ignore, Tar};
pub use images::{build, image_exists, image_id, logs, remove_older_tags};
pub use sweep::{hostname, pid_alive, sweep, sweep_until_gone};
pub use tar_filter::TarFilter;

/// The fix of an Engine API call the daemon refused or could not answer:
/// its reason is in the message; these show the daemon's own state.
pub const ENGINE_FIX: &str = "is the Docker daemon running and healthy? `docker info` shows it (disk space, storage driver), `docker events` what it did";

/// An Engine API call that failed: `what` names the call and its object
/// (`creating container for `web``), then the engine's answer, and the fix.
pub fn engine_error(what: impl std::fmt::Display, e: impl std::fmt::Display) -> crate::diag::Error {
    crate::diag::Diagnostic::error(format!("{what}: {e}")).fix(ENGINE_FIX)
}

/// Every object a verify run creates carries this label (value: run id),
/// and `monorepo.verify.pid` names the process that owns it.
pub const RUN_LABEL: &str = "monorepo.verify.run";
pub const PID_LABEL: &str = "monorepo.verify.pid";
/// On every object of a `verify --keep` run: the stack stays until the user
/// removes it; a later run's sweep of dead runs leaves it alone.
pub const KEEP_LABEL: &str = "monorepo.verify.keep";
/// The host whose process `PID_LABEL` names: a pid means nothing on
/// another machine sharing the daemon.
pub const HOST_LABEL: &str = "monorepo.verify.host";
/// Images built by this tool: the hash of what they were built from.
pub const HASH_LABEL: &str = "monorepo.build.hash";

/// An exclusive `flock` on `path` (made if missing), held while the file
/// lives; when `holder` has it, says so and waits. Lock files stay in the
/// temporary folder: the lock, not the file, is the state.
pub fn lock_exclusive(
    path: &std::path::Path,
    holder: &str,
) -> Result<std::fs::File, crate::diag::Error> {
    use crate::diag::Diagnostic;
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| {
            Diagnostic::error(format!("opening the lock: {e}"))
                .at_path(path)
                .fix("the lock lives in the temporary folder (TMPDIR): make it writable, or remove a lock file another user left there")
        })?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("waiting for {holder} ({})", path.display());
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Diagnostic::error(format!("cannot lock: {e}")).at_path(path));
        }
    }
    Ok(f)
}
