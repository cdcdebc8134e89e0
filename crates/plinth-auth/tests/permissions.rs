//! What a principal may do on a resource, table-driven at the service level on a real SQLite
//! store: its grant, capped by its role (admins have MANAGE on everything, members their grant,
//! viewers at most READ). Every role × grant × needed level × resource kind is checked against
//! the rule written out once here.

use std::sync::Arc;
use std::time::Duration;

use plinth_auth::limiter::Limits;
use plinth_auth::{AuthConfig, AuthService, Principal};
use plinth_core::audit::Actor;
use plinth_core::auth::{Level, PrincipalKind, ResourceKind, Role};
use plinth_store_sql::{SqlConfig, SqlStore};

async fn service() -> (AuthService, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("plinth.db").display());
    let config = SqlConfig { url, max_connections: 4, acquire_timeout: Duration::from_secs(10), sqlite_synchronous_full: false };
    let store = Arc::new(SqlStore::connect(&config).await.expect("open the store"));
    let limits = Limits { max_failures_per_user: 10, max_failures_per_address: 100, window: Duration::from_secs(300) };
    (AuthService::new(store.clone(), store, AuthConfig { limits, max_token_ttl_secs: None }), dir)
}

fn principal(name: &str, role: Role) -> Principal {
    Principal { name: name.into(), kind: PrincipalKind::User, role, approver: false, via_token: false }
}

/// The rule, once: the grant capped by the role.
fn expected(role: Role, grant: Option<Level>, needed: Level) -> bool {
    let effective = match role {
        Role::Admin => Some(Level::Manage),
        Role::Member => grant,
        Role::Viewer => grant.map(|g| g.min(Level::Read)),
    };
    effective.is_some_and(|have| have >= needed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_capped_by_roles() {
    let (auth, _dir) = service().await;
    let admin = Actor::new("root");
    let mut failures = Vec::new();
    let mut checked = 0;
    for (r, role) in [Role::Admin, Role::Member, Role::Viewer].into_iter().enumerate() {
        for (g, grant) in [None, Some(Level::Read), Some(Level::Edit), Some(Level::Manage)].into_iter().enumerate() {
            let name = format!("user-{r}-{g}");
            auth.create_user(&admin, &name, PrincipalKind::User, role, false, Some("a-long-enough-password")).await.expect("user");
            for kind in [ResourceKind::Experiment, ResourceKind::RegisteredModel] {
                let resource = format!("res-{r}-{g}");
                if let Some(level) = grant {
                    auth.put_grant(&admin, &name, kind, &resource, level).await.expect("grant");
                }
                let who = principal(&name, role);
                for needed in [Level::Read, Level::Edit, Level::Manage] {
                    let got = auth.allows(&who, kind, &resource, needed).await.expect("allows");
                    // A grant on one resource says nothing about another.
                    let elsewhere = auth.allows(&who, kind, "someone-elses", needed).await.expect("allows");
                    checked += 1;
                    if got != expected(role, grant, needed) || elsewhere != (role == Role::Admin) {
                        failures.push(format!(
                            "{role:?} with {grant:?} on a {kind:?}, needing {needed:?}: allowed {got} (elsewhere {elsewhere})"
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 4 * 2 * 3);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Revoking a grant takes the permission away at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_grants_stop_at_once() {
    let (auth, _dir) = service().await;
    let admin = Actor::new("root");
    auth.create_user(&admin, "bob", PrincipalKind::User, Role::Member, false, Some("a-long-enough-password")).await.expect("user");
    auth.put_grant(&admin, "bob", ResourceKind::Experiment, "7", Level::Edit).await.expect("grant");
    let bob = principal("bob", Role::Member);
    assert!(auth.allows(&bob, ResourceKind::Experiment, "7", Level::Edit).await.expect("allows"));
    auth.delete_grant(&admin, "bob", ResourceKind::Experiment, "7").await.expect("revoke");
    assert!(!auth.allows(&bob, ResourceKind::Experiment, "7", Level::Read).await.expect("allows"));
}
