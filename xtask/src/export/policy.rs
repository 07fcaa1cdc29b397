//! Kubernetes NetworkPolicy semantics, evaluated offline: which (source pod,
//! target pod, port) connections a set of manifests allows. Written by hand
//! because no Rust crate evaluates policies; the rules followed are those of
//! the NetworkPolicy reference (networking.k8s.io/v1):
//!
//! - a pod is isolated for ingress (egress) when some policy in its namespace
//!   selects it and has that policyType; a pod no policy isolates accepts
//!   (sends) everything;
//! - `policyTypes` defaults to Ingress, plus Egress when `egress` is present;
//! - policies are additive: a connection is allowed when any rule of any
//!   policy selecting the pod admits it, on both ends (the target's ingress
//!   and the source's egress);
//! - an absent or empty `from`/`to` matches every peer, absent or empty
//!   `ports` every port; `ingress: []` (or none) under Ingress denies all;
//! - a peer with only `podSelector` means pods of the policy's namespace,
//!   only `namespaceSelector` every pod of the matching namespaces, both the
//!   matching pods of the matching namespaces; the empty selector `{}`
//!   matches everything; matchExpressions: In, NotIn, Exists, DoesNotExist;
//! - ports: protocol (default TCP), a number or a named container port of
//!   the destination pod, and `endPort` for ranges;
//! - `ipBlock` is taken as cluster-external and matches no pod (what the
//!   reference intends; a CIDR covering the pod network is implementation
//!   defined, so we do not count it as admitting pods).

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Diagnostic, Error};
use crate::model::reach::Expect;
use crate::model::yaml::{self, Node};

#[derive(Debug, Clone, Default)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    exprs: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|(k, op, vals)| match op.as_str() {
                "In" => labels.get(k).is_some_and(|v| vals.contains(v)),
                "NotIn" => labels.get(k).is_none_or(|v| !vals.contains(v)),
                "Exists" => labels.contains_key(k),
                "DoesNotExist" => !labels.contains_key(k),
                _ => false,
            })
    }
}

#[derive(Debug, Clone)]
enum Peer {
    Pods {
        pods: Option<Selector>,
        namespaces: Option<Selector>,
    },
    External,
}

#[derive(Debug, Clone)]
enum PortRef {
    Num(u16),
    Name(String),
}

#[derive(Debug, Clone)]
struct PortSel {
    protocol: String,
    port: Option<PortRef>,
    end: Option<u16>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// None: every peer.
    peers: Option<Vec<Peer>>,
    /// None: every port.
    ports: Option<Vec<PortSel>>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub file: String,
    namespace: String,
    select: Selector,
    /// Some when the policy isolates for ingress (egress): its rules.
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// (name, number, protocol) of every container port.
    pub ports: Vec<(Option<String>, u16, String)>,
}

#[derive(Debug, Default)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub pods: Vec<Pod>,
    pub policies: Vec<Policy>,
    pub exposures: Vec<Exposure>,
}

/// What opens pods to the nodes' network, where no NetworkPolicy of the
/// namespace decides: a container `hostPort` or `hostNetwork: true` (the
/// node's own address), a Service of type NodePort or LoadBalancer, or one
/// with `externalIPs`.
#[derive(Debug, Clone)]
pub struct Exposure {
    pub file: String,
    pub line: usize,
    /// What it is, as the message names it (`Service `x` of type NodePort`).
    pub what: String,
    namespace: String,
    target: Exposed,
}

#[derive(Debug, Clone)]
enum Exposed {
    /// The Deployment's own pods (by its name).
    Pod(String),
    /// The pods a Service selects (an empty selector: none).
    Selected(Selector),
}

fn bad(file: &str, n: &Node, msg: impl std::fmt::Display) -> Error {
    Diagnostic::error(msg.to_string())
        .at(file, n.line)
        .fix("re-export with `cargo xtask export k8s`, or correct the manifest")
}

fn str_map(n: Option<&Node>) -> BTreeMap<String, String> {
    let Some(n) = n else { return BTreeMap::new() };
    n.keys()
        .into_iter()
        .filter_map(|(k, _)| Some((k.to_string(), n.get(k)?.as_str()?.to_string())))
        .collect()
}

