//! Removing what verify runs left: everything labelled with a run id (or
//! with the id of a run whose process is gone): swarm services, containers,
//! networks, volumes, swarm secrets and configs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters as q;
use bollard::Docker;

use super::{HOST_LABEL, KEEP_LABEL, PID_LABEL, RUN_LABEL};

/// This machine's host name (empty if it cannot be read).
pub fn hostname() -> String {
    let mut b = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits, and the last byte stays 0 otherwise.
    let r = unsafe { libc::gethostname(b.as_mut_ptr() as *mut libc::c_char, b.len() - 1) };
    if r != 0 {
        return String::new();
    }
    String::from_utf8_lossy(&b[..b.iter().position(|c| *c == 0).unwrap_or(0)]).into_owned()
}

/// What `kill(pid, 0)` says about a process: 0 = it exists and we may
/// signal it; EPERM = it exists but belongs to another user (alive!);
/// ESRCH = gone.
pub fn alive_from_kill(ret: i32, errno: i32) -> bool {
    ret == 0 || errno == libc::EPERM
}

/// Whether the run that labelled an object may still be going: a run from
/// another host (or with no readable pid) is presumed alive and left alone;
/// on this host its pid decides. `probe(pid)` is `kill(pid, 0)` as
/// (return value, errno). Our own pid is a dead run's reused pid.
pub fn run_alive(
    pid: Option<&str>,
    host: Option<&str>,
    this_host: &str,
    this_pid: i32,
    probe: impl Fn(i32) -> (i32, i32),
) -> bool {
    if host.is_some_and(|h| h != this_host) {
        return true;
    }
    let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0) else {
        // No pid: not ours to judge.
        return true;
    };
    if pid == this_pid {
        return false;
    }
    let (ret, errno) = probe(pid);
    alive_from_kill(ret, errno)
}

fn kill0(pid: i32) -> (i32, i32) {
    // SAFETY: signal 0 only checks existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    (
        r,
        if r == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        },
    )
}

/// Whether process `pid` of this host exists: `kill(pid, 0)` succeeding
/// or failing with EPERM (another user's process is alive). The one test
/// both engines use for "is the run that made this still going"; a pid
/// that is not a single process (0, negative) is never judged dead.
pub fn pid_alive(pid: i32) -> bool {
    pid <= 0 || {
        let (ret, errno) = kill0(pid);
        alive_from_kill(ret, errno)
    }
}

/// Whether an object labelled by a verify run is what a dead run left: its
/// run's process is gone (see `run_alive`) and it is not part of a stack
/// kept with `verify --keep`, which stays until the user removes it.
pub fn is_leftover(
    labels: Option<&HashMap<String, String>>,
    this_host: &str,
    this_pid: i32,
    probe: impl Fn(i32) -> (i32, i32),
) -> bool {
    let l = |k: &str| labels.and_then(|l| l.get(k)).map(|s| s.as_str());
    l(KEEP_LABEL).is_none() && !run_alive(l(PID_LABEL), l(HOST_LABEL), this_host, this_pid, probe)
}

