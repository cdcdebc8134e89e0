//! Feature definitions: the repository format (TOML files in a directory), the canonical specs
//! stored in the metadata store, and the structural validation that needs no data.
//!
//! A feature repository is a directory of `*.toml` files (subdirectories included, hidden entries
//! skipped). Each file may hold any number of `[[entity]]`, `[[source]]`, `[[feature_view]]` and
//! `[[feature_service]]` tables; names are unique per kind across the repository. The format is
//! documented in `docs/features.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plinth_store::features::FeatureKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::types::ValueType;

/// Longest name of an entity, source, view, service, join key or feature.
pub const MAX_NAME_LEN: usize = 128;
/// Most features one view may declare.
pub const MAX_FEATURES_PER_VIEW: usize = 1024;
/// Most join keys of one entity.
pub const MAX_JOIN_KEYS: usize = 8;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Most tags on one object.
pub const MAX_TAGS: usize = 64;
/// Longest SQL transformation.
pub const MAX_SQL_LEN: usize = 64 * 1024;
/// Most objects in one repository.
pub const MAX_OBJECTS: usize = 10_000;

/// Checks a name: a letter or `_`, then letters, digits or `_`, at most `MAX_NAME_LEN` bytes.
/// Names become column names and SQL table names, so nothing else is allowed.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} '{name}' is not a valid name: use a letter or '_' followed by letters, digits or '_', at most {MAX_NAME_LEN} characters"
        ));
    }
    if name.contains("__") {
        return Err(format!("{what} '{name}' contains '__', which separates view and feature in full feature names"));
    }
    Ok(())
}

/// A typed column: a join key or a feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    pub name: String,
    pub join_keys: Vec<Column>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Where a source's rows come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceInput {
    /// A Parquet file, or a directory of Parquet files (read recursively), on the local file
    /// system. Stored as an absolute path.
    Parquet { path: String },
    /// A SQL query over other sources, each visible as a table named after the source.
    Sql { query: String, inputs: Vec<String> },
    /// Rows pushed through `POST /push`; their offline copy goes to `batch_source`, whose
    /// timestamp fields and mapping this source shares.
    Push { batch_source: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    pub input: SourceInput,
    /// The event-time column (after the field mapping). Empty for push sources.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timestamp_field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp_column: Option<String>,
    /// Source column name → the name views see.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_mapping: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewSpec {
    pub name: String,
    /// Entity names; the view's join keys are theirs, in this order.
    pub entities: Vec<String>,
    pub features: Vec<Column>,
    pub source: String,
    /// Lookback window in seconds: a row older than `T - ttl` is not a value at `T`. `None`: unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    pub online: bool,
    /// Scheduled incremental materialization every so many seconds; `None`: only on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub materialize_every_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl ViewSpec {
    pub fn feature(&self, name: &str) -> Option<&Column> {
        self.features.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// `view:feature` references, or `view` for every feature of the view, in output order.
    pub features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A whole repository: what `apply` makes the metadata store hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    #[serde(default)]
    pub entities: Vec<EntitySpec>,
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    #[serde(default)]
    pub feature_views: Vec<ViewSpec>,
    #[serde(default)]
    pub feature_services: Vec<ServiceSpec>,
}

/// One definition as stored: its kind, name, canonical JSON and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub kind: FeatureKind,
    pub name: String,
    pub spec: String,
    pub digest: String,
}

/// Canonical JSON of a spec: keys sorted (serde_json's map is ordered), no whitespace.
fn canonical<T: Serialize>(kind: FeatureKind, name: &str, spec: &T) -> Canonical {
    let value = serde_json::to_value(spec).unwrap_or(serde_json::Value::Null);
    let spec = value.to_string();
    let digest = hex::encode(Sha256::digest(spec.as_bytes()));
    Canonical { kind, name: name.to_owned(), spec, digest }
}

