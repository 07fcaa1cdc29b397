//! Every path a packet can take from one service's namespace to another
//! service, beyond its name: the target's address on each network the
//! source is not on, and the host, where the target's published ports
//! listen (the gateway of each of the source's networks and the default
//! bridge's address). A port published on all interfaces is open through
//! the host to every container, whatever the networks say: the path that
//! used to make "must not connect" a statement about name resolution only.
//!
//! What each path must do (`expected`):
//! - by name: the source shares a network with the target (the name cell);
//! - by address on a network the source is not on: never;
//! - through the host: only to a port bound on all interfaces (or on that
//!   very address) of a service that may be reached from the network
//!   (`Service::network_reach`: NGINX, or `monorepo.reach: "network"`);
//!   anything else connecting there is a leak, reported with its fix;
//! - `network_mode: host`: the host's own namespace reaches every bridge
//!   address and every published port (loopback included): all expected;
//! - `network_mode: none`: nothing.
//!
//! Probes are sent only to the run's own containers' addresses and to the
//! host ports the run's own containers were given (ephemeral ones), never
//! to another port of a gateway, where other stacks may publish theirs.

use std::collections::BTreeMap;

use bollard::query_parameters as q;

use super::matrix::Target;
use super::run::Run;
use crate::model::compose::{all_interfaces, Compose};
use crate::model::stack::Stack;

/// A network's gateway (the host's address on it): the one its IPAM
/// config names, else the first address of its IPv4 subnet, which is what
/// the daemon gives a bridge without one. Inspecting the default bridge
/// named no gateway on this machine's daemon as it booted, though docker0
/// had 172.17.0.1 (and did after a restart): without the fallback, the
/// paths through it were never tried.
fn gateway(config: &[bollard::models::IpamConfig]) -> Option<String> {
    if let Some(g) = config.iter().find_map(|c| c.gateway.clone()) {
        return Some(g);
    }
    config.iter().find_map(|c| {
        let (addr, len) = c.subnet.as_deref()?.split_once('/')?;
        let (addr, len): (std::net::Ipv4Addr, u32) = (addr.parse().ok()?, len.parse().ok()?);
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        (len < 31).then(|| std::net::Ipv4Addr::from((u32::from(addr) & mask) + 1).to_string())
    })
}

/// The addresses the run's containers and networks were given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Topology {
    /// service -> (network key, IPv4 address)
    pub addrs: BTreeMap<String, Vec<(String, String)>>,
    /// network key -> its gateway (the host's address on it)
    pub gateways: BTreeMap<String, String>,
    /// The default bridge's gateway (`docker0`), where Docker's published
    /// ports also listen.
    pub bridge_gw: Option<String>,
    /// The networks whose addresses the host routes to a local bridge (a
    /// bridge network that is not `internal`). Only these addresses are
    /// probed from elsewhere: a packet to an overlay's or an internal
    /// network's address from outside it is not dropped on this machine but
    /// follows the host's default route off it, where no probe may go.
    pub routed: std::collections::BTreeSet<String>,
    /// service -> its container's start (`StartedAt`, restart count), when
    /// it runs and is not restarting: a container that restarts between two
    /// reads changes this, and may come back with other addresses.
    pub runs: BTreeMap<String, (String, i64)>,
    /// service -> (container port, protocol, host IP as published, host port)
    pub published: BTreeMap<String, Vec<(u16, String, String, u16)>>,
}

/// Reads the topology from the engine, once every container has started.
pub async fn topology(run: &Run) -> Topology {
    topology_of(run, &run.containers).await
}

