//! One node of the local cluster: a container of the host engine that runs
//! Debian's `dockerd`, and the registry beside the nodes. What the host
//! engine needs to let a daemon run inside a container without
//! `--privileged` (which fails on a host whose bounding set lacks
//! CAP_SYS_RESOURCE) is decided here, once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HostConfig, HostConfigCgroupnsModeEnum,
    NetworkingConfig,
};

/// The host engine's objects of a cluster carry this label (value: its name).
pub const LABEL: &str = "monorepo.cluster";
/// `node` or `registry`.
pub const ROLE_LABEL: &str = "monorepo.cluster.role";
/// A node's storage driver, chosen when node 1 started.
pub const DRIVER_LABEL: &str = "monorepo.cluster.driver";
/// The registry, as the nodes name it (an alias on the cluster's network).
pub const REGISTRY: &str = "registry:5000";
/// Where a node's API socket is, inside the node; its folder is a bind
/// mount of a host folder, so the host reaches the node's engine directly.
const SOCKET_DIR: &str = "/run/node";

/// Storage drivers in the order they are tried on the bind-mounted
/// `/var/lib/docker`.
pub const DRIVERS: &[&str] = &["overlay2", "fuse-overlayfs", "vfs"];

/// The node's entry point: /sys and each cgroup v1 hierarchy writable
/// (a plain `remount,rw` of a hierarchy fails; `remount,bind,rw` works), no
/// default route (an `--internal` network still gives one, towards the host,
/// where other stacks publish ports), then dockerd on the shared socket.
const ENTRYPOINT: &str = r#"set -e
mount -o remount,rw /sys
mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
for d in /sys/fs/cgroup/*/; do
  [ -L "${d%/}" ] || mount -o remount,bind,rw "$d" 2>/dev/null || true
done
ip route del default 2>/dev/null || true
mkdir -p /run/node
rm -f /run/node/docker.sock
exec dockerd -H unix:///run/node/docker.sock -H unix:///var/run/docker.sock \
  --storage-driver "$1" --insecure-registry "$2" --log-level warn
"#;

/// The names of one cluster's objects on the host engine and on disk.
#[derive(Debug, Clone)]
pub struct Names {
    pub cluster: String,
    /// `target/xtask/cluster/<name>` under the repository.
    pub dir: PathBuf,
}

impl Names {
    pub fn new(root: &Path, cluster: &str) -> Names {
        Names {
            cluster: cluster.to_string(),
            dir: root.join("target/xtask/cluster").join(cluster),
        }
    }
    fn prefix(&self) -> String {
        format!("monorepo-cluster-{}", self.cluster)
    }
    pub fn network(&self) -> String {
        self.prefix()
    }
    pub fn node(&self, i: usize) -> String {
        format!("{}-node{i}", self.prefix())
    }
    pub fn registry(&self) -> String {
        format!("{}-registry", self.prefix())
    }
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}"))
    }
    /// The host path of node `i`'s API socket.
    pub fn socket(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("run/docker.sock")
    }
    pub fn labels(&self, role: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL.to_string(), self.cluster.clone()),
            (ROLE_LABEL.to_string(), role.to_string()),
        ])
    }
}

fn on_network(network: &str, alias: &str) -> NetworkingConfig {
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.to_string(),
            EndpointSettings {
                aliases: Some(vec![alias.to_string()]),
                ..Default::default()
            },
        )])),
    }
}

/// Node `i`'s container: its own cgroup namespace, every capability but
/// SYS_RESOURCE, no seccomp/AppArmor/masked paths, every device allowed,
/// `/var/lib/docker` and the socket folder bind-mounted from `n.node_dir(i)`.
pub fn node_spec(n: &Names, i: usize, image: &str, driver: &str) -> ContainerCreateBody {
    let dir = n.node_dir(i);
    let mut labels = n.labels("node");
    labels.insert(DRIVER_LABEL.to_string(), driver.to_string());
    let devices = (driver == "fuse-overlayfs").then(|| {
        vec![DeviceMapping {
            path_on_host: Some("/dev/fuse".into()),
            path_in_container: Some("/dev/fuse".into()),
            cgroup_permissions: Some("rwm".into()),
        }]
    });
    ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some(format!("node{i}")),
        cmd: Some(
            ["sh", "-c", ENTRYPOINT, "node", driver, REGISTRY]
                .map(String::from)
                .to_vec(),
        ),
        labels: Some(labels),
        host_config: Some(HostConfig {
            cap_add: Some(vec!["ALL".into()]),
            cap_drop: Some(vec!["SYS_RESOURCE".into()]),
            security_opt: Some(
                ["seccomp=unconfined", "apparmor=unconfined"]
                    .map(String::from)
                    .to_vec(),
            ),
            // `--security-opt systempaths=unconfined` is the CLI's: through
            // the API it is empty (not absent) masked and read-only paths.
            masked_paths: Some(vec![]),
            readonly_paths: Some(vec![]),
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
            device_cgroup_rules: Some(vec!["a *:* rwm".into()]),
            devices,
            binds: Some(vec![
                format!("{}:/var/lib/docker", dir.join("docker").display()),
                format!("{}:{SOCKET_DIR}", dir.join("run").display()),
            ]),
            network_mode: Some(n.network()),
            ..Default::default()
        }),
        networking_config: Some(on_network(&n.network(), &format!("node{i}"))),
        ..Default::default()
    }
}

/// The registry's configuration: the package's, without its htpasswd
/// authentication (the registry is reachable from the nodes only).
const REGISTRY_CONFIG: &str = "version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
";

/// The registry: Debian's `docker-registry` (distribution 2.8), storage in
/// the container.
pub fn registry_spec(n: &Names, image: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some("registry".into()),
        cmd: Some(
            [
                "sh",
                "-c",
                "printf '%s' \"$1\" > /etc/docker/registry/local.yml && exec /usr/bin/docker-registry serve /etc/docker/registry/local.yml",
                "registry",
                REGISTRY_CONFIG,
            ]
            .map(String::from)
            .to_vec(),
        ),
        labels: Some(n.labels("registry")),
        host_config: Some(HostConfig {
            network_mode: Some(n.network()),
            ..Default::default()
        }),
        networking_config: Some(on_network(&n.network(), "registry")),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_sockets_fit_a_sockaddr() {
        let n = Names::new(Path::new("/r"), "ci");
        assert_eq!(n.node(2), "monorepo-cluster-ci-node2");
        assert_eq!(n.registry(), "monorepo-cluster-ci-registry");
        assert_eq!(
            n.socket(1),
            Path::new("/r/target/xtask/cluster/ci/node1/run/docker.sock")
        );
        let s = node_spec(&n, 3, "img", "vfs");
        let h = s.host_config.unwrap();
        assert_eq!(h.cap_drop.unwrap(), vec!["SYS_RESOURCE".to_string()]);
        assert!(h.devices.is_none());
        assert_eq!(s.labels.unwrap()[LABEL], "ci");
        assert!(node_spec(&n, 1, "img", "fuse-overlayfs")
            .host_config
            .unwrap()
            .devices
            .is_some());
    }
}
