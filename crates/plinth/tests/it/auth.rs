//! Auth through the binary: the first admin made with the CLI, every route walked with every role
//! against the permission table, tokens, rate limiting, the loopback rule.

use std::io::Write;
use std::process::{Command, Stdio};

use plinth_test_support::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

use super::bin;

const ADMIN_PASSWORD: &str = "root-password-0001";

fn cli(data_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plinth");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

struct Auth {
    server: TestServer,
    client: reqwest::Client,
    _config: tempfile::TempDir,
    data: std::path::PathBuf,
}

async fn start() -> Auth {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Run where no database is, `users add` says so instead of starting an empty one that no server reads.
    let (ok, _, err) = cli(&data, &["users", "add", "root", "--role", "admin", "--password-stdin"], Some(&format!("{ADMIN_PASSWORD}\n")));
    assert!(!ok && err.contains("there is no database at") && err.contains("--init"), "{err}");
    assert!(!data.join("plinth.db").exists(), "a database was created without --init");
    let (ok, _, err) =
        cli(&data, &["users", "add", "root", "--role", "admin", "--password-stdin", "--init"], Some(&format!("{ADMIN_PASSWORD}\n")));
    assert!(ok && err.contains("database: sqlite://"), "bootstrap: {err}");
    let config = dir.path().join("plinth.toml");
    std::fs::write(&config, "[auth]\nenabled = true\nmax_failures_per_user = 5\nmax_failures_per_address = 100000\n").expect("config");
    let server = TestServer::start_in(bin(), &data, &["--config", config.to_str().expect("utf-8")]).expect("start");
    let a = Auth { server, client: reqwest::Client::new(), _config: dir, data };
    for (name, role) in [("member1", "member"), ("viewer1", "viewer")] {
        let (status, body) = a
            .call(
                Some(("root", ADMIN_PASSWORD)),
                Method::POST,
                "/api/plinth/v1/users",
                Some(json!({"name": name, "password": format!("{name}-password-01"), "role": role})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    a
}

impl Auth {
    async fn call(&self, who: Option<(&str, &str)>, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.server.url));
        if let Some((user, pass)) = who {
            req = req.basic_auth(user, Some(pass));
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

const RUN: &str = "0123456789abcdef0123456789abcdef";

/// A concrete request for a route of the table, naming resources nobody but admins may touch.
fn concrete(path: &str) -> String {
    path.replace("{name}", "not-granted")
        .replace("{target}", "champion")
        .replace("{alias}", "champion")
        .replace("{version}", "1")
        .replace("{run_id}", RUN)
        .replace("{model_id}", "m-0123456789abcdef0123456789abcdef")
        .replace("{id}", "1")
        .replace("{key}", "k")
        .replace("{*path}", "0/x.txt")
        .replace("{upload_id}", "u")
        .replace("{part_number}", "1")
}

fn fields() -> Value {
    json!({"experiment_id": "0", "experiment_ids": ["0"], "run_id": RUN, "run_ids": [RUN], "name": "not-granted", "path": "0", "experiment_name": "Default"})
}

#[tokio::test]
async fn every_route_with_every_role() {
    let a = start().await;
    let table = plinth_api::route_table();
    assert!(table.len() > 90);
    let mut failures = Vec::new();
    for (method, path, kind) in table {
        let (method, path): (Method, &str) = (method.parse().expect("method"), &path);
        let mut url = concrete(path);
        let body = if method == Method::GET {
            url.push_str(
                "?experiment_id=0&experiment_ids=0&run_id=0123456789abcdef0123456789abcdef&name=not-granted&path=0&experiment_name=Default",
            );
            None
        } else {
            Some(fields())
        };
        // Creating routes create under their own names, so no role comes to own the resources the
        // other routes name.
        let body_for = |who: &str| if kind == "create" { Some(json!({"name": format!("walk-{path}-{who}")})) } else { body.clone() };
        let anonymous = a.call(None, method.clone(), &url, body_for("anonymous")).await.0;
        let viewer = a.call(Some(("viewer1", "viewer1-password-01")), method.clone(), &url, body_for("viewer")).await.0;
        let member = a.call(Some(("member1", "member1-password-01")), method.clone(), &url, body_for("member")).await.0;
        let admin = a.call(Some(("root", ADMIN_PASSWORD)), method.clone(), &url, body_for("admin")).await.0;
        let denied = |s: u16| s == 401 || s == 403;
        // Looking an experiment up by a name the caller may not read answers as if it did not exist.
        let refused = |s: u16| s == 403 || (path.ends_with("/get-by-name") && s == 404);
        let ok = match kind {
            "public" => !denied(anonymous) && !denied(viewer) && !denied(admin),
            "signed_in" => anonymous == 401 && viewer != 401 && member != 401 && !denied(admin),
            "admin" => anonymous == 401 && viewer == 403 && member == 403 && !denied(admin),
            "create" => anonymous == 401 && viewer == 403 && !denied(member) && !denied(admin),
            "resource" => anonymous == 401 && refused(viewer) && refused(member) && !denied(admin),
            other => panic!("unknown kind {other}"),
        };
        if !ok {
            failures.push(format!("{method} {path} ({kind}): anonymous {anonymous}, viewer {viewer}, member {member}, admin {admin}"));
        }
    }
    assert!(failures.is_empty(), "routes that do not follow the table:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn grants_tokens_and_limits() {
    let a = start().await;
    let member = Some(("member1", "member1-password-01"));
    let viewer = Some(("viewer1", "viewer1-password-01"));
    // The creator manages what it creates; others see nothing of it until granted.
    let (status, body) = a.call(member, Method::POST, "/api/2.0/mlflow/experiments/create", Some(json!({"name": "mine"}))).await;
    assert_eq!(status, 200, "{body}");
    let exp = body["experiment_id"].as_str().expect("id").to_owned();
    let (_, found) = a.call(viewer, Method::GET, "/api/2.0/mlflow/experiments/search?max_results=100", None).await;
    assert!(found["experiments"].as_array().is_none_or(|e| e.iter().all(|x| x["name"] != "mine")), "search leaks names: {found}");
    let (status, _) = a.call(viewer, Method::GET, &format!("/api/2.0/mlflow/experiments/get?experiment_id={exp}"), None).await;
    assert_eq!(status, 403);
    // Not even a page token hints at experiments the caller may not read.
    let (_, page) = a.call(viewer, Method::GET, "/api/2.0/mlflow/experiments/search?max_results=1", None).await;
    assert!(page.get("next_page_token").is_none_or(Value::is_null), "{page}");
    // A POST that is not declared JSON (what a cross-site form sends) is refused.
    let res = a
        .client
        .post(format!("{}/api/2.0/mlflow/experiments/delete?experiment_id={exp}", a.server.url))
        .basic_auth("member1", Some("member1-password-01"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 400);
    let (status, body) = a
        .call(
            member,
            Method::PUT,
            "/api/plinth/v1/grants",
            Some(json!({"user": "viewer1", "kind": "experiment", "resource": exp, "level": "EDIT"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = a.call(viewer, Method::GET, &format!("/api/2.0/mlflow/experiments/get?experiment_id={exp}"), None).await;
    assert_eq!(status, 200, "granted");
    // A viewer is capped at READ whatever it was granted.
    let (status, _) = a.call(viewer, Method::POST, "/api/2.0/mlflow/runs/create", Some(json!({"experiment_id": exp}))).await;
    assert_eq!(status, 403);
    let (_, found) = a.call(viewer, Method::GET, "/api/2.0/mlflow/experiments/search?max_results=100", None).await;
    assert!(found["experiments"].as_array().is_some_and(|e| e.iter().any(|x| x["name"] == "mine")), "{found}");

    // The CLI says how to sign in when the server asks for it, and signs in from the environment
    // (Plinth's variables, or MLflow's as MLflow users already set them).
    let cli_as = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.args(["audit", "list", "--limit", "1"]).env("PLINTH_SERVER", &a.server.url);
        for var in [
            "PLINTH_USER",
            "PLINTH_PASSWORD",
            "PLINTH_TOKEN",
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(vars.iter().copied());
        let out = cmd.output().expect("run plinth");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = cli_as(&[]);
    assert!(!ok && err.contains("HTTP 401") && err.contains("PLINTH_USER and PLINTH_PASSWORD") && err.contains("PLINTH_TOKEN"), "{err}");
    let (ok, err) = cli_as(&[("PLINTH_USER", "root"), ("PLINTH_PASSWORD", ADMIN_PASSWORD)]);
    assert!(ok, "{err}");
    let (ok, err) = cli_as(&[("MLFLOW_TRACKING_USERNAME", "root"), ("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)]);
    assert!(ok, "{err}");

    // Tokens: created with the CLI, shown once, usable as Bearer and as the Basic password, revocable.
    let (ok, token, err) = cli(&a.data, &["tokens", "create", "--user", "member1", "--name", "ci"], None);
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("plt_"), "{token}");
    // Listed with times people read, not epoch milliseconds.
    let (ok, listed, err) = cli(&a.data, &["tokens", "list", "--user", "member1"], None);
    assert!(ok, "{err}");
    assert!(
        listed.starts_with("id\tuser\tname\tstate\tcreated") && listed.contains(" UTC\t") && listed.contains("\tci\tactive\t"),
        "{listed}"
    );
    let res = a.client.get(format!("{}/api/plinth/v1/auth/me", a.server.url)).bearer_auth(&token).send().await.expect("me");
    assert_eq!(res.status().as_u16(), 200);
    let (status, me) = a.call(Some(("member1", &token)), Method::GET, "/api/plinth/v1/auth/me", None).await;
    assert_eq!((status, me["user"]["name"].as_str()), (200, Some("member1")));
    let (status, _) = a.call(Some(("viewer1", &token)), Method::GET, "/api/plinth/v1/auth/me", None).await;
    assert_eq!(status, 401, "a token works only for its own user");
    let id = token.trim_start_matches("plt_").split('_').next().expect("id").to_owned();
    let (status, _) = a.call(member, Method::DELETE, &format!("/api/plinth/v1/tokens/{id}"), None).await;
    assert_eq!(status, 200);
    let res = a.client.get(format!("{}/api/plinth/v1/auth/me", a.server.url)).bearer_auth(&token).send().await.expect("me");
    assert_eq!(res.status().as_u16(), 401, "revoked");

    // Failed sign-ins are limited per user, with the same answer for unknown users.
    for _ in 0..5 {
        let (status, body) = a.call(Some(("member1", "wrong-password-000")), Method::GET, "/api/plinth/v1/auth/me", None).await;
        assert_eq!(status, 401);
        assert_eq!(body["error_code"], "UNAUTHENTICATED");
    }
    let (status, body) = a.call(member, Method::GET, "/api/plinth/v1/auth/me", None).await;
    assert_eq!((status, body["error_code"].as_str()), (429, Some("REQUEST_LIMIT_EXCEEDED")), "locked even with the right password");
    let (status, unknown) = a.call(Some(("nobody", "wrong-password-000")), Method::GET, "/api/plinth/v1/auth/me", None).await;
    assert_eq!(status, 401);
    assert_eq!(unknown["message"], body_message_of_wrong_password());

    // Denials and sign-in failures are in the audit trail, without secrets.
    let (status, audit) = a.call(Some(("root", ADMIN_PASSWORD)), Method::GET, "/api/plinth/v1/audit?max_results=1000", None).await;
    assert_eq!(status, 200);
    let text = audit.to_string();
    assert!(text.contains("request.deny") && text.contains("auth.login") && text.contains("token.impersonate"), "{text}");
    assert!(
        !text.contains("member1-password-01") && !text.contains(&token) && !text.contains(ADMIN_PASSWORD),
        "secrets in the audit trail"
    );
}

fn body_message_of_wrong_password() -> &'static str {
    "Invalid credentials: send HTTP Basic (user name with a password or a token) or a Bearer token"
}

#[test]
fn non_loopback_without_auth_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin()).args(["config", "check", "--host", "0.0.0.0", "--data-dir"]).arg(dir.path()).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-unauthenticated"));
    let out = Command::new(bin())
        .args(["config", "check", "--host", "0.0.0.0", "--allow-unauthenticated", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn admin_commands_offer_only_the_flags_that_find_the_database() {
    for args in [["users", "add", "--help"], ["tokens", "create", "--help"]] {
        let out = Command::new(bin()).args(args).output().expect("run plinth");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(help.contains("--data-dir") && help.contains("--config") && help.contains("--backend-store-uri"), "{help}");
        for server_only in ["--port", "--host", "--allow-unauthenticated", "--serve-artifacts", "--artifacts-destination"] {
            assert!(!help.contains(server_only), "{args:?} offers {server_only}: {help}");
        }
    }
}

/// Jobs with auth on: submitting needs EDIT on the queue and on the job's experiment; a job is
/// seen and cancelled by its submitter and admins, not by others; every change is audited.
#[tokio::test]
async fn jobs_are_granted_by_queue_and_seen_by_their_submitter() {
    let a = start().await;
    let root = Some(("root", ADMIN_PASSWORD));
    let member = Some(("member1", "member1-password-01"));
    let viewer = Some(("viewer1", "viewer1-password-01"));
    let queues = "[[flavors]]\nname = \"default\"\n[[cluster_queues]]\nname = \"team-a\"\n[[cluster_queues.resource_groups]]\nresources = [\"cpu\"]\nflavors = [{ name = \"default\", cpu = { nominal = 4 } }]\n[[local_queues]]\nname = \"team-a\"\ncluster_queue = \"team-a\"\n";
    let (status, body) = a.call(member, Method::PUT, "/api/plinth/v1/queues", Some(json!({"text": queues}))).await;
    assert_eq!(status, 403, "only admins configure queues: {body}");
    let (status, body) = a.call(root, Method::PUT, "/api/plinth/v1/queues", Some(json!({"text": queues}))).await;
    assert_eq!(status, 200, "{body}");
    let job = json!({"command": ["sleep", "60"], "queue": "team-a", "experiment": "member-jobs"});
    let (status, body) = a.call(member, Method::POST, "/api/plinth/v1/jobs", Some(job.clone())).await;
    assert_eq!((status, body["error_code"].as_str()), (403, Some("PERMISSION_DENIED")), "no grant on the queue: {body}");
    let (status, body) = a
        .call(
            member,
            Method::PUT,
            "/api/plinth/v1/grants",
            Some(json!({"user": "member1", "kind": "queue", "resource": "team-a", "level": "EDIT"})),
        )
        .await;
    assert_eq!(status, 403, "a member cannot grant itself a queue: {body}");
    let (status, body) = a
        .call(
            root,
            Method::PUT,
            "/api/plinth/v1/grants",
            Some(json!({"user": "member1", "kind": "queue", "resource": "team-a", "level": "EDIT"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The default experiment is not the member's to write to.
    let (status, body) = a.call(member, Method::POST, "/api/plinth/v1/jobs", Some(json!({"command": ["true"], "queue": "team-a"}))).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = a.call(member, Method::POST, "/api/plinth/v1/jobs", Some(job)).await;
    assert_eq!(status, 200, "{body}");
    let id = body["job"]["id"].as_i64().expect("id");
    assert_eq!(body["job"]["submitted_by"], "member1");
    let experiment = body["job"]["experiment_id"].as_str().expect("experiment").to_owned();
    let (status, _) = a.call(member, Method::GET, &format!("/api/2.0/mlflow/experiments/get?experiment_id={experiment}"), None).await;
    assert_eq!(status, 200, "the experiment the job created is its submitter's");

    for (path, method) in [(format!("/api/plinth/v1/jobs/{id}"), Method::GET), (format!("/api/plinth/v1/jobs/{id}/cancel"), Method::POST)] {
        let body = (method == Method::POST).then(|| json!({}));
        let (status, answer) = a.call(viewer, method.clone(), &path, body.clone()).await;
        assert_eq!((status, answer["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")), "{path}: {answer}");
        let (status, _) = a.call(None, method, &path, body).await;
        assert_eq!(status, 401, "{path}");
    }
    let (_, listed) = a.call(viewer, Method::GET, "/api/plinth/v1/jobs", None).await;
    assert_eq!(listed["jobs"], json!([]), "others' jobs are not listed: {listed}");
    let (_, listed) = a.call(member, Method::GET, "/api/plinth/v1/jobs", None).await;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1));
    let (status, body) = a.call(member, Method::POST, &format!("/api/plinth/v1/jobs/{id}/cancel"), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, audit) = a.call(root, Method::GET, &format!("/api/plinth/v1/audit?resource_type=job&resource_id={id}"), None).await;
    let actions: Vec<(String, String)> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["action"].as_str().unwrap_or_default().to_owned(), e["actor"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert!(actions.contains(&("job.submit".to_owned(), "member1".to_owned())), "{audit}");
    assert!(actions.contains(&("job.cancel".to_owned(), "member1".to_owned())), "{audit}");
}
