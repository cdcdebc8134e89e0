//! Promotion-gate conditions: a small grammar and its evaluation.
//!
//! ```text
//! condition := operand op operand
//! op        := '>=' | '<=' | '>' | '<' | '=' | '==' | '!='
//! operand   := reference | number | string
//! reference := ['current.'] scope '.' key
//! scope     := 'metrics' | 'params' | 'tags' | 'version.tags'
//! key       := backquoted (`val auc`) | characters up to whitespace or an operator
//! string    := '…' | "…"
//! ```
//!
//! `metrics`, `params` and `tags` are the source run's; `version.tags` are the version's own.
//! `current.` reads the same from the version that holds the target now. A comparison with
//! `current.` holds when nothing holds the target yet (there is nothing to beat). A reference
//! that has no value fails the condition (a gate fails closed).
//!
//! A report never shows a run's facts to a reader who may not read that run (`Viewer`): a check
//! the reader asks for fails such a condition closed (`Judge::Caller`), and a move the registry
//! judges counts the facts but leaves their values out of the message (`Judge::Registry`).

use std::fmt;

use plinth_core::tracking::{KeyValue, Metric};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Metrics,
    Params,
    RunTags,
    VersionTags,
}

impl Scope {
    fn prefix(self) -> &'static str {
        match self {
            Scope::Metrics => "metrics",
            Scope::Params => "params",
            Scope::RunTags => "tags",
            Scope::VersionTags => "version.tags",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Ref { current: bool, scope: Scope, key: String },
    Number(f64),
    Text(String),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Ref { current, scope, key } => {
                let quoted = key.chars().any(|c| c.is_whitespace() || "<>=!'\"`".contains(c));
                let key = if quoted { format!("`{key}`") } else { key.clone() };
                write!(f, "{}{}.{}", if *current { "current." } else { "" }, scope.prefix(), key)
            }
            Operand::Number(n) => write!(f, "{n}"),
            Operand::Text(s) => write!(f, "'{s}'"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Ge,
    Le,
    Gt,
    Lt,
    Eq,
    Ne,
}

impl Cmp {
    fn as_str(self) -> &'static str {
        match self {
            Cmp::Ge => ">=",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Lt => "<",
            Cmp::Eq => "=",
            Cmp::Ne => "!=",
        }
    }

    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Cmp::Ge => ord != Less,
            Cmp::Le => ord != Greater,
            Cmp::Gt => ord == Greater,
            Cmp::Lt => ord == Less,
            Cmp::Eq => ord == Equal,
            Cmp::Ne => ord != Equal,
        }
    }
}

/// One parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub left: Operand,
    pub op: Cmp,
    pub right: Operand,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.left, self.op.as_str(), self.right)
    }
}

impl Condition {
    /// Whether either side reads the current holder.
    pub fn reads_current(&self) -> bool {
        [&self.left, &self.right].iter().any(|it| matches!(it, Operand::Ref { current: true, .. }))
    }

    /// For each side that reads a source run's facts (metrics, params, run tags): whether it is
    /// the current holder's run (`true`) or the candidate's (`false`).
    fn run_subjects(&self) -> impl Iterator<Item = bool> + '_ {
        [&self.left, &self.right].into_iter().filter_map(|it| match it {
            Operand::Ref { current, scope: Scope::Metrics | Scope::Params | Scope::RunTags, .. } => Some(*current),
            _ => None,
        })
    }
}