impl Repository {
    /// Every definition in canonical form, in (kind, name) order.
    pub fn canonical(&self) -> Vec<Canonical> {
        let mut out = Vec::new();
        out.extend(self.entities.iter().map(|s| canonical(FeatureKind::Entity, &s.name, s)));
        out.extend(self.sources.iter().map(|s| canonical(FeatureKind::Source, &s.name, s)));
        out.extend(self.feature_views.iter().map(|s| canonical(FeatureKind::FeatureView, &s.name, s)));
        out.extend(self.feature_services.iter().map(|s| canonical(FeatureKind::FeatureService, &s.name, s)));
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        out
    }

    pub fn entity(&self, name: &str) -> Option<&EntitySpec> {
        self.entities.iter().find(|e| e.name == name)
    }

    pub fn source(&self, name: &str) -> Option<&SourceSpec> {
        self.sources.iter().find(|e| e.name == name)
    }

    pub fn view(&self, name: &str) -> Option<&ViewSpec> {
        self.feature_views.iter().find(|e| e.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.feature_services.iter().find(|e| e.name == name)
    }

    /// A view's join keys, in entity order then key order.
    pub fn join_keys(&self, view: &ViewSpec) -> Vec<Column> {
        view.entities.iter().filter_map(|e| self.entity(e)).flat_map(|e| e.join_keys.iter().cloned()).collect()
    }

    /// The source a view reads offline: a push source reads its batch source.
    pub fn offline_source<'a>(&'a self, source: &'a SourceSpec) -> &'a SourceSpec {
        match &source.input {
            SourceInput::Push { batch_source } => self.source(batch_source).unwrap_or(source),
            _ => source,
        }
    }

    /// Checks every rule that needs no data: names, limits, uniqueness, references, the
    /// shapes of sources. Reports every problem at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let total = self.entities.len() + self.sources.len() + self.feature_views.len() + self.feature_services.len();
        if total > MAX_OBJECTS {
            problems.push(format!("the repository defines {total} objects; at most {MAX_OBJECTS} are allowed"));
        }
        unique("entity", self.entities.iter().map(|e| &e.name), &mut problems);
        unique("source", self.sources.iter().map(|e| &e.name), &mut problems);
        unique("feature view", self.feature_views.iter().map(|e| &e.name), &mut problems);
        unique("feature service", self.feature_services.iter().map(|e| &e.name), &mut problems);
        for entity in &self.entities {
            self.validate_entity(entity, &mut problems);
        }
        for source in &self.sources {
            self.validate_source(source, &mut problems);
        }
        for view in &self.feature_views {
            self.validate_view(view, &mut problems);
        }
        for service in &self.feature_services {
            if let Err(p) = check_name("feature service", &service.name) {
                problems.push(p);
            }
            check_meta(&format!("feature service '{}'", service.name), &service.description, &service.tags, &mut problems);
            if service.features.is_empty() {
                problems.push(format!("feature service '{}' selects no features", service.name));
            }
            if let Err(e) = self.resolve_refs(&service.features) {
                problems.push(format!("feature service '{}': {e}", service.name));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::Problems(problems)) }
    }

    fn validate_entity(&self, entity: &EntitySpec, problems: &mut Vec<String>) {
        let what = format!("entity '{}'", entity.name);
        if let Err(p) = check_name("entity", &entity.name) {
            problems.push(p);
        }
        check_meta(&what, &entity.description, &entity.tags, problems);
        check_columns(&what, "join key", &entity.join_keys, MAX_JOIN_KEYS, problems);
        for key in &entity.join_keys {
            if matches!(key.value_type, ValueType::Float32 | ValueType::Float64) {
                problems.push(format!(
                    "join key '{}' of {what} is a float; join keys must be integers, strings, bytes, booleans or timestamps",
                    key.name
                ));
            }
        }
    }

