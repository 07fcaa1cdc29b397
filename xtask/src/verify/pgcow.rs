//! Postgres's data directory as a copy-on-write overlay over its seed.
//!
//! Unpacking the cached seed (pgseed.rs) into each run's fresh volume costs
//! the daemon's untar about 0.6 ms an entry (1,594 entries: 0.9 s alone,
//! 2-2.5 s beside the rest of a starting stack), on the critical path. So
//! the seed is unpacked once into a volume of its own, and each run's data
//! volume is a `local` volume of type overlay: that seed as the read-only
//! lower layer, and an upper and a work folder in a volume of the run. The
//! paths are the daemon's own volume folders, so this works wherever the
//! daemon can mount overlayfs; whether it can is tried once per seed, when
//! it is unpacked, and remembered beside the seed's tar. Anything else
//! (another mount layout, an engine without overlayfs) unpacks as before.
//!
//! The invariants of the seed hold: the volume is keyed by the tar (its
//! path, so a new key is a new volume); a fill killed halfway leaves a
//! volume without its record, which the next run removes and fills again;
//! two runs take turns on one key (a lock file beside the tar); a seed
//! volume in use by a run is never removed, because the run's holder
//! container keeps it mounted (the daemon refuses to remove it) until the
//! run's own cleanup; and a seed volume whose tar is gone (pruned, or the
//! checkout deleted) is removed by the next run on this host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters as q;
use bollard::Docker;

use super::probe;
use super::run::Run;
use crate::docker::{self, HOST_LABEL};

/// The label on a seed volume: the absolute path of the tar it holds.
const TAR_LABEL: &str = "monorepo.verify.pg-seed";