/// `topology` of `containers` (service -> container id): the run's own
/// are known only once the stack has started.
pub async fn topology_of(run: &Run, containers: &BTreeMap<String, String>) -> Topology {
    let d = &run.d;
    let mut t = Topology::default();
    let gateway_of = |n: bollard::models::NetworkInspect| {
        let config = n.ipam.and_then(|i| i.config).unwrap_or_default();
        gateway(&config)
    };
    // A task on an overlay reaches its node through `docker_gwbridge` (the
    // overlay's own gateway is inside the overlay, not the host).
    // Every inspect at once: on the critical path, between readiness and
    // the probes.
    let net = |name: String| async move {
        d.inspect_network(&name, None::<q::InspectNetworkOptions>)
            .await
            .ok()
    };
    let (gwbridge, bridge, nets, infos) = tokio::join!(
        net("docker_gwbridge".into()),
        net("bridge".into()),
        futures_util::future::join_all(run.networks.values().map(|n| net(n.clone()))),
        futures_util::future::join_all(containers.values().map(|cid| async move {
            d.inspect_container(cid, None::<q::InspectContainerOptions>)
                .await
                .ok()
        })),
    );
    let gwbridge = gwbridge.and_then(gateway_of);
    for (key, n) in run.networks.keys().zip(nets) {
        if let Some(n) = n {
            let overlay = n.driver.as_deref() == Some("overlay");
            if n.driver.as_deref() == Some("bridge") && n.internal != Some(true) {
                t.routed.insert(key.clone());
            }
            let gw = if overlay {
                gwbridge.clone()
            } else {
                gateway_of(n)
            };
            if let Some(gw) = gw {
                t.gateways.insert(key.clone(), gw);
            }
        }
    }
    t.bridge_gw = bridge.and_then(gateway_of);
    let by_name: BTreeMap<&String, &String> = run.networks.iter().map(|(k, v)| (v, k)).collect();
    for (svc, info) in containers.keys().zip(infos) {
        if let Some(info) = info {
            t.add_container(svc, info, &by_name);
        }
    }
    // One entry a host port.
    for v in t.published.values_mut() {
        v.sort_by(|a, b| (a.0, &a.1, a.3, &a.2).cmp(&(b.0, &b.1, b.3, &b.2)));
        v.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.3 == b.3);
    }
    t
}

impl Topology {
    /// One container's start, addresses and published host ports.
    fn add_container(
        &mut self,
        svc: &str,
        info: bollard::models::ContainerInspectResponse,
        by_name: &BTreeMap<&String, &String>,
    ) {
        if let Some(st) = info
            .state
            .as_ref()
            .filter(|st| st.running == Some(true) && st.restarting != Some(true))
        {
            self.runs.insert(
                svc.to_string(),
                (
                    st.started_at.clone().unwrap_or_default(),
                    info.restart_count.unwrap_or(0),
                ),
            );
        }
        let Some(ns) = info.network_settings else {
            return;
        };
        let addrs = self.addrs.entry(svc.to_string()).or_default();
        for (net, ep) in ns.networks.unwrap_or_default() {
            if let (Some(key), Some(ip)) = (by_name.get(&net), ep.ip_address) {
                if !ip.is_empty() {
                    addrs.push(((*key).clone(), ip));
                }
            }
        }
        // In the networks' order, whatever order the daemon's map gave: a
        // path's id is its place in the list, and the rows' specs are made
        // from one read and their cells matched from another.
        addrs.sort();
        if addrs.is_empty() {
            self.addrs.remove(svc);
        }
        for (port, bindings) in ns.ports.unwrap_or_default() {
            let (p, proto) = port.split_once('/').unwrap_or((&port, "tcp"));
            let Ok(p) = p.parse::<u16>() else { continue };
            // IPv6 bindings (Docker gives `::` its own ephemeral port) are
            // not paths the IPv4 probes can take: the networks here are IPv4.
            for b in bindings
                .unwrap_or_default()
                .into_iter()
                .filter(|b| !b.host_ip.as_deref().unwrap_or("").contains(':'))
            {
                let Some(hp) = b.host_port.as_deref().and_then(|h| h.parse::<u16>().ok()) else {
                    continue;
                };
                self.published.entry(svc.to_string()).or_default().push((
                    p,
                    proto.to_string(),
                    b.host_ip.unwrap_or_default(),
                    hp,
                ));
            }
        }
    }
}

