//! One verify run: its id, the labels on everything it creates, the
//! containers and networks it made, the secrets to mask in its output.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bollard::Docker;

use crate::docker::{PID_LABEL, RUN_LABEL};

/// Wall time of each phase, for the report and the benchmarks.
#[derive(Default)]
pub(super) struct Phases(pub(super) Vec<(&'static str, f64)>);

impl Phases {
    pub(super) fn add(&mut self, name: &'static str, since: Instant) {
        self.0.push((name, since.elapsed().as_secs_f64()));
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
}

impl Run {
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(RUN_LABEL.to_string(), self.id.clone()), (PID_LABEL.to_string(), std::process::id().to_string())])
    }
    pub fn container(&self, service: &str) -> Option<String> {
        self.containers.get(service).cloned()
    }
    pub fn root(&self) -> &Path {
        &self.root
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

pub fn is_secret_name(k: &str) -> bool {
    let k = k.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "PASSWD", "API_KEY", "PRIVATE_KEY"].iter().any(|p| k.contains(p))
}

