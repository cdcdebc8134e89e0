//! Administrative commands that work on the metadata database directly, on the server's host:
//! `plinth users …` and `plinth tokens …`. This is how the first admin is made (explicitly; there
//! is no default password). The same operations exist over REST for admins (`/api/plinth/v1/users`,
//! `/api/plinth/v1/tokens`).

use std::io::Read;

use anyhow::{Context, bail};
use clap::Subcommand;
use plinth_core::audit::Actor;
use plinth_core::auth::{PrincipalKind, Role};
use plinth_server::{Config, auth_service, open_store};

#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user (password from `--password-stdin` or the PLINTH_NEW_PASSWORD variable) or, with
    /// `--service-account`, a service account (tokens only).
    Add {
        /// The user's name (unique; `anonymous` and `system` are reserved).
        name: String,
        /// admin, member or viewer.
        #[arg(long, default_value = "member")]
        role: String,
        /// May approve promotion requests.
        #[arg(long)]
        approver: bool,
        /// A service account: no password, tokens only.
        #[arg(long)]
        service_account: bool,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Create the server's database if there is none yet (the first admin, before the first start).
        #[arg(long)]
        init: bool,
    },
    /// List users and service accounts: name, kind, role, flags.
    List,
    /// Disable a user: their sign-ins and tokens stop working at once.
    Disable {
        /// The user.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user.
        name: String,
    },
    /// Change a user's role (admin, member, viewer).
    SetRole {
        /// The user.
        name: String,
        /// admin, member or viewer.
        role: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a token for a user; the token is printed once.
    Create {
        /// The user (or service account) the token signs in as.
        #[arg(long)]
        user: String,
        /// A label (what the token is for).
        #[arg(long)]
        name: String,
        /// Lifetime in seconds (none: it does not expire, unless auth.max_token_ttl_secs says otherwise).
        #[arg(long)]
        ttl_secs: Option<i64>,
    },
    /// List tokens (never their secrets): id, user, name, state, created, expires, last used.
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token's id (as `tokens list` shows it), or the whole token `plt_<id>_<secret>`.
        id: String,
    },
}

fn role(raw: &str) -> anyhow::Result<Role> {
    Role::parse(raw).with_context(|| format!("unknown role '{raw}': use admin, member or viewer"))
}

fn read_password(stdin: bool) -> anyhow::Result<String> {
    if stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the password from standard input")?;
        let line = text.lines().next().unwrap_or("").to_owned();
        if line.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(line);
    }
    std::env::var("PLINTH_NEW_PASSWORD").context("give the password with --password-stdin or the PLINTH_NEW_PASSWORD variable")
}

/// Checks the server's database before it is opened: a SQLite file that is not there is created
/// only when `init` is asked for, since run from the wrong directory these commands would otherwise
/// start a new, empty database that no server reads. Says which database is used.
fn check_database(config: &Config, init: bool) -> anyhow::Result<()> {
    let url = config.database_url();
    if let Some(file) =
        url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).map(|rest| rest.split('?').next().unwrap_or(""))
        && !file.is_empty()
        && file != ":memory:"
        && !std::path::Path::new(file).exists()
    {
        if !init {
            bail!(
                "there is no database at {file} (data directory {}): run this on the server's host with its --data-dir or --config, \
or pass --init to `users add` to create a new one for a server that has not started yet",
                config.server.data_dir.display()
            );
        }
        eprintln!("creating a new database at {file}");
    }
    eprintln!("database: {}", plinth_server::config::redact_url(&url));
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// The operator at the server's host.
fn operator() -> Actor {
    Actor::new(format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into())))
}

pub(crate) fn users(config: &Config, command: UsersCommand) -> anyhow::Result<()> {
    let password = match &command {
        UsersCommand::Add { service_account: false, password_stdin, .. } => Some(read_password(*password_stdin)?),
        _ => None,
    };
    let init = matches!(command, UsersCommand::Add { init: true, .. });
    check_database(config, init)?;
    runtime()?.block_on(async {
        let store = std::sync::Arc::new(open_store(config).await?);
        let auth = auth_service(config, store.clone());
        let actor = operator();
        match command {
            UsersCommand::Add { name, role: r, approver, service_account, .. } => {
                let kind = if service_account { PrincipalKind::ServiceAccount } else { PrincipalKind::User };
                let user = auth.create_user(&actor, &name, kind, role(&r)?, approver, password.as_deref()).await?;
                println!("added {} '{}' ({})", user.kind.as_str(), user.name, user.role.as_str());
            }
            UsersCommand::List => {
                for u in auth.list_users().await? {
                    let flags =
                        [u.approver.then_some("approver"), u.disabled.then_some("disabled")].into_iter().flatten().collect::<Vec<_>>();
                    println!("{}\t{}\t{}\t{}", u.name, u.kind.as_str(), u.role.as_str(), flags.join(","));
                }
            }
            UsersCommand::Disable { name } => {
                auth.update_user(&actor, &name, plinth_auth::UserChange { disabled: Some(true), ..Default::default() }).await?;
                println!("disabled '{name}'");
            }
            UsersCommand::Enable { name } => {
                auth.update_user(&actor, &name, plinth_auth::UserChange { disabled: Some(false), ..Default::default() }).await?;
                println!("enabled '{name}'");
            }
            UsersCommand::SetRole { name, role: r } => {
                auth.update_user(&actor, &name, plinth_auth::UserChange { role: Some(role(&r)?), ..Default::default() }).await?;
                println!("'{name}' is now {r}");
            }
        }
        store.close().await;
        Ok(())
    })
}

pub(crate) fn tokens(config: &Config, command: TokensCommand) -> anyhow::Result<()> {
    check_database(config, false)?;
    runtime()?.block_on(async {
        let store = std::sync::Arc::new(open_store(config).await?);
        let auth = auth_service(config, store.clone());
        let actor = operator();
        match command {
            TokensCommand::Create { user, name, ttl_secs } => {
                let (token, secret) = auth.create_token(&actor, &user, &name, ttl_secs).await?;
                eprintln!("token {} for '{}' created; it is shown once:", token.id, token.user);
                println!("{secret}");
            }
            TokensCommand::List { user } => {
                let when = |ms: Option<i64>, none: &str| ms.map_or_else(|| none.to_owned(), plinth_core::time::display_millis);
                println!("id\tuser\tname\tstate\tcreated\texpires\tlast used");
                for t in auth.list_tokens(user.as_deref()).await? {
                    let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                    println!(
                        "{}\t{}\t{}\t{state}\t{}\t{}\t{}",
                        t.id,
                        t.user,
                        t.name,
                        plinth_core::time::display_millis(t.created_at),
                        when(t.expires_at, "never"),
                        when(t.last_used_at, "never"),
                    );
                }
            }
            TokensCommand::Revoke { id } => {
                // A whole token names its id; the secret is not needed to revoke it (and not kept).
                let id = plinth_auth::token::parse(&id).map_or(id.as_str(), |(id, _)| id).to_owned();
                auth.revoke_token(&actor, &id).await?;
                println!("revoked {id}");
            }
        }
        store.close().await;
        Ok(())
    })
}