/// Parses one condition; the error says what is wrong and where.
pub fn parse(text: &str) -> Result<Condition, String> {
    let mut p = Parser { s: text, pos: 0 };
    let left = p.operand()?;
    let op = p.op()?;
    let right = p.operand()?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(format!("unexpected text '{}' after the condition", &text[p.pos..]));
    }
    if !matches!(left, Operand::Ref { .. }) && !matches!(right, Operand::Ref { .. }) {
        return Err("a condition must name at least one of metrics.<key>, params.<key>, tags.<key> or version.tags.<key>".into());
    }
    if matches!(left, Operand::Ref { current: true, .. }) && matches!(right, Operand::Ref { current: true, .. }) {
        return Err("a condition cannot compare the current holder with itself; name the candidate on one side".into());
    }
    Ok(Condition { left, op, right })
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.s.len() - trimmed.len();
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_ws();
        let rest = self.rest();
        let Some(first) = rest.chars().next() else {
            return Err("expected an operand, found the end of the condition".into());
        };
        if first == '\'' || first == '"' {
            let body = &rest[1..];
            let end = body.find(first).ok_or_else(|| format!("unterminated string starting at '{rest}'"))?;
            let text = body[..end].to_owned();
            self.pos += 1 + end + 1;
            return Ok(Operand::Text(text));
        }
        if first.is_ascii_digit() || first == '-' || first == '+' || first == '.' {
            let len = rest.find(|c: char| c.is_whitespace() || "<>=!".contains(c)).unwrap_or(rest.len());
            let token = &rest[..len];
            let n: f64 = token.parse().map_err(|_| format!("'{token}' is not a number"))?;
            if !n.is_finite() {
                return Err(format!("'{token}' is not a finite number"));
            }
            self.pos += len;
            return Ok(Operand::Number(n));
        }
        let mut current = false;
        let mut rest = rest;
        if let Some(r) = rest.strip_prefix("current.") {
            current = true;
            rest = r;
            self.pos += "current.".len();
        }
        let scopes =
            [("version.tags.", Scope::VersionTags), ("metrics.", Scope::Metrics), ("params.", Scope::Params), ("tags.", Scope::RunTags)];
        let Some((prefix, scope)) = scopes.into_iter().find(|(p, _)| rest.starts_with(p)) else {
            let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            return Err(format!(
                "'{word}' is not an operand: use metrics.<key>, params.<key>, tags.<key>, version.tags.<key> (optionally prefixed by current.), a number or a quoted string"
            ));
        };
        self.pos += prefix.len();
        let rest = self.rest();
        let key = if let Some(body) = rest.strip_prefix('`') {
            let end = body.find('`').ok_or("unterminated `quoted` key")?;
            self.pos += 1 + end + 1;
            body[..end].to_owned()
        } else {
            let len = rest.find(|c: char| c.is_whitespace() || "<>=!".contains(c)).unwrap_or(rest.len());
            self.pos += len;
            rest[..len].to_owned()
        };
        if key.is_empty() {
            return Err(format!("'{prefix}' needs a key"));
        }
        Ok(Operand::Ref { current, scope, key })
    }

    fn op(&mut self) -> Result<Cmp, String> {
        self.skip_ws();
        let rest = self.rest();
        for (text, op) in
            [(">=", Cmp::Ge), ("<=", Cmp::Le), ("!=", Cmp::Ne), ("==", Cmp::Eq), (">", Cmp::Gt), ("<", Cmp::Lt), ("=", Cmp::Eq)]
        {
            if rest.starts_with(text) {
                self.pos += text.len();
                return Ok(op);
            }
        }
        let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
        Err(format!("expected one of >= <= > < = != after the first operand, found '{word}'"))
    }
}

/// What a version offers to a gate: its source run's latest metrics, params and tags, and its own tags.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub version: i64,
    /// `None` when the version has no source run (or it is gone, or its link to the run is not verified).
    pub run_id: Option<String>,
    /// A run the version names but whose artifacts it does not provably come from.
    pub unverified_run: Option<String>,
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub run_tags: Vec<KeyValue>,
    pub version_tags: Vec<KeyValue>,
    /// The reader of the report may not read the source run: its facts are never shown.
    pub hidden: bool,
}

/// Whose eyes a gate report is for: the experiments whose runs' facts it may show.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// `None`: every experiment (an admin, auth off, or the registry itself).
    experiments: Option<std::sync::Arc<std::collections::HashSet<String>>>,
}

