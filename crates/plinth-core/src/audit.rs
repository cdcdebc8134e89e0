//! The audit trail's domain: who did what to which resource, when, with what outcome.

use crate::{ErrorCode, HasErrorCode};

/// Who made a request: the verified principal with auth on; with auth off, the user name the
/// request presents (the HTTP Basic user name, unverified), or `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
}

impl Actor {
    pub const ANONYMOUS: &'static str = "anonymous";

    pub fn new(name: impl Into<String>) -> Actor {
        Actor { name: name.into() }
    }

    pub fn anonymous() -> Actor {
        Actor::new(Actor::ANONYMOUS)
    }

    /// Internal work (webhook delivery, expiry sweeps).
    pub fn system() -> Actor {
        Actor::new("system")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Ok,
    /// A rule refused it (a promotion gate, a permission).
    Refused,
    /// It failed with an error (not found, invalid, conflict).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Refused => "REFUSED",
            Outcome::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Ok, Outcome::Refused, Outcome::Failed].into_iter().find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

/// One field's value before and after a change; `None` where it did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Change {
    pub fn new(field: impl Into<String>, before: Option<String>, after: Option<String>) -> Change {
        Change { field: field.into(), before, after }
    }

    pub fn set(field: impl Into<String>, after: impl Into<String>) -> Change {
        Change { field: field.into(), before: None, after: Some(after.into()) }
    }
}

/// An audit record. `id` is assigned on append (0 before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub time: i64,
    pub actor: String,
    /// `<resource_type>.<verb>`, e.g. `model_version.create`, `alias.set`, `run.delete`.
    pub action: String,
    /// `experiment`, `run`, `registered_model`, `model_version`, `alias`, `gate`, `promotion`, `webhook`.
    pub resource_type: String,
    /// The resource's id: an experiment id, a run id, a model name, `name/version`, `name@alias`.
    pub resource_id: String,
    pub outcome: Outcome,
    /// Why it was refused or failed (the error message), or a note.
    pub message: Option<String>,
    pub changes: Vec<Change>,
}

impl AuditEvent {
    pub fn new(actor: &Actor, action: &str, resource_type: &str, resource_id: impl Into<String>) -> AuditEvent {
        AuditEvent {
            id: 0,
            time: crate::time::now_millis(),
            actor: actor.name.clone(),
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.into(),
            outcome: Outcome::Ok,
            message: None,
            changes: Vec::new(),
        }
    }

    pub fn with_change(mut self, change: Change) -> AuditEvent {
        self.changes.push(change);
        self
    }

    pub fn with_changes(mut self, changes: impl IntoIterator<Item = Change>) -> AuditEvent {
        self.changes.extend(changes);
        self
    }

    pub fn with_outcome(mut self, outcome: Outcome, message: impl Into<String>) -> AuditEvent {
        self.outcome = outcome;
        self.message = Some(message.into());
        self
    }

    /// The event with the outcome of `res`: a rule's refusal (`INVALID_STATE_TRANSITION`,
    /// `PERMISSION_DENIED`) is `Refused`, any other error `Failed`; an internal error's message,
    /// which may carry server details, is not kept.
    pub fn concluded<T, E: HasErrorCode + std::fmt::Display>(self, res: &Result<T, E>) -> AuditEvent {
        match res {
            Ok(_) => self,
            Err(e) => match e.error_code() {
                ErrorCode::InvalidStateTransition | ErrorCode::PermissionDenied => self.with_outcome(Outcome::Refused, e.to_string()),
                code if code.is_internal() => self.with_outcome(Outcome::Failed, "internal error"),
                _ => self.with_outcome(Outcome::Failed, e.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Coded(ErrorCode, &'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }

    impl HasErrorCode for Coded {
        fn error_code(&self) -> ErrorCode {
            self.0
        }
    }

    #[test]
    fn outcomes_follow_the_error_code() {
        let event = || AuditEvent::new(&Actor::new("alice"), "alias.set", "alias", "m@champion");
        let ok: Result<(), Coded> = Ok(());
        assert_eq!(event().concluded(&ok).outcome, Outcome::Ok);
        let refused = event().concluded(&Err::<(), _>(Coded(ErrorCode::InvalidStateTransition, "gate said no")));
        assert_eq!((refused.outcome, refused.message.as_deref()), (Outcome::Refused, Some("gate said no")));
        let denied = event().concluded(&Err::<(), _>(Coded(ErrorCode::PermissionDenied, "no")));
        assert_eq!(denied.outcome, Outcome::Refused);
        let failed = event().concluded(&Err::<(), _>(Coded(ErrorCode::ResourceDoesNotExist, "missing")));
        assert_eq!((failed.outcome, failed.message.as_deref()), (Outcome::Failed, Some("missing")));
        let internal = event().concluded(&Err::<(), _>(Coded(ErrorCode::InternalError, "SELECT … at /srv/db")));
        assert_eq!((internal.outcome, internal.message.as_deref()), (Outcome::Failed, Some("internal error")), "no server details");
    }
}
