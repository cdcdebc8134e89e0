//! MLflow's search-filter and order-by grammar, parsed to a typed AST.
//!
//! The grammar, as accepted by [`parse_filter`] and [`parse_order_by`]:
//!
//! ```text
//! filter      ::= ws* [ clause ( ws* AND ws* clause )* ] ws*
//! clause      ::= identifier ws* comparison
//! comparison  ::= symbol ws* value
//!               | ( LIKE | ILIKE ) ws* value
//!               | [ NOT ws+ ] IN ws* list
//!               | IS ws+ [ NOT ws+ ] NULL
//! symbol      ::= "=" | "!=" | "<>" | ">" | ">=" | "<" | "<="
//! identifier  ::= prefix "." key | name
//! prefix      ::= "metrics" | "metric"
//!               | "params" | "param" | "parameters" | "parameter"
//!               | "tags" | "tag"
//!               | "attributes" | "attribute" | "attr" | "run"
//!               | "datasets" | "dataset"
//!               | quoted-name
//! key         ::= bare-key | quoted-name
//! name        ::= bare-name | quoted-name
//! bare-key    ::= bare-char+
//! bare-name   ::= ( bare-char - "." )+
//! bare-char   ::= any character except whitespace, quotes, backticks,
//!                 "=", "!", "<", ">", "(", ")" and ","
//! quoted-name ::= "`" ( any character except "`" | "``" )* "`"
//!               | '"' ( any character except '"' | '""' )* '"'
//! value       ::= number | string
//! number      ::= [ "+" | "-" ] ( digit+ [ "." digit* ] | "." digit+ )
//!                 [ ( "e" | "E" ) [ "+" | "-" ] digit+ ]
//! string      ::= "'" ( any character except "'" | "''" )* "'"
//!               | '"' ( any character except '"' | '""' )* '"'
//! list        ::= "(" ws* string ( ws* "," ws* string )* ws* ")"
//!
//! order-by    ::= ws* identifier [ ws* ( ASC | DESC ) ] ws*
//! ```
//!
//! Keywords (`AND`, `LIKE`, `ILIKE`, `IN`, `NOT`, `IS`, `NULL`, `ASC`, `DESC`)
//! are case-insensitive and end where no letter, digit or `_` follows; `ws`
//! is any Unicode whitespace. Prefixes and attribute names are
//! case-sensitive, as in MLflow. A bare `name` (one without a prefix) names an attribute. Which
//! keys, comparators and value types are allowed depends on the [`Grammar`]:
//! metrics and numeric attributes take numbers, everything else takes quoted
//! strings, `IN` and `NOT IN` take non-empty lists of quoted strings, and
//! `IS NULL` and `IS NOT NULL` take no value at all. The one exception is
//! `experiment_id`, whose string value may also be written as a bare whole
//! number. An unquoted word where a value belongs is read only so that the
//! error can say that it should have been quoted. Inside quotes, a quote
//! character is escaped by doubling it (`'it''s'`); backslashes are ordinary
//! characters.
//!
//! The parser is pure, runs in time linear in the input, rejects input longer
//! than [`MAX_INPUT_LEN`] bytes, and never panics. Its error messages follow
//! MLflow's wording, because they are returned to users as MLflow
//! `INVALID_PARAMETER_VALUE` errors.
//!
//! ```
//! use plinth_filter::{parse_filter, parse_order_by, Grammar, Key, Op, Value};
//!
//! let clauses = parse_filter(Grammar::Runs, "metrics.`f1 score` >= 0.5 and tags.team = 'ml'")
//!     .expect("the filter is valid");
//! assert_eq!(clauses[0].key, Key::Metric("f1 score".to_owned()));
//! assert_eq!(clauses[0].op, Op::Ge);
//! assert_eq!(clauses[0].value, Value::Number(0.5));
//!
//! let order = parse_order_by(Grammar::Runs, "start_time DESC").expect("the order is valid");
//! assert!(!order.ascending);
//! ```

mod ast;
mod error;
mod grammar;
mod parser;

pub use ast::{Attr, Clause, DatasetField, Key, Op, OrderBy, Value};
pub use error::ParseError;
pub use grammar::Grammar;
pub use parser::{MAX_INPUT_LEN, parse_filter, parse_order_by};