impl Viewer {
    /// Sees everything: admins, a server without auth, the registry's own loops.
    pub fn everything() -> Viewer {
        Viewer { experiments: None }
    }

    /// Sees the runs of these experiments only.
    pub fn limited_to(experiments: std::collections::HashSet<String>) -> Viewer {
        Viewer { experiments: Some(std::sync::Arc::new(experiments)) }
    }

    pub fn sees_everything(&self) -> bool {
        self.experiments.is_none()
    }

    pub fn may_read_experiment(&self, experiment_id: &str) -> bool {
        self.experiments.as_ref().is_none_or(|set| set.contains(experiment_id))
    }
}

/// Whose authority a condition is evaluated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// A check asked for by a caller: a condition over run facts the caller may not read fails
    /// closed, and says so without the value.
    Caller,
    /// A move judged by the registry: every fact counts, but values of runs the caller may not
    /// read are left out of what the caller is shown.
    Registry,
}

#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Number(f64),
    Text(String),
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolved::Number(n) => write!(f, "{n}"),
            Resolved::Text(s) => write!(f, "'{s}'"),
        }
    }
}

fn lookup(subject: &Subject, scope: Scope, key: &str, label: &str) -> Result<Resolved, String> {
    let find = |list: &[KeyValue]| list.iter().find(|kv| kv.key == key).map(|kv| kv.value.clone());
    let missing_run = || match &subject.unverified_run {
        Some(run) => format!(
            "{label} version {} names run {run}, but its artifacts are neither under that run's artifact root nor a logged model of it, so {}.{key} is not trusted",
            subject.version,
            scope.prefix()
        ),
        None => format!("{label} version {} has no source run, so {}.{key} cannot be read", subject.version, scope.prefix()),
    };
    match scope {
        Scope::Metrics => {
            let run = subject.run_id.as_deref().ok_or_else(missing_run)?;
            subject
                .metrics
                .iter()
                .find(|m| m.key == key)
                .map(|m| Resolved::Number(m.value))
                .ok_or_else(|| format!("metric '{key}' is not logged on run {run} ({label} version {})", subject.version))
        }
        Scope::Params => {
            let run = subject.run_id.as_deref().ok_or_else(missing_run)?;
            find(&subject.params)
                .map(Resolved::Text)
                .ok_or_else(|| format!("param '{key}' is not logged on run {run} ({label} version {})", subject.version))
        }
        Scope::RunTags => {
            let run = subject.run_id.as_deref().ok_or_else(missing_run)?;
            find(&subject.run_tags)
                .map(Resolved::Text)
                .ok_or_else(|| format!("tag '{key}' is not set on run {run} ({label} version {})", subject.version))
        }
        Scope::VersionTags => find(&subject.version_tags)
            .map(Resolved::Text)
            .ok_or_else(|| format!("tag '{key}' is not set on {label} version {}", subject.version)),
    }
}

/// The outcome of one condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub condition: String,
    pub passed: bool,
    /// What was compared, or why it could not be.
    pub detail: String,
}

/// Evaluates one condition for `candidate` against `current` (the version holding the target
/// now), with `judge`'s authority over facts the reader may not see (`Subject::hidden`).
pub fn evaluate(cond: &Condition, candidate: &Subject, current: Option<&Subject>, judge: Judge) -> Check {
    let text = cond.to_string();
    if cond.reads_current() && current.is_none() {
        return Check { condition: text, passed: true, detail: "nothing holds the target yet, so there is nothing to compare with".into() };
    }
    let hidden: Vec<i64> = cond
        .run_subjects()
        .filter_map(|is_current| if is_current { current } else { Some(candidate) })
        .filter(|s| s.hidden)
        .map(|s| s.version)
        .collect();
    let Some(&version) = hidden.first() else { return compare(cond, text, candidate, current) };
    match judge {
        Judge::Caller => Check {
            condition: text,
            passed: false,
            detail: format!(
                "you may not read the source run of version {version}, so its value is not shown and the condition fails closed"
            ),
        },
        Judge::Registry => {
            let passed = compare(cond, text.clone(), candidate, current).passed;
            let verdict = if passed { "holds" } else { "does not hold" };
            Check {
                condition: text,
                passed,
                detail: format!("{verdict} (values not shown: you may not read the source run of version {version})"),
            }
        }
    }
}