/// Removes every service, container, network, volume, secret and config labelled with `run`
/// (or, with `run = None`, those of runs whose process is gone).
pub async fn sweep(d: &Docker, run: Option<&str>) -> usize {
    let this_host = hostname();
    // Ours to remove: every object of `run`, or (no run) those whose run is gone.
    let ours = |labels: Option<&HashMap<String, String>>| -> bool {
        run.is_some() || is_leftover(labels, &this_host, std::process::id() as i32, kill0)
    };
    let filter = match run {
        Some(r) => format!("{RUN_LABEL}={r}"),
        None => RUN_LABEL.to_string(),
    };
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![filter]);
    let f = || Some(filters.clone());
    let mut removed = 0;
    // Swarm services first (their tasks' containers go with them); on an
    // engine in no swarm these lists fail, and there is nothing to remove.
    let svcs = d
        .list_services(Some(q::ListServicesOptions {
            filters: f(),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    let ids: Vec<String> = svcs
        .into_iter()
        .filter(|s| ours(s.spec.as_ref().and_then(|s| s.labels.as_ref())))
        .filter_map(|s| s.id)
        .collect();
    removed +=
        succeeded(futures_util::future::join_all(ids.iter().map(|id| d.delete_service(id))).await);
    removed += remove_containers_networks_volumes(d, &filters, &ours).await;
    // Secrets and configs can go once no service uses them.
    removed += sweep_secrets_and_configs(d, &filters, &ours).await;
    removed
}

type Labels = HashMap<String, String>;

/// How many of the removals answered Ok.
fn succeeded(rs: Vec<Result<(), bollard::errors::Error>>) -> usize {
    rs.iter().filter(|r| r.is_ok()).count()
}

/// The containers `ours` accepts among those `filters` lists, all at once,
/// each network once the containers on it are gone, then the volumes;
/// returns how many were removed.
async fn remove_containers_networks_volumes(
    d: &Docker,
    filters: &HashMap<String, Vec<String>>,
    ours: &dyn Fn(Option<&Labels>) -> bool,
) -> usize {
    let f = || Some(filters.clone());
    // Containers next, all at once (counted whether or not the removal
    // answered). Each network goes as soon as the containers on it are
    // gone: the daemon removes networks one at a time (about 0.2 s each
    // here), so they overlap the container removals instead of following
    // them all. Volumes follow every container.
    let (cs, nets) = tokio::join!(
        d.list_containers(Some(q::ListContainersOptions {
            all: true,
            filters: f(),
            ..Default::default()
        })),
        d.list_networks(Some(q::ListNetworksOptions { filters: f() })),
    );
    let cs: Vec<_> = cs
        .unwrap_or_default()
        .into_iter()
        .filter(|c| ours(c.labels.as_ref()) && c.id.is_some())
        .collect();
    let mut removed = cs.len();
    let opts = || {
        Some(q::RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        })
    };
    use futures_util::FutureExt;
    let gone: HashMap<&str, futures_util::future::Shared<_>> = cs
        .iter()
        .filter_map(|c| c.id.as_deref())
        .map(|id| {
            let r = d.remove_container(id, opts()).map(|_| ()).boxed().shared();
            (id, r)
        })
        .collect();
    let on = |net: &str| -> Vec<_> {
        cs.iter()
            .filter(|c| {
                c.network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .is_some_and(|n| n.contains_key(net))
            })
            .filter_map(|c| gone.get(c.id.as_deref()?).cloned())
            .collect()
    };
    let nets: Vec<(String, Vec<_>)> = nets
        .unwrap_or_default()
        .into_iter()
        .filter(|n| ours(n.labels.as_ref()))
        .filter_map(|n| {
            let waits = on(n.name.as_deref().unwrap_or(""));
            Some((n.id?, waits))
        })
        .collect();
    let nets = futures_util::future::join_all(nets.into_iter().map(|(id, waits)| async move {
        futures_util::future::join_all(waits).await;
        d.remove_network(&id).await
    }));
    let all_gone = futures_util::future::join_all(gone.values().cloned());
    let vols = async {
        all_gone.await;
        let vols = d
            .list_volumes(Some(q::ListVolumesOptions { filters: f() }))
            .await
            .ok()
            .and_then(|v| v.volumes)
            .unwrap_or_default();
        let names: Vec<String> = vols
            .into_iter()
            .filter(|v| ours(Some(&v.labels)))
            .map(|v| v.name)
            .collect();
        succeeded(
            futures_util::future::join_all(
                names
                    .iter()
                    .map(|n| d.remove_volume(n, None::<q::RemoveVolumeOptions>)),
            )
            .await,
        )
    };
    let (n, v) = tokio::join!(nets, vols);
    removed += succeeded(n) + v;
    removed
}

/// The secrets and configs `ours` accepts among those `filters` lists;
/// returns how many were removed.
async fn sweep_secrets_and_configs(
    d: &Docker,
    filters: &HashMap<String, Vec<String>>,
    ours: &dyn Fn(Option<&Labels>) -> bool,
) -> usize {
    let f = || Some(filters.clone());
    let mut removed = 0;
    let secrets = d
        .list_secrets(Some(q::ListSecretsOptions { filters: f() }))
        .await
        .unwrap_or_default();
    let ids: Vec<String> = secrets
        .into_iter()
        .filter(|s| ours(s.spec.as_ref().and_then(|s| s.labels.as_ref())))
        .filter_map(|s| s.id)
        .collect();
    removed +=
        succeeded(futures_util::future::join_all(ids.iter().map(|id| d.delete_secret(id))).await);
    let configs = d
        .list_configs(Some(q::ListConfigsOptions { filters: f() }))
        .await
        .unwrap_or_default();
    let ids: Vec<String> = configs
        .into_iter()
        .filter(|s| ours(s.spec.as_ref().and_then(|s| s.labels.as_ref())))
        .filter_map(|s| s.id)
        .collect();
    removed +=
        succeeded(futures_util::future::join_all(ids.iter().map(|id| d.delete_config(id))).await);
    removed
}

/// Sweeps `run` until `looks` checks in a row, 0.3 s apart, find nothing
/// of it (a create in flight when verify was interrupted may land after a
/// clear look), retrying for up to `budget` while something is left (the
/// daemon can refuse a network whose last endpoint it is still releasing;
/// an overlay network is in use until its service's tasks are gone). What
/// is left after that, as `kind name` lines.
pub async fn sweep_until_gone(
    d: &Docker,
    run: &str,
    budget: Duration,
    looks: usize,
) -> Vec<String> {
    let t = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut clear = 0;
    loop {
        sweep(d, Some(run)).await;
        let left = remaining_names(d, run).await;
        if left.is_empty() {
            clear += 1;
            if clear >= looks {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        clear = 0;
        if t.elapsed() >= budget {
            return left;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// Every object labelled with `run` that still exists, as `kind name`:
/// containers, networks, volumes, and (on a swarm manager) services,
/// secrets and configs.
async fn remaining_names(d: &Docker, run: &str) -> Vec<String> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{RUN_LABEL}={run}")]);
    let f = || Some(filters.clone());
    let (cs, ns, vs) = tokio::join!(
        d.list_containers(Some(q::ListContainersOptions {
            all: true,
            filters: f(),
            ..Default::default()
        })),
        d.list_networks(Some(q::ListNetworksOptions { filters: f() })),
        d.list_volumes(Some(q::ListVolumesOptions { filters: f() })),
    );
    // On an engine in no swarm these lists fail: there is nothing of them.
    let (ss, sc, cf) = tokio::join!(
        d.list_services(Some(q::ListServicesOptions {
            filters: f(),
            ..Default::default()
        })),
        d.list_secrets(Some(q::ListSecretsOptions { filters: f() })),
        d.list_configs(Some(q::ListConfigsOptions { filters: f() })),
    );
    let mut left = vec![];
    left.extend(cs.unwrap_or_default().into_iter().map(|c| {
        format!(
            "container {}",
            c.names
                .unwrap_or_default()
                .join(",")
                .trim_start_matches('/')
        )
    }));
    left.extend(
        ns.unwrap_or_default()
            .into_iter()
            .map(|n| format!("network {}", n.name.unwrap_or_default())),
    );
    left.extend(
        vs.ok()
            .and_then(|v| v.volumes)
            .unwrap_or_default()
            .into_iter()
            .map(|v| format!("volume {}", v.name)),
    );
    left.extend(ss.unwrap_or_default().into_iter().map(|v| {
        format!(
            "service {}",
            v.spec.and_then(|s| s.name).unwrap_or_default()
        )
    }));
    left.extend(
        sc.unwrap_or_default()
            .into_iter()
            .map(|v| format!("secret {}", v.spec.and_then(|s| s.name).unwrap_or_default())),
    );
    left.extend(
        cf.unwrap_or_default()
            .into_iter()
            .map(|v| format!("config {}", v.spec.and_then(|s| s.name).unwrap_or_default())),
    );
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_stack_is_never_a_leftover() {
        let labels = |keep: bool| {
            let mut m = HashMap::from([
                (PID_LABEL.to_string(), "4242".to_string()),
                (HOST_LABEL.to_string(), "h".to_string()),
            ]);
            if keep {
                m.insert(KEEP_LABEL.to_string(), "1".into());
            }
            m
        };
        let dead = |_| (-1, libc::ESRCH);
        let alive = |_| (0, 0);
        assert!(is_leftover(Some(&labels(false)), "h", 1, dead));
        assert!(!is_leftover(Some(&labels(true)), "h", 1, dead));
        assert!(!is_leftover(Some(&labels(false)), "h", 1, alive));
        assert!(!is_leftover(Some(&labels(true)), "h", 1, alive));
    }

    #[test]
    fn eperm_means_alive_esrch_means_gone() {
        use super::{alive_from_kill, run_alive};
        assert!(alive_from_kill(0, 0));
        assert!(
            alive_from_kill(-1, libc::EPERM),
            "another user's live run must not be swept"
        );
        assert!(!alive_from_kill(-1, libc::ESRCH));
        let eperm = |_| (-1, libc::EPERM);
        let esrch = |_| (-1, libc::ESRCH);
        assert!(run_alive(Some("42"), Some("me"), "me", 7, eperm));
        assert!(!run_alive(Some("42"), Some("me"), "me", 7, esrch));
        assert!(
            !run_alive(Some("42"), None, "me", 7, esrch),
            "runs from before the host label: the pid decides"
        );
        assert!(
            run_alive(Some("42"), Some("other"), "me", 7, esrch),
            "a pid of another host says nothing"
        );
        assert!(run_alive(None, Some("me"), "me", 7, esrch));
        assert!(
            run_alive(Some("-1"), Some("me"), "me", 7, esrch),
            "kill(-1, 0) would ask about every process"
        );
        assert!(
            !run_alive(Some("7"), Some("me"), "me", 7, eperm),
            "our own pid: a dead run's, reused"
        );
    }

    /// A process of another user is alive: a child that dropped to
    /// `nobody` asks about its root-owned parent (kill(2) says EPERM).
    /// Unprivileged, it asks about pid 1 (root's) without dropping.
    #[test]
    fn pid_alive_says_yes_for_another_users_process() {
        use super::pid_alive;
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(i32::MAX - 1), "no such pid");
        // SAFETY: the child only calls setgid/setuid/kill/_exit (no
        // allocation, no locks) before _exit.
        let parent = std::process::id() as i32;
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            let target = unsafe {
                if libc::getuid() == 0 {
                    if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                        libc::_exit(3);
                    }
                    parent
                } else {
                    1
                }
            };
            let eperm = unsafe { libc::kill(target, 0) } != 0;
            let code = match (eperm, pid_alive(target)) {
                (true, true) => 0,
                (true, false) => 1,
                (false, _) => 2,
            };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: EPERM taken for a dead process; 2: kill(2) did not say EPERM; 3: could not drop to nobody"
        );
    }
}