    fn validate_source(&self, source: &SourceSpec, problems: &mut Vec<String>) {
        let what = format!("source '{}'", source.name);
        if let Err(p) = check_name("source", &source.name) {
            problems.push(p);
        }
        check_meta(&what, &source.description, &source.tags, problems);
        match &source.input {
            SourceInput::Parquet { path } => {
                if !Path::new(path).is_absolute() {
                    problems.push(format!("{what}: path '{path}' must be absolute once resolved against the repository"));
                }
            }
            SourceInput::Sql { query, inputs } => {
                if query.trim().is_empty() {
                    problems.push(format!("{what}: the SQL transformation is empty"));
                }
                if query.len() > MAX_SQL_LEN {
                    problems.push(format!("{what}: the SQL transformation is longer than {MAX_SQL_LEN} bytes"));
                }
                if inputs.is_empty() {
                    problems.push(format!("{what}: a SQL transformation names its input sources in `inputs`"));
                }
                for input in inputs {
                    match self.source(input) {
                        None => problems.push(format!("{what}: input source '{input}' is not defined")),
                        Some(s) if matches!(s.input, SourceInput::Push { .. }) => {
                            problems.push(format!("{what}: input '{input}' is a push source; name its batch source instead"))
                        }
                        Some(_) => {}
                    }
                }
                if self.sql_cycle(&source.name, &mut BTreeSet::new()) {
                    problems.push(format!("{what}: its SQL inputs form a cycle"));
                }
            }
            SourceInput::Push { batch_source } => {
                match self.source(batch_source) {
                    None => problems.push(format!("{what}: batch source '{batch_source}' is not defined")),
                    Some(b) if !matches!(b.input, SourceInput::Parquet { .. }) => problems
                        .push(format!("{what}: batch source '{batch_source}' must be a Parquet source (pushed rows are appended to it)")),
                    Some(_) => {}
                }
                if !source.timestamp_field.is_empty() || source.created_timestamp_column.is_some() || !source.field_mapping.is_empty() {
                    problems.push(format!(
                        "{what}: a push source takes its timestamp fields and field mapping from its batch source; remove them here"
                    ));
                }
                return;
            }
        }
        if source.timestamp_field.is_empty() {
            problems.push(format!("{what} has no timestamp_field"));
        }
        if source.created_timestamp_column.as_deref() == Some(source.timestamp_field.as_str()) {
            problems.push(format!("{what}: created_timestamp_column and timestamp_field are the same column"));
        }
        let mut targets = BTreeSet::new();
        for (from, to) in &source.field_mapping {
            if let Err(p) = check_name(&format!("field mapping target of {what}"), to) {
                problems.push(p);
            }
            if !targets.insert(to) {
                problems.push(format!("{what}: two columns are mapped to '{to}'"));
            }
            if from.is_empty() {
                problems.push(format!("{what}: an empty column name is mapped"));
            }
        }
    }

    fn sql_cycle(&self, name: &str, seen: &mut BTreeSet<String>) -> bool {
        if !seen.insert(name.to_owned()) {
            return true;
        }
        let cyclic = match self.source(name).map(|s| &s.input) {
            Some(SourceInput::Sql { inputs, .. }) => inputs.iter().any(|i| self.sql_cycle(i, seen)),
            _ => false,
        };
        seen.remove(name);
        cyclic
    }

    fn validate_view(&self, view: &ViewSpec, problems: &mut Vec<String>) {
        let what = format!("feature view '{}'", view.name);
        if let Err(p) = check_name("feature view", &view.name) {
            problems.push(p);
        }
        check_meta(&what, &view.description, &view.tags, problems);
        check_columns(&what, "feature", &view.features, MAX_FEATURES_PER_VIEW, problems);
        if view.ttl_secs == Some(0) {
            problems.push(format!("{what}: ttl 0 is ambiguous; omit ttl for an unbounded lookback"));
        }
        if view.materialize_every_secs.is_some_and(|s| s < 10) {
            problems.push(format!("{what}: materialize_every must be at least 10 seconds"));
        }
        if view.materialize_every_secs.is_some() && !view.online {
            problems.push(format!("{what}: materialize_every is set but the view is not online"));
        }
        unique(&format!("entity of {what}"), view.entities.iter(), problems);
        let mut keys = BTreeSet::new();
        for entity in &view.entities {
            match self.entity(entity) {
                None => problems.push(format!("{what}: entity '{entity}' is not defined")),
                Some(e) => {
                    for key in &e.join_keys {
                        if !keys.insert(key.name.clone()) {
                            problems.push(format!("{what}: join key '{}' comes from two entities", key.name));
                        }
                        if view.feature(&key.name).is_some() {
                            problems.push(format!("{what}: feature '{}' has the name of a join key", key.name));
                        }
                    }
                }
            }
        }
        if self.source(&view.source).is_none() {
            problems.push(format!("{what}: source '{}' is not defined", view.source));
        }
    }

