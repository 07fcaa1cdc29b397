//! Images and containers through the Engine API: presence, ids, builds,
//! pruning older tags, logs.

use std::collections::HashMap;

use bollard::query_parameters as q;
use bollard::Docker;
use futures_util::StreamExt;

pub async fn image_exists(d: &Docker, tag: &str) -> bool {
    d.inspect_image(tag).await.is_ok()
}

pub async fn image_id(d: &Docker, tag: &str) -> Option<String> {
    d.inspect_image(tag).await.ok().and_then(|i| i.id)
}

/// Builds `tag` from a context tar unless an image of the same inputs is
/// there already. Returns whether it built. A failed build returns its output.
pub async fn build(
    d: &Docker,
    tag: &str,
    context: Vec<u8>,
    dockerfile: &str,
    args: &HashMap<String, String>,
    labels: HashMap<String, String>,
) -> Result<(), String> {
    let opts = q::BuildImageOptions {
        dockerfile: dockerfile.to_string(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(args.clone()),
        labels: Some(labels),
        ..Default::default()
    };
    let mut s = d.build_image(opts, None, Some(bollard::body_full(context.into())));
    let mut log = String::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(info) => {
                if let Some(t) = info.stream {
                    log.push_str(&t);
                }
                if let Some(e) = info.error_detail.and_then(|e| e.message) {
                    log.push_str(&e);
                    return Err(log);
                }
            }
            Err(e) => {
                log.push_str(&format!("\n{e}"));
                return Err(log);
            }
        }
    }
    Ok(())
}

/// Removes the other tags of `repo:tag`'s repository (earlier builds of the
/// same service), so the cache does not grow with every change. Images
/// still in use are left alone.
pub async fn remove_older_tags(d: &Docker, current: &str) {
    let Some((repo, _)) = current.split_once(':') else {
        return;
    };
    let mut filters = HashMap::new();
    filters.insert("reference".to_string(), vec![format!("{repo}:*")]);
    let images = d
        .list_images(Some(q::ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for img in images {
        for t in img.repo_tags.iter().filter(|t| t.as_str() != current) {
            let _ = d.remove_image(t, None::<q::RemoveImageOptions>, None).await;
        }
    }
}

/// The last `n` lines a container printed (stdout and stderr).
pub async fn logs(d: &Docker, id: &str, n: usize) -> String {
    let opts = q::LogsOptions {
        stdout: true,
        stderr: true,
        tail: n.to_string(),
        ..Default::default()
    };
    let mut s = d.logs(id, Some(opts));
    let mut out = String::new();
    while let Some(Ok(chunk)) = s.next().await {
        out.push_str(&chunk.to_string());
    }
    out
}
