//! The templates of a new service folder and the compose entry that goes
//! with it. Golden files in `xtask/tests/golden/` pin their output.

use crate::model::compose;
use crate::model::repo::SERVICES_DIR;

const DOCKERFILE: &str = include_str!("../../templates/Dockerfile.tmpl");
const SERVER: &str = include_str!("../../templates/server.py.tmpl");
const GRPC_SERVER: &str = include_str!("../../templates/grpc_server.py.tmpl");
const PROTO: &str = include_str!("../../templates/service.proto.tmpl");
const REQUIREMENTS: &str = include_str!("../../templates/requirements.txt.tmpl");
const ENV: &str = include_str!("../../templates/service.env.tmpl");
const FRONTEND_DOCKERFILE: &str = include_str!("../../templates/frontend_Dockerfile.tmpl");
const FRONTEND_SERVER: &str = include_str!("../../templates/frontend_server.py.tmpl");
const FRONTEND_INDEX: &str = include_str!("../../templates/frontend_index.html.tmpl");
const FRONTEND_APP: &str = include_str!("../../templates/frontend_app.js.tmpl");
const FRONTEND_STYLE: &str = include_str!("../../templates/frontend_style.css.tmpl");

/// A frontend service's folders: its API's code, and the files NGINX serves.
pub const BACKEND_DIR: &str = "Backend";
pub use crate::model::repo::FRONTEND_DIR;

/// The user the service images run as (`USER` in the Dockerfile template).
pub const APP_UID: u32 = 10001;

/// Everything `add-service` was asked for, validated.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub name: String,
    pub grpc: bool,
    pub pg: bool,
    pub redis: bool,
    pub https: bool,
    pub public: Option<String>,
    pub port: u16,
    pub depends_on: Vec<String>,
    pub volumes: Vec<(String, String)>,
    pub entry: String,
    /// A web page in `Frontend/` that NGINX serves at `public`, its API
    /// (`Backend/`) at `<public>api/` (docs/frontend.md).
    pub frontend: bool,
}

impl Options {
    /// A public service speaks HTTP (NGINX proxies to it); any other
    /// service serves gRPC.
    pub fn protocol(&self) -> &'static str {
        if self.public.is_some() {
            "http"
        } else {
            "grpc"
        }
    }
    pub fn networks(&self) -> Vec<String> {
        let mut n = vec![];
        if self.grpc || self.protocol() == "grpc" {
            n.push("grpc-network".to_string());
        }
        if self.pg {
            n.push("pg-network".to_string());
        }
        if self.redis {
            n.push("redis-network".to_string());
        }
        if self.public.is_some() {
            n.push("web-network".to_string());
        }
        n
    }
    pub fn depends(&self) -> Vec<String> {
        let mut d = vec![];
        if self.pg {
            d.push("postgres".to_string());
        }
        if self.redis {
            d.push("redis".to_string());
        }
        for x in &self.depends_on {
            if !d.contains(x) {
                d.push(x.clone());
            }
        }
        d
    }
    pub fn dir(&self) -> String {
        format!("{SERVICES_DIR}/{}", self.name)
    }
    /// `--grpc` on a service that serves gRPC (not a public HTTP one that
    /// only calls gRPC): it gets an API of its own, a `.proto` and a server
    /// that implements it.
    pub fn serves_api(&self) -> bool {
        self.grpc && self.protocol() == "grpc"
    }
}

/// The service's Python/proto package: the name with `-` as `_`.
pub fn proto_pkg(name: &str) -> String {
    name.replace('-', "_")
}

/// The gRPC service's class: CamelCase of the name's `-` parts.
pub fn service_class(name: &str) -> String {
    name.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| p[..1].to_ascii_uppercase() + &p[1..])
        .collect()
}

/// Where its `.proto` goes.
pub fn proto_file(name: &str) -> String {
    let pkg = proto_pkg(name);
    format!("src/proto/{pkg}/v1/{pkg}.proto")
}

