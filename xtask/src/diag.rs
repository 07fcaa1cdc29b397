//! One `Diagnostic` for everything the tool tells the user is wrong: errors
//! (bad input, a failure) and `check` findings. Each says what is wrong,
//! where (file:line[:column]) and the fix. The rule table and the exit codes
//! are decided here, once.

use std::fmt;

/// How serious a diagnostic is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Bad input or a failure: nothing was written; exit 2.
    Error,
    /// A house rule is broken (`check`); exit 1.
    Finding,
    /// Worth saying, changes nothing: printed on stderr (`warn`), exit 0.
    Warning,
}

/// The process exit codes: 0 ok, 1 findings, 2 bad input or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Findings = 1,
    Failure = 2,
}

impl Exit {
    /// Ok when `clean`, else Findings (`check`, `sync --check`, `verify`).
    pub fn findings_unless(clean: bool) -> Exit {
        if clean {
            Exit::Ok
        } else {
            Exit::Findings
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

impl Severity {
    pub fn exit(self) -> Exit {
        match self {
            Severity::Error => Exit::Failure,
            Severity::Finding => Exit::Findings,
            Severity::Warning => Exit::Ok,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Finding => "finding",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! rules {
    ($($v:ident = $id:literal, $name:literal, $what:literal;)*) => {
        /// The static house rules, each with a stable ID. `check --rules`
        /// and the table in docs/check.md are made from this list.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rule { $($v),* }

        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$v),*];
            pub fn id(self) -> &'static str {
                match self { $(Rule::$v => $id),* }
            }
            pub fn name(self) -> &'static str {
                match self { $(Rule::$v => $name),* }
            }
            /// What the rule checks, in one line.
            pub fn checks(self) -> &'static str {
                match self { $(Rule::$v => $what),* }
            }
        }
    };
}

rules! {
    ServiceFolder = "MR001", "service-folder", "a service folder has server.py or main.py (a frontend service: in Backend/), and a Dockerfile";
    FolderInCompose = "MR002", "folder-in-compose", "every folder under src/backend_services/ has a compose entry";
    BuildContext = "MR003", "build-context", "every compose build context and Dockerfile exists";
    ContainerName = "MR004", "container-name", "container_name equals the service key";
    Ports = "MR005", "ports", "host ports are published once, and every port is in 1-65535";
    NetworksDeclared = "MR006", "networks-declared", "every network a service joins is declared at the top level";
    VolumesDeclared = "MR007", "volumes-declared", "every named volume a service mounts is declared at the top level";
    DependsOn = "MR008", "depends-on", "depends_on names existing services, with no cycle";
    EnvFile = "MR009", "env-file", "every env_file exists";
    DataNetworks = "MR010", "data-networks", "a service that depends on postgres or redis is on pg-network or redis-network";
    GrpcNetwork = "MR011", "grpc-network", "a service whose environment names another service's gRPC address shares grpc-network with it";
    AltNames = "MR012", "alt-names", "every https service has a DNS.N in openssl.cnf, and the N are unique";
    Certificates = "MR013", "certificates", "the certificates exist, cover [alt_names], and do not expire within 30 days";
    NginxEndpoint = "MR014", "nginx-endpoint", "every public path has an NGINX endpoint that proxies to the service's container name and port";
    Sync = "MR015", "sync", "`cargo xtask sync --check` is clean";
    Names = "MR016", "names", "service keys (DNS labels where this tool manages the service), public paths, volumes, env files, build contexts and [alt_names] values follow the safe grammars (model/names.rs)";
    ProtoGenerated = "MR017", "proto-generated", "src/common/gen is what `cargo xtask proto` makes from src/proto";
    OwnDataUsers = "MR018", "own-data-users", "each service that uses Postgres or Redis logs in as its own role / ACL user (its name); no two share one";
    CommittedCredentials = "MR019", "committed-credentials", "no committed env file or compose file sets a PASSWORD/SECRET/TOKEN-like variable to a literal value";
    PortOnAllInterfaces = "MR020", "port-on-all-interfaces", "only nginx and services labelled `monorepo.reach: \"network\"` publish a port on all interfaces; the rest bind to 127.0.0.1";
    FrontendFiles = "MR021", "frontend-files", "a service with a page (label monorepo.frontend) has src/backend_services/<name>/Frontend/index.html";
    FrontendRoutes = "MR022", "frontend-routes", "a service with a page has NGINX locations for its path and the path without its slash, and NGINX mounts its Frontend/";
}