    /// Resolves feature references (`view:feature`, or `view` for all of its features) into
    /// (view, feature) pairs in request order.
    pub fn resolve_refs(&self, refs: &[String]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for r in refs {
            let (view_name, feature) = match r.split_once(':') {
                Some((v, f)) => (v, Some(f)),
                None => (r.as_str(), None),
            };
            // Feast writes `view@v2:feature` for a pinned version; versions are resolved by the
            // caller, so a pinned reference is refused rather than silently read at the head.
            if view_name.contains('@') {
                problems.push(format!("feature reference '{r}': version pins are not supported; the applied version is used"));
                continue;
            }
            let Some(view) = self.view(view_name) else {
                problems.push(format!("feature reference '{r}': feature view '{view_name}' is not defined"));
                continue;
            };
            match feature {
                None | Some("*") => out.extend(view.features.iter().map(|f| (view.name.clone(), f.name.clone()))),
                Some(f) if view.feature(f).is_some() => out.push((view.name.clone(), f.to_owned())),
                Some(f) => problems.push(format!("feature reference '{r}': feature view '{view_name}' has no feature '{f}'")),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Problems(problems));
        }
        Ok(out)
    }
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a String>, problems: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            problems.push(format!("{what} '{name}' is defined twice"));
        }
    }
}

/// The typed columns of an entity (join keys) or a view (features): at least one, at most `max`,
/// valid and distinct names.
fn check_columns(what: &str, label: &str, columns: &[Column], max: usize, problems: &mut Vec<String>) {
    if columns.is_empty() {
        problems.push(format!("{what} has no {label}s"));
    }
    if columns.len() > max {
        problems.push(format!("{what} has {} {label}s; at most {max} are allowed", columns.len()));
    }
    unique(&format!("{label} of {what}"), columns.iter().map(|c| &c.name), problems);
    for column in columns {
        if let Err(p) = check_name(&format!("{label} of {what}"), &column.name) {
            problems.push(p);
        }
    }
}

fn check_meta(what: &str, description: &str, tags: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    if description.len() > MAX_DESCRIPTION_LEN {
        problems.push(format!("{what}: the description is longer than {MAX_DESCRIPTION_LEN} bytes"));
    }
    if tags.len() > MAX_TAGS {
        problems.push(format!("{what} has {} tags; at most {MAX_TAGS} are allowed", tags.len()));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 250 || v.len() > 5000 {
            problems.push(format!("{what}: tag '{k}' breaks the limits (key 1 to 250 bytes, value at most 5000)"));
        }
    }
}

// ---- The TOML file format ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoFile {
    #[serde(default)]
    entity: Vec<RawEntity>,
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    feature_view: Vec<RawView>,
    #[serde(default)]
    feature_service: Vec<ServiceSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: String,
    join_keys: Vec<Column>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    path: Option<String>,
    sql: Option<String>,
    #[serde(default)]
    inputs: Vec<String>,
    push_to: Option<String>,
    #[serde(default)]
    timestamp_field: String,
    created_timestamp_column: Option<String>,
    #[serde(default)]
    field_mapping: BTreeMap<String, String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawView {
    name: String,
    entities: Vec<String>,
    features: Vec<Column>,
    source: String,
    ttl: Option<RawDuration>,
    #[serde(default = "yes")]
    online: bool,
    materialize_every: Option<RawDuration>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// Parses seconds (`90`) or a duration as people write it (`"90s"`, `"15m"`, `"12h"`, `"7d"`,
/// `"2w"`, combinations such as `"1d12h"` or `"1h 30m"`) into whole seconds (humantime's units).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    let parsed = humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration ({e}; use e.g. 90s, 15m, 12h, 7d, 2w, or seconds)"))?;
    if parsed.subsec_nanos() != 0 {
        return Err(format!("'{text}' is not a whole number of seconds"));
    }
    Ok(parsed.as_secs())
}