fn compare(cond: &Condition, text: String, candidate: &Subject, current: Option<&Subject>) -> Check {
    let resolve = |operand: &Operand| -> Result<Resolved, String> {
        match operand {
            Operand::Number(n) => Ok(Resolved::Number(*n)),
            Operand::Text(s) => Ok(Resolved::Text(s.clone())),
            Operand::Ref { current: false, scope, key } => lookup(candidate, *scope, key, "candidate"),
            Operand::Ref { current: true, scope, key } => match current {
                Some(cur) => lookup(cur, *scope, key, "current"),
                None => Err("nothing holds the target".into()),
            },
        }
    };
    let (left, right) = match (resolve(&cond.left), resolve(&cond.right)) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(e), _) | (_, Err(e)) => return Check { condition: text, passed: false, detail: e },
    };
    let as_number = |v: &Resolved| match v {
        Resolved::Number(n) => Some(*n),
        Resolved::Text(s) => s.trim().parse::<f64>().ok(),
    };
    let numeric = matches!(left, Resolved::Number(_)) || matches!(right, Resolved::Number(_));
    let shown = format!("{} {} {}", left, cond.op.as_str(), right);
    let ord = if numeric {
        match (as_number(&left), as_number(&right)) {
            (Some(a), Some(b)) => match a.partial_cmp(&b) {
                Some(ord) => ord,
                None => return Check { condition: text, passed: false, detail: format!("{shown}: NaN compares with nothing") },
            },
            _ => {
                return Check { condition: text, passed: false, detail: format!("{shown}: a text value cannot be compared with a number") };
            }
        }
    } else {
        let (Resolved::Text(a), Resolved::Text(b)) = (&left, &right) else { unreachable!("both sides are text when neither is a number") };
        if !matches!(cond.op, Cmp::Eq | Cmp::Ne) {
            return Check { condition: text, passed: false, detail: format!("{shown}: text values compare only with = and !=") };
        }
        a.cmp(b)
    };
    let passed = cond.op.holds(ord);
    Check { condition: text, passed, detail: if passed { format!("{shown} holds") } else { format!("{shown} does not hold") } }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(version: i64, auc: Option<f64>) -> Subject {
        Subject {
            version,
            run_id: Some(format!("run{version}")),
            unverified_run: None,
            metrics: auc
                .map(|v| Metric {
                    key: "auc".into(),
                    value: v,
                    timestamp: 0,
                    step: 0,
                    dataset_name: None,
                    dataset_digest: None,
                    model_id: None,
                })
                .into_iter()
                .collect(),
            params: vec![KeyValue { key: "lr".into(), value: "0.01".into() }],
            run_tags: vec![],
            version_tags: vec![KeyValue { key: "validation".into(), value: "passed".into() }],
            hidden: false,
        }
    }

    #[test]
    fn parses_and_prints() {
        for (text, printed) in [
            ("metrics.auc >= 0.85", "metrics.auc >= 0.85"),
            ("metrics.auc>=current.metrics.auc", "metrics.auc >= current.metrics.auc"),
            ("version.tags.validation = 'passed'", "version.tags.validation = 'passed'"),
            ("params.lr < 0.1", "params.lr < 0.1"),
            ("metrics.`val auc` > 0.5", "metrics.`val auc` > 0.5"),
            ("metrics.val.loss <= 1e-1", "metrics.val.loss <= 0.1"),
            ("tags.team == \"ml\"", "tags.team = 'ml'"),
        ] {
            let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.to_string(), printed);
            assert_eq!(parse(&c.to_string()).expect("reparse"), c);
        }
    }

    #[test]
    fn rejects_nonsense() {
        for text in [
            "",
            "auc > 1",
            "metrics.auc",
            "metrics.auc >",
            "1 > 2",
            "metrics. > 1",
            "metrics.auc ~ 1",
            "metrics.auc > 1 and",
            "'a",
            "current.metrics.a > current.metrics.b",
            "metrics.a > inf",
        ] {
            assert!(parse(text).is_err(), "{text} should not parse");
        }
    }

    #[test]
    fn evaluates() {
        let cand = subject(3, Some(0.9));
        let cur = subject(2, Some(0.88));
        let check = |t: &str, current: Option<&Subject>| evaluate(&parse(t).expect("parse"), &cand, current, Judge::Caller);
        assert!(check("metrics.auc >= 0.85", None).passed);
        assert!(!check("metrics.auc >= 0.95", None).passed);
        assert!(check("metrics.auc > current.metrics.auc", Some(&cur)).passed);
        assert!(!check("current.metrics.auc > metrics.auc", Some(&cur)).passed);
        assert!(check("metrics.auc > current.metrics.auc", None).passed, "no holder: nothing to beat");
        assert!(check("params.lr < 0.1", None).passed, "numeric params compare as numbers");
        assert!(check("version.tags.validation = 'passed'", None).passed);
        assert!(!check("version.tags.validation != 'passed'", None).passed);
        let missing = check("metrics.f1 > 0.5", None);
        assert!(!missing.passed && missing.detail.contains("not logged"), "{missing:?}");
        let no_auc = subject(2, None);
        assert!(!check("metrics.auc > current.metrics.auc", Some(&no_auc)).passed, "fails closed");
        assert!(!check("version.tags.validation > 'a'", None).passed);
        let mut no_run = subject(4, Some(1.0));
        no_run.run_id = None;
        assert!(!evaluate(&parse("metrics.auc > 0").expect("parse"), &no_run, None, Judge::Caller).passed);
    }

    #[test]
    fn hidden_runs_show_no_values() {
        let mut cand = subject(3, Some(0.8731));
        cand.params.push(KeyValue { key: "db_password".into(), value: "hunter2".into() });
        cand.hidden = true;
        let cur = subject(2, Some(0.88));
        let check = |t: &str, current: Option<&Subject>, judge| evaluate(&parse(t).expect("parse"), &cand, current, judge);
        // Asked for by the caller: fails closed, and neither value nor verdict leaks.
        for text in ["metrics.auc >= 0", "metrics.auc < 0", "params.db_password = 'x'", "params.db_password != 'x'"] {
            let c = check(text, None, Judge::Caller);
            assert!(!c.passed, "{c:?}");
            assert!(!c.detail.contains("0.8731") && !c.detail.contains("hunter2") && c.detail.contains("fails closed"), "{c:?}");
        }
        // Judged by the registry: the true verdict, still without values.
        let c = check("metrics.auc >= 0.5", None, Judge::Registry);
        assert!(c.passed && !c.detail.contains("0.8731"), "{c:?}");
        let c = check("metrics.auc > current.metrics.auc", Some(&cur), Judge::Registry);
        assert!(!c.passed && !c.detail.contains("0.8731") && !c.detail.contains("0.88"), "{c:?}");
        // Version tags are the model's own: readable, shown.
        let c = check("version.tags.validation = 'passed'", None, Judge::Caller);
        assert!(c.passed && c.detail.contains("'passed'"), "{c:?}");
        // Only the current holder hidden: a comparison with it fails closed for the caller.
        let visible = subject(3, Some(0.9));
        let mut hidden_cur = subject(2, Some(0.88));
        hidden_cur.hidden = true;
        let c = evaluate(&parse("metrics.auc > current.metrics.auc").expect("parse"), &visible, Some(&hidden_cur), Judge::Caller);
        assert!(!c.passed && c.detail.contains("version 2") && !c.detail.contains("0.88"), "{c:?}");
    }
}
