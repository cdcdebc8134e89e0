//! The conformance suite of the auth port: users and the last-admin guard, API tokens, grants.
//!
//! An adapter's tests invoke `auth_conformance!(factory)` with the same factory as
//! `tracking_conformance!`: an async fn returning a `Harness` over a fresh, empty, migrated store.
//! The bodies panic on failure.

use std::sync::Arc;

use plinth_core::auth::{Grant, Level, PrincipalKind, ResourceKind, Role, User};

use crate::auth::{NewToken, NewUser, UserUpdate};
use crate::conformance::{Harness, rec};
use crate::{AuthStore, Error};

/// Generates one `#[tokio::test]` per conformance body, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! auth_conformance {
    ($factory:path) => {
        $crate::auth_conformance!(@each $factory;
            auth_users, auth_last_admin_guard, auth_concurrent_admin_removals, auth_tokens, auth_token_last_use,
            auth_grants, auth_rename_grants, auth_owner_and_forget);
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(harness) = $factory().await {
                    $crate::conformance_auth::$name(&harness).await;
                    drop(harness);
                }
            }
        )*
    };
}

fn person(name: &str, role: Role, now: i64) -> NewUser {
    NewUser {
        name: name.to_owned(),
        kind: PrincipalKind::User,
        role,
        approver: false,
        password_hash: Some(format!("$argon2id$v=19$m=19456,t=2,p=1$salt-of-{name}$hash")),
        now,
    }
}

fn service(name: &str, now: i64) -> NewUser {
    NewUser { name: name.to_owned(), kind: PrincipalKind::ServiceAccount, role: Role::Member, approver: false, password_hash: None, now }
}

fn token(id: &str, user: &str, created_at: i64, expires_at: Option<i64>) -> NewToken {
    NewToken {
        id: id.to_owned(),
        user: user.to_owned(),
        name: format!("label of {id}"),
        secret_hash: format!("{:0>64}", id.len()),
        created_at,
        expires_at,
    }
}

fn grant(user: &str, kind: ResourceKind, resource: &str, level: Level, at: i64) -> Grant {
    Grant { user: user.to_owned(), kind, resource: resource.to_owned(), level, granted_by: "root".to_owned(), granted_at: at }
}

fn role(role: Role) -> UserUpdate {
    UserUpdate { role: Some(role), ..UserUpdate::default() }
}

fn disabled(disabled: bool) -> UserUpdate {
    UserUpdate { disabled: Some(disabled), ..UserUpdate::default() }
}

async fn enabled_admins(auth: &Arc<dyn AuthStore>) -> Vec<String> {
    let users = auth.list_users().await.expect("list users");
    users.into_iter().filter(|u| u.role == Role::Admin && !u.disabled).map(|u| u.name).collect()
}

async fn user(auth: &Arc<dyn AuthStore>, name: &str) -> User {
    auth.get_user(name).await.expect("get user").expect("user exists").user
}

fn users_of(grants: &[Grant]) -> Vec<&str> {
    grants.iter().map(|g| g.user.as_str()).collect()
}