fn selector(file: &str, n: &Node) -> Result<Selector, Error> {
    if n.is_null() {
        return Ok(Selector::default());
    }
    let mut s = Selector {
        labels: str_map(n.get("matchLabels")),
        exprs: vec![],
    };
    for e in n
        .get("matchExpressions")
        .and_then(|e| e.as_seq())
        .unwrap_or(&[])
    {
        let key = e
            .get("key")
            .and_then(|k| k.as_str())
            .ok_or_else(|| bad(file, e, "matchExpressions entry without `key`"))?;
        let op = e.get("operator").and_then(|k| k.as_str()).unwrap_or("");
        if !["In", "NotIn", "Exists", "DoesNotExist"].contains(&op) {
            return Err(bad(
                file,
                e,
                format!("unknown matchExpressions operator `{op}`"),
            ));
        }
        let vals = e
            .get("values")
            .and_then(|v| v.as_seq())
            .unwrap_or(&[])
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        s.exprs.push((key.to_string(), op.to_string(), vals));
    }
    Ok(s)
}

fn port_ref(n: &Node) -> PortRef {
    let s = n.as_str().unwrap_or("");
    match s.parse::<u16>() {
        Ok(p) if !n.flow => PortRef::Num(p),
        _ => PortRef::Name(s.to_string()),
    }
}

fn rules(file: &str, n: Option<&Node>, peer_key: &str) -> Result<Vec<Rule>, Error> {
    let mut out = vec![];
    let Some(n) = n else { return Ok(out) };
    for r in n.as_seq().unwrap_or(&[]) {
        let peers = match r.get(peer_key).and_then(|p| p.as_seq()) {
            None => None,
            Some([]) => None,
            Some(items) => {
                let mut v = vec![];
                for p in items {
                    if p.get("ipBlock").is_some() {
                        v.push(Peer::External);
                        continue;
                    }
                    let pods = p
                        .get("podSelector")
                        .map(|s| selector(file, s))
                        .transpose()?;
                    let namespaces = p
                        .get("namespaceSelector")
                        .map(|s| selector(file, s))
                        .transpose()?;
                    if pods.is_none() && namespaces.is_none() {
                        return Err(bad(file, p, format!("a `{peer_key}` peer needs podSelector, namespaceSelector or ipBlock")));
                    }
                    v.push(Peer::Pods { pods, namespaces });
                }
                Some(v)
            }
        };
        let ports = match r.get("ports").and_then(|p| p.as_seq()) {
            None | Some([]) => None,
            Some(items) => Some(
                items
                    .iter()
                    .map(|p| PortSel {
                        protocol: p
                            .get("protocol")
                            .and_then(|x| x.as_str())
                            .unwrap_or("TCP")
                            .to_string(),
                        port: p.get("port").map(port_ref),
                        end: p
                            .get("endPort")
                            .and_then(|x| x.as_str())
                            .and_then(|x| x.parse().ok()),
                    })
                    .collect(),
            ),
        };
        out.push(Rule { peers, ports });
    }
    Ok(out)
}

