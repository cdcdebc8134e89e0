//! Client commands: `plinth models …` and `plinth audit …` talk to a running server over its
//! REST API (`/api/plinth/v1`), as the caller named by `--user`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the server is and who you are. Secrets come from the environment only, never from the
/// command line (where other users of the machine could read them):
/// `PLINTH_PASSWORD` (with `--user`) or `PLINTH_TOKEN` (an API token, sent as a Bearer token).
/// MLflow's variables work too, as MLflow users already set them: `MLFLOW_TRACKING_URI`,
/// `MLFLOW_TRACKING_USERNAME`, `MLFLOW_TRACKING_PASSWORD`, `MLFLOW_TRACKING_TOKEN`.
#[derive(Args, Clone)]
pub(crate) struct Connection {
    /// The server's base URL, e.g. http://127.0.0.1:5000 [env: PLINTH_SERVER, else MLFLOW_TRACKING_URI]
    #[arg(long, global = true)]
    server: Option<String>,
    /// Who you are: the HTTP Basic user name; its password comes from PLINTH_PASSWORD
    /// (or MLFLOW_TRACKING_PASSWORD) [env: PLINTH_USER, else MLFLOW_TRACKING_USERNAME]
    #[arg(long, global = true)]
    user: Option<String>,
}

/// What a client command connects with, resolved from flags and the environment.
#[derive(Clone)]
pub(crate) struct Resolved {
    server: String,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

/// The first of the environment variables `names` that is set and not empty.
fn env_first(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

impl Connection {
    /// Flags first, then Plinth's variables, then MLflow's; the URL must say its scheme.
    pub(crate) fn resolve(&self) -> anyhow::Result<Resolved> {
        let server = self
            .server
            .clone()
            .or_else(|| env_first(&["PLINTH_SERVER", "MLFLOW_TRACKING_URI"]))
            .unwrap_or_else(|| "http://127.0.0.1:5000".to_owned());
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!(
                "the server address '{server}' has no http:// or https:// in front: use --server http://{} (or set PLINTH_SERVER)",
                server.split("://").last().unwrap_or(&server)
            );
        }
        let user = self.user.clone().or_else(|| env_first(&["PLINTH_USER", "MLFLOW_TRACKING_USERNAME"]));
        let password = env_first(&["PLINTH_PASSWORD", "MLFLOW_TRACKING_PASSWORD"]);
        let token = env_first(&["PLINTH_TOKEN", "MLFLOW_TRACKING_TOKEN"]);
        Ok(Resolved { server, user, password, token })
    }
}

/// The environment a client command reads, shown under every client command's `--help`.
pub(crate) const CREDENTIALS_HELP: &str = "Environment:
  PLINTH_SERVER       the server's URL (else MLFLOW_TRACKING_URI; default http://127.0.0.1:5000)
  PLINTH_USER         who you are, signing in with PLINTH_PASSWORD (else MLFLOW_TRACKING_USERNAME)
  PLINTH_PASSWORD     your password (else MLFLOW_TRACKING_PASSWORD); never pass it as a flag
  PLINTH_TOKEN        an API token, sent as a Bearer token instead of a user and password
                      (else MLFLOW_TRACKING_TOKEN)";

/// What a 401 should tell the user to do.
const SIGN_IN_HINT: &str = "sign in: set PLINTH_USER and PLINTH_PASSWORD (or pass --user), or PLINTH_TOKEN with an API token \
(MLflow's MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN work too)";

#[derive(Subcommand)]
pub(crate) enum ModelsCommand {
    /// Promotion gates of a registered model.
    #[command(subcommand)]
    Gate(GateCommand),
    /// Move an alias onto a version through its gate, or (`--request`) ask for approval to.
    Promote(PromoteArgs),
    /// Promotion requests: list, approve, reject, apply, cancel.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Where a version came from: its run, the run's datasets, its logged model.
    Lineage {
        /// The registered model.
        name: String,
        /// The version.
        version: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum GateCommand {
    /// Create or replace the gate on an alias (`--alias champion`) or a stage (`--stage production`).
    Set {
        /// The registered model.
        name: String,
        #[command(flatten)]
        target: GateTarget,
        /// A condition, e.g. "metrics.auc >= 0.85" or "metrics.auc >= current.metrics.auc" (repeatable).
        #[arg(long = "condition")]
        conditions: Vec<String>,
        /// A tag the version must carry (repeatable).
        #[arg(long = "require-tag")]
        required_tags: Vec<String>,
        /// Approvals (by people other than the requester) needed before the move.
        #[arg(long, default_value_t = 0)]
        approvals: u32,
        /// What the gate is for, shown with it.
        #[arg(long)]
        description: Option<String>,
    },
    /// Show the gate on an alias or a stage.
    Get {
        /// The registered model.
        name: String,
        #[command(flatten)]
        target: GateTarget,
    },
    /// List a model's gates; each says whether it guards an alias or a stage (`kind`).
    List {
        /// The registered model.
        name: String,
    },
    /// Delete the gate on an alias or a stage (recorded in the audit trail).
    Delete {
        /// The registered model.
        name: String,
        #[command(flatten)]
        target: GateTarget,
    },
    /// What the gate says about a version now, without moving anything.
    Check {
        /// The registered model.
        name: String,
        #[command(flatten)]
        target: GateTarget,
        /// The version to judge.
        #[arg(long)]
        version: String,
    },
}

/// What a gate guards: exactly one of an alias or a stage.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct GateTarget {
    /// An alias, e.g. `champion` (a stage name is refused: use --stage).
    #[arg(long)]
    alias: Option<String>,
    /// A stage: the gate guards transition-stage to it.
    #[arg(long, value_parser = ["staging", "production", "archived", "none"], ignore_case = true)]
    stage: Option<String>,
}

impl GateTarget {
    /// The target as the server names it: the alias, or `stage:<stage>`.
    fn path_segment(&self) -> String {
        match (&self.alias, &self.stage) {
            (_, Some(stage)) => format!("{}{}", plinth_core::registry::STAGE_TARGET_PREFIX, stage.to_ascii_lowercase()),
            (Some(alias), None) => alias.clone(),
            (None, None) => String::new(),
        }
    }
}

#[derive(Args)]
pub(crate) struct PromoteArgs {
    /// The registered model.
    name: String,
    /// The alias to move.
    #[arg(long)]
    alias: String,
    /// The version the alias should point at.
    #[arg(long)]
    version: String,
    /// Only move if the alias points at this version now (`none`: only if it is unset).
    #[arg(long)]
    expect_current: Option<String>,
    /// Open a promotion request for approval instead of moving the alias directly.
    #[arg(long)]
    request: bool,
    /// Why (with `--request`).
    #[arg(long)]
    reason: Option<String>,
    /// How long the request stays open (with `--request`).
    #[arg(long)]
    ttl_secs: Option<i64>,
}

#[derive(Subcommand)]
pub(crate) enum RequestsCommand {
    /// List promotion requests, newest first (all of them: admins only; one model's: `--name`).
    List {
        /// Only the requests of this registered model.
        #[arg(long)]
        name: Option<String>,
        /// PENDING, APPLIED, REJECTED, EXPIRED or CANCELLED.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show a request with the gate's current verdict on it.
    Get {
        /// The request's id.
        id: String,
    },
    /// Approve a request (approvers only, never your own); the alias moves when the gate is satisfied.
    Approve {
        /// The request's id.
        id: String,
        /// Why, recorded with the approval.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a request (approvers only); it ends there.
    Reject {
        /// The request's id.
        id: String,
        /// Why, recorded with the rejection.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Re-check an approved request whose conditions failed earlier, and move the alias if they pass
    /// now. Exits non-zero when the request stays pending.
    Apply {
        /// The request's id.
        id: String,
    },
    /// Withdraw your own pending request.
    Cancel {
        /// The request's id.
        id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Audit events, newest first.
    List {
        /// experiment, run, logged_model, registered_model, model_version, alias, gate, promotion,
        /// webhook, user, token, route (denied requests), feature_repository, feature_view, training_dataset.
        #[arg(long)]
        resource_type: Option<String>,
        /// Exact id, or a prefix ending in `*` (`churn/*`).
        #[arg(long)]
        resource_id: Option<String>,
        /// Only events by this user.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, e.g. alias.set, promotion.approve, token.impersonate.
        #[arg(long)]
        action: Option<String>,
        /// OK, REFUSED or FAILED.
        #[arg(long)]
        outcome: Option<String>,
        /// Only events at or after this time (Unix milliseconds).
        #[arg(long)]
        since: Option<i64>,
        /// Only events before this time (Unix milliseconds).
        #[arg(long)]
        until: Option<i64>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

pub(crate) struct Client {
    base: String,
    http: reqwest::blocking::Client,
    conn: Resolved,
}

pub(crate) fn enc(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub(crate) fn new(conn: &Connection) -> anyhow::Result<Client> {
        let conn = conn.resolve()?;
        let http = reqwest::blocking::Client::builder().build().context("cannot build the HTTP client")?;
        Ok(Client { base: format!("{}/api/plinth/v1", conn.server.trim_end_matches('/')), http, conn })
    }

    /// Adds the caller's credentials: a token as Bearer, else the user and password as Basic.
    fn signed(&self, req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match (&self.conn.token, &self.conn.user) {
            (Some(token), _) => req.bearer_auth(token),
            (None, Some(user)) => req.basic_auth(user, self.conn.password.as_deref()),
            (None, None) => req,
        }
    }

    /// The error for a refused answer, with what to do about a missing sign-in.
    fn refused(status: reqwest::StatusCode, value: &Value) -> anyhow::Error {
        let code = value["error_code"].as_str().unwrap_or("HTTP_ERROR");
        let message = value["message"].as_str().unwrap_or("(no message)");
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return anyhow::anyhow!("{code} (HTTP 401): {message}; {SIGN_IN_HINT}");
        }
        anyhow::anyhow!("{code} (HTTP {}): {message}", status.as_u16())
    }

    pub(crate) fn call(&self, method: reqwest::Method, path: &str, query: &[(&str, String)], body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.signed(self.http.request(method.clone(), format!("{}{path}", self.base)).query(query));
        // POSTs always declare JSON (with auth on, the server refuses any other POST).
        match body {
            Some(body) => req = req.json(&body),
            None if method == reqwest::Method::POST => req = req.json(&json!({})),
            None => {}
        }
        let resp = req.send().with_context(|| format!("cannot reach the server at {}", self.conn.server))?;
        let status = resp.status();
        let value: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(Client::refused(status, &value));
        }
        Ok(value)
    }
}

impl Client {
    /// GETs a response to read as a stream (no overall timeout: a followed log may stay open for days).
    pub(crate) fn get_stream(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<reqwest::blocking::Response> {
        let req = self.signed(self.http.get(format!("{}{path}", self.base)).query(query));
        let resp = req
            .timeout(std::time::Duration::from_secs(30 * 24 * 3600))
            .send()
            .with_context(|| format!("cannot reach the server at {}", self.conn.server))?;
        let status = resp.status();
        if !status.is_success() {
            let value: Value = resp.json().unwrap_or(Value::Null);
            return Err(Client::refused(status, &value));
        }
        Ok(resp)
    }

    /// POSTs a streamed body of `content_type`; answers the response when it succeeded.
    pub(crate) fn send_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: reqwest::blocking::Body,
        content_type: &str,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        self.send_body(reqwest::Method::POST, path, query, body, content_type)
    }

    /// Sends a streamed body of `content_type` with `method`; answers the response when it succeeded.
    pub(crate) fn send_body(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: reqwest::blocking::Body,
        content_type: &str,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let req = self.signed(
            self.http
                .request(method, format!("{}{path}", self.base))
                .query(query)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body),
        );
        // Retrievals can take a while on big inputs: no overall timeout.
        let resp = req
            .timeout(std::time::Duration::from_secs(24 * 3600))
            .send()
            .with_context(|| format!("cannot reach the server at {}", self.conn.server))?;
        let status = resp.status();
        if !status.is_success() {
            let value: Value = resp.json().unwrap_or(Value::Null);
            return Err(Client::refused(status, &value));
        }
        Ok(resp)
    }
}

pub(crate) fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn models(conn: &Connection, command: ModelsCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let c = Client::new(conn)?;
    let value = match command {
        ModelsCommand::Gate(GateCommand::Set { name, target, conditions, required_tags, approvals, description }) => c.call(
            Method::PUT,
            &format!("/registered-models/{}/gates/{}", enc(&name), enc(&target.path_segment())),
            &[],
            Some(json!({"conditions": conditions, "required_tags": required_tags, "approvals_required": approvals, "description": description})),
        )?,
        ModelsCommand::Gate(GateCommand::Get { name, target }) => {
            c.call(Method::GET, &format!("/registered-models/{}/gates/{}", enc(&name), enc(&target.path_segment())), &[], None)?
        }
        ModelsCommand::Gate(GateCommand::List { name }) => c.call(Method::GET, &format!("/registered-models/{}/gates", enc(&name)), &[], None)?,
        ModelsCommand::Gate(GateCommand::Delete { name, target }) => {
            c.call(Method::DELETE, &format!("/registered-models/{}/gates/{}", enc(&name), enc(&target.path_segment())), &[], None)?
        }
        ModelsCommand::Gate(GateCommand::Check { name, target, version }) => c.call(
            Method::POST,
            &format!("/registered-models/{}/gates/{}/check", enc(&name), enc(&target.path_segment())),
            &[],
            Some(json!({"version": version})),
        )?,
        ModelsCommand::Promote(args) if args.request => c.call(
            Method::POST,
            "/promotions",
            &[],
            Some(json!({"name": args.name, "version": args.version, "target": args.alias, "reason": args.reason, "ttl_secs": args.ttl_secs})),
        )?,
        ModelsCommand::Promote(args) => {
            let mut body = json!({"version": args.version});
            if let Some(expect) = args.expect_current {
                body["expected_current_version"] = if expect.eq_ignore_ascii_case("none") { Value::Null } else { Value::String(expect) };
            }
            c.call(Method::POST, &format!("/registered-models/{}/aliases/{}/promote", enc(&args.name), enc(&args.alias)), &[], Some(body))?
        }
        ModelsCommand::Requests(RequestsCommand::List { name, status }) => {
            let mut query = Vec::new();
            if let Some(n) = name {
                query.push(("name", n));
            }
            if let Some(s) = status {
                query.push(("status", s));
            }
            c.call(Method::GET, "/promotions", &query, None)?
        }
        ModelsCommand::Requests(RequestsCommand::Get { id }) => c.call(Method::GET, &format!("/promotions/{}", enc(&id)), &[], None)?,
        ModelsCommand::Requests(RequestsCommand::Approve { id, comment }) => {
            c.call(Method::POST, &format!("/promotions/{}/approve", enc(&id)), &[], Some(json!({"comment": comment})))?
        }
        ModelsCommand::Requests(RequestsCommand::Reject { id, comment }) => {
            c.call(Method::POST, &format!("/promotions/{}/reject", enc(&id)), &[], Some(json!({"comment": comment})))?
        }
        ModelsCommand::Requests(RequestsCommand::Apply { id }) => {
            let outcome = c.call(Method::POST, &format!("/promotions/{}/apply", enc(&id)), &[], None)?;
            // Applying is asked to move the alias: a request left pending is not a success.
            if outcome["promotion"]["status"] != "APPLIED" {
                print(&outcome)?;
                bail!("promotion {id} was not applied: it is {} ({})", outcome["promotion"]["status"].as_str().unwrap_or("?"), why_pending(&outcome));
            }
            outcome
        }
        ModelsCommand::Requests(RequestsCommand::Cancel { id }) => c.call(Method::POST, &format!("/promotions/{}/cancel", enc(&id)), &[], None)?,
        ModelsCommand::Lineage { name, version } => {
            c.call(Method::GET, &format!("/registered-models/{}/versions/{}/lineage", enc(&name), enc(&version)), &[], None)?
        }
    };
    print(&value)
}

/// Why a promotion request is still pending, from its gate report.
fn why_pending(outcome: &Value) -> String {
    let report = &outcome["gate_report"];
    let mut reasons = Vec::new();
    if report["approved"] == false {
        let have = report["approvals"].as_array().map_or(0, Vec::len);
        reasons.push(format!("{have} of {} approvals", report["approvals_required"]));
    }
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["passed"] == false)
        .filter_map(|c| c["condition"].as_str())
        .collect();
    if !failed.is_empty() {
        reasons.push(format!("failing: {}", failed.join("; ")));
    }
    if reasons.is_empty() { "see its gate report".to_owned() } else { reasons.join(", ") }
}

pub(crate) fn audit(conn: &Connection, command: AuditCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let AuditCommand::List { resource_type, resource_id, actor, action, outcome, since, until, limit } = command;
    let mut query: Vec<(&str, String)> = vec![("max_results", limit.to_string())];
    for (key, value) in
        [("resource_type", resource_type), ("resource_id", resource_id), ("actor", actor), ("action", action), ("outcome", outcome)]
    {
        if let Some(v) = value {
            query.push((key, v));
        }
    }
    if let Some(s) = since {
        query.push(("since", s.to_string()));
    }
    if let Some(u) = until {
        query.push(("until", u.to_string()));
    }
    print(&c.call(reqwest::Method::GET, "/audit", &query, None)?)
}
