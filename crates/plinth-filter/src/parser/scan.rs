//! Scanning: reads filter and order-by text into raw clauses whose shape is
//! right but whose keys, comparators and values are not yet checked against
//! a grammar.
//!
//! The scanner walks the input once with a cursor that only ever stops on a
//! character boundary, so it runs in linear time and cannot panic on any
//! input. Errors are plain descriptions; the caller adds the prefix.

use super::snippet;
use crate::ast::Op;

/// An identifier as written: an optional prefix and a name, quotes removed.
#[derive(Debug)]
pub(super) struct RawIdent<'a> {
    /// The part before the first `.`, when there is one.
    pub(super) prefix: Option<String>,
    /// The key after the `.`, or the whole identifier when there is no prefix.
    pub(super) name: String,
    /// The identifier's source text, for error messages.
    pub(super) text: &'a str,
}

/// A value as written.
#[derive(Debug)]
pub(super) struct RawValue<'a> {
    /// What the value looked like.
    pub(super) kind: RawValueKind,
    /// The value's source text, for error messages and bare experiment ids.
    pub(super) text: &'a str,
}

/// The shapes a value can have.
#[derive(Debug)]
pub(super) enum RawValueKind {
    /// A finite number.
    Number(f64),
    /// A string in single or double quotes.
    Str(String),
    /// A string in backticks, which quote keys, not values.
    Backticked,
    /// An unquoted word that is not a number.
    Bare,
    /// A parenthesised list of quoted strings.
    List(Vec<String>),
}

/// One comparison as written.
#[derive(Debug)]
pub(super) struct RawClause<'a> {
    pub(super) ident: RawIdent<'a>,
    pub(super) op: Op,
    /// The value; absent exactly for `IS NULL` and `IS NOT NULL`.
    pub(super) value: Option<RawValue<'a>>,
}

/// One order-by entry as written.
#[derive(Debug)]
pub(super) struct RawOrderBy<'a> {
    pub(super) ident: RawIdent<'a>,
    pub(super) ascending: bool,
}

/// Scans a whole filter into its clauses.
pub(super) fn scan_filter(input: &str) -> Result<Vec<RawClause<'_>>, String> {
    let mut cursor = Cursor::new(input);
    let mut clauses = Vec::new();
    cursor.skip_whitespace();
    if cursor.is_at_end() {
        return Ok(clauses);
    }
    loop {
        if cursor.at_keyword("AND") {
            return Err(if clauses.is_empty() {
                format!("expected a comparison before 'AND', found {}", found(cursor.rest()))
            } else {
                format!("expected a comparison after 'AND', found {}", found(cursor.rest()))
            });
        }
        let start = cursor.pos;
        clauses.push(cursor.scan_clause()?);
        let clause_text = cursor.slice(start, cursor.pos);
        cursor.skip_whitespace();
        if cursor.is_at_end() {
            return Ok(clauses);
        }
        if !cursor.eat_keyword("AND") {
            return Err(format!(
                "expected 'AND' or the end of the filter after '{}', found {}; \
                 comparisons can only be joined with AND, without parentheses",
                snippet(clause_text),
                found(cursor.rest())
            ));
        }
        cursor.skip_whitespace();
        if cursor.is_at_end() {
            return Err("expected a comparison after the last 'AND', found the end of the filter".to_owned());
        }
    }
}

/// Scans an order-by entry: an identifier and an optional direction.
pub(super) fn scan_order_by(input: &str) -> Result<RawOrderBy<'_>, String> {
    let mut cursor = Cursor::new(input);
    cursor.skip_whitespace();
    let ident = cursor.scan_identifier()?;
    cursor.skip_whitespace();
    let ascending = if cursor.eat_keyword("ASC") {
        true
    } else if cursor.eat_keyword("DESC") {
        false
    } else if cursor.is_at_end() {
        true
    } else {
        return Err(format!("expected ASC, DESC or the end after '{}', found {}", snippet(ident.text), found(cursor.rest())));
    };
    cursor.skip_whitespace();
    if !cursor.is_at_end() {
        return Err(format!("expected the end after the direction, found {}", found(cursor.rest())));
    }
    Ok(RawOrderBy { ident, ascending })
}

