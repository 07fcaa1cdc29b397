//! The command line, declared once with clap's derive: the parser, the
//! per-command `--help`, "did you mean" for commands, `--version` and shell
//! completions all come from these types. `main.rs` dispatches on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "cargo xtask: build automation for the backend-services monorepo",
    after_help = "Exit codes: 0 ok, 1 findings (check, sync --check, verify), 2 bad input or failure."
)]
pub struct Cli {
    /// The repository root (default: the nearest folder upwards with a Cargo.toml that has [workspace], xtask/, a compose file and src/backend_services/)
    #[arg(long, value_name = "dir", global = true)]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add a service: folder, compose entry, certs, NGINX endpoint
    AddService(AddArgs),
    /// The exact reverse of add-service; refuses while other services depend on it
    RemoveService {
        /// The service to remove
        name: String,
        /// Keep src/backend_services/<name>/
        #[arg(long)]
        keep_files: bool,
        /// Print the change as a diff and write nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite [alt_names], NGINX endpoints, workspace members and the data layer from the compose entries
    Sync {
        /// Print the diff and exit 1 instead of writing
        #[arg(long)]
        check: bool,
    },
    /// (Re)generate the local CA and the certificates that are stale
    Certs {
        /// Regenerate every leaf certificate (the CA is kept)
        #[arg(long)]
        force: bool,
    },
    /// Generate the Python messages and gRPC stubs of src/proto into src/common/gen
    Proto {
        /// Only compare: list the stale files and exit 1
        #[arg(long)]
        check: bool,
    },
    /// The static house rules
    Check {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Print the rule table (docs/check.md embeds it)
        #[arg(long)]
        rules: bool,
    },
    /// The services
    List {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Build, start and prove reachability end to end (Docker API)
    Verify(VerifyArgs),
    /// Deployment files for an orchestrator: deploy/swarm/stack.yml or deploy/k8s/
    Export(ExportArgs),
    /// Local stand-ins for the base images
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// A real multi-node Docker Swarm on this machine (nodes are containers running dockerd)
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        /// The cluster's name (its objects are monorepo-cluster-<name>-*)
        #[arg(long, value_name = "name", global = true, default_value = "local", value_parser = parse_cluster_name)]
        name: String,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build local stand-ins for the base images from Debian packages (no registry needed)
    Bootstrap,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make the cluster (or reuse a healthy one): N nodes in one swarm, and a registry
    Up {
        /// How many nodes (node 1 is the manager)
        #[arg(long, value_name = "n", default_value_t = 3)]
        nodes: usize,
    },
    /// Remove every container, network, volume and folder of the cluster
    Down {
        /// Also remove the nodes' root filesystem image (the cache of the next `up`)
        #[arg(long)]
        purge: bool,
    },
    /// The nodes (id, hostname, state, availability, role, memory) and the registry
    Status,
    /// Copy host images into node 1 and push them to the cluster's registry
    Push {
        #[arg(required = true, value_name = "image")]
        images: Vec<String>,
    },
}

/// A DNS-label-like name: it becomes part of container and network names.
fn parse_cluster_name(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 20
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}`: use 1-20 lowercase letters, digits and `-`, starting with a letter"
        ))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// What to write: swarm (deploy/swarm/stack.yml) or k8s (deploy/k8s/)
    #[arg(value_enum)]
    pub target: ExportTarget,
    /// Write nothing; exit 1 when the files are out of date (k8s: or the NetworkPolicies differ from the matrix)
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Print the change as a diff and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Image prefix for the services built here (default: EXPORT_REGISTRY from the environment or .env, else localhost:5000/monorepo)
    #[arg(long, value_name = "prefix")]
    pub registry: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportTarget {
    Swarm,
    K8s,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Clone, Default, Args)]
pub struct AddArgs {
    /// The service's name (a DNS label: lowercase letters, digits, `-`)
    pub name: String,
    /// It serves gRPC (joins grpc-network)
    #[arg(long)]
    pub grpc: bool,
    /// It uses Postgres (joins pg-network, depends on postgres)
    #[arg(long)]
    pub pg: bool,
    /// It uses Redis (joins redis-network, depends on redis)
    #[arg(long)]
    pub redis: bool,
    /// It is served over https (DNS.N in openssl.cnf, its own certificate)
    #[arg(long)]
    pub https: bool,
    /// A public HTTP API behind NGINX at this path, e.g. /billing/
    #[arg(long, value_name = "path")]
    pub public: Option<String>,
    /// A web page too: Frontend/ served by NGINX at the --public path, its API (Backend/) at <path>api/
    #[arg(long)]
    pub frontend: bool,
    /// Its port (default: the next free one)
    #[arg(long, value_name = "n", value_parser = parse_port)]
    pub port: Option<u32>,
    /// A service it depends on (repeatable)
    #[arg(long, value_name = "service")]
    pub depends_on: Vec<String>,
    /// A named volume to mount, as name:path (repeatable)
    #[arg(long = "volume", value_name = "name:path")]
    pub volumes: Vec<String>,
    /// The entry point file
    #[arg(long, value_name = "server.py|main.py")]
    pub entry: Option<String>,
    /// Print the change as a diff and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// A number; the range is checked with the rest of the request.
fn parse_port(v: &str) -> Result<u32, String> {
    v.parse()
        .map_err(|_| format!("`{v}` is not a number; use a port from 1 to 65535"))
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Only these services (and what they depend on)
    #[arg(long, value_name = "service", num_args = 1..)]
    pub only: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Also write a JUnit report here
    #[arg(long, value_name = "file")]
    pub junit: Option<PathBuf>,
    /// Leave the stack running
    #[arg(long)]
    pub keep: bool,
    /// Seconds to wait for each service to answer
    #[arg(long, value_name = "secs", default_value_t = 120)]
    pub timeout: u64,
    /// The image builder: BuildKit when the daemon has it (auto), or one of them
    #[arg(long, value_enum, default_value_t = crate::docker::buildkit::Choice::Auto)]
    pub builder: crate::docker::buildkit::Choice,
    /// Where the stack runs: containers on this engine (compose) or services on its swarm (swarm)
    #[arg(long, value_enum, default_value_t = Engine::Compose)]
    pub engine: Engine,
    /// With --engine swarm on an engine in no swarm: make a one-node swarm for this run and leave it afterwards
    #[arg(long)]
    pub init_swarm: bool,
    /// With --engine swarm: run on the multi-node cluster of `cargo xtask cluster up` (default name: local), services spread over its nodes
    #[arg(long, value_name = "name", num_args = 0..=1, default_missing_value = "local", conflicts_with = "init_swarm")]
    pub cluster: Option<String>,
    /// Start Postgres from an empty data directory (its init scripts run)
    /// instead of from the one cached by an earlier run with the same image,
    /// environment and init scripts
    #[arg(long)]
    pub no_seed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Compose,
    Swarm,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_like_before() {
        let c = Cli::try_parse_from([
            "x",
            "--root",
            "/r",
            "verify",
            "--only",
            "a",
            "b",
            "--timeout",
            "5",
        ])
        .unwrap();
        assert_eq!(c.root.as_deref(), Some(std::path::Path::new("/r")));
        let Some(Command::Verify(v)) = c.command else {
            panic!()
        };
        assert_eq!(
            (v.only, v.timeout, v.engine, v.init_swarm),
            (
                vec!["a".to_string(), "b".to_string()],
                5,
                Engine::Compose,
                false
            )
        );
        let c = Cli::try_parse_from(["x", "verify", "--engine", "swarm", "--init-swarm"]).unwrap();
        let Some(Command::Verify(v)) = c.command else {
            panic!()
        };
        assert_eq!((v.engine, v.init_swarm), (Engine::Swarm, true));
        let c = Cli::try_parse_from([
            "x",
            "add-service",
            "b",
            "--depends-on",
            "a",
            "--depends-on",
            "c",
            "--port",
            "70000",
        ])
        .unwrap();
        let Some(Command::AddService(a)) = c.command else {
            panic!()
        };
        assert_eq!((a.depends_on.len(), a.port), (2, Some(70000)));
    }

    #[test]
    fn cluster_commands_and_names() {
        let c =
            Cli::try_parse_from(["x", "cluster", "up", "--nodes", "2", "--name", "ci"]).unwrap();
        let Some(Command::Cluster {
            command: ClusterCommand::Up { nodes },
            name,
        }) = c.command
        else {
            panic!()
        };
        assert_eq!((nodes, name.as_str()), (2, "ci"));
        let c = Cli::try_parse_from(["x", "cluster", "down", "--purge"]).unwrap();
        let Some(Command::Cluster {
            command: ClusterCommand::Down { purge },
            name,
        }) = c.command
        else {
            panic!()
        };
        assert_eq!((purge, name.as_str()), (true, "local"));
        assert!(Cli::try_parse_from(["x", "cluster", "status", "--name", "Up"]).is_err());
        assert!(Cli::try_parse_from(["x", "cluster", "push"]).is_err());
        let c = Cli::try_parse_from(["x", "verify", "--engine", "swarm", "--cluster"]).unwrap();
        let Some(Command::Verify(v)) = c.command else {
            panic!()
        };
        assert_eq!(v.cluster.as_deref(), Some("local"));
    }

    #[test]
    fn suggests_commands_and_answers_help() {
        let e = Cli::try_parse_from(["x", "verfy"]).unwrap_err();
        assert!(e.to_string().contains("verify"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["x", "add-service", "--help"]).unwrap_err();
        assert_eq!(e.exit_code(), 0);
        assert!(e.to_string().contains("--depends-on"), "{e}");
    }
}
