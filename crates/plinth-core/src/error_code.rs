//! The one table of stable error codes: name, HTTP status, retryability.
//!
//! Codes are append-only. Names and statuses follow MLflow's `ErrorCode` and its
//! `ERROR_CODE_TO_HTTP_STATUS` table, because the MLflow client parses them back.
//! `docs/reference/errors.md` is generated from this table and checked by a test.

/// A stable, user-visible error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidParameterValue,
    BadRequest,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    EndpointNotFound,
    InvalidState,
    ResourceConflict,
    InvalidStateTransition,
    PermissionDenied,
    Unauthenticated,
    RequestLimitExceeded,
    NotImplemented,
    TemporarilyUnavailable,
    InternalError,
}

struct Row {
    code: ErrorCode,
    name: &'static str,
    http_status: u16,
    retryable: bool,
    meaning: &'static str,
}

const TABLE: &[Row] = &[
    Row {
        code: ErrorCode::InvalidParameterValue,
        name: "INVALID_PARAMETER_VALUE",
        http_status: 400,
        retryable: false,
        meaning: "A request field is missing, malformed, out of range or breaks a name rule.",
    },
    Row {
        code: ErrorCode::BadRequest,
        name: "BAD_REQUEST",
        http_status: 400,
        retryable: false,
        meaning: "The request as a whole cannot be understood (not JSON, wrong content type).",
    },
    Row {
        code: ErrorCode::ResourceAlreadyExists,
        name: "RESOURCE_ALREADY_EXISTS",
        http_status: 400,
        retryable: false,
        meaning: "A resource with that unique name exists already (MLflow answers 400, not 409).",
    },
    Row {
        code: ErrorCode::ResourceDoesNotExist,
        name: "RESOURCE_DOES_NOT_EXIST",
        http_status: 404,
        retryable: false,
        meaning: "The addressed experiment, run, model, tag or artifact does not exist.",
    },
    Row {
        code: ErrorCode::EndpointNotFound,
        name: "ENDPOINT_NOT_FOUND",
        http_status: 404,
        retryable: false,
        meaning: "No route for this method and path.",
    },
    Row {
        code: ErrorCode::InvalidState,
        name: "INVALID_STATE",
        http_status: 500,
        retryable: false,
        meaning: "The operation is not allowed in the resource's current lifecycle state (MLflow answers 500).",
    },
    Row {
        code: ErrorCode::ResourceConflict,
        name: "RESOURCE_CONFLICT",
        http_status: 409,
        retryable: true,
        meaning: "A concurrent change won; retrying may succeed.",
    },
    Row {
        code: ErrorCode::InvalidStateTransition,
        name: "INVALID_STATE_TRANSITION",
        http_status: 409,
        retryable: false,
        meaning: "A promotion gate refused to move an alias or stage onto a version; the message lists every failed condition.",
    },
    Row {
        code: ErrorCode::PermissionDenied,
        name: "PERMISSION_DENIED",
        http_status: 403,
        retryable: false,
        meaning: "The caller is known but lacks the permission.",
    },
    Row {
        code: ErrorCode::Unauthenticated,
        name: "UNAUTHENTICATED",
        http_status: 401,
        retryable: false,
        meaning: "No valid credentials were presented.",
    },
    Row {
        code: ErrorCode::RequestLimitExceeded,
        name: "REQUEST_LIMIT_EXCEEDED",
        http_status: 429,
        retryable: true,
        meaning: "A rate or size limit was exceeded.",
    },
    Row {
        code: ErrorCode::NotImplemented,
        name: "NOT_IMPLEMENTED",
        http_status: 501,
        retryable: false,
        meaning: "The operation exists in the protocol but Plinth does not offer it.",
    },
    Row {
        code: ErrorCode::TemporarilyUnavailable,
        name: "TEMPORARILY_UNAVAILABLE",
        http_status: 503,
        retryable: true,
        meaning: "A backing service is unavailable or the server is shutting down.",
    },
    Row {
        code: ErrorCode::InternalError,
        name: "INTERNAL_ERROR",
        http_status: 500,
        retryable: true,
        meaning: "A bug or an unexpected storage failure; the response carries a request id, the log the cause.",
    },
];