/// Whether `c` may appear in an unquoted key or value.
fn is_bare(c: char) -> bool {
    !c.is_whitespace() && !is_symbol(c) && !matches!(c, '\'' | '"' | '`' | '(' | ')' | ',')
}

/// Whether `c` may appear in a symbolic comparator such as `>=`.
fn is_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>')
}

/// Whether `c` may appear in a keyword-like word.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `text` is a number: an optional sign, digits with an optional
/// decimal point, and an optional exponent. Unlike Rust's float parser, this
/// rejects `inf` and `NaN`.
fn is_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits_from = |mut index: usize| {
        while bytes.get(index).is_some_and(u8::is_ascii_digit) {
            index += 1;
        }
        index
    };
    let mut index = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let integer_end = digits_from(index);
    let mut digits = integer_end - index;
    index = integer_end;
    if bytes.get(index) == Some(&b'.') {
        let fraction_end = digits_from(index + 1);
        digits += fraction_end - (index + 1);
        index = fraction_end;
    }
    if digits == 0 {
        return false;
    }
    if matches!(bytes.get(index), Some(b'e' | b'E')) {
        index += 1;
        if matches!(bytes.get(index), Some(b'+' | b'-')) {
            index += 1;
        }
        let exponent_end = digits_from(index);
        if exponent_end == index {
            return false;
        }
        index = exponent_end;
    }
    index == bytes.len()
}

/// Describes what was found where something else was expected.
fn found(rest: &str) -> String {
    if rest.is_empty() { "the end of the input".to_owned() } else { format!("'{}'", snippet(rest)) }
}