/// The run's data volume `volume` (created, unused) made a copy-on-write
/// overlay over the seed `tar` (whose top folder is `base`, PGDATA's last
/// part). Err with why when it cannot be; the caller unpacks then.
pub(super) async fn attach(
    run: &Run,
    tar: &Path,
    base: &str,
    volume: &str,
    probe_image: &str,
) -> Result<(), String> {
    if std::env::var("XTASK_SEED_COW").as_deref() == Ok("0") {
        return Err("off (XTASK_SEED_COW=0)".into());
    }
    if base.is_empty() || base.contains([',', ':', '\\', '/']) || base.contains(char::is_whitespace)
    {
        return Err(format!(
            "PGDATA's last part `{}` cannot be written in overlay options",
            base.escape_debug()
        ));
    }
    let d = &run.d;
    let seed = {
        let _turn = take_turn(tar).await?;
        let owner = top_owner(tar, base)?;
        let seed = seed_volume(run, tar, base, probe_image, owner).await?;
        // Mounted by a container of this run from here on: no other run's
        // pruning can remove it while this run lives.
        holder(run, &seed, "pgcow", owner).await?;
        seed
    };
    let lower = mountpoint(d, &seed).await?;
    let cow = mountpoint(d, &run.name("pgcow")).await?;
    let labels = d
        .inspect_volume(volume)
        .await
        .map_err(|e| format!("inspecting {volume}: {e}"))?
        .labels;
    d.remove_volume(volume, None::<q::RemoveVolumeOptions>)
        .await
        .map_err(|e| format!("replacing {volume}: {e}"))?;
    let opts = overlay_options(&format!("{lower}/{base}"), &cow);
    let made = d
        .create_volume(VolumeCreateRequest {
            name: Some(volume.to_string()),
            driver: Some("local".into()),
            driver_opts: Some(opts),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await;
    if let Err(e) = made {
        // Put the plain volume back, for the unpacking.
        d.create_volume(VolumeCreateRequest {
            name: Some(volume.to_string()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("recreating {volume}: {e}"))?;
        return Err(format!("creating the overlay volume {volume}: {e}"));
    }
    Ok(())
}

/// The driver options of a `local` volume that mounts an overlay of
/// `lower` with its upper and work folders under `cow`.
fn overlay_options(lower: &str, cow: &str) -> HashMap<String, String> {
    HashMap::from([
        ("type".into(), "overlay".into()),
        ("device".into(), "overlay".into()),
        (
            "o".into(),
            format!("lowerdir={lower},upperdir={cow}/upper,workdir={cow}/work"),
        ),
    ])
}

/// What is remembered beside the tar once its volume is filled: the volume
/// (name and creation time: a volume of that name made since is another
/// one) and whether this daemon mounted an overlay of it.
#[derive(Debug, PartialEq)]
struct Record {
    volume: String,
    created: String,
    overlay: bool,
    /// The tar's length: a tar changed since (cut short, replaced) is not
    /// what the volume holds.
    len: u64,
}

impl Record {
    fn path(tar: &Path) -> PathBuf {
        tar.with_extension("cow")
    }
    fn read(tar: &Path) -> Option<Record> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Record::path(tar)).ok()?).ok()?;
        Some(Record {
            volume: v["volume"].as_str()?.to_string(),
            created: v["created"].as_str()?.to_string(),
            overlay: v["overlay"].as_bool()?,
            len: v["len"].as_u64()?,
        })
    }
    /// Written whole or not at all (a temporary file, renamed).
    fn write(&self, tar: &Path) -> Result<(), String> {
        let p = Record::path(tar);
        // Named as pgseed.rs's temporaries, so its pruning removes a dead run's.
        let tmp = p.with_file_name(format!(
            ".{}.tmp-{}",
            p.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let v = serde_json::json!({"volume": self.volume, "created": self.created, "overlay": self.overlay, "len": self.len});
        std::fs::write(&tmp, v.to_string()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &p).map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// The seed's volume name: from the tar's path (a new key or another
/// checkout is another volume).
fn volume_name(tar: &Path) -> String {
    let h = docker::sha256_hex(&[tar.as_os_str().as_encoded_bytes()]);
    format!("xtask-pg-seed-{}", &h[..16])
}

/// Runs of one seed take turns: an exclusive lock on `<tar>.lock`, waited
/// for without blocking the run's other lines of work.
async fn take_turn(tar: &Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let p = tar.with_extension("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    for _ in 0..1200 {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("another run has held {} for 60 s", p.display()))
}

async fn mountpoint(d: &Docker, volume: &str) -> Result<String, String> {
    let v = d
        .inspect_volume(volume)
        .await
        .map_err(|e| format!("inspecting {volume}: {e}"))?;
    if v.mountpoint.is_empty() {
        return Err(format!("the daemon names no folder for {volume}"));
    }
    Ok(v.mountpoint)
}

/// The seed's volume, filled from the tar if it is not (or if a fill was
/// cut short). Err when this daemon cannot mount an overlay of it.
async fn seed_volume(
    run: &Run,
    tar: &Path,
    base: &str,
    image: &str,
    owner: Owner,
) -> Result<String, String> {
    let d = &run.d;
    let name = volume_name(tar);
    let found = d.inspect_volume(&name).await.ok();
    let len = std::fs::metadata(tar)
        .map_err(|e| format!("{}: {e}", tar.display()))?
        .len();
    if let (Some(v), Some(r)) = (&found, Record::read(tar)) {
        if r.volume == name && Some(&r.created) == v.created_at.as_ref() && r.len == len {
            return if r.overlay {
                Ok(name)
            } else {
                Err("this engine could not mount an overlay of the seed (tried when it was unpacked)".into())
            };
        }
    }
    if found.is_some() {
        // No record of it: a fill that was cut short, or another daemon's.
        d.remove_volume(&name, None::<q::RemoveVolumeOptions>)
            .await
            .map_err(|e| format!("removing the unfinished {name}: {e}"))?;
    }
    let _ = std::fs::remove_file(Record::path(tar));
    let labels = HashMap::from([
        (TAR_LABEL.to_string(), tar.display().to_string()),
        (HOST_LABEL.to_string(), docker::hostname()),
    ]);
    let v = d
        .create_volume(VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating {name}: {e}"))?;
    let filler = helper(
        run,
        image,
        "pgseed-fill",
        vec![format!("{name}:/seed")],
        vec![],
    )
    .await?;
    let r = upload_tar(d, &filler, tar).await;
    run.reap(&filler);
    r?;
    super::pgseed::crash_point("filling");
    let overlay = match try_overlay(run, &name, base, image, owner).await {
        Ok(()) => true,
        Err(why) => {
            eprintln!(
                "  seed   postgres     no copy-on-write data directory on this engine: {why}"
            );
            false
        }
    };
    Record {
        volume: name.clone(),
        created: v.created_at.unwrap_or_default(),
        overlay,
        len,
    }
    .write(tar)?;
    if overlay {
        Ok(name)
    } else {
        Err("this engine cannot mount an overlay of the seed".into())
    }
}

async fn upload_tar(d: &Docker, id: &str, tar: &Path) -> Result<(), String> {
    let f = std::fs::File::open(tar).map_err(|e| format!("{}: {e}", tar.display()))?;
    d.upload_to_container(
        id,
        Some(q::UploadToContainerOptions {
            path: "/seed".into(),
            ..Default::default()
        }),
        bollard::body_try_stream(docker::file_chunks(f)),
    )
    .await
    .map_err(|e| format!("unpacking {} into its volume: {e}", tar.display()))
}

/// Whether the daemon mounts an overlay of the seed: a throwaway upper
/// folder and overlay volume, and a container that starts with it mounted
/// and sees the seed's PG_VERSION through it.
async fn try_overlay(
    run: &Run,
    seed: &str,
    base: &str,
    image: &str,
    owner: Owner,
) -> Result<(), String> {
    let d = &run.d;
    let cow = run.name("pgcow-try");
    let ov = run.name("pgcow-try-ov");
    let hold = holder(run, seed, "pgcow-try", owner).await?;
    let opts = overlay_options(
        &format!("{}/{base}", mountpoint(d, seed).await?),
        &mountpoint(d, &cow).await?,
    );
    d.create_volume(VolumeCreateRequest {
        name: Some(ov.clone()),
        driver: Some("local".into()),
        driver_opts: Some(opts),
        labels: Some(run.labels()),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating {ov}: {e}"))?;
    let look = helper(
        run,
        image,
        "pgcow-look",
        vec![format!("{ov}:/ov:ro")],
        vec!["exists".into(), "/ov/PG_VERSION".into()],
    )
    .await?;
    let r = finished(d, &look, "mounting the overlay").await;
    // The throwaway volumes go with the run's cleanup (they carry its labels).
    run.reap(&hold);
    run.reap(&look);
    r
}

/// The owner, group and mode of the seed's top folder (PGDATA), from the
/// tar's first entry: the overlay's root shows its upper folder's, and
/// Postgres refuses a data directory that is not its own with mode 0700
/// or 0750.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

fn top_owner(tar: &Path, base: &str) -> Result<Owner, String> {
    use std::io::Read;
    let mut h = [0u8; 512];
    std::fs::File::open(tar)
        .and_then(|mut f| f.read_exact(&mut h))
        .map_err(|e| format!("{}: {e}", tar.display()))?;
    parse_top(&h, base)
        .ok_or_else(|| format!("{} does not start with the folder `{base}/`", tar.display()))
}

/// The first header of a ustar archive, when it is the folder `base/`.
fn parse_top(h: &[u8; 512], base: &str) -> Option<Owner> {
    let field = |off: usize, len: usize| {
        let s = std::str::from_utf8(&h[off..off + len]).ok()?;
        u32::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()
    };
    let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
    let name = std::str::from_utf8(&h[..name_end]).ok()?;
    let dir = h[156] == b'5' && name.trim_start_matches("./").trim_end_matches('/') == base;
    dir.then_some(Owner {
        mode: field(100, 8)? & 0o777,
        uid: field(108, 8)?,
        gid: field(116, 8)?,
    })
}

/// A local image of two folders, `/cow/upper` (owned as `o`) and
/// `/cow/work`: a container of it made with an empty volume at `/cow`
/// fills that volume with them, owners included, as the daemon creates
/// the container, without starting it (no container start on Postgres's
/// line of work). Imported once per owner; a few hundred bytes.
async fn cow_image(d: &Docker, o: Owner) -> Result<String, String> {
    let tag = format!("xtask-pg-cow:{}-{}-{:o}", o.uid, o.gid, o.mode);
    if docker::image_exists(d, &tag).await {
        return Ok(tag);
    }
    let mut t = docker::Tar::default();
    t.dir("cow", 0o755, 0);
    t.dir_owned("cow/upper", o.mode, o.uid, o.gid);
    t.dir("cow/work", 0o700, 0);
    let (repo, name) = tag.split_once(':').unwrap_or((&tag, "latest"));
    let opts = q::CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(name.into()),
        ..Default::default()
    };
    let mut s = d.create_image(
        Some(opts),
        Some(bollard::body_full(t.finish().into())),
        None,
    );
    while let Some(r) = futures_util::StreamExt::next(&mut s).await {
        r.map_err(|e| format!("importing {tag}: {e}"))?;
    }
    Ok(tag)
}

/// The run's volume `name` holding the upper and work folders, and the
/// container that filled it (created, never started). It also mounts the
/// seed, so while it exists the daemon refuses to remove the seed; it
/// carries the run's labels and goes with the run's cleanup.
async fn holder(run: &Run, seed: &str, name: &str, owner: Owner) -> Result<String, String> {
    let d = &run.d;
    let image = cow_image(d, owner).await?;
    let cow = run.name(name);
    d.create_volume(VolumeCreateRequest {
        name: Some(cow.clone()),
        labels: Some(run.labels()),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating {cow}: {e}"))?;
    let mut labels = run.labels();
    labels.insert("monorepo.verify.seed".into(), "postgres".into());
    let id = d
        .create_container(
            Some(q::CreateContainerOptions {
                name: Some(cow.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image),
                cmd: Some(vec!["/none".into()]),
                labels: Some(labels),
                host_config: Some(HostConfig {
                    binds: Some(vec![format!("{seed}:/seed:ro"), format!("{cow}:/cow")]),
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("creating {cow}: {e}"))?
        .id;
    Ok(id)
}

/// A container of the probe image, as root with only the capability
/// `exists` needs (to look into a folder that is another user's), no
/// network; started unless `cmd` is empty.
async fn helper(
    run: &Run,
    image: &str,
    name: &str,
    binds: Vec<String>,
    cmd: Vec<String>,
) -> Result<String, String> {
    let d = &run.d;
    let mut labels = run.labels();
    labels.insert("monorepo.verify.seed".into(), "postgres".into());
    let start = !cmd.is_empty();
    let name = run.name(name);
    let id = d
        .create_container(
            Some(q::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image.to_string()),
                user: Some("0:0".into()),
                cmd: Some(if start {
                    cmd
                } else {
                    vec!["exists".into(), "/".into()]
                }),
                labels: Some(labels),
                host_config: Some(HostConfig {
                    binds: Some(binds),
                    network_mode: Some("none".into()),
                    cap_drop: Some(vec!["ALL".into()]),
                    cap_add: Some(vec!["DAC_READ_SEARCH".into()]),
                    security_opt: Some(vec!["no-new-privileges".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("creating {name}: {e}"))?
        .id;
    if start {
        d.start_container(&id, None::<q::StartContainerOptions>)
            .await
            .map_err(|e| {
                format!(
                    "{what}: starting {name}: {e}",
                    what = "the copy-on-write data directory"
                )
            })?;
    }
    Ok(id)
}

/// Waits for the helper `id` to exit; Err with its output unless it exits 0.
async fn finished(d: &Docker, id: &str, what: &str) -> Result<(), String> {
    match probe::exited(d, id).await {
        Some(0) => Ok(()),
        code => Err(format!(
            "{what}: exit code {code:?}: {}",
            probe::stdout_of(d, id).await.trim()
        )),
    }
}

/// Removes this host's seed volumes whose tar is gone (pruned, or its
/// checkout deleted). One in use by a run is refused by the daemon, and
/// kept.
pub(super) async fn prune(d: &Docker) {
    let filters = HashMap::from([("label".to_string(), vec![TAR_LABEL.to_string()])]);
    let Ok(list) = d
        .list_volumes(Some(q::ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
    else {
        return;
    };
    let host = docker::hostname();
    for v in list.volumes.unwrap_or_default() {
        let here = v.labels.get(HOST_LABEL) == Some(&host);
        let tar = v.labels.get(TAR_LABEL).map(PathBuf::from);
        if here && tar.is_some_and(|t| !t.exists()) {
            let _ = d
                .remove_volume(&v.name, None::<q::RemoveVolumeOptions>)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_top_folder_gives_the_upper_folders_owner() {
        let mut t = docker::Tar::default();
        t.dir_owned("data", 0o700, 102, 104);
        t.file(
            "data/PG_VERSION",
            b"15
",
            0o600,
            102,
        );
        let bytes = t.finish();
        let h: &[u8; 512] = bytes[..512].try_into().unwrap();
        assert_eq!(
            parse_top(h, "data"),
            Some(Owner {
                uid: 102,
                gid: 104,
                mode: 0o700
            })
        );
        // Another top folder, or a file first: no owner to copy.
        assert_eq!(parse_top(h, "pgdata"), None);
        let f: &[u8; 512] = bytes[512..1024].try_into().unwrap();
        assert_eq!(parse_top(f, "data"), None);
    }

    #[test]
    fn the_overlay_options_name_the_seed_below_and_the_runs_folders_above() {
        let o = overlay_options("/v/seed/_data/data", "/v/cow/_data");
        assert_eq!(o["type"], "overlay");
        assert_eq!(o["device"], "overlay");
        assert_eq!(
            o["o"],
            "lowerdir=/v/seed/_data/data,upperdir=/v/cow/_data/upper,workdir=/v/cow/_data/work"
        );
    }

    #[test]
    fn a_record_is_read_back_as_written_and_a_torn_one_is_none() {
        let dir = std::env::temp_dir().join(format!("pgcow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tar = dir.join("k.tar");
        let r = Record {
            volume: volume_name(&tar),
            created: "2026-12-06T16:00:00Z".into(),
            overlay: true,
            len: 1594,
        };
        r.write(&tar).unwrap();
        assert_eq!(Record::read(&tar), Some(r));
        std::fs::write(Record::path(&tar), "{\"volume\":\"x\"").unwrap();
        assert_eq!(Record::read(&tar), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_tar_path_has_its_own_volume() {
        let a = volume_name(Path::new("/r1/target/xtask/pg-seed/k.tar"));
        let b = volume_name(Path::new("/r2/target/xtask/pg-seed/k.tar"));
        assert_ne!(a, b);
        assert!(a.starts_with("xtask-pg-seed-") && a.len() == 30, "{a}");
    }
}

/// Against the daemon (`--features docker`): pruning keeps a seed volume
/// that a container mounts, and removes it once none does.
#[cfg(all(test, feature = "docker"))]
mod engine_tests {
    use super::*;

    #[test]
    fn a_seed_volume_in_use_is_kept_and_removed_once_unused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let d = docker::connect().await.unwrap();
            // A tar that does not exist: its seed volume is stale.
            let tar = std::env::temp_dir().join(format!("pgcow-prune-{}.tar", std::process::id()));
            let name = volume_name(&tar);
            let labels = HashMap::from([
                (TAR_LABEL.to_string(), tar.display().to_string()),
                (HOST_LABEL.to_string(), docker::hostname()),
            ]);
            d.create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .unwrap();
            let image = cow_image(
                &d,
                Owner {
                    uid: 0,
                    gid: 0,
                    mode: 0o700,
                },
            )
            .await
            .unwrap();
            let holder = d
                .create_container(
                    None::<q::CreateContainerOptions>,
                    ContainerCreateBody {
                        image: Some(image),
                        cmd: Some(vec!["/none".into()]),
                        host_config: Some(HostConfig {
                            binds: Some(vec![format!("{name}:/seed:ro")]),
                            network_mode: Some("none".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .id;
            prune(&d).await;
            let kept = d.inspect_volume(&name).await.is_ok();
            d.remove_container(&holder, None::<q::RemoveContainerOptions>)
                .await
                .unwrap();
            prune(&d).await;
            let gone = d.inspect_volume(&name).await.is_err();
            let _ = d.remove_volume(&name, None::<q::RemoveVolumeOptions>).await;
            assert!(kept, "a seed volume a container mounts was pruned");
            assert!(gone, "a seed volume whose tar is gone was kept once unused");
        });
    }
}
