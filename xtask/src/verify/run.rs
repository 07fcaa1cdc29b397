//! One verify run: its id, the labels on everything it creates, the
//! containers and networks it made, the secrets to mask in its output.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::docker::{self, HOST_LABEL, PID_LABEL, RUN_LABEL};
use crate::model::repo::Repo;
use crate::model::secrets::is_secret_name;

/// `XTASK_TRACE=1`: a line on stderr at each step of a run's lines of
/// work, `verify: trace <unix time in ns> <step>`, to lay beside `docker
/// events` (`bench/timeline.py` does): where the wall time goes.
pub(crate) fn trace(step: std::fmt::Arguments<'_>) {
    if tracing() {
        let ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        eprintln!("verify: trace {ns} {step}");
    }
}

/// Whether `XTASK_TRACE` is set, to any value (for a step whose line costs
/// work to make; pgseed's timings go by it too).
pub(crate) fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("XTASK_TRACE").is_some())
}

/// Wall time of each phase, for the report and the benchmarks.
#[derive(Default)]
pub(super) struct Phases(pub(super) Vec<(&'static str, f64)>);

impl Phases {
    pub(super) fn add(&mut self, name: &'static str, since: Instant) {
        self.0.push((name, since.elapsed().as_secs_f64()));
    }
    pub(super) fn push(&mut self, name: &'static str, d: Duration) {
        self.0.push((name, d.as_secs_f64()));
    }
    /// The run's last line, for every engine: the whole time and each
    /// phase's (`bench/run.py` reads it). Then the verdict, or the error.
    pub(super) fn finish(
        self,
        result: Result<crate::diag::Exit, crate::diag::Error>,
        t_all: Instant,
    ) -> Result<crate::diag::Exit, crate::diag::Error> {
        let code = result?;
        let breakdown: Vec<String> = self.0.iter().map(|(n, s)| format!("{n} {s:.1}s")).collect();
        eprintln!(
            "verify: {:.1}s ({})",
            t_all.elapsed().as_secs_f64(),
            breakdown.join(", ")
        );
        Ok(code)
    }
}

/// SIGINT and SIGTERM, listened to from the run's start: either ends the
/// body of every engine with an error, and the cleanup still runs.
pub(super) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn listen() -> Result<Signals, crate::diag::Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let on = |k| {
            signal(k).map_err(|e| {
                crate::diag::Diagnostic::error(format!("cannot install a signal handler: {e}"))
            })
        };
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
        })
    }
    /// The error of the first signal that comes.
    pub(super) async fn recv(&mut self) -> crate::diag::Error {
        let which = tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        };
        crate::diag::Diagnostic::error(format!("interrupted ({which})"))
    }
}

pub struct Run {
    pub id: String,
    pub(super) root: PathBuf,
    pub(super) d: Docker,
    /// compose service name -> container id
    pub(super) containers: BTreeMap<String, String>,
    /// compose network name -> docker network name
    pub(super) networks: BTreeMap<String, String>,
    pub(super) secrets: Vec<String>,
    /// Removals of finished probe containers, running in the background;
    /// awaited before the final sweep.
    pub(super) reaping: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Probe containers of matrix rows made ahead of the probe phase
    /// (source service -> container).
    pub(super) row_probes: std::sync::Mutex<HashMap<String, RowProbe>>,
    /// What the rows' probes read on stdin, as the stack starts.
    pub(super) feed: super::feed::Feed,
    /// The addresses and host ports every path is tried at, read once
    /// every container has started (the rows' specs are made from it then).
    pub(super) topology: std::sync::OnceLock<super::paths::Topology>,
    /// The stack Compose would run (verify/load.rs); empty for the swarm engine.
    pub(super) stack: crate::model::stack::Stack,
    /// `--keep`: everything is labelled so no later sweep takes it for a dead run's.
    pub(super) keep: bool,
}

/// A matrix row's probe container made ahead, attached to. `waits`: it is
/// also its service's readiness wait (`probe row <secs> <spec>`), started
/// then, its stdin handed to `Run::feed` (`input` None); otherwise the
/// probe phase starts it and writes its specs to `input`.
pub(super) struct RowProbe {
    pub id: String,
    pub waits: bool,
    pub io: super::attach::Attached,
    pub input: Option<super::attach::Input>,
}

impl Run {
    /// A new run: its id from our pid and the clock, and the values of
    /// every secret-looking variable, to mask in what we print.
    pub fn new(repo: &Repo, d: Docker) -> Run {
        let id = format!(
            "{:x}{:04x}",
            std::process::id(),
            (time::OffsetDateTime::now_utc().unix_timestamp() & 0xffff) as u16
        );
        let mut secrets = vec![];
        for s in &repo.compose.services {
            for (k, v) in repo.service_env(s) {
                if is_secret_name(&k) && v.len() >= 4 {
                    secrets.push(v);
                }
            }
        }
        Run {
            id,
            root: repo.root.clone(),
            d,
            containers: BTreeMap::new(),
            networks: BTreeMap::new(),
            secrets,
            reaping: Default::default(),
            row_probes: Default::default(),
            feed: Default::default(),
            topology: Default::default(),
            stack: Default::default(),
            keep: false,
        }
    }
    pub fn labels(&self) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (RUN_LABEL.to_string(), self.id.clone()),
            (PID_LABEL.to_string(), std::process::id().to_string()),
            (HOST_LABEL.to_string(), docker::hostname()),
        ]);
        if self.keep {
            l.insert(docker::KEEP_LABEL.to_string(), "1".into());
        }
        l
    }
    pub fn container(&self, service: &str) -> Option<String> {
        self.containers.get(service).cloned()
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Removes a container that has done its work, off the critical path.
    pub fn reap(&self, id: &str) {
        let (d, id) = (self.d.clone(), id.to_string());
        let h = tokio::spawn(async move {
            let opts = bollard::query_parameters::RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            let _ = d.remove_container(&id, Some(opts)).await;
        });
        self.reaping
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }
    /// Waits for the background removals.
    pub(super) async fn reaped(&self) {
        let handles: Vec<_> =
            std::mem::take(&mut *self.reaping.lock().unwrap_or_else(|e| e.into_inner()));
        futures_util::future::join_all(handles).await;
    }
    pub(super) fn name(&self, what: &str) -> String {
        format!("mr-{}-{what}", self.id)
    }
    /// Hides values of variables whose names look secret.
    pub fn mask(&self, s: &str) -> String {
        let mut s = s.to_string();
        for v in &self.secrets {
            s = s.replace(v.as_str(), "****");
        }
        s
    }
}