/// A position in the input, always on a character boundary.
struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    /// The input from `start` to `end`, or nothing if that is not a slice.
    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.src.get(start..end).unwrap_or_default()
    }

    /// The input not yet consumed.
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn is_at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Consumes characters while `keep` holds and returns them.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !keep(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.slice(start, self.pos)
    }

    fn skip_whitespace(&mut self) {
        self.take_while(char::is_whitespace);
    }

    /// Whether the input continues with `keyword` (ASCII, any case) as a
    /// whole word.
    fn at_keyword(&self, keyword: &str) -> bool {
        let rest = self.rest();
        rest.get(..keyword.len()).is_some_and(|head| head.eq_ignore_ascii_case(keyword))
            && !rest.get(keyword.len()..).and_then(|after| after.chars().next()).is_some_and(is_word)
    }

    /// Consumes `keyword` if the input continues with it as a whole word.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let at = self.at_keyword(keyword);
        if at {
            self.pos += keyword.len();
        }
        at
    }

    /// Scans `identifier comparator [value]`.
    fn scan_clause(&mut self) -> Result<RawClause<'a>, String> {
        let ident = self.scan_identifier()?;
        self.skip_whitespace();
        let op = self.scan_op(ident.text)?;
        let value = match op {
            Op::IsNull | Op::IsNotNull => None,
            _ => {
                self.skip_whitespace();
                Some(self.scan_value(op)?)
            }
        };
        Ok(RawClause { ident, op, value })
    }

    /// Scans `prefix.key` or a bare attribute name.
    fn scan_identifier(&mut self) -> Result<RawIdent<'a>, String> {
        let start = self.pos;
        let head = match self.peek() {
            Some(quote @ ('`' | '"')) => self.scan_quoted(quote)?,
            Some(c) if is_bare(c) && c != '.' => self.take_while(|c| is_bare(c) && c != '.').to_owned(),
            Some('(') => {
                return Err(format!("parentheses are not supported, found {}", found(self.rest())));
            }
            _ => {
                return Err(format!("expected an identifier such as 'metrics.accuracy', found {}", found(self.rest())));
            }
        };
        if self.peek() != Some('.') {
            return Ok(RawIdent { prefix: None, name: head, text: self.slice(start, self.pos) });
        }
        self.bump();
        let name = match self.peek() {
            Some(quote @ ('`' | '"')) => self.scan_quoted(quote)?,
            Some(c) if is_bare(c) => self.take_while(is_bare).to_owned(),
            _ => {
                return Err(format!("expected a key after '{}', found {}", snippet(self.slice(start, self.pos)), found(self.rest())));
            }
        };
        let text = self.slice(start, self.pos);
        if name.is_empty() {
            return Err(format!("the key of '{}' is empty", snippet(text)));
        }
        Ok(RawIdent { prefix: Some(head), name, text })
    }

    /// Scans a comparator; `after` is the identifier, for error messages.
    fn scan_op(&mut self, after: &str) -> Result<Op, String> {
        let start = self.pos;
        let expected = |rest: &str| format!("expected a comparator after '{}', found {}", snippet(after), found(rest));
        match self.peek() {
            Some(c) if is_symbol(c) => match self.take_while(is_symbol) {
                "=" => Ok(Op::Eq),
                "!=" | "<>" => Ok(Op::Ne),
                ">" => Ok(Op::Gt),
                ">=" => Ok(Op::Ge),
                "<" => Ok(Op::Lt),
                "<=" => Ok(Op::Le),
                symbol => Err(format!("unknown comparator '{}' after '{}'", snippet(symbol), snippet(after))),
            },
            Some(c) if is_word(c) => {
                let word = self.take_while(is_word);
                if word.eq_ignore_ascii_case("LIKE") {
                    Ok(Op::Like)
                } else if word.eq_ignore_ascii_case("ILIKE") {
                    Ok(Op::ILike)
                } else if word.eq_ignore_ascii_case("IN") {
                    Ok(Op::In)
                } else if word.eq_ignore_ascii_case("NOT") {
                    self.skip_whitespace();
                    if self.eat_keyword("IN") {
                        Ok(Op::NotIn)
                    } else {
                        Err(format!("expected 'IN' after 'NOT', found {}", found(self.rest())))
                    }
                } else if word.eq_ignore_ascii_case("IS") {
                    self.skip_whitespace();
                    if self.eat_keyword("NULL") {
                        Ok(Op::IsNull)
                    } else if self.eat_keyword("NOT") {
                        self.skip_whitespace();
                        if self.eat_keyword("NULL") {
                            Ok(Op::IsNotNull)
                        } else {
                            Err(format!("expected 'NULL' after 'IS NOT', found {}", found(self.rest())))
                        }
                    } else {
                        Err(format!("expected 'NULL' or 'NOT NULL' after 'IS', found {}", found(self.rest())))
                    }
                } else {
                    Err(expected(self.slice(start, self.src.len())))
                }
            }
            _ => Err(expected(self.rest())),
        }
    }

    /// Scans a value; `op` is the comparator before it, for error messages.
    fn scan_value(&mut self, op: Op) -> Result<RawValue<'a>, String> {
        let start = self.pos;
        let kind = match self.peek() {
            Some(quote @ ('\'' | '"')) => RawValueKind::Str(self.scan_quoted(quote)?),
            Some('`') => {
                self.scan_quoted('`')?;
                RawValueKind::Backticked
            }
            Some('(') => RawValueKind::List(self.scan_list()?),
            Some(c) if is_bare(c) => {
                let text = self.take_while(is_bare);
                if is_number(text) {
                    match text.parse::<f64>() {
                        Ok(number) if number.is_finite() => RawValueKind::Number(number),
                        _ => {
                            return Err(format!("the number '{}' is out of range", snippet(text)));
                        }
                    }
                } else {
                    RawValueKind::Bare
                }
            }
            _ => {
                return Err(format!("expected a value after '{op}', found {}", found(self.rest())));
            }
        };
        Ok(RawValue { kind, text: self.slice(start, self.pos) })
    }

    /// Scans `( string [, string]* )`.
    fn scan_list(&mut self) -> Result<Vec<String>, String> {
        let start = self.pos;
        self.bump();
        self.skip_whitespace();
        if self.peek() == Some(')') {
            return Err("expected a non-empty list of quoted string values such as ('a', 'b'), \
                 found an empty list"
                .to_owned());
        }
        let mut items = Vec::new();
        loop {
            match self.peek() {
                Some(quote @ ('\'' | '"')) => items.push(self.scan_quoted(quote)?),
                _ => {
                    return Err(format!(
                        "expected a quoted string in the list {}, found {}",
                        found(self.slice(start, self.src.len())),
                        found(self.rest())
                    ));
                }
            }
            self.skip_whitespace();
            match self.peek() {
                Some(',') => {
                    self.bump();
                    self.skip_whitespace();
                }
                Some(')') => {
                    self.bump();
                    return Ok(items);
                }
                _ => {
                    return Err(format!(
                        "expected ',' or ')' in the list {}, found {}",
                        found(self.slice(start, self.src.len())),
                        found(self.rest())
                    ));
                }
            }
        }
    }

    /// Scans text between two `quote` characters, where a doubled quote
    /// stands for one quote character.
    fn scan_quoted(&mut self, quote: char) -> Result<String, String> {
        let start = self.pos;
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(format!(
                        "unterminated quoted string {} (the closing {quote} is missing)",
                        snippet(self.slice(start, self.src.len()))
                    ));
                }
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        text.push(quote);
                    } else {
                        return Ok(text);
                    }
                }
                Some(c) => text.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RawValueKind, is_number, scan_filter, scan_order_by};
    use crate::ast::Op;

    #[test]
    fn numbers_follow_the_sql_grammar() {
        for text in ["1", "-1", "+1", "1.5", "-1.5e3", "1E-3", ".5", "5.", "0", "1e+10", "007"] {
            assert!(is_number(text), "{text}");
        }
        for text in ["", "-", ".", "e5", "1e", "1e+", "inf", "NaN", "-inf", "1.2.3", "1x", "--1", "0x10", "1_000"] {
            assert!(!is_number(text), "{text}");
        }
    }

    #[test]
    fn clauses_are_split_on_and_in_any_case() {
        let clauses = scan_filter("a = 1 and b != 'x' AnD c IS NULL").expect("valid shape");
        let ops: Vec<Op> = clauses.iter().map(|clause| clause.op).collect();
        assert_eq!(ops, [Op::Eq, Op::Ne, Op::IsNull]);
        assert!(clauses[2].value.is_none());
    }

    #[test]
    fn unquoted_keys_run_up_to_a_comparator_or_whitespace() {
        let clauses = scan_filter("metrics.a.b>=1 AND tags.mlflow.user='x'").expect("valid shape");
        assert_eq!(clauses[0].ident.prefix.as_deref(), Some("metrics"));
        assert_eq!(clauses[0].ident.name, "a.b");
        assert_eq!(clauses[0].op, Op::Ge);
        assert_eq!(clauses[1].ident.name, "mlflow.user");
    }

    #[test]
    fn quotes_are_escaped_by_doubling() {
        let clauses = scan_filter("tags.`a``b` = 'it''s' AND params.\"c\"\"d\" = \"e\"\"f\"").expect("valid shape");
        assert_eq!(clauses[0].ident.name, "a`b");
        assert!(matches!(&clauses[0].value, Some(value) if matches!(&value.kind, RawValueKind::Str(s) if s == "it's")));
        assert_eq!(clauses[1].ident.name, "c\"d");
        assert!(matches!(&clauses[1].value, Some(value) if matches!(&value.kind, RawValueKind::Str(s) if s == "e\"f")));
    }

    #[test]
    fn lists_hold_quoted_strings() {
        let clauses = scan_filter("run_id IN ('a', \"b\" ,'c')").expect("valid shape");
        assert!(matches!(
            &clauses[0].value,
            Some(value) if matches!(&value.kind, RawValueKind::List(items) if items == &["a", "b", "c"])
        ));
        for bad in ["run_id IN ()", "run_id IN (1)", "run_id IN ('a',)", "run_id IN ('a' 'b')", "run_id IN ('a'"] {
            assert!(scan_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn order_by_directions_are_optional_and_case_insensitive() {
        let order = scan_order_by("  metrics.`f1 score`   desc ").expect("valid shape");
        assert_eq!(order.ident.name, "f1 score");
        assert!(!order.ascending);
        assert!(scan_order_by("start_time").expect("valid shape").ascending);
        assert!(scan_order_by("start_time Asc").expect("valid shape").ascending);
        assert!(scan_order_by("start_time up").is_err());
        assert!(scan_order_by("start_time DESC DESC").is_err());
        assert!(scan_order_by("").is_err());
    }
}