/// The rules as a Markdown table (docs/check.md embeds it; a test keeps it current).
pub fn rules_table() -> String {
    let mut s = String::from("| ID | rule | checks |\n|---|---|---|\n");
    for r in Rule::ALL {
        s += &format!("| {} | {} | {} |\n", r.id(), r.name(), r.checks());
    }
    s
}

/// The candidate closest to a mistyped `name`, if one is close enough
/// (the same measure and threshold clap uses for commands).
pub fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro(name, c), *c))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The fix for a name that is not one of `candidates` (`what` names them,
/// e.g. "services"): the near one if there is one, and the list.
pub fn name_one_of(name: &str, candidates: &[&str], what: &str) -> String {
    let list = candidates.join(", ");
    match did_you_mean(name, candidates) {
        Some(near) => format!("did you mean `{near}`? (the {what}: {list})"),
        None => format!("name one of the {what}: {list}"),
    }
}

/// `file:line:column`, as much of it as is known (empty without a file).
fn location(file: &str, line: usize, column: usize) -> String {
    match (line, column) {
        _ if file.is_empty() => String::new(),
        (0, _) => file.to_string(),
        (l, 0) => format!("{file}:{l}"),
        (l, c) => format!("{file}:{l}:{c}"),
    }
}

/// A second place a diagnostic points at, with its own short message: the
/// other half of a clash (the port's first publisher, the first of two
/// equal keys), or each item of a list (every key verify refuses). Like
/// codespan's secondary labels, as cargo-deny prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Repository-relative path, as `Diagnostic::file`.
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Label {
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> Label {
        Label {
            file: file.to_string(),
            line,
            column: 0,
            message: message.into(),
        }
    }

    pub fn col(mut self, column: usize) -> Label {
        self.column = column;
        self
    }

    pub fn location(&self) -> String {
        location(&self.file, self.line, self.column)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        })
    }
}

/// What is wrong, where, and the fix. `line` and `column` are 1-based; 0
/// means "the whole file" (or no position known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub rule: Option<Rule>,
    pub severity: Severity,
    /// Repository-relative path; empty when the message is not about a file.
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// Secondary places, each with its own note, printed under the message.
    pub labels: Vec<Label>,
    pub fix: Option<String>,
}

/// The error type of every fallible function: a diagnostic of severity Error.
pub type Error = Diagnostic;

impl Diagnostic {
    /// Bad input or a failure. Add the place with `at` and the fix with `fix`.
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            rule: None,
            severity: Severity::Error,
            file: String::new(),
            line: 0,
            column: 0,
            message: message.into(),
            labels: vec![],
            fix: None,
        }
    }

    /// Something the user should know that stops nothing (a request taken
    /// in a normalised form, a leftover the next command removes). Printed
    /// with `warn`.
    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// A broken house rule found by `check`.
    pub fn finding(
        rule: Rule,
        file: &str,
        line: usize,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            rule: Some(rule),
            severity: Severity::Finding,
            file: file.to_string(),
            line,
            column: 0,
            message: message.into(),
            labels: vec![],
            fix: Some(fix.into()),
        }
    }

    pub fn at(mut self, file: &str, line: usize) -> Diagnostic {
        self.file = file.to_string();
        self.line = line;
        self
    }

    /// The whole file at `path` (one outside the repository too: a cache,
    /// a state file), as it is displayed.
    pub fn at_path(self, path: &std::path::Path) -> Diagnostic {
        self.at(&path.display().to_string(), 0)
    }

    pub fn col(mut self, column: usize) -> Diagnostic {
        self.column = column;
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Diagnostic {
        self.fix = Some(fix.into());
        self
    }

    /// Adds a secondary place (see `Label`).
    pub fn label(mut self, label: Label) -> Diagnostic {
        self.labels.push(label);
        self
    }

    /// `file:line:column`, as much of it as is known.
    pub fn location(&self) -> String {
        location(&self.file, self.line, self.column)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.rule.map(Rule::id),
            "rule": self.rule.map(Rule::name),
            "severity": self.severity.as_str(),
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "labels": self.labels.iter().map(Label::to_json).collect::<Vec<_>>(),
            "fix": self.fix,
        })
    }
}