pub async fn auth_users(h: &Harness) {
    let auth = &h.auth;
    assert!(auth.list_users().await.expect("list").is_empty());
    let alice = auth.create_user(&person("alice", Role::Member, 100), rec()).await.expect("create");
    assert_eq!(
        alice,
        User {
            name: "alice".into(),
            kind: PrincipalKind::User,
            role: Role::Member,
            approver: false,
            disabled: false,
            created_at: 100,
            updated_at: 100
        }
    );
    let mut bot = service("ci-bot@team.example", 110);
    bot.approver = true;
    let bot = auth.create_user(&bot, rec()).await.expect("create service account");
    assert_eq!((bot.kind, bot.approver), (PrincipalKind::ServiceAccount, true));
    auth.create_user(&person("Zed", Role::Viewer, 120), rec()).await.expect("create");

    // The record carries the password hash; a service account has none.
    let record = auth.get_user("alice").await.expect("get").expect("exists");
    assert_eq!(record.user, alice);
    assert_eq!(record.password_hash.as_deref(), person("alice", Role::Member, 0).password_hash.as_deref());
    let record = auth.get_user("ci-bot@team.example").await.expect("get").expect("exists");
    assert_eq!(record.user, bot);
    assert_eq!(record.password_hash, None);
    assert!(auth.get_user("nobody").await.expect("get").is_none());
    assert!(auth.get_user("ALICE").await.expect("get").is_none(), "names are case-sensitive");

    // Names are unique, whatever the other fields.
    match auth.create_user(&service("alice", 130), rec()).await {
        Err(Error::Auth(crate::AuthError::UserExists { name })) => assert_eq!(name, "alice"),
        other => panic!("expected UserExists, got {other:?}"),
    }
    assert_eq!(user(auth, "alice").await, alice, "a refused create changes nothing");

    // Listed by name, bytewise (upper case first).
    let names: Vec<String> = auth.list_users().await.expect("list").into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["Zed", "alice", "ci-bot@team.example"]);

    // An update applies the given fields only and bumps updated_at.
    let update = UserUpdate {
        role: Some(Role::Viewer),
        approver: Some(true),
        disabled: None,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$new$hash".to_owned()),
    };
    let updated = auth.update_user("alice", &update, 200, rec()).await.expect("update");
    assert_eq!(
        updated,
        User { role: Role::Viewer, approver: true, updated_at: 200, ..alice.clone() },
        "kind, disabled and created_at are kept"
    );
    let record = auth.get_user("alice").await.expect("get").expect("exists");
    assert_eq!(record.user, updated);
    assert_eq!(record.password_hash.as_deref(), Some("$argon2id$v=19$m=19456,t=2,p=1$new$hash"));
    let updated = auth.update_user("alice", &UserUpdate::default(), 210, rec()).await.expect("empty update");
    assert_eq!(updated.updated_at, 210);
    assert_eq!(auth.get_user("alice").await.expect("get").expect("exists").password_hash.as_deref(), record.password_hash.as_deref());
    let updated = auth.update_user("alice", &disabled(true), 220, rec()).await.expect("disable a non-admin");
    assert!(updated.disabled);
    assert!(auth.update_user("alice", &disabled(false), 230, rec()).await.expect("enable").disabled.eq(&false));

    match auth.update_user("nobody", &role(Role::Admin), 240, rec()).await {
        Err(Error::Auth(crate::AuthError::UserNotFound { name })) => assert_eq!(name, "nobody"),
        other => panic!("expected UserNotFound, got {other:?}"),
    }
    assert!(auth.get_user("nobody").await.expect("get").is_none(), "an update creates nothing");

    // Odd input is an error or nothing, never a crash.
    for odd in ["", "a\0b", "ü\u{10ffff}", &"x".repeat(5000)] {
        match auth.get_user(odd).await {
            Ok(None) | Err(Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
        match auth.update_user(odd, &role(Role::Viewer), 250, rec()).await {
            Err(Error::Auth(crate::AuthError::UserNotFound { .. }) | Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
    }
}

pub async fn auth_last_admin_guard(h: &Harness) {
    let auth = &h.auth;
    // Without any admin there is nothing to guard.
    auth.create_user(&person("member", Role::Member, 1), rec()).await.expect("create");
    auth.update_user("member", &role(Role::Viewer), 2, rec()).await.expect("no admin to keep");
    auth.update_user("member", &disabled(true), 3, rec()).await.expect("no admin to keep");
    auth.update_user("member", &disabled(false), 4, rec()).await.expect("enable");

    let root = auth.create_user(&person("root", Role::Admin, 10), rec()).await.expect("create admin");
    for (what, update) in [
        ("demoting", role(Role::Member)),
        ("demoting", role(Role::Viewer)),
        ("disabling", disabled(true)),
        ("disabling while re-asserting the role", UserUpdate { role: Some(Role::Admin), disabled: Some(true), ..UserUpdate::default() }),
    ] {
        match auth.update_user("root", &update, 20, rec()).await {
            Err(Error::Conflict { message }) => assert!(message.contains("root"), "{what}: the message names the user: {message}"),
            other => panic!("{what} the last enabled admin must be refused, got {other:?}"),
        }
    }
    assert_eq!(user(auth, "root").await, root, "a refused update changes nothing");

    // Changes that keep the admin enabled are fine.
    auth.update_user("root", &role(Role::Admin), 30, rec()).await.expect("same role");
    auth.update_user("root", &disabled(false), 31, rec()).await.expect("already enabled");
    auth.update_user("root", &UserUpdate { approver: Some(true), ..UserUpdate::default() }, 32, rec()).await.expect("approver");
    auth.update_user("root", &UserUpdate { password_hash: Some("$argon2id$x".to_owned()), ..UserUpdate::default() }, 33, rec())
        .await
        .expect("password");
    // Demoting or disabling others is fine.
    auth.update_user("member", &disabled(true), 34, rec()).await.expect("disable a member");

    // A disabled admin does not count: it cannot stand in for the last enabled one.
    auth.create_user(&person("sleeper", Role::Admin, 40), rec()).await.expect("create admin");
    auth.update_user("sleeper", &disabled(true), 41, rec()).await.expect("another admin remains");
    assert!(matches!(auth.update_user("root", &disabled(true), 42, rec()).await, Err(Error::Conflict { .. })));
    // Demoting a disabled admin leaves the enabled admins as they are.
    auth.update_user("sleeper", &role(Role::Member), 43, rec()).await.expect("demote a disabled admin");
    auth.update_user("sleeper", &role(Role::Admin), 44, rec()).await.expect("promote again");
    auth.update_user("sleeper", &disabled(false), 45, rec()).await.expect("enable the second admin");

    // With a second enabled admin, either may go, but not both.
    auth.update_user("root", &role(Role::Member), 50, rec()).await.expect("another admin remains");
    assert!(matches!(auth.update_user("sleeper", &disabled(true), 51, rec()).await, Err(Error::Conflict { .. })));
    assert_eq!(enabled_admins(auth).await, ["sleeper"]);
    // A promotion brings the count back.
    auth.update_user("member", &UserUpdate { role: Some(Role::Admin), disabled: Some(false), ..UserUpdate::default() }, 52, rec())
        .await
        .expect("promote and enable");
    auth.update_user("sleeper", &disabled(true), 53, rec()).await.expect("another admin remains");
    assert_eq!(enabled_admins(auth).await, ["member"]);
}

/// Concurrent demotions and disables of every enabled admin: exactly one is refused, and the
/// refused one is the enabled admin that remains.
pub async fn auth_concurrent_admin_removals(h: &Harness) {
    let auth = &h.auth;
    let mut survivor: Option<String> = None;
    // Round 0 is two demotions of two admins; later rounds race more transactions, mixing kinds.
    for (round, fresh) in [2usize, 5, 7].into_iter().enumerate() {
        let mut contenders: Vec<String> = survivor.iter().cloned().collect();
        for idx in 0..fresh {
            let name = format!("admin-{round}-{idx}");
            auth.create_user(&person(&name, Role::Admin, 1), rec()).await.expect("create admin");
            contenders.push(name);
        }
        let mut tasks = Vec::new();
        for (idx, name) in contenders.iter().enumerate() {
            let auth = auth.clone();
            let name = name.clone();
            let update = if round == 0 || idx % 2 == 0 { role(Role::Member) } else { disabled(true) };
            tasks.push(tokio::spawn(async move {
                let res = auth.update_user(&name, &update, 100, rec()).await;
                (name, res)
            }));
        }
        let mut refused = Vec::new();
        for task in tasks {
            match task.await.expect("join") {
                (_, Ok(changed)) => assert!(changed.role != Role::Admin || changed.disabled),
                (name, Err(Error::Conflict { .. })) => refused.push(name),
                (name, Err(other)) => panic!("unexpected error for {name}: {other:?}"),
            }
        }
        assert_eq!(refused.len(), 1, "round {round}: exactly one removal is refused, got {refused:?}");
        assert_eq!(enabled_admins(auth).await, refused, "round {round}: the refused one is the enabled admin left");
        survivor = refused.pop();
    }
}

pub async fn auth_tokens(h: &Harness) {
    let auth = &h.auth;
    auth.create_user(&person("alice", Role::Member, 1), rec()).await.expect("create");
    auth.create_user(&service("svc", 1), rec()).await.expect("create");

    let t1 = auth.create_token(&token("t1", "alice", 100, None), rec()).await.expect("create token");
    assert_eq!((t1.id.as_str(), t1.user.as_str(), t1.name.as_str()), ("t1", "alice", "label of t1"));
    assert_eq!((t1.created_at, t1.expires_at, t1.revoked_at, t1.last_used_at), (100, None, None, None));
    let t2 = auth.create_token(&token("t2", "alice", 200, Some(1_000)), rec()).await.expect("create token");
    let t3 = auth.create_token(&token("t3", "svc", 150, None), rec()).await.expect("token of a service account");
    // Same creation time: the id breaks the tie (descending).
    let t4 = auth.create_token(&token("t4", "svc", 150, None), rec()).await.expect("create token");

    match auth.create_token(&token("t5", "nobody", 300, None), rec()).await {
        Err(Error::Auth(crate::AuthError::UserNotFound { name })) => assert_eq!(name, "nobody"),
        other => panic!("expected UserNotFound, got {other:?}"),
    }
    assert!(auth.get_token("t5").await.expect("get").is_none(), "a refused create stores nothing");
    assert!(auth.create_token(&token("t1", "svc", 400, None), rec()).await.is_err(), "token ids are unique");
    assert_eq!(auth.get_token("t1").await.expect("get").expect("exists").token, t1, "a refused create changes nothing");

    // Get carries the secret's hash.
    let record = auth.get_token("t2").await.expect("get").expect("exists");
    assert_eq!(record.token, t2);
    assert_eq!(record.token.expires_at, Some(1_000));
    assert_eq!(record.secret_hash, token("t2", "alice", 0, None).secret_hash);
    assert!(auth.get_token("nope").await.expect("get").is_none());

    // Newest first, by creation time then id.
    let all = auth.list_tokens(None).await.expect("list");
    assert_eq!(all, [t2.clone(), t4.clone(), t3.clone(), t1.clone()]);
    assert_eq!(auth.list_tokens(Some("alice")).await.expect("list"), [t2.clone(), t1.clone()]);
    assert_eq!(auth.list_tokens(Some("svc")).await.expect("list"), [t4, t3]);
    assert!(auth.list_tokens(Some("nobody")).await.expect("list").is_empty());

    // Revoking sets the time once.
    let revoked = auth.revoke_token("t1", 500, rec()).await.expect("revoke");
    assert_eq!(revoked, revoked_at(&t1, 500));
    assert!(!revoked.is_usable(501));
    assert_eq!(auth.revoke_token("t1", 600, rec()).await.expect("revoke again"), revoked_at(&t1, 500), "the first time is kept");
    assert_eq!(auth.get_token("t1").await.expect("get").expect("exists").token.revoked_at, Some(500));
    match auth.revoke_token("nope", 700, rec()).await {
        Err(Error::Auth(crate::AuthError::TokenNotFound { id })) => assert_eq!(id, "nope"),
        other => panic!("expected TokenNotFound, got {other:?}"),
    }
    assert!(auth.get_token("t2").await.expect("get").expect("exists").token.is_usable(999));
    assert_eq!(auth.get_token("t2").await.expect("get").expect("exists").token.revoked_at, None, "other tokens are untouched");

    // Odd ids are an error or nothing, never a crash.
    for odd in ["", "a\0b", &"x".repeat(5000)] {
        match auth.get_token(odd).await {
            Ok(None) | Err(Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
        match auth.revoke_token(odd, 1, rec()).await {
            Err(Error::Auth(crate::AuthError::TokenNotFound { .. }) | Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
    }
}

fn revoked_at(token: &plinth_core::auth::ApiToken, at: i64) -> plinth_core::auth::ApiToken {
    plinth_core::auth::ApiToken { revoked_at: Some(at), ..token.clone() }
}

pub async fn auth_token_last_use(h: &Harness) {
    let auth = &h.auth;
    auth.create_user(&person("alice", Role::Member, 1), rec()).await.expect("create");
    auth.create_token(&token("t", "alice", 100, None), rec()).await.expect("create token");
    auth.create_token(&token("other", "alice", 100, None), rec()).await.expect("create token");
    let last_used = |id: &'static str| {
        let auth = auth.clone();
        async move { auth.get_token(id).await.expect("get").expect("exists").token.last_used_at }
    };

    auth.touch_token("t", 10_000, rec()).await.expect("first use");
    assert_eq!(last_used("t").await, Some(10_000));
    // Within a minute: no write.
    auth.touch_token("t", 10_001, rec()).await.expect("touch");
    auth.touch_token("t", 69_999, rec()).await.expect("touch");
    auth.touch_token("t", 70_000, rec()).await.expect("touch");
    assert_eq!(last_used("t").await, Some(10_000), "at most one write a minute");
    auth.touch_token("t", 70_001, rec()).await.expect("touch");
    assert_eq!(last_used("t").await, Some(70_001), "a minute later the use is recorded");
    // A clock running behind never moves it back.
    auth.touch_token("t", 5, rec()).await.expect("touch");
    assert_eq!(last_used("t").await, Some(70_001));
    assert_eq!(last_used("other").await, None, "other tokens are untouched");

    // Unknown ids and extreme times are no error.
    auth.touch_token("nope", 1, rec()).await.expect("unknown token");
    assert!(auth.get_token("nope").await.expect("get").is_none());
    auth.touch_token("other", i64::MIN, rec()).await.expect("extreme time");
    auth.touch_token("other", i64::MAX, rec()).await.expect("extreme time");
    assert_eq!(last_used("other").await, Some(i64::MAX));
    auth.touch_token("other", i64::MIN, rec()).await.expect("extreme time");
    assert_eq!(last_used("other").await, Some(i64::MAX));

    // A revoked token's use is still recorded (the caller decides what a use means).
    auth.revoke_token("t", 80_000, rec()).await.expect("revoke");
    auth.touch_token("t", 200_000, rec()).await.expect("touch");
    let record = auth.get_token("t").await.expect("get").expect("exists");
    assert_eq!((record.token.revoked_at, record.token.last_used_at), (Some(80_000), Some(200_000)));
}

pub async fn auth_grants(h: &Harness) {
    let auth = &h.auth;
    for name in ["alice", "Bob", "carol"] {
        auth.create_user(&person(name, Role::Member, 1), rec()).await.expect("create");
    }
    let exp = ResourceKind::Experiment;
    let model = ResourceKind::RegisteredModel;
    assert_eq!(auth.level("alice", exp, "1").await.expect("level"), None);

    auth.put_grant(&grant("alice", exp, "1", Level::Read, 10), rec()).await.expect("grant");
    auth.put_grant(&grant("carol", exp, "1", Level::Manage, 11), rec()).await.expect("grant");
    auth.put_grant(&grant("Bob", exp, "1", Level::Edit, 12), rec()).await.expect("grant");
    auth.put_grant(&grant("alice", model, "1", Level::Manage, 13), rec()).await.expect("same resource name, other kind");
    auth.put_grant(&grant("alice", exp, "12", Level::Edit, 14), rec()).await.expect("grant");
    auth.put_grant(&grant("alice", model, "churn", Level::Read, 15), rec()).await.expect("grant");

    assert_eq!(auth.level("alice", exp, "1").await.expect("level"), Some(Level::Read));
    assert_eq!(auth.level("alice", model, "1").await.expect("level"), Some(Level::Manage), "kinds are separate");
    assert_eq!(auth.level("Bob", model, "1").await.expect("level"), None);
    assert_eq!(auth.level("bob", exp, "1").await.expect("level"), None, "user names are case-sensitive");
    assert_eq!(auth.level("alice", exp, "12").await.expect("level"), Some(Level::Edit));

    // Put replaces the level and the stamp.
    let mut replaced = grant("alice", exp, "1", Level::Edit, 20);
    replaced.granted_by = "second-admin".to_owned();
    auth.put_grant(&replaced, rec()).await.expect("replace");
    assert_eq!(auth.level("alice", exp, "1").await.expect("level"), Some(Level::Edit));

    // On a resource: by user, bytewise.
    let on = auth.grants_on(exp, "1").await.expect("grants on");
    assert_eq!(users_of(&on), ["Bob", "alice", "carol"]);
    assert_eq!(on[1], replaced);
    assert_eq!(on[0], grant("Bob", exp, "1", Level::Edit, 12));
    assert_eq!(auth.grants_on(model, "1").await.expect("grants on"), [grant("alice", model, "1", Level::Manage, 13)]);
    assert!(auth.grants_on(exp, "nothing").await.expect("grants on").is_empty());

    // Of a user: by kind, then resource.
    let of = auth.grants_of("alice").await.expect("grants of");
    let keys: Vec<(ResourceKind, &str)> = of.iter().map(|g| (g.kind, g.resource.as_str())).collect();
    assert_eq!(keys, [(exp, "1"), (exp, "12"), (model, "1"), (model, "churn")]);
    assert!(auth.grants_of("nobody").await.expect("grants of").is_empty());

    // The user must exist.
    match auth.put_grant(&grant("nobody", exp, "1", Level::Read, 30), rec()).await {
        Err(Error::Auth(crate::AuthError::UserNotFound { name })) => assert_eq!(name, "nobody"),
        other => panic!("expected UserNotFound, got {other:?}"),
    }
    assert_eq!(users_of(&auth.grants_on(exp, "1").await.expect("grants on")), ["Bob", "alice", "carol"]);

    // Delete says whether there was one.
    assert!(auth.delete_grant("carol", exp, "1", rec()).await.expect("delete"));
    assert!(!auth.delete_grant("carol", exp, "1", rec()).await.expect("delete again"));
    assert!(!auth.delete_grant("alice", exp, "missing", rec()).await.expect("delete missing"));
    assert!(!auth.delete_grant("nobody", exp, "1", rec()).await.expect("delete for unknown user"));
    assert_eq!(auth.level("carol", exp, "1").await.expect("level"), None);
    assert_eq!(users_of(&auth.grants_on(exp, "1").await.expect("grants on")), ["Bob", "alice"]);

    // Odd input is an error or nothing, never a crash.
    for odd in ["", "a\0b", &"x".repeat(5000)] {
        match auth.level(odd, exp, odd).await {
            Ok(None) | Err(Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
        match auth.put_grant(&grant(odd, exp, odd, Level::Read, 1), rec()).await {
            Err(Error::Auth(crate::AuthError::UserNotFound { .. }) | Error::InvalidArgument { .. }) => {}
            other => panic!("unexpected {other:?} for {odd:?}"),
        }
    }
}

pub async fn auth_rename_grants(h: &Harness) {
    let auth = &h.auth;
    for name in ["alice", "bob", "carol"] {
        auth.create_user(&person(name, Role::Member, 1), rec()).await.expect("create");
    }
    let exp = ResourceKind::Experiment;
    let model = ResourceKind::RegisteredModel;
    auth.put_grant(&grant("alice", model, "m", Level::Manage, 10), rec()).await.expect("grant");
    auth.put_grant(&grant("bob", model, "m", Level::Read, 11), rec()).await.expect("grant");
    auth.put_grant(&grant("alice", exp, "m", Level::Read, 12), rec()).await.expect("same name, other kind");
    auth.put_grant(&grant("carol", model, "other", Level::Edit, 13), rec()).await.expect("grant");

    auth.rename_grants(model, "m", "m2", rec()).await.expect("rename");
    assert!(auth.grants_on(model, "m").await.expect("grants on").is_empty());
    assert_eq!(
        auth.grants_on(model, "m2").await.expect("grants on"),
        [grant("alice", model, "m2", Level::Manage, 10), grant("bob", model, "m2", Level::Read, 11)],
        "level and stamp move along"
    );
    assert_eq!(auth.level("alice", exp, "m").await.expect("level"), Some(Level::Read), "other kinds keep the name");
    assert_eq!(auth.level("carol", model, "other").await.expect("level"), Some(Level::Edit), "other resources are untouched");

    // Renaming to itself, or something without grants, changes nothing.
    auth.rename_grants(model, "m2", "m2", rec()).await.expect("rename to itself");
    assert_eq!(users_of(&auth.grants_on(model, "m2").await.expect("grants on")), ["alice", "bob"]);
    auth.rename_grants(model, "nothing", "m3", rec()).await.expect("rename without grants");
    assert!(auth.grants_on(model, "m3").await.expect("grants on").is_empty());

    // Grants left on the new name (a deleted resource's) do not survive the rename, nor block it:
    // the renamed resource has exactly the grants of the old name.
    auth.put_grant(&grant("bob", model, "other", Level::Manage, 20), rec()).await.expect("grant");
    auth.rename_grants(model, "m2", "other", rec()).await.expect("rename onto stale grants");
    assert_eq!(
        auth.grants_on(model, "other").await.expect("grants on"),
        [grant("alice", model, "other", Level::Manage, 10), grant("bob", model, "other", Level::Read, 11)]
    );
    assert_eq!(auth.level("carol", model, "other").await.expect("level"), None);
    assert!(auth.grants_on(model, "m2").await.expect("grants on").is_empty());
}

/// `set_owner` leaves the creator as the only grantee (grants from an earlier resource of the
/// same name go), `delete_grants_on` clears one resource; other resources and kinds are untouched.
pub async fn auth_owner_and_forget(h: &Harness) {
    let auth = &h.auth;
    for name in ["alice", "bob", "carol"] {
        auth.create_user(&person(name, Role::Member, 1), rec()).await.expect("create");
    }
    let model = ResourceKind::RegisteredModel;
    let exp = ResourceKind::Experiment;
    auth.put_grant(&grant("bob", model, "m", Level::Manage, 10), rec()).await.expect("left over");
    auth.put_grant(&grant("carol", model, "m", Level::Read, 11), rec()).await.expect("left over");
    auth.put_grant(&grant("bob", exp, "m", Level::Read, 12), rec()).await.expect("other kind");
    auth.put_grant(&grant("bob", model, "n", Level::Edit, 13), rec()).await.expect("other model");
    auth.set_owner(&grant("alice", model, "m", Level::Manage, 20), rec()).await.expect("owner");
    let on_m: Vec<(String, Level)> = auth.grants_on(model, "m").await.expect("grants").into_iter().map(|g| (g.user, g.level)).collect();
    assert_eq!(on_m, [("alice".to_owned(), Level::Manage)]);
    assert_eq!(auth.level("bob", exp, "m").await.expect("level"), Some(Level::Read), "other kinds keep their grants");
    assert_eq!(auth.level("bob", model, "n").await.expect("level"), Some(Level::Edit), "other models keep their grants");
    assert!(matches!(
        auth.set_owner(&grant("nobody", model, "m", Level::Manage, 21), rec()).await,
        Err(Error::Auth(crate::AuthError::UserNotFound { .. }))
    ));
    assert_eq!(auth.level("alice", model, "m").await.expect("level"), Some(Level::Manage), "a refused set_owner changes nothing");
    assert_eq!(auth.delete_grants_on(model, "m", rec()).await.expect("forget"), 1);
    assert!(auth.grants_on(model, "m").await.expect("grants").is_empty());
    assert_eq!(auth.delete_grants_on(model, "m", rec()).await.expect("again"), 0);
    assert_eq!(auth.level("bob", model, "n").await.expect("level"), Some(Level::Edit));
}
