//! The `plinth` binary: `plinth server`, `plinth config check|print-default`, and the client
//! commands `plinth models …` and `plinth audit …` (see `client.rs`).
//!
//! Reads the config file, `PLINTH__…` environment overrides and flags (in that order of
//! precedence, lowest first), starts the server, prints one readiness line on stdout
//! (`plinth <version> listening on http://HOST:PORT`), and stops cleanly on SIGINT/SIGTERM.

/// mimalloc rather than the system allocator: small, short-lived allocations (request parsing,
/// JSON, Arrow buffers) dominate, and glibc's malloc cost ~14% of the server's CPU on online reads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod client;
mod deployments_cli;
mod features_cli;
mod jobs_cli;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use plinth_server::config::from_mlflow_store_uri;
use plinth_server::{Config, Server, VERSION, termination_signal};

#[derive(Parser)]
#[command(name = "plinth", version, about = "Plinth: a self-hosted machine-learning platform in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (embedded defaults: SQLite and local artifacts under ./plinth-data, 127.0.0.1:5000).
    Server(ServerArgs),
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Model registry: promotion gates, promotions and approvals, lineage (talks to a running server).
    #[command(after_help = client::CREDENTIALS_HELP)]
    Models {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        command: client::ModelsCommand,
    },
    /// Users and service accounts, on the server's database (how the first admin is made).
    Users {
        #[command(flatten)]
        args: DatabaseArgs,
        #[command(subcommand)]
        command: admin::UsersCommand,
    },
    /// API tokens, on the server's database.
    Tokens {
        #[command(flatten)]
        args: DatabaseArgs,
        #[command(subcommand)]
        command: admin::TokensCommand,
    },
    /// The feature store: plan and apply definitions, list them, retrieve training data (talks to a running server).
    #[command(after_help = client::CREDENTIALS_HELP)]
    Features {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        command: features_cli::FeaturesCommand,
    },
    /// Serving: deployments of registered models (talks to a running server).
    #[command(after_help = client::CREDENTIALS_HELP)]
    Deployments {
        #[command(flatten)]
        conn: client::Connection,
        /// Boxed: its create and update options make it the largest command by far.
        #[command(subcommand)]
        command: Box<deployments_cli::DeploymentsCommand>,
    },
    /// Training jobs: submit, follow their output, cancel (talks to a running server).
    #[command(after_help = client::CREDENTIALS_HELP)]
    Jobs {
        #[command(flatten)]
        conn: client::Connection,
        /// Boxed: the submit options make it large.
        #[command(subcommand)]
        command: Box<jobs_cli::JobsCommand>,
    },
    /// Job queues: plan and apply their configuration, see their usage (talks to a running server).
    #[command(after_help = client::CREDENTIALS_HELP)]
    Queues {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        command: jobs_cli::QueuesCommand,
    },
    /// Sweeps: searches over a job's parameters with early stopping (talks to a running server).
    #[command(after_help = client::CREDENTIALS_HELP)]
    Sweeps {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        command: jobs_cli::SweepsCommand,
    },
    /// Runs one attempt of a local job (started by the server, not by people).
    #[command(name = "__supervise", hide = true)]
    Supervise { dir: PathBuf },
    /// The audit trail (talks to a running server).
    #[command(after_help = client::CREDENTIALS_HELP)]
    Audit {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        command: client::AuditCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (file, environment, flags) without starting anything.
    Check(ServerArgs),
    /// Print the commented default configuration file.
    PrintDefault,
}

#[derive(Args)]
struct ServerArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "PLINTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, global = true)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free port.
    #[arg(long, short = 'p', global = true)]
    port: Option<u16>,
    /// Data directory of the embedded defaults.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// MLflow's flag: the metadata store (sqlite:///path.db or postgresql://…).
    #[arg(long, global = true)]
    backend_store_uri: Option<String>,
    /// MLflow's flag: root of new experiments' artifact locations.
    #[arg(long, global = true)]
    default_artifact_root: Option<String>,
    /// MLflow's flag: where proxied artifacts are stored.
    #[arg(long, global = true)]
    artifacts_destination: Option<String>,
    /// MLflow's flag: proxy artifacts through the server (the default).
    #[arg(long, conflicts_with = "no_serve_artifacts", global = true)]
    serve_artifacts: bool,
    /// MLflow's flag: clients write artifacts to the artifact root themselves.
    #[arg(long, global = true)]
    no_serve_artifacts: bool,
    /// Serve a non-loopback address with auth off (refused without it).
    #[arg(long, global = true)]
    allow_unauthenticated: bool,
}

