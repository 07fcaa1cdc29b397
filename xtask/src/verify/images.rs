//! The images of a verify run: the pulled ones must be present; the built
//! ones are cached by a hash of context, Dockerfile, args and base image ids.

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;

use super::report::indent;
use crate::diag::{Diagnostic, Error, Label};
use crate::docker;
use crate::docker::buildkit::{self, Builder};
use crate::model::compose::Service;
use crate::model::repo::Repo;

/// The images of the services that are not built here (Postgres, Redis):
/// they must be on the machine already, since verify does not pull.
pub(super) async fn pulled_images(
    d: &Docker,
    order: &[&Service],
) -> Result<HashMap<String, String>, Error> {
    let mut images = HashMap::new();
    for s in order.iter().filter(|s| s.build.is_none()) {
        let Some(img) = &s.image else {
            return Err(Diagnostic::error(format!(
                "service `{}` has neither build nor image",
                s.name
            ))
            .fix("give it an `image:` or a `build:`"));
        };
        if !docker::image_exists(d, img).await {
            return Err(Diagnostic::error(format!("image `{img}` of `{}` is not on this machine and verify does not pull", s.name))
                .fix(format!("`docker pull {img}`, or on a machine without a registry `cargo xtask images bootstrap`")));
        }
        images.insert(s.name.clone(), img.clone());
    }
    Ok(images)
}

/// Builds (or finds) the image of every service that has a `build:`;
/// independent builds run together, with `builder` (and, with `fallback`,
/// the classic builder if the daemon refuses BuildKit). Returns service ->
/// image reference.
pub(super) async fn build_images(
    d: &Docker,
    repo: &Repo,
    order: &[&Service],
    builder: Builder,
    fallback: bool,
) -> Result<HashMap<String, String>, Error> {
    let jobs = order
        .iter()
        .filter(|s| s.build.is_some())
        .map(|s| build_one(d, repo, s, builder, fallback, &|_| {}));
    let mut images = HashMap::new();
    let mut failed = vec![];
    for (name, r) in futures_util::future::join_all(jobs).await {
        match r {
            Ok(tag) => {
                images.insert(name, tag);
            }
            Err(why) => failed.push((name, why)),
        }
    }
    if !failed.is_empty() {
        let failed: Vec<(&str, String)> = failed
            .iter()
            .map(|(n, w)| (n.as_str(), w.clone()))
            .collect();
        return Err(build_failed(repo, &failed));
    }
    Ok(images)
}

/// The error of failed builds (service, what its build printed): every
/// why in the message, at the first one's `build:` line, the others'
/// lines as labels.
pub(super) fn build_failed(repo: &Repo, failed: &[(&str, String)]) -> Error {
    let cf = repo.compose_file.as_str();
    let line = |n: &str| {
        repo.compose
            .service(n)
            .map_or(0, |s| s.build.as_ref().map_or(s.line, |b| b.line))
    };
    let whys: Vec<&str> = failed.iter().map(|(_, w)| w.as_str()).collect();
    let first = failed.first().map_or(0, |(n, _)| line(n));
    let mut e = Diagnostic::error(whys.join("\n")).at(cf, first);
    for (n, _) in failed.iter().skip(1) {
        e = e.label(Label::at(cf, line(n), format!("`{n}` is built here")));
    }
    e.fix("fix the step the build output names, in the service's Dockerfile or build context")
}

/// Builds (or finds) the image of `s` (which has a `build:`), cached by
/// the hash of what it is built from. Returns the service and its image
/// reference, or what the failed build printed. `decided(building)` is
/// called once, as soon as it is known whether the image must be built.
pub(super) async fn build_one(
    d: &Docker,
    repo: &Repo,
    s: &Service,
    builder: Builder,
    fallback: bool,
    decided: &(dyn Fn(bool) + Sync),
) -> (String, Result<String, String>) {
    let Some(b) = &s.build else {
        decided(false);
        return (s.name.clone(), Err(format!("`{}` has no build:", s.name)));
    };
    let ctx = repo.root.join(&b.context);
    let tar = match docker::context_tar(&ctx, &b.dockerfile) {
        Ok(t) => t,
        Err(e) => {
            decided(false);
            return (
                s.name.clone(),
                Err(format!("building `{}` failed: {e}", s.name)),
            );
        }
    };
    let args: HashMap<String, String> = b.args.iter().cloned().collect();
    // The hash covers the context (Dockerfile included), the arguments and
    // the identity of the base images they name; it does not depend on the
    // builder, so either finds the other's.
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
    if docker::image_exists(d, &tag).await {
        decided(false);
        eprintln!("  image  {:<12} cached ({tag})", s.name);
        return (s.name.clone(), Ok(tag));
    }
    decided(true);
    eprintln!(
        "  image  {:<12} building with {}",
        s.name,
        if builder == Builder::BuildKit {
            "BuildKit"
        } else {
            "the classic builder"
        }
    );
    let t = Instant::now();
    // One line per finished step (BuildKit); the builder's own bookkeeping
    // steps ([internal] ...) are left out.
    let name = s.name.clone();
    let mut on_step = move |st: &buildkit::Step| {
        if st.name.starts_with("[internal]") {
            return;
        }
        let how = match (&st.error, st.cached) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, true) => "cached".to_string(),
            (None, false) => format!("{:.1}s", st.seconds),
        };
        eprintln!("  image  {name:<12} {} {how}", st.name);
    };
    // No build label: the hash is in the tag, and a LABEL is one more layer
    // commit (seconds on fuse-overlayfs, classic builder).
    match buildkit::build_image(
        d,
        builder,
        fallback,
        &tag,
        tar,
        &b.dockerfile,
        &args,
        HashMap::new(),
        &mut on_step,
    )
    .await
    {
        Ok(_) => {
            eprintln!(
                "  image  {:<12} built in {:.1}s ({tag})",
                s.name,
                t.elapsed().as_secs_f64()
            );
            docker::remove_older_tags(d, &tag).await;
            (s.name.clone(), Ok(tag))
        }
        Err(log) => (
            s.name.clone(),
            Err(format!("building `{}` failed:\n{}", s.name, indent(&log))),
        ),
    }
}
