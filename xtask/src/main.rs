//! `cargo xtask`: parse the command line (`cli`), run the command, and turn
//! the outcome into an exit code (`diag::Exit`). See ARCHITECTURE.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use xtask::cli::{Cli, ClusterCommand, Command, Engine, Format, ImagesCommand};
use xtask::diag::{Diagnostic, Exit};
use xtask::{check, cmd, diag, model, verify};

fn main() -> ExitCode {
    // clap prints its own usage errors (exit 2) and --help/--version (exit 0).
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e}");
            e.severity.exit().into()
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The root: `--root` or the nearest folder upwards with every marker.
fn root(given: Option<PathBuf>) -> Result<PathBuf, Diagnostic> {
    let cwd = std::env::current_dir().map_err(|e| {
        Diagnostic::error(format!("the current folder: {e}")).fix("cd into the monorepo")
    })?;
    model::repo::find_root(given.as_deref(), &cwd)
}

fn run(cli: Cli) -> Result<Exit, Diagnostic> {
    let Some(command) = cli.command else {
        Cli::command().print_help().ok();
        return Ok(Exit::Ok);
    };
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cargo-xtask",
                &mut std::io::stdout(),
            );
            Ok(Exit::Ok)
        }
        Command::Check { rules: true, .. } => {
            print!("{}", diag::rules_table());
            Ok(Exit::Ok)
        }
        Command::AddService(a) => cmd::add::run(&root(cli.root)?, &a).map(|()| Exit::Ok),
        Command::RemoveService {
            name,
            keep_files,
            dry_run,
        } => cmd::remove::run(&root(cli.root)?, &name, keep_files, dry_run).map(|()| Exit::Ok),
        Command::Sync { check } => cmd::sync::run(&root(cli.root)?, check)
            .map(|clean| Exit::findings_unless(clean || !check)),
        Command::Proto { check } => cmd::proto::run(&root(cli.root)?, check)
            .map(|clean| Exit::findings_unless(clean || !check)),
        Command::Certs { force } => cmd::certs::run(&root(cli.root)?, force).map(|()| Exit::Ok),
        Command::List { format } => {
            cmd::list::run(&root(cli.root)?, format == Format::Json).map(|()| Exit::Ok)
        }
        Command::Check { format, .. } => {
            let findings = (|| {
                let root = root(cli.root)?;
                let _lock = xtask::plan::txn::lock_shared(&root)?;
                check::run(&model::repo::Repo::load(&root)?)
            })();
            // A reader of the JSON gets an error as JSON too (exit 2).
            let findings = match findings {
                Err(e) if format == Format::Json => {
                    print!("{}", check::render_json_error(&e));
                    return Ok(e.severity.exit());
                }
                r => r?,
            };
            print!(
                "{}",
                if format == Format::Json {
                    check::render_json(&findings)
                } else {
                    check::render_human(&findings)
                }
            );
            Ok(Exit::findings_unless(findings.is_empty()))
        }
        Command::Images {
            command: ImagesCommand::Bootstrap,
        } => block_on(cmd::images::bootstrap(&root(cli.root)?)).map(|()| Exit::Ok),
        Command::Cluster { command, name } => {
            let root = root(cli.root)?;
            block_on(async {
                match command {
                    ClusterCommand::Up { nodes } => cmd::cluster::up(&root, &name, nodes).await,
                    ClusterCommand::Down { purge } => cmd::cluster::down(&root, &name, purge).await,
                    ClusterCommand::Status => cmd::cluster::status(&root, &name).await,
                    ClusterCommand::Push { images } => {
                        cmd::cluster::push(&root, &name, &images).await.map(|_| ())
                    }
                }
            })
            .map(|()| Exit::Ok)
        }
        Command::Export(e) => cmd::export::run(&root(cli.root)?, &e),
        Command::Verify(v) if v.cluster.is_some() && v.engine != Engine::Swarm => Err(
            Diagnostic::error("--cluster runs the stack on the cluster's swarm")
                .fix("add `--engine swarm`"),
        ),
        Command::Verify(v) => block_on(verify::verify(&root(cli.root)?, v)),
    }
}