impl Cluster {
    /// Reads Namespaces, Deployments (their pod templates) and
    /// NetworkPolicies from manifest texts (one object each); other kinds
    /// are ignored.
    pub fn read(files: &[(String, String)]) -> Result<Cluster, Error> {
        let mut c = Cluster::default();
        for (file, text) in files {
            let root = yaml::parse(text).map_err(|e| {
                Diagnostic::error(e.msg)
                    .at(file, e.line)
                    .fix("correct the YAML, or re-export")
            })?;
            let Some(root) = root else { continue };
            let kind = root.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            let meta = root.get("metadata");
            let name = meta
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_string();
            let namespace = meta
                .and_then(|m| m.get("namespace"))
                .and_then(|n| n.as_str())
                .unwrap_or("default")
                .to_string();
            match kind {
                "Namespace" => {
                    let mut labels = str_map(meta.and_then(|m| m.get("labels")));
                    labels.insert("kubernetes.io/metadata.name".into(), name.clone());
                    c.namespaces.insert(name, labels);
                }
                "Deployment" => {
                    let tpl = root
                        .get("spec")
                        .and_then(|s| s.get("template"))
                        .ok_or_else(|| bad(file, &root, "a Deployment without spec.template"))?;
                    let labels = str_map(tpl.get("metadata").and_then(|m| m.get("labels")));
                    let mut ports = vec![];
                    for ctr in tpl
                        .get("spec")
                        .and_then(|s| s.get("containers"))
                        .and_then(|c| c.as_seq())
                        .unwrap_or(&[])
                    {
                        for p in ctr.get("ports").and_then(|p| p.as_seq()).unwrap_or(&[]) {
                            if let Some(h) = p.get("hostPort").and_then(|x| x.as_str()) {
                                c.exposures.push(Exposure {
                                    file: file.clone(),
                                    line: p.line,
                                    what: format!("the Deployment `{name}`'s hostPort {h}"),
                                    namespace: namespace.clone(),
                                    target: Exposed::Pod(name.clone()),
                                });
                            }
                            let Some(num) = p
                                .get("containerPort")
                                .and_then(|x| x.as_str())
                                .and_then(|x| x.parse().ok())
                            else {
                                continue;
                            };
                            let pname = p.get("name").and_then(|x| x.as_str()).map(String::from);
                            let proto = p
                                .get("protocol")
                                .and_then(|x| x.as_str())
                                .unwrap_or("TCP")
                                .to_string();
                            ports.push((pname, num, proto));
                        }
                    }
                    if let Some(h) = tpl
                        .get("spec")
                        .and_then(|s| s.get("hostNetwork"))
                        .filter(|h| h.as_str() == Some("true"))
                    {
                        c.exposures.push(Exposure {
                            file: file.clone(),
                            line: h.line,
                            what: format!("the Deployment `{name}`'s hostNetwork"),
                            namespace: namespace.clone(),
                            target: Exposed::Pod(name.clone()),
                        });
                    }
                    c.pods.push(Pod {
                        name,
                        namespace,
                        labels,
                        ports,
                    });
                }
                "NetworkPolicy" => {
                    let spec = root
                        .get("spec")
                        .ok_or_else(|| bad(file, &root, "a NetworkPolicy without spec"))?;
                    let select = match spec.get("podSelector") {
                        Some(s) => selector(file, s)?,
                        None => {
                            return Err(bad(file, spec, "a NetworkPolicy without spec.podSelector"))
                        }
                    };
                    let types: Vec<String> = match spec.get("policyTypes").and_then(|t| t.as_seq())
                    {
                        Some(t) => t
                            .iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect(),
                        None => {
                            let mut t = vec!["Ingress".to_string()];
                            if spec.get("egress").is_some() {
                                t.push("Egress".into());
                            }
                            t
                        }
                    };
                    let ingress = if types.iter().any(|t| t == "Ingress") {
                        Some(rules(file, spec.get("ingress"), "from")?)
                    } else {
                        None
                    };
                    let egress = if types.iter().any(|t| t == "Egress") {
                        Some(rules(file, spec.get("egress"), "to")?)
                    } else {
                        None
                    };
                    c.policies.push(Policy {
                        name,
                        file: file.clone(),
                        namespace,
                        select,
                        ingress,
                        egress,
                    });
                }
                "Service" => {
                    let Some(spec) = root.get("spec") else {
                        continue;
                    };
                    let ty = spec
                        .get("type")
                        .and_then(|t| t.as_str())
                        .unwrap_or("ClusterIP");
                    let external = spec
                        .get("externalIPs")
                        .and_then(|e| e.as_seq())
                        .is_some_and(|e| !e.is_empty());
                    let what = match ty {
                        "NodePort" | "LoadBalancer" => format!("the Service `{name}` of type {ty}"),
                        _ if external => format!("the Service `{name}` with externalIPs"),
                        _ => continue,
                    };
                    let line = spec.get("type").map(|t| t.line).unwrap_or(spec.line);
                    c.exposures.push(Exposure {
                        file: file.clone(),
                        line,
                        what,
                        namespace,
                        target: Exposed::Selected(Selector {
                            labels: str_map(spec.get("selector")),
                            exprs: vec![],
                        }),
                    });
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// The pods (Deployment names) an exposure opens to the nodes' network.
    pub fn exposed(&self, e: &Exposure) -> Vec<String> {
        self.pods
            .iter()
            .filter(|p| p.namespace == e.namespace)
            .filter(|p| match &e.target {
                Exposed::Pod(n) => &p.name == n,
                // A Service without a selector selects no pod.
                Exposed::Selected(sel) => !sel.labels.is_empty() && sel.matches(&p.labels),
            })
            .map(|p| p.name.clone())
            .collect()
    }

    fn ns_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces.get(ns).cloned().unwrap_or_else(|| {
            BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())])
        })
    }