/// `file:line: message`, then each label as `  file:line: message` and
/// `  fix: …`, each on its own line; `check` puts the rule ID first, `main`
/// puts `error: ` first.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(r) = self.rule {
            write!(f, "{} ", r.id())?;
        }
        let loc = self.location();
        if !loc.is_empty() {
            write!(f, "{loc}: ")?;
        }
        f.write_str(&self.message)?;
        for l in &self.labels {
            match l.location() {
                loc if loc.is_empty() => write!(f, "\n  {}", l.message)?,
                loc => write!(f, "\n  {loc}: {}", l.message)?,
            }
        }
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Prints a warning on stderr as `main` prints an error: `warning: `, then
/// the diagnostic (`file:line: message`, `  fix: …`).
pub fn warn(d: &Diagnostic) {
    eprintln!("{}: {d}", d.severity.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_and_names_are_unique_and_numbered_in_order() {
        let ids: std::collections::BTreeSet<_> = Rule::ALL.iter().map(|r| r.id()).collect();
        let names: std::collections::BTreeSet<_> = Rule::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(ids.len(), Rule::ALL.len());
        assert_eq!(names.len(), Rule::ALL.len());
        // Strictly increasing MRnnn; a gap is allowed where a parallel
        // branch holds the number (MR017: `uxp`).
        let nums: Vec<u32> = Rule::ALL
            .iter()
            .map(|r| r.id().strip_prefix("MR").unwrap().parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "{nums:?}");
        assert_eq!(nums[0], 1);
    }

    #[test]
    fn renders_place_and_fix() {
        let e = Diagnostic::error("bad")
            .at("f.yml", 3)
            .col(7)
            .fix("do this");
        assert_eq!(e.to_string(), "f.yml:3:7: bad\n  fix: do this");
        assert_eq!(e.severity.exit(), Exit::Failure);
        let f = Diagnostic::finding(Rule::Ports, "f.yml", 0, "m", "x");
        assert_eq!(f.to_string(), "MR005 f.yml: m\n  fix: x");
        assert_eq!(f.to_json()["id"], "MR005");
        let w = Diagnostic::warning("w").at("f.yml", 2).fix("y");
        assert_eq!(w.to_string(), "f.yml:2: w\n  fix: y");
        assert_eq!(w.severity.exit(), Exit::Ok);
        assert_eq!(w.to_json()["severity"], "warning");
    }

    #[test]
    fn renders_secondary_labels_under_the_place_in_text_and_json() {
        let f = Diagnostic::finding(
            Rule::Ports,
            "docker-compose.yml",
            12,
            "host port 8080/tcp of `b` is already published by `a`",
            "pick a free port",
        )
        .label(Label::at("compose.override.yml", 7, "`a` publishes it here").col(9))
        .label(Label::at("", 0, "a note without a place"));
        assert_eq!(
            f.to_string(),
            "MR005 docker-compose.yml:12: host port 8080/tcp of `b` is already published by `a`\n  \
             compose.override.yml:7:9: `a` publishes it here\n  \
             a note without a place\n  \
             fix: pick a free port"
        );
        let j = f.to_json();
        assert_eq!(
            j["labels"],
            serde_json::json!([
                {"file": "compose.override.yml", "line": 7, "column": 9, "message": "`a` publishes it here"},
                {"file": "", "line": 0, "column": 0, "message": "a note without a place"}
            ])
        );
        // The fields that were there before labels keep their names.
        for k in [
            "id", "rule", "severity", "file", "line", "column", "message", "fix",
        ] {
            assert!(j.get(k).is_some(), "{k} missing from {j}");
        }
        assert_eq!(
            (j["file"].as_str(), j["line"].as_u64()),
            (Some("docker-compose.yml"), Some(12))
        );
        // No label: an empty array, and the text is as before.
        let e = Diagnostic::error("bad").at("f.yml", 3);
        assert_eq!(e.to_json()["labels"], serde_json::json!([]));
        assert_eq!(e.to_string(), "f.yml:3: bad");
    }

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(
            did_you_mean("acounts", &["postgres", "accounts", "gateway"]),
            Some("accounts")
        );
        assert_eq!(did_you_mean("zzz", &["postgres", "accounts"]), None);
        assert_eq!(
            name_one_of("acounts", &["postgres", "accounts"], "services"),
            "did you mean `accounts`? (the services: postgres, accounts)"
        );
        assert_eq!(
            name_one_of("zzz", &["postgres"], "services"),
            "name one of the services: postgres"
        );
    }
}