fn duration(what: &str, raw: Option<RawDuration>, problems: &mut Vec<String>) -> Option<u64> {
    match raw? {
        RawDuration::Seconds(n) if n >= 0 => Some(n as u64),
        RawDuration::Seconds(n) => {
            problems.push(format!("{what}: {n} is negative"));
            None
        }
        RawDuration::Text(t) => match parse_duration(&t) {
            Ok(n) => Some(n),
            Err(e) => {
                problems.push(format!("{what}: {e}"));
                None
            }
        },
    }
}

/// Reads every `*.toml` file under `dir` into one repository; relative source paths are
/// resolved against the directory of the file that names them. Reports every problem at once.
pub fn load_dir(dir: &Path) -> Result<Repository> {
    let dir = dir.canonicalize().map_err(|e| Error::io(format!("cannot open feature repository {}", dir.display()), e))?;
    let mut files = Vec::new();
    collect_toml(&dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid(format!("{} holds no .toml files", dir.display())));
    }
    let mut repo = Repository::default();
    let mut problems = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&dir).unwrap_or(file).display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
        let parsed: RepoFile = match toml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{rel}: {}", e.to_string().trim_end()));
                continue;
            }
        };
        let base = file.parent().unwrap_or(&dir);
        add_file(&mut repo, parsed, base, &rel, &mut problems);
    }
    if !problems.is_empty() {
        return Err(Error::Problems(problems));
    }
    Ok(repo)
}

/// Parses one TOML document as a repository; relative paths resolve against `base`.
pub fn parse_str(text: &str, base: &Path) -> Result<Repository> {
    let parsed: RepoFile = toml::from_str(text).map_err(|e| Error::invalid(e.to_string().trim_end().to_owned()))?;
    let mut repo = Repository::default();
    let mut problems = Vec::new();
    add_file(&mut repo, parsed, base, "<text>", &mut problems);
    if !problems.is_empty() {
        return Err(Error::Problems(problems));
    }
    Ok(repo)
}

fn add_file(repo: &mut Repository, parsed: RepoFile, base: &Path, rel: &str, problems: &mut Vec<String>) {
    for e in parsed.entity {
        repo.entities.push(EntitySpec { name: e.name, join_keys: e.join_keys, description: e.description, owner: e.owner, tags: e.tags });
    }
    for s in parsed.source {
        let what = format!("{rel}: source '{}'", s.name);
        let input = match (s.path, s.sql, s.push_to) {
            (Some(path), None, None) => {
                let p = PathBuf::from(&path);
                let abs = if p.is_absolute() { p } else { base.join(p) };
                SourceInput::Parquet { path: normalize(&abs).display().to_string() }
            }
            (None, Some(query), None) => SourceInput::Sql { query, inputs: s.inputs.clone() },
            (None, None, Some(batch_source)) => SourceInput::Push { batch_source },
            _ => {
                problems
                    .push(format!("{what}: set exactly one of `path` (Parquet), `sql` (a transformation) or `push_to` (a push source)"));
                continue;
            }
        };
        if !s.inputs.is_empty() && !matches!(input, SourceInput::Sql { .. }) {
            problems.push(format!("{what}: `inputs` belongs to SQL sources only"));
        }
        repo.sources.push(SourceSpec {
            name: s.name,
            input,
            timestamp_field: s.timestamp_field,
            created_timestamp_column: s.created_timestamp_column,
            field_mapping: s.field_mapping,
            description: s.description,
            owner: s.owner,
            tags: s.tags,
        });
    }
    for v in parsed.feature_view {
        let what = format!("{rel}: feature view '{}'", v.name);
        let ttl_secs = duration(&format!("{what}: ttl"), v.ttl, problems);
        let materialize_every_secs = duration(&format!("{what}: materialize_every"), v.materialize_every, problems);
        repo.feature_views.push(ViewSpec {
            name: v.name,
            entities: v.entities,
            features: v.features,
            source: v.source,
            ttl_secs,
            online: v.online,
            materialize_every_secs,
            description: v.description,
            owner: v.owner,
            tags: v.tags,
        });
    }
    repo.feature_services.extend(parsed.feature_service);
}

/// Removes `.` and resolves `..` lexically (the path may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn collect_toml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
        if kind.is_dir() {
            collect_toml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