/// Where the server's database is, for the commands that work on it directly (`users`, `tokens`):
/// the server's flags that say so, and none of the others.
#[derive(Args)]
struct DatabaseArgs {
    /// The server's configuration file (TOML).
    #[arg(long, env = "PLINTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The server's data directory (its SQLite database is plinth.db there).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// MLflow's flag: the metadata store (sqlite:///path.db or postgresql://…).
    #[arg(long, global = true)]
    backend_store_uri: Option<String>,
}

impl DatabaseArgs {
    fn config(&self) -> anyhow::Result<Config> {
        ServerArgs {
            config: self.config.clone(),
            host: None,
            port: None,
            data_dir: self.data_dir.clone(),
            backend_store_uri: self.backend_store_uri.clone(),
            default_artifact_root: None,
            artifacts_destination: None,
            serve_artifacts: false,
            no_serve_artifacts: false,
            allow_unauthenticated: false,
        }
        .config()
    }
}

impl ServerArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let text = match &self.config {
            Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?),
            None => None,
        };
        let mut config = Config::load(text.as_deref(), std::env::vars())?;
        if let Some(host) = &self.host {
            config.server.host = host.clone();
        }
        if let Some(port) = self.port {
            config.server.port = port;
        }
        if let Some(dir) = &self.data_dir {
            config.server.data_dir = dir.clone();
        }
        if let Some(uri) = &self.backend_store_uri {
            config.database.url = from_mlflow_store_uri(uri);
        }
        if let Some(root) = &self.default_artifact_root {
            config.artifacts.default_artifact_root = Some(root.clone());
        }
        if self.allow_unauthenticated {
            config.server.allow_unauthenticated = true;
        }
        if let Some(dest) = &self.artifacts_destination {
            config.artifacts.destination = Some(dest.clone());
        }
        if self.no_serve_artifacts && config.artifacts.default_artifact_root.is_none() {
            let dest = std::path::absolute(config.artifacts_destination()).context("cannot resolve the artifact directory")?;
            config.artifacts.default_artifact_root = Some(format!("file://{}", dest.display()));
        }
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(plinth_server::ConfigError { problems }.into());
        }
        Ok(config)
    }
}

/// Errors are printed as one line with their causes (`error: what: why`), never with a Rust
/// backtrace, whatever `RUST_BACKTRACE` says: they are the user's to act on. Panics (bugs) keep theirs.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => serve(args),
        Command::Config(ConfigCommand::Check(args)) => {
            let config = args.config()?;
            println!("configuration is valid (database: {})", plinth_server::config::redact_url(&config.database_url()));
            Ok(())
        }
        Command::Config(ConfigCommand::PrintDefault) => {
            print!("{}", Config::reference_toml());
            Ok(())
        }
        Command::Models { conn, command } => client::models(&conn, command),
        Command::Users { args, command } => admin::users(&args.config()?, command),
        Command::Tokens { args, command } => admin::tokens(&args.config()?, command),
        Command::Audit { conn, command } => client::audit(&conn, command),
        Command::Features { conn, command } => features_cli::run(&conn, command),
        Command::Deployments { conn, command } => deployments_cli::run(&conn, *command),
        Command::Jobs { conn, command } => jobs_cli::jobs(&conn, *command),
        Command::Queues { conn, command } => jobs_cli::queues(&conn, command),
        Command::Sweeps { conn, command } => jobs_cli::sweeps(&conn, command),
        Command::Supervise { dir } => std::process::exit(plinth_scheduler::supervisor::main(&dir)),
    }
}

fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PLINTH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::start(&config).await?;
        let token = server.shutdown_token();
        let signal = termination_signal().context("cannot install signal handlers")?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "plinth {VERSION} listening on http://{}", server.local_addr())?;
            out.flush()?;
        }
        tokio::spawn(async move {
            signal.await;
            tracing::info!("Shutting down: finishing in-flight requests.");
            token.cancel();
        });
        server.wait().await?;
        tracing::info!("Stopped.");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    /// Every client command's help names the variables it signs in with.
    #[test]
    fn client_help_names_the_credential_variables() {
        let mut cli = super::Cli::command();
        for name in ["models", "features", "audit", "jobs", "queues", "sweeps"] {
            let help = cli.find_subcommand_mut(name).expect(name).render_long_help().to_string();
            for var in ["PLINTH_SERVER", "PLINTH_USER", "PLINTH_PASSWORD", "PLINTH_TOKEN", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI"] {
                assert!(help.contains(var), "`plinth {name} --help` does not name {var}:\n{help}");
            }
        }
    }
}