/// One path of a cell: how it is tried and what it must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSpec {
    /// What the report says (`address 172.20.0.3 on pg-network`, ...).
    pub via: String,
    pub host: String,
    pub port: u16,
    /// The target's port this path ends at (the container port).
    pub target_port: u16,
    /// The target's own port (speak its protocol) or another published
    /// port (a TCP connection is the proof).
    pub own_port: bool,
    pub expected: bool,
}

/// The paths from `src` to `t` other than the name (which the name cell
/// covers). Pure: the stack, its view and the topology decide.
pub fn paths(
    stack: &Stack,
    view: &Compose,
    topo: &Topology,
    src: &str,
    t: &Target,
) -> Vec<PathSpec> {
    let mut out = vec![];
    let Some(s) = stack.service(src) else {
        return out;
    };
    let mode = stack.mode_of(s);
    if mode.as_deref() == Some("none") {
        return out;
    }
    let host_mode = mode.as_deref() == Some("host");
    let src_nets = stack.networks_of(s);
    let reach_ok = view.service(&t.service).is_some_and(|v| v.network_reach());
    for (net, ip) in topo.addrs.get(&t.service).into_iter().flatten() {
        if (host_mode || !src_nets.contains(net)) && topo.routed.contains(net) {
            out.push(PathSpec {
                via: format!("address {ip} on {net}"),
                host: ip.clone(),
                port: t.port,
                target_port: t.port,
                own_port: true,
                expected: host_mode,
            });
        }
    }
    // A target in the host's namespace listens on every host address:
    // through each gateway at its own port (Compose publishes nothing for it).
    let target_host_mode = stack
        .service(&t.service)
        .is_some_and(|ts| stack.mode_of(ts).as_deref() == Some("host"));
    if target_host_mode && !host_mode {
        for (gw, what) in gateways(&src_nets, topo) {
            out.push(PathSpec {
                via: format!(
                    "host {gw}:{} ({what}) -> `{}` in the host's namespace",
                    t.port, t.service
                ),
                host: gw,
                port: t.port,
                target_port: t.port,
                own_port: true,
                expected: reach_ok,
            });
        }
    }
    let published = topo.published.get(&t.service).into_iter().flatten();
    for (cport, proto, host_ip, hport) in published.filter(|p| p.1 == "tcp") {
        let _ = proto;
        if host_mode {
            // The host's own namespace: the port on loopback and on every
            // interface it is bound to.
            let addr = if all_interfaces(host_ip) {
                "127.0.0.1"
            } else {
                host_ip
            };
            out.push(PathSpec {
                via: format!("host {addr}:{hport} (published {cport})"),
                host: addr.to_string(),
                port: *hport,
                target_port: *cport,
                own_port: *cport == t.port,
                expected: true,
            });
            continue;
        }
        for (gw, what) in gateways(&src_nets, topo) {
            let open = all_interfaces(host_ip) || host_ip == &gw;
            out.push(PathSpec {
                via: format!(
                    "host {gw}:{hport} ({what}) -> published {cport} bound to {}",
                    if host_ip.is_empty() {
                        "all interfaces"
                    } else {
                        host_ip
                    }
                ),
                host: gw.clone(),
                port: *hport,
                target_port: *cport,
                own_port: *cport == t.port,
                expected: open && reach_ok,
            });
        }
    }
    out
}

