//! The images of a verify run: the pulled ones must be present; the built
//! ones are cached by a hash of context, Dockerfile, args and base image ids.

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;

use super::report::indent;
use crate::diag::{Diagnostic, Error};
use crate::docker;
use crate::model::compose::Service;
use crate::model::repo::Repo;

/// The images of the services that are not built here (Postgres, Redis):
/// they must be on the machine already, since verify does not pull.
pub(super) async fn pulled_images(d: &Docker, order: &[&Service]) -> Result<HashMap<String, String>, Error> {
    let mut images = HashMap::new();
    for s in order.iter().filter(|s| s.build.is_none()) {
        let Some(img) = &s.image else {
            return Err(Diagnostic::error(format!("service `{}` has neither build nor image", s.name)));
        };
        if !docker::image_exists(d, img).await {
            return Err(Diagnostic::error(format!(
                "image `{img}` of `{}` is not on this machine and verify does not pull\n  fix: `docker pull {img}`, or on a machine without a registry `cargo xtask images bootstrap`",
                s.name
            )));
        }
        images.insert(s.name.clone(), img.clone());
    }
    Ok(images)
}

/// Builds (or finds) the image of every service that has a `build:`;
/// independent builds run together. Returns service -> image reference.
pub(super) async fn build_images(d: &Docker, repo: &Repo, order: &[&Service]) -> Result<HashMap<String, String>, Error> {
    let mut images = HashMap::new();
    let mut jobs = vec![];
    for s in order {
        let Some(b) = &s.build else { continue };
        let ctx = repo.root.join(&b.context);
        let tar = docker::context_tar(&ctx, &b.dockerfile)?;
        let args: HashMap<String, String> = b.args.iter().cloned().collect();
        // The hash covers the context (Dockerfile included), the
        // arguments and the identity of the base images they name.
        let mut sorted: Vec<_> = args.iter().collect();
        sorted.sort();
        let mut arg_parts: Vec<String> = vec![];
        for (k, v) in sorted {
            arg_parts.push(format!("{k}={v}"));
            arg_parts.push(docker::image_id(d, v).await.unwrap_or_default());
        }
        let mut refs: Vec<&[u8]> = vec![&tar, b.dockerfile.as_bytes()];
        refs.extend(arg_parts.iter().map(|p| p.as_bytes()));
        let hash = docker::sha256_hex(&refs);
        let tag = format!("monorepo-verify/{}:{}", s.name, &hash[..16]);
        images.insert(s.name.clone(), tag.clone());
        if docker::image_exists(d, &tag).await {
            eprintln!("  image  {:<12} cached ({tag})", s.name);
            continue;
        }
        let (name, df) = (s.name.clone(), b.dockerfile.clone());
        // No build label: the hash is in the tag, and a LABEL is one
        // more layer commit (seconds on fuse-overlayfs).
        let labels = HashMap::new();
        jobs.push(async move {
            let t = Instant::now();
            let r = docker::build(d, &tag, tar, &df, &args, labels).await;
            (name, tag, t.elapsed(), r)
        });
    }
    if !jobs.is_empty() {
        eprintln!("  image  building {} image(s) in parallel...", jobs.len());
    }
    let mut failed = vec![];
    for (name, tag, took, r) in futures_util::future::join_all(jobs).await {
        match r {
            Ok(()) => {
                eprintln!("  image  {name:<12} built in {:.1}s ({tag})", took.as_secs_f64());
                docker::remove_older_tags(d, &tag).await;
            }
            Err(log) => failed.push(format!("building `{name}` failed:\n{}", indent(&log))),
        }
    }
    if !failed.is_empty() {
        return Err(Diagnostic::error(failed.join("\n")));
    }
    Ok(images)
}