/// Python's keywords (the lowercase ones a service name can spell): a
/// package named so cannot be imported (`from common.gen.class.v1 ...`).
pub const PYTHON_KEYWORDS: &[&str] = &[
    "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
    "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda",
    "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

fn fill(t: &str, vars: &[(&str, String)]) -> String {
    let mut s = t.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    s
}

/// The files of the service folder: (repository-relative path, content).
pub fn files(o: &Options) -> Vec<(String, String)> {
    // Pinned as the example services pin them; protobuf for the generated
    // code every service imports (common.gen, the health service).
    let mut reqs = vec!["grpcio==1.71.0", "protobuf==5.29.4"];
    let mut imports = vec!["grpc", "google.protobuf"];
    if o.pg {
        reqs.push("psycopg2-binary==2.9.10");
        imports.push("psycopg2");
    }
    if o.redis {
        reqs.push("redis==5.2.1");
        imports.push("redis");
    }
    let mut extra = vec![];
    if let Some(p) = &o.public {
        extra.push(format!("PUBLIC_PATH={p}"));
    }
    if o.https {
        extra.push("TLS_CERT=/run/tls/cert.pem\nTLS_KEY=/run/tls/key.pem".to_string());
    }
    extra.push("TLS_CA=/run/trust/ca.pem".to_string());
    if o.pg {
        // Its own role and database; PGPASSWORD is in secrets/<name>.env.
        extra.push(format!(
            "PGHOST=postgres\nPGPORT=5432\nPGUSER={n}\nPGDATABASE={n}",
            n = o.name
        ));
    }
    if o.redis {
        // Its own ACL user on keys `<name>:*`; REDIS_PASSWORD is in secrets/<name>.env.
        extra.push(format!(
            "REDIS_URL=redis://redis:6379/0\nREDIS_USERNAME={}",
            o.name
        ));
    }
    let vars = [
        ("name", o.name.clone()),
        ("port", o.port.to_string()),
        ("entry", o.entry.clone()),
        ("protocol", o.protocol().to_string()),
        ("imports", imports.join(", ")),
        ("requirements", reqs.join("\n")),
        ("extra", extra.join("\n")),
        ("proto_pkg", proto_pkg(&o.name)),
        ("service_class", service_class(&o.name)),
        ("public", o.public.clone().unwrap_or_default()),
    ];
    let dir = o.dir();
    if o.frontend {
        return vec![
            (
                format!("{dir}/{BACKEND_DIR}/{}", o.entry),
                fill(FRONTEND_SERVER, &vars),
            ),
            (
                format!("{dir}/Dockerfile"),
                fill(FRONTEND_DOCKERFILE, &vars),
            ),
            (format!("{dir}/requirements.txt"), fill(REQUIREMENTS, &vars)),
            (format!("{dir}/service.env"), fill(ENV, &vars)),
            (
                format!("{dir}/{FRONTEND_DIR}/index.html"),
                fill(FRONTEND_INDEX, &vars),
            ),
            (
                format!("{dir}/{FRONTEND_DIR}/app.js"),
                fill(FRONTEND_APP, &vars),
            ),
            (
                format!("{dir}/{FRONTEND_DIR}/style.css"),
                fill(FRONTEND_STYLE, &vars),
            ),
        ];
    }
    let server = if o.serves_api() { GRPC_SERVER } else { SERVER };
    let mut files = vec![
        (format!("{dir}/{}", o.entry), fill(server, &vars)),
        (format!("{dir}/Dockerfile"), fill(DOCKERFILE, &vars)),
        (format!("{dir}/requirements.txt"), fill(REQUIREMENTS, &vars)),
        (format!("{dir}/service.env"), fill(ENV, &vars)),
    ];
    if o.serves_api() {
        files.push(proto(&o.name));
    }
    files
}

/// The `.proto` of a service that serves an API: (path, content). Its name
/// alone decides it, so add-service can start the generator early.
pub fn proto(name: &str) -> (String, String) {
    let vars = [
        ("name", name.to_string()),
        ("proto_pkg", proto_pkg(name)),
        ("service_class", service_class(name)),
    ];
    (proto_file(name), fill(PROTO, &vars))
}

/// The compose entry, rendered with the file's own indentation step.
pub fn compose_entry(o: &Options, unit: usize) -> String {
    let mut labels = vec![(
        compose::LABEL_PROTOCOL.to_string(),
        o.protocol().to_string(),
    )];
    if o.https {
        labels.push((compose::LABEL_HTTPS.to_string(), "true".to_string()));
    }
    if let Some(p) = &o.public {
        labels.push((compose::LABEL_PUBLIC.to_string(), p.clone()));
    }
    if o.frontend {
        labels.push((
            compose::LABEL_FRONTEND.to_string(),
            FRONTEND_DIR.to_string(),
        ));
    }
    let mut volumes = o.volumes.clone();
    // Certificates are mounted at run time, never built into the image.
    volumes.push(("./certs/trust".into(), "/run/trust:ro".into()));
    if o.https {
        volumes.push((format!("./certs/services/{}", o.name), "/run/tls:ro".into()));
    }
    let spec = ServiceSpec {
        name: o.name.clone(),
        port: o.port,
        networks: o.networks(),
        volumes,
        depends_on: o.depends(),
        labels,
        env_file: {
            let mut e = vec![format!("{}/service.env", o.dir())];
            if o.pg || o.redis {
                // The credentials, made per checkout (plan/datalayer.rs).
                e.push(crate::plan::datalayer::secrets_file(&o.name));
            }
            e
        },
        dockerfile: format!("backend_services/{}/Dockerfile", o.name),
        // Its API is for NGINX; the host reaches it on loopback only.
        host_ip: if o.frontend { "127.0.0.1:" } else { "" }.to_string(),
    };
    render_service(&spec, unit)
}

/// What `add-service` writes for one service. Rendered with the file's own
/// indentation step.
pub struct ServiceSpec {
    pub name: String,
    pub port: u16,
    pub networks: Vec<String>,
    pub volumes: Vec<(String, String)>,
    pub depends_on: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub env_file: Vec<String>,
    pub dockerfile: String,
    /// Written before the published port: empty, or `127.0.0.1:`.
    pub host_ip: String,
}

pub fn render_service(spec: &ServiceSpec, unit: usize) -> String {
    let i1 = " ".repeat(unit);
    let i2 = " ".repeat(unit * 2);
    let i3 = " ".repeat(unit * 3);
    let i4 = " ".repeat(unit * 4);
    let mut s = format!("{i1}{}:\n", spec.name);
    s += &format!(
        "{i2}build:\n{i3}context: ./src\n{i3}dockerfile: {}\n",
        spec.dockerfile
    );
    s += &format!("{i3}args:\n{i4}PYTHON_IMAGE: ${{PYTHON_IMAGE:-python:3.12-slim}}\n");
    s += &format!("{i2}container_name: {}\n", spec.name);
    // Loopback only: a port on all interfaces is reachable through the host
    // from every container (check rule MR020).
    s += &format!("{i2}ports:\n{i3}- \"127.0.0.1:{p}:{p}\"\n", p = spec.port);
    s += &format!("{i2}networks:\n");
    for n in &spec.networks {
        s += &format!("{i3}- {n}\n");
    }
    if spec.volumes.is_empty() {
        s += &format!("{i2}volumes: []\n");
    } else {
        s += &format!("{i2}volumes:\n");
        for (v, p) in &spec.volumes {
            s += &format!("{i3}- {v}:{p}\n");
        }
    }
    if spec.depends_on.is_empty() {
        s += &format!("{i2}depends_on: []\n");
    } else {
        s += &format!("{i2}depends_on:\n");
        for d in &spec.depends_on {
            s += &format!("{i3}- {d}\n");
        }
    }
    s += &format!("{i2}env_file:\n");
    for e in &spec.env_file {
        s += &format!("{i3}- {e}\n");
    }
    if !spec.labels.is_empty() {
        s += &format!("{i2}labels:\n");
        for (k, v) in &spec.labels {
            s += &format!("{i3}{k}: \"{v}\"\n");
        }
    }
    s
}

/// The snapshot helper of the integration tests, and its one switch.
#[cfg(test)]
#[path = "../../tests/common/snap.rs"]
mod snap;

#[cfg(test)]
mod tests {
    use super::*;

    /// The templates' output is pinned in `xtask/tests/golden/`; run with
    /// `XTASK_SNAPSHOT=overwrite` to accept a deliberate change.
    #[test]
    fn templates_match_golden_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let cases = [
            (
                "grpc-pg-redis-https",
                Options {
                    name: "billing-events".into(),
                    grpc: true,
                    pg: true,
                    redis: true,
                    https: true,
                    public: None,
                    port: 50100,
                    depends_on: vec!["accounts".into()],
                    volumes: vec![("billing-data".into(), "/var/lib/billing".into())],
                    entry: "server.py".into(),
                    frontend: false,
                },
            ),
            (
                "public-http",
                Options {
                    name: "web".into(),
                    public: Some("/web/".into()),
                    port: 8081,
                    entry: "main.py".into(),
                    ..Default::default()
                },
            ),
            (
                "frontend",
                Options {
                    name: "shop-web".into(),
                    public: Some("/shop-web/".into()),
                    port: 8090,
                    entry: "server.py".into(),
                    frontend: true,
                    ..Default::default()
                },
            ),
        ];
        for (case, o) in cases {
            let mut outputs: Vec<(String, String)> = files(&o)
                .into_iter()
                .map(|(p, c)| (p.rsplit('/').next().unwrap().to_string(), c))
                .collect();
            for (name, content) in &outputs {
                assert!(
                    !content.contains("{{"),
                    "{case}/{name}: a placeholder is left:\n{content}"
                );
            }
            outputs.push(("compose-entry.yml".into(), compose_entry(&o, 2)));
            if let Some(p) = &o.public {
                let conf = if o.frontend {
                    crate::edit::nginx::render_frontend(&o.name, p, o.port, o.https)
                } else {
                    crate::edit::nginx::render_location(
                        &o.name,
                        p,
                        o.port,
                        o.https,
                        o.protocol() == "grpc",
                    )
                };
                outputs.push(("location.conf".into(), conf));
            }
            for (name, content) in outputs {
                snap::assert_snapshot(&dir.join(case).join(&name), &content);
            }
        }
    }
}