impl ErrorCode {
    /// Every code, in catalogue order.
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        TABLE.iter().map(|it| it.code)
    }

    fn row(self) -> &'static Row {
        TABLE.iter().find(|it| it.code == self).expect("every code has a row in TABLE")
    }

    /// The wire name, e.g. `INVALID_PARAMETER_VALUE`.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The HTTP status used on MLflow-shaped routes.
    pub fn http_status(self) -> u16 {
        self.row().http_status
    }

    /// Whether a client may succeed by retrying the same request unchanged.
    pub fn is_retryable(self) -> bool {
        self.row().retryable
    }

    /// One sentence saying when the code is used.
    pub fn meaning(self) -> &'static str {
        self.row().meaning
    }

    /// Whether the code stands for a server-side fault rather than a problem with the request.
    pub fn is_internal(self) -> bool {
        matches!(self, ErrorCode::InternalError)
    }

    /// Renders the catalogue as the Markdown reference committed at `docs/reference/errors.md`.
    pub fn reference_markdown() -> String {
        let mut out = String::from(
            "# Error codes\n\nGenerated from `plinth-core/src/error_code.rs` (`cargo test -p plinth-core` checks it; `UPDATE_EXPECT=1` rewrites it).\nEvery error response carries one of these codes; MLflow routes answer `{\"error_code\": CODE, \"message\": ...}` with the status below.\n\n| code | HTTP status | retryable | meaning |\n| --- | --- | --- | --- |\n",
        );
        for it in TABLE {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                it.name,
                it.http_status,
                if it.retryable { "yes" } else { "no" },
                it.meaning
            ));
        }
        out
    }
}

/// Implemented by every crate's error type, with an exhaustive `match`; wrapping variants delegate
/// to their source so a deep "not found" keeps its code.
pub trait HasErrorCode {
    fn error_code(&self) -> ErrorCode;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_names_unique() {
        let mut names: Vec<_> = ErrorCode::all().map(ErrorCode::name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(n, names.len());
        assert_eq!(ErrorCode::ResourceAlreadyExists.http_status(), 400);
        assert_eq!(ErrorCode::ResourceDoesNotExist.http_status(), 404);
        assert_eq!(ErrorCode::InvalidState.http_status(), 500);
    }

    /// Every variant has exactly one row in `TABLE`. The match is exhaustive, so a new variant
    /// does not compile until it is listed here, and then this test fails until it has its row.
    #[test]
    fn every_variant_has_exactly_one_row() {
        use ErrorCode::*;
        const VARIANTS: usize = 14;
        let ordinal = |code: ErrorCode| match code {
            InvalidParameterValue => 0,
            BadRequest => 1,
            ResourceAlreadyExists => 2,
            ResourceDoesNotExist => 3,
            EndpointNotFound => 4,
            InvalidState => 5,
            ResourceConflict => 6,
            InvalidStateTransition => 7,
            PermissionDenied => 8,
            Unauthenticated => 9,
            RequestLimitExceeded => 10,
            NotImplemented => 11,
            TemporarilyUnavailable => 12,
            InternalError => 13,
        };
        let mut rows = [0usize; VARIANTS];
        for row in TABLE {
            rows[ordinal(row.code)] += 1;
        }
        assert!(rows.iter().all(|n| *n == 1), "rows per variant (in declaration order): {rows:?}");
    }

    #[test]
    fn reference_doc_is_fresh() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/reference/errors.md");
        let want = ErrorCode::reference_markdown();
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::create_dir_all(std::path::Path::new(path).parent().expect("has parent")).expect("mkdir");
            std::fs::write(path, &want).expect("write reference");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(have == want, "docs/reference/errors.md is stale: run `UPDATE_EXPECT=1 cargo test -p plinth-core`");
    }
}
