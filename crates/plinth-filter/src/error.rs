//! The error returned for any filter or order-by string that does not parse.

/// A filter or order-by string that could not be parsed.
///
/// The message is meant for the user who wrote the string: it follows
/// MLflow's wording and is returned verbatim as an MLflow
/// `INVALID_PARAMETER_VALUE` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    message: String,
}

impl ParseError {
    /// Builds an error from its user-facing message.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// The user-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::ParseError;

    #[test]
    fn display_is_the_message() {
        let error = ParseError::new("Invalid clause(s) in filter string: 'OR'");
        assert_eq!(error.to_string(), "Invalid clause(s) in filter string: 'OR'");
        assert_eq!(error.message(), "Invalid clause(s) in filter string: 'OR'");
    }
}
