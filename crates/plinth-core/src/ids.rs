//! Id newtypes whose constructors enforce MLflow's id rules, so a validated id is carried in a type.

use crate::validation::InvalidParameter;

fn is_id(s: &str, max_tail: usize) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    let mut n = 0;
    for c in chars {
        n += 1;
        if n > max_tail || !(c.is_alphanumeric() || c == '_' || c == '-') {
            return false;
        }
    }
    true
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max_tail:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as this kind of id.
            pub fn parse(value: &str) -> Result<$name, InvalidParameter> {
                if is_id(value, $max_tail) {
                    Ok($name(value.to_owned()))
                } else {
                    Err(InvalidParameter::invalid_value($field, value, ""))
                }
            }

            /// Wraps a value the storage layer produced; it was validated when written.
            pub fn from_trusted(value: String) -> $name {
                $name(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An experiment id: `^[a-zA-Z0-9][\w\-]{0,63}$`. The SQL stores allocate integers.
    ExperimentId,
    "experiment_id",
    63
);
id_type!(
    /// A run id: `^[a-zA-Z0-9][\w\-]{0,255}$`; Plinth allocates 32 hex digits (uuid4).
    RunId,
    "run_id",
    255
);
id_type!(
    /// A logged model id: `m-` followed by 32 hex digits when Plinth allocates it.
    LoggedModelId,
    "model_id",
    255
);

impl RunId {
    /// A fresh random run id (uuid4, 32 lowercase hex digits).
    pub fn generate() -> RunId {
        RunId(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl LoggedModelId {
    /// A fresh random logged model id (`m-` + 32 hex digits).
    pub fn generate() -> LoggedModelId {
        LoggedModelId(format!("m-{}", uuid::Uuid::new_v4().simple()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rules() {
        assert!(ExperimentId::parse("0").is_ok());
        assert!(ExperimentId::parse("abc-1_2").is_ok());
        assert!(ExperimentId::parse("").is_err());
        assert!(ExperimentId::parse("-a").is_err());
        assert!(ExperimentId::parse(&"a".repeat(64)).is_ok());
        assert!(ExperimentId::parse(&"a".repeat(65)).is_err());
        assert!(RunId::parse(&"a".repeat(256)).is_ok());
        assert!(RunId::parse(&"a".repeat(257)).is_err());
        assert!(RunId::parse("../x").is_err());
        assert_eq!(RunId::generate().as_str().len(), 32);
        assert!(LoggedModelId::generate().as_str().starts_with("m-"));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_the_charset(s in ".{0,80}") {
            if let Ok(id) = RunId::parse(&s) {
                prop_assert!(id.as_str().chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-'));
                prop_assert!(!id.as_str().contains('/'));
            }
        }
    }
}