/// The host's addresses a container on `nets` reaches it by: each
/// network's gateway and the default bridge's.
fn gateways(nets: &[String], topo: &Topology) -> Vec<(String, String)> {
    let mut gws: Vec<(String, String)> = vec![];
    for n in nets {
        // Overlays share one node address (docker_gwbridge's): once.
        if let Some(g) = topo
            .gateways
            .get(n)
            .filter(|g| !gws.iter().any(|(a, _)| a == *g))
        {
            gws.push((g.clone(), format!("gateway of {n}")));
        }
    }
    if let Some(b) = topo
        .bridge_gw
        .as_ref()
        .filter(|b| !gws.iter().any(|(a, _)| a == *b))
    {
        gws.push((b.clone(), "the default bridge".into()));
    }
    gws
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reach::Kind;

    #[test]
    fn a_network_without_a_named_gateway_has_its_subnets_first_address() {
        let c = |subnet: Option<&str>, gateway: Option<&str>| bollard::models::IpamConfig {
            subnet: subnet.map(str::to_string),
            gateway: gateway.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(
            gateway(&[c(Some("172.17.0.0/16"), None)]).as_deref(),
            Some("172.17.0.1")
        );
        assert_eq!(
            gateway(&[c(Some("10.1.2.128/25"), None)]).as_deref(),
            Some("10.1.2.129")
        );
        // A named one wins, from any entry; an IPv6 subnet or none gives none.
        assert_eq!(
            gateway(&[
                c(Some("fd00::/64"), None),
                c(Some("10.0.0.0/8"), Some("10.9.9.9"))
            ])
            .as_deref(),
            Some("10.9.9.9")
        );
        assert_eq!(gateway(&[c(Some("fd00::/64"), None)]), None);
        assert_eq!(gateway(&[c(None, None)]), None);
        assert_eq!(gateway(&[c(Some("10.0.0.4/31"), None)]), None);
        assert_eq!(gateway(&[]), None);
    }

    #[test]
    fn a_containers_addresses_come_in_the_networks_order_whatever_the_daemons() {
        let (names, keys) = (
            ["mr-1-zeta", "mr-1-alpha", "mr-1-mid"],
            ["zeta", "alpha", "mid"],
        );
        let (names, keys): (Vec<String>, Vec<String>) = (
            names.iter().map(|s| s.to_string()).collect(),
            keys.iter().map(|s| s.to_string()).collect(),
        );
        let by_name: BTreeMap<&String, &String> = names.iter().zip(keys.iter()).collect();
        // Each HashMap iterates in an order of its own: 20 of them.
        for i in 0..20 {
            let networks: std::collections::HashMap<_, _> = names
                .iter()
                .enumerate()
                .map(|(k, n)| {
                    let ep = bollard::models::EndpointSettings {
                        ip_address: Some(format!("10.0.{k}.{i}")),
                        ..Default::default()
                    };
                    (n.clone(), ep)
                })
                .collect();
            let info = bollard::models::ContainerInspectResponse {
                network_settings: Some(bollard::models::NetworkSettings {
                    networks: Some(networks),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut t = Topology::default();
            t.add_container("a", info, &by_name);
            let order: Vec<&str> = t.addrs["a"].iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(order, ["alpha", "mid", "zeta"]);
        }
    }

    fn stack() -> (Stack, Compose) {
        let v = serde_json::json!({
            "name": "p",
            "services": {
                "a": {"image": "x", "networks": {"n1": null}},
                "b": {"image": "x", "networks": {"n2": null}, "ports": [{"target": 80, "published": "80", "protocol": "tcp"}]},
                "h": {"image": "x", "network_mode": "host"},
                "z": {"image": "x", "network_mode": "none"},
                "w": {"image": "x", "network_mode": "service:a"}
            },
            "networks": {"n1": {"name": "p_n1"}, "n2": {"name": "p_n2"}}
        });
        let st = Stack::from_json(&v).unwrap();
        let mut view = Compose {
            services: vec![],
            networks: vec![],
            volumes: vec![],
        };
        for s in &st.services {
            view.services.push(crate::model::compose::Service {
                name: s.name.clone(),
                labels: s.labels.clone(),
                ..Default::default()
            });
        }
        (st, view)
    }

    fn topo(host_ip: &str) -> Topology {
        let mut t = Topology::default();
        t.routed.extend(["n1".to_string(), "n2".to_string()]);
        t.addrs
            .insert("b".into(), vec![("n2".into(), "10.0.2.5".into())]);
        t.gateways.insert("n1".into(), "10.0.1.1".into());
        t.gateways.insert("n2".into(), "10.0.2.1".into());
        t.bridge_gw = Some("172.17.0.1".into());
        t.published
            .insert("b".into(), vec![(80, "tcp".into(), host_ip.into(), 49001)]);
        t
    }

    fn target() -> Target {
        Target {
            service: "b".into(),
            port: 80,
            kind: Kind::Http,
            tls: false,
            path: "/".into(),
            networks: vec!["n2".into()],
            creds: vec![],
        }
    }

    #[test]
    fn a_port_on_all_interfaces_is_a_path_through_every_gateway() {
        let (st, view) = stack();
        let p = paths(&st, &view, &topo("0.0.0.0"), "a", &target());
        let vias: Vec<(&str, u16, bool)> = p
            .iter()
            .map(|p| (p.host.as_str(), p.port, p.expected))
            .collect();
        // Its address on n2 (not a's network), then the host through a's
        // gateway and the default bridge, at the published host port: none
        // may connect (b is not a public service).
        assert_eq!(
            vias,
            vec![
                ("10.0.2.5", 80, false),
                ("10.0.1.1", 49001, false),
                ("172.17.0.1", 49001, false)
            ]
        );
        // A service that opts in is expected to be reached through the host.
        let (st, mut view) = stack();
        view.services[1]
            .labels
            .insert("monorepo.reach".into(), "network".into());
        let p = paths(&st, &view, &topo(""), "a", &target());
        assert_eq!(
            p.iter().map(|p| p.expected).collect::<Vec<_>>(),
            vec![false, true, true]
        );
        // Bound to loopback, the host paths are still tried and must fail.
        let p = paths(&st, &view, &topo("127.0.0.1"), "a", &target());
        assert_eq!(
            p.iter().map(|p| p.expected).collect::<Vec<_>>(),
            vec![false, false, false]
        );
    }

    #[test]
    fn an_address_the_host_does_not_route_locally_is_never_probed() {
        // An overlay's or an internal network's address, tried from outside
        // it, would leave the machine by the default route.
        let (st, view) = stack();
        let mut t = topo("127.0.0.1");
        t.routed.clear();
        let p = paths(&st, &view, &t, "a", &target());
        assert!(p.iter().all(|p| p.host != "10.0.2.5"), "{p:?}");
        assert_eq!(p.len(), 2, "the host paths stay: {p:?}");
    }

    #[test]
    fn namespace_modes() {
        let (st, view) = stack();
        // none reaches nothing: no path at all besides the name cell.
        assert!(paths(&st, &view, &topo(""), "z", &target()).is_empty());
        // host reaches every bridge address and every published port.
        let p = paths(&st, &view, &topo("127.0.0.1"), "h", &target());
        assert_eq!(
            p.iter()
                .map(|p| (p.host.as_str(), p.expected))
                .collect::<Vec<_>>(),
            vec![("10.0.2.5", true), ("127.0.0.1", true)]
        );
        // service:a has a's reach (a's networks and gateways).
        let pw = paths(&st, &view, &topo("0.0.0.0"), "w", &target());
        let pa = paths(&st, &view, &topo("0.0.0.0"), "a", &target());
        assert_eq!(pw, pa);
        // A target in the host's namespace is reached through every gateway
        // at its own port: a path that must fail unless it opts in.
        let mut th = target();
        th.service = "h".into();
        th.port = 7000;
        let p = paths(&st, &view, &topo(""), "a", &th);
        assert_eq!(
            p.iter()
                .map(|p| (p.host.as_str(), p.port, p.expected))
                .collect::<Vec<_>>(),
            vec![("10.0.1.1", 7000, false), ("172.17.0.1", 7000, false)]
        );
    }
}
