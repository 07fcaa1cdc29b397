//! `cargo xtask`: the monorepo's build automation. See ARCHITECTURE.md.

mod check;
mod cmd;
mod docker;
mod edit;
mod model;
mod plan;
#[cfg(test)]
mod proptests;
mod verify;

use cmd as commands;
use cmd::images;
use model::repo;

use std::path::PathBuf;
use std::process::ExitCode;

/// An error for the user: what is wrong, where (file:line), and the fix.
/// Every error exits 2; `check` and `sync --check` findings exit 1.
#[derive(Debug)]
pub struct Error {
    msg: String,
}

impl Error {
    pub fn input(msg: impl Into<String>) -> Error {
        Error { msg: msg.into() }
    }
    pub fn failure(msg: impl Into<String>) -> Error {
        Error { msg: msg.into() }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Error {
        Error::input(format!("{e}\n  fix: see `cargo xtask --help`"))
    }
}

const HELP: &str = "\
cargo xtask: build automation for the backend-services monorepo

USAGE: cargo xtask [--root <dir>] <command> [options]

COMMANDS:
  add-service <name>      add a service: folder, compose entry, certs, NGINX endpoint
      --grpc --pg --redis --https --public <path> --port <n>
      --depends-on <service>... --volume <name>:<path>... --entry server.py|main.py --dry-run
  remove-service <name>   the exact reverse of add-service [--keep-files] [--dry-run]
  sync [--check]          rewrite [alt_names], NGINX endpoints and workspace members
  certs [--force]         (re)generate the local CA and certificates
  check [--format human|json]   the static house rules (--rules lists them)
  list [--format human|json]    the services
  verify [--only <service>...] [--format human|json] [--junit <file>] [--keep] [--timeout <secs>]
                          build, start and prove reachability end to end (Docker API)
  images bootstrap        build local stand-ins for the base images (no registry needed)
  help                    this text

Exit codes: 0 ok, 1 findings (check, sync --check), 2 bad input or failure.
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

fn format_flag(p: &mut lexopt::Parser) -> Result<bool, Error> {
    use lexopt::ValueExt;
    let v = p.value()?.string()?;
    match v.as_str() {
        "json" => Ok(true),
        "human" => Ok(false),
        _ => Err(Error::input(format!("--format `{v}`: expected human or json"))),
    }
}

fn run() -> Result<u8, Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut root: Option<PathBuf> = None;
    let cmd = loop {
        match p.next()? {
            Some(Long("root")) => root = Some(p.value()?.into()),
            Some(Short('h') | Long("help")) | None => {
                print!("{HELP}");
                return Ok(0);
            }
            Some(Value(v)) => break v.string()?,
            Some(a) => return Err(a.unexpected().into()),
        }
    };
    let root = match root {
        Some(r) => r,
        None => repo::find_root(&std::env::current_dir().map_err(|e| Error::input(e.to_string()))?)?,
    };
    match cmd.as_str() {
        "add-service" => {
            let mut a = commands::AddArgs::default();
            let mut name = None;
            while let Some(arg) = p.next()? {
                match arg {
                    Long("grpc") => a.grpc = true,
                    Long("pg") => a.pg = true,
                    Long("redis") => a.redis = true,
                    Long("https") => a.https = true,
                    Long("dry-run") => a.dry_run = true,
                    Long("public") => a.public = Some(p.value()?.string()?),
                    Long("port") => {
                        let v = p.value()?.string()?;
                        a.port = Some(v.parse().map_err(|_| Error::input(format!("--port `{v}`: not a number\n  fix: use a port from 1 to 65535")))?);
                    }
                    Long("depends-on") => a.depends_on.push(p.value()?.string()?),
                    Long("volume") => a.volumes.push(p.value()?.string()?),
                    Long("entry") => a.entry = Some(p.value()?.string()?),
                    Value(v) if name.is_none() => name = Some(v.string()?),
                    _ => return Err(arg.unexpected().into()),
                }
            }
            a.name = name.ok_or_else(|| Error::input("add-service needs a name\n  fix: cargo xtask add-service <name> [flags]"))?;
            commands::add(&root, &a)?;
            Ok(0)
        }
        "remove-service" => {
            let (mut name, mut keep, mut dry) = (None, false, false);
            while let Some(arg) = p.next()? {
                match arg {
                    Long("keep-files") => keep = true,
                    Long("dry-run") => dry = true,
                    Value(v) if name.is_none() => name = Some(v.string()?),
                    _ => return Err(arg.unexpected().into()),
                }
            }
            let name = name.ok_or_else(|| Error::input("remove-service needs a name"))?;
            commands::remove(&root, &name, keep, dry)?;
            Ok(0)
        }
        "sync" => {
            let mut check = false;
            while let Some(arg) = p.next()? {
                match arg {
                    Long("check") => check = true,
                    _ => return Err(arg.unexpected().into()),
                }
            }
            let clean = commands::sync(&root, check)?;
            Ok(if check && !clean { 1 } else { 0 })
        }
        "certs" => {
            let mut force = false;
            while let Some(arg) = p.next()? {
                match arg {
                    Long("force") => force = true,
                    _ => return Err(arg.unexpected().into()),
                }
            }
            commands::certs(&root, force)?;
            Ok(0)
        }
        "check" | "list" => {
            let mut json = false;
            while let Some(arg) = p.next()? {
                match arg {
                    Long("format") => json = format_flag(&mut p)?,
                    Long("rules") if cmd == "check" => {
                        print!("{}", check::rules_table());
                        return Ok(0);
                    }
                    _ => return Err(arg.unexpected().into()),
                }
            }
            if cmd == "list" {
                commands::list(&root, json)?;
                return Ok(0);
            }
            let repo = repo::Repo::load(&root)?;
            let findings = check::run(&repo)?;
            print!("{}", if json { check::render_json(&findings) } else { check::render_human(&findings) });
            Ok(if findings.is_empty() { 0 } else { 1 })
        }
        "images" => {
            let sub = match p.next()? {
                Some(Value(v)) => v.string()?,
                _ => return Err(Error::input("usage: cargo xtask images bootstrap")),
            };
            if sub != "bootstrap" {
                return Err(Error::input(format!("unknown `images {sub}`\n  fix: cargo xtask images bootstrap")));
            }
            block_on(images::bootstrap(&root))?;
            Ok(0)
        }
        "verify" => {
            let mut o = verify::Opts { only: vec![], json: false, junit: None, keep: false, timeout: 120 };
            while let Some(arg) = p.next()? {
                match arg {
                    Long("only") => o.only.push(p.value()?.string()?),
                    Long("format") => o.json = format_flag(&mut p)?,
                    Long("junit") => o.junit = Some(p.value()?.into()),
                    Long("keep") => o.keep = true,
                    Long("timeout") => {
                        let v = p.value()?.string()?;
                        o.timeout = v.parse().map_err(|_| Error::input(format!("--timeout `{v}`: not a number of seconds")))?;
                    }
                    Value(v) if !o.only.is_empty() => o.only.push(v.string()?),
                    _ => return Err(arg.unexpected().into()),
                }
            }
            block_on(verify::verify(&root, o))
        }
        "help" => {
            print!("{HELP}");
            Ok(0)
        }
        other => Err(Error::input(format!("unknown command `{other}`\n  fix: see `cargo xtask --help`"))),
    }
}
