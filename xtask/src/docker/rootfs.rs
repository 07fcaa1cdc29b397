//! Root filesystems from Debian packages (`mmdebstrap`, this machine's apt
//! sources), imported as images: the stand-in base images of `images
//! bootstrap` and the nodes of `cluster up`. No registry is needed.

use std::path::Path;

use bollard::query_parameters as q;
use futures_util::StreamExt;

use crate::diag::{Diagnostic, Error};
use crate::docker;

/// This machine's Debian suite (`VERSION_CODENAME`), bookworm if unknown.
pub fn suite() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|s| s.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "bookworm".into())
}

/// `monorepo-local/<name>:<hash prefix>`.
pub fn tag_for(name: &str, hash: &str) -> String {
    format!("monorepo-local/{name}:{}", &hash[..12])
}

/// `mmdebstrap` of `suite` with `packages`, imported as `tag` (also used by
/// `cluster up` for the nodes' root filesystem).
pub async fn import_rootfs(
    d: &bollard::Docker,
    root: &Path,
    suite: &str,
    tag: &str,
    packages: &[&str],
) -> Result<(), Error> {
    let dir = root.join("target/xtask");
    std::fs::create_dir_all(&dir).map_err(|e| {
        Diagnostic::error(e.to_string())
            .at_path(&dir)
            .fix("make target/ writable by you")
    })?;
    // Named by the tag: two different root filesystems may be made at once.
    let tarball = dir.join(format!("{}.tar", tag.replace(['/', ':'], "-")));
    println!(
        "images: mmdebstrap {suite} with {} (from this machine's apt sources)",
        packages.join(",")
    );
    let t = std::time::Instant::now();
    let status = std::process::Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--variant=minbase",
            &format!("--include={}", packages.join(",")),
            suite,
        ])
        .arg(&tarball)
        .status()
        .map_err(|e| {
            Diagnostic::error(format!("cannot run mmdebstrap: {e}"))
                .fix("apt-get install mmdebstrap")
        })?;
    if !status.success() {
        return Err(Diagnostic::error(format!(
            "mmdebstrap failed ({status}); see its output above"
        ))
        .fix("fix what its output names (often this machine's apt sources), then run the command again"));
    }
    println!(
        "images: root filesystem built in {:.1}s; importing as {tag}",
        t.elapsed().as_secs_f64()
    );
    let (repo, tagname) = tag.split_once(':').unwrap();
    let file = std::fs::File::open(&tarball)
        .map_err(|e| Diagnostic::error(e.to_string()).at_path(&tarball))?;
    // Streamed in 1 MiB pieces rather than holding ~500 MB.
    let body = docker::file_chunks(file);
    let opts = q::CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tagname.into()),
        ..Default::default()
    };
    let mut s = d.create_image(Some(opts), Some(bollard::body_try_stream(body)), None);
    while let Some(r) = s.next().await {
        if let Err(e) = r {
            return Err(super::engine_error(
                format!("importing the root filesystem as {tag}"),
                e,
            ));
        }
    }
    let _ = std::fs::remove_file(&tarball);
    Ok(())
}