    fn peer_matches(&self, policy_ns: &str, peer: &Peer, pod: &Pod) -> bool {
        match peer {
            Peer::External => false,
            Peer::Pods { pods, namespaces } => {
                let ns_ok = match namespaces {
                    None => pod.namespace == policy_ns,
                    Some(sel) => sel.matches(&self.ns_labels(&pod.namespace)),
                };
                ns_ok && pods.as_ref().is_none_or(|s| s.matches(&pod.labels))
            }
        }
    }

    /// Does `sel` cover `port` on `dest` (named ports resolve on `dest`)?
    fn port_matches(sel: &PortSel, dest: &Pod, port: u16) -> bool {
        let Some((_, _, proto)) = dest.ports.iter().find(|(_, n, _)| *n == port) else {
            return false;
        };
        if &sel.protocol != proto {
            return false;
        }
        match &sel.port {
            None => true,
            Some(PortRef::Num(p)) => port >= *p && port <= sel.end.unwrap_or(*p),
            Some(PortRef::Name(name)) => dest
                .ports
                .iter()
                .any(|(n, num, _)| n.as_deref() == Some(name) && *num == port),
        }
    }

    fn rule_admits(&self, policy_ns: &str, rule: &Rule, peer: &Pod, dest: &Pod, port: u16) -> bool {
        rule.peers
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| self.peer_matches(policy_ns, p, peer)))
            && rule
                .ports
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|s| Self::port_matches(s, dest, port)))
    }

    /// Whether `src` may connect to `dst:port`, and why (policy names).
    pub fn allowed(&self, src: &Pod, dst: &Pod, port: u16) -> (bool, String) {
        let selecting = |pod: &Pod, ingress: bool| -> Vec<&Policy> {
            self.policies
                .iter()
                .filter(|p| p.namespace == pod.namespace && p.select.matches(&pod.labels))
                .filter(|p| {
                    if ingress {
                        p.ingress.is_some()
                    } else {
                        p.egress.is_some()
                    }
                })
                .collect()
        };
        let ing = selecting(dst, true);
        let ingress = if ing.is_empty() {
            (
                true,
                format!("no policy isolates `{}` for ingress", dst.name),
            )
        } else {
            match ing.iter().find(|p| {
                p.ingress
                    .as_ref()
                    .unwrap()
                    .iter()
                    .any(|r| self.rule_admits(&p.namespace, r, src, dst, port))
            }) {
                Some(p) => (true, format!("admitted by {} ({})", p.name, p.file)),
                None => (
                    false,
                    format!(
                        "no ingress rule of {} admits it",
                        ing.iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        };
        if !ingress.0 {
            return ingress;
        }
        let eg = selecting(src, false);
        if eg.is_empty() {
            return ingress;
        }
        match eg.iter().find(|p| {
            p.egress
                .as_ref()
                .unwrap()
                .iter()
                .any(|r| self.rule_admits(&p.namespace, r, dst, dst, port))
        }) {
            Some(p) => (true, format!("{}; egress allowed by {}", ingress.1, p.name)),
            None => (
                false,
                format!(
                    "no egress rule of {} admits it",
                    eg.iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }

    /// Every (source, target, port) between distinct pods, with the verdict.
    pub fn matrix(&self) -> BTreeMap<(String, String, u16), (bool, String)> {
        let mut out = BTreeMap::new();
        for dst in &self.pods {
            for (_, port, _) in &dst.ports {
                for src in self
                    .pods
                    .iter()
                    .filter(|s| s.name != dst.name || s.namespace != dst.namespace)
                {
                    out.insert(
                        (src.name.clone(), dst.name.clone(), *port),
                        self.allowed(src, dst, *port),
                    );
                }
            }
        }
        out
    }
}

/// Every difference between what the policies allow and the expected
/// matrix (empty: they mean the same).
pub fn compare(cluster: &Cluster, expected: &BTreeSet<Expect>) -> Vec<String> {
    let got = cluster.matrix();
    let mut out = vec![];
    for e in expected {
        let key = (e.source.clone(), e.target.clone(), e.port);
        match got.get(&key) {
            None => {
                let missing = [&e.source, &e.target]
                    .into_iter()
                    .find(|n| !cluster.pods.iter().any(|p| &&p.name == n));
                let why = match missing {
                    Some(n) => format!("no Deployment `{n}`"),
                    None => format!(
                        "the Deployment `{}` has no container port {}",
                        e.target, e.port
                    ),
                };
                out.push(format!(
                    "{} -> {}:{}: must {}, but {why}",
                    e.source,
                    e.target,
                    e.port,
                    if e.reach { "connect" } else { "not connect" }
                ));
            }
            Some((allowed, why)) if *allowed != e.reach => {
                let want = if e.reach {
                    "must connect (they share a network)"
                } else {
                    "must not connect (they share no network)"
                };
                out.push(format!(
                    "{} -> {}:{}: {want}, but the policies {}: {why}",
                    e.source,
                    e.target,
                    e.port,
                    if *allowed { "allow it" } else { "deny it" }
                ));
            }
            Some(_) => {}
        }
    }
    for ((s, t, p), (allowed, why)) in &got {
        if *allowed
            && !expected
                .iter()
                .any(|e| &e.source == s && &e.target == t && e.port == *p)
        {
            out.push(format!(
                "{s} -> {t}:{p}: not in the compose file, but the policies allow it: {why}"
            ));
        }
    }
    out
}

/// Every exposure of a pod that is not in `public` (the services that may
/// publish a port on all interfaces: `Service::network_reach`).
pub fn exposures(cluster: &Cluster, public: &BTreeSet<String>) -> Vec<String> {
    let mut out = vec![];
    for e in &cluster.exposures {
        for pod in cluster.exposed(e) {
            if !public.contains(&pod) {
                out.push(format!(
                    "{}:{}: {} opens `{pod}` to the nodes' network, but `{pod}` is not public (only nginx and services labelled `{}: \"{}\"` may be)",
                    e.file,
                    e.line,
                    e.what,
                    crate::model::compose::LABEL_REACH,
                    crate::model::compose::REACH_NETWORK
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
kind: Deployment
metadata: {name: web, namespace: app}
spec: {template: {metadata: {labels: {role: web, tier: front}}, spec: {containers: [{ports: [{containerPort: 80, name: http}, {containerPort: 9090}]}]}}}
---
kind: Deployment
metadata: {name: api, namespace: app}
spec: {template: {metadata: {labels: {role: api}}, spec: {containers: [{ports: [{containerPort: 8080, name: api}]}]}}}
---
kind: Deployment
metadata: {name: db, namespace: app}
spec: {template: {metadata: {labels: {role: db}}, spec: {containers: [{ports: [{containerPort: 5432}]}]}}}
---
kind: Deployment
metadata: {name: tool, namespace: other}
spec: {template: {metadata: {labels: {role: tool}}, spec: {containers: [{ports: [{containerPort: 1}]}]}}}
";

    /// The allowed (source, target, port) of the pods above plus `policies`.
    fn allowed(policies: &[&str]) -> Vec<String> {
        let mut files: Vec<(String, String)> = PODS
            .split("---")
            .enumerate()
            .map(|(i, d)| (format!("pod{i}.yaml"), d.to_string()))
            .collect();
        files.extend(policies.iter().enumerate().map(|(i, p)| {
            (
                format!("np{i}.yaml"),
                format!("kind: NetworkPolicy\nmetadata: {{name: np{i}, namespace: app}}\n{p}"),
            )
        }));
        let c = Cluster::read(&files).unwrap();
        c.matrix()
            .into_iter()
            .filter(|(_, (a, _))| *a)
            .map(|((s, t, p), _)| format!("{s}>{t}:{p}"))
            .collect()
    }

    fn all_but(excluded: &[&str]) -> Vec<String> {
        allowed(&[])
            .into_iter()
            .filter(|c| !excluded.contains(&c.as_str()))
            .collect()
    }

    #[test]
    fn no_policy_allows_everything() {
        let a = allowed(&[]);
        // 4 pods; web has 2 ports: targets (web:80, web:9090, api, db, tool) x 3 sources.
        assert_eq!(a.len(), 5 * 3, "{a:?}");
    }

    #[test]
    fn default_deny_denies_the_namespace_only() {
        let a = allowed(&["spec: {podSelector: {}, policyTypes: [Ingress]}"]);
        // Only the pod in `other` (no policy there) still accepts.
        assert_eq!(a, vec!["api>tool:1", "db>tool:1", "web>tool:1"]);
        // `ingress: []` without policyTypes means the same.
        assert_eq!(allowed(&["spec: {podSelector: {}, ingress: []}"]), a);
    }

    #[test]
    fn allow_from_a_label_with_named_and_numbered_ports() {
        let deny = "spec: {podSelector: {}, policyTypes: [Ingress]}";
        let a = allowed(&[deny, "spec: {podSelector: {matchLabels: {role: api}}, ingress: [{from: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: api}]}]}"]);
        assert_eq!(
            a,
            vec!["api>tool:1", "db>tool:1", "web>api:8080", "web>tool:1"]
        );
        // A number with endPort; the named port `http` resolves on web only.
        let a = allowed(&[deny, "spec: {podSelector: {matchLabels: {role: web}}, ingress: [{from: [{podSelector: {}}], ports: [{port: 9000, endPort: 9100}]}]}"]);
        assert_eq!(
            a,
            vec![
                "api>tool:1",
                "api>web:9090",
                "db>tool:1",
                "db>web:9090",
                "web>tool:1"
            ]
        );
        let a = allowed(&[
            deny,
            "spec: {podSelector: {matchLabels: {role: web}}, ingress: [{ports: [{port: http}]}]}",
        ]);
        // No `from`: every source, other namespaces included.
        assert_eq!(
            a,
            vec![
                "api>tool:1",
                "api>web:80",
                "db>tool:1",
                "db>web:80",
                "tool>web:80",
                "web>tool:1"
            ]
        );
        // Another protocol admits nothing on TCP ports.
        let a = allowed(&[
            deny,
            "spec: {podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 80}]}]}",
        ]);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn namespace_selectors() {
        let deny = "spec: {podSelector: {}, policyTypes: [Ingress]}";
        // A namespaceSelector alone admits every pod of the matching namespaces.
        let a = allowed(&[deny, "spec: {podSelector: {matchLabels: {role: db}}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}}]}]}"]);
        assert_eq!(
            a,
            vec!["api>tool:1", "db>tool:1", "tool>db:5432", "web>tool:1"]
        );
        // Both: the matching pods of the matching namespaces (app has team=a).
        let a = allowed(&[deny, "spec: {podSelector: {matchLabels: {role: db}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchExpressions: [{key: role, operator: In, values: [api, tool]}]}}]}]}"]);
        assert_eq!(
            a,
            vec!["api>db:5432", "api>tool:1", "db>tool:1", "web>tool:1"]
        );
        // A podSelector alone stays in the policy's namespace: tool is not admitted.
        let a = allowed(&[deny, "spec: {podSelector: {matchLabels: {role: db}}, ingress: [{from: [{podSelector: {}}]}]}"]);
        assert_eq!(
            a,
            vec![
                "api>db:5432",
                "api>tool:1",
                "db>tool:1",
                "web>db:5432",
                "web>tool:1"
            ]
        );
    }

    #[test]
    fn unselected_pods_accept_all_and_policies_union() {
        // Isolating db only: everything else still accepts everything.
        let only_db = "spec: {podSelector: {matchLabels: {role: db}}, ingress: [{from: [{podSelector: {matchLabels: {role: api}}}]}]}";
        assert_eq!(
            allowed(&[only_db]),
            all_but(&["web>db:5432", "tool>db:5432"])
        );
        // A second policy on db adds web; the first keeps api.
        let a = allowed(&[only_db, "spec: {podSelector: {matchLabels: {role: db}}, ingress: [{from: [{podSelector: {matchLabels: {tier: front}}}]}]}"]);
        assert_eq!(a, all_but(&["tool>db:5432"]));
    }

    #[test]
    fn empty_from_admits_all_and_ip_blocks_admit_no_pod() {
        let deny = "spec: {podSelector: {}, policyTypes: [Ingress]}";
        let a = allowed(&[
            deny,
            "spec: {podSelector: {matchLabels: {role: db}}, ingress: [{}]}",
        ]);
        assert_eq!(
            a,
            vec![
                "api>db:5432",
                "api>tool:1",
                "db>tool:1",
                "tool>db:5432",
                "web>db:5432",
                "web>tool:1"
            ]
        );
        let a = allowed(&[deny, "spec: {podSelector: {matchLabels: {role: db}}, ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}"]);
        assert_eq!(a.len(), 3);
        // NotIn matches pods without the label; DoesNotExist too.
        let a = allowed(&[deny, "spec: {podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}, ingress: [{from: [{podSelector: {matchExpressions: [{key: role, operator: NotIn, values: [db]}]}}]}]}"]);
        assert_eq!(
            a,
            vec![
                "api>db:5432",
                "api>tool:1",
                "db>tool:1",
                "web>api:8080",
                "web>db:5432",
                "web>tool:1"
            ]
        );
    }

    #[test]
    fn egress_isolation_needs_both_ends() {
        let a = allowed(&["spec: {podSelector: {matchLabels: {role: web}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {role: api}}}], ports: [{port: api}]}]}"]);
        assert_eq!(a, all_but(&["web>db:5432", "web>tool:1"]));
    }

    #[test]
    fn exposures_name_the_pods_they_open_and_spare_the_public_ones() {
        let extra = [
            // web is public: spared.
            "kind: Service\nmetadata: {name: web, namespace: app}\nspec: {type: NodePort, selector: {role: web}}",
            "kind: Service\nmetadata: {name: db, namespace: app}\nspec: {type: LoadBalancer, selector: {role: db}}",
            // Another namespace's pods are not selected.
            "kind: Service\nmetadata: {name: x, namespace: other}\nspec: {type: NodePort, selector: {role: api}}",
            // No selector: no pod.
            "kind: Service\nmetadata: {name: y, namespace: app}\nspec: {type: NodePort}",
            "kind: Service\nmetadata: {name: z, namespace: app}\nspec: {externalIPs: [192.0.2.1], selector: {role: api}}",
            "kind: Service\nmetadata: {name: c, namespace: app}\nspec: {selector: {role: api}}",
            "kind: Deployment\nmetadata: {name: h, namespace: app}\nspec: {template: {spec: {hostNetwork: true, containers: [{ports: [{containerPort: 1, hostPort: 1}]}]}}}",
        ];
        let mut files: Vec<(String, String)> = PODS
            .split("---")
            .chain(extra)
            .enumerate()
            .map(|(i, d)| (format!("f{i}.yaml"), d.to_string()))
            .collect();
        files.push(("empty.yaml".into(), String::new()));
        let c = Cluster::read(&files).unwrap();
        let public = BTreeSet::from(["web".to_string()]);
        let got = exposures(&c, &public);
        let opened: Vec<&str> = got.iter().map(|m| m.split('`').nth(3).unwrap()).collect();
        assert_eq!(opened, ["db", "api", "h", "h"], "{got:#?}");
        assert!(
            got[0].starts_with("f7.yaml:3: the Service `db` of type LoadBalancer"),
            "{}",
            got[0]
        );
        assert!(
            got[2].contains("hostPort 1") && got[3].contains("hostNetwork"),
            "{got:#?}"
        );
        assert_eq!(
            exposures(
                &c,
                &BTreeSet::from(["web".into(), "db".into(), "api".into(), "h".into()])
            ),
            Vec::<String>::new()
        );
    }
}
