//! The worker's configuration: an optional TOML file (`--config PATH` or `ODOO_SYNC_CONFIG`)
//! and the environment, which wins over the file key by key.
//!
//! Every setting is one row of [`SPECS`]: its file key, its environment variable, its default,
//! its unit and its check. The file and the environment go through the same checks, so an
//! out-of-range value stops the worker at start with a message naming the key
//! (`worker.claim_size = 0 (must be 1..1000)`), whichever way it was given; keys the worker does
//! not know are refused, so a typo never silently leaves a setting at its default.
//!
//! Secrets: the Odoo credential should come from a file (`odoo.api_key_file` /
//! `odoo.password_file`, or the same variables). An inline `odoo.api_key` / `odoo.password` in
//! the config file is accepted with a warning, and refused when the file is readable by every
//! user of the host (the credential would be public); group-readable is fine, which is what a
//! `root:odoo-sync 0640` file gives. Secret values are never printed, by errors or by `Debug`.
//!
//! `packaging/worker.toml.example` documents every key; a unit test keeps it in step with
//! [`SPECS`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::odoo::{OdooConfig, OdooError};

/// The check applied to one setting, whether it comes from the file or the environment.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Any non-empty text.
    Text,
    /// A libpq connection string or `postgres://` URL (parsed, never printed).
    ConnInfo,
    /// One of the listed words (case-insensitive).
    OneOf(&'static [&'static str]),
    /// A whole number in `min..=max`.
    Int {
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// A number of seconds in `min..=max` (fractions allowed).
    Seconds {
        /// Smallest value allowed.
        min: f64,
        /// Largest value allowed.
        max: f64,
    },
    /// `host:port` to listen on, or `off`.
    ListenAddr,
    /// A `tracing` filter such as `info` or `odoo_sync_worker=debug,info`.
    LogFilter,
}

/// One setting: where it is read from, its default, its unit and its check.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Key in the config file, `section.name`.
    pub key: &'static str,
    /// Environment variable that overrides the file.
    pub env: &'static str,
    /// Value when neither the file nor the environment sets it (`None`: no default).
    pub default: Option<&'static str>,
    /// Unit or form of the value, for messages and the example file.
    pub unit: &'static str,
    /// The check.
    pub check: Check,
    /// A credential: never printed.
    pub secret: bool,
}

const fn spec(
    key: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    unit: &'static str,
    check: Check,
) -> Spec {
    Spec {
        key,
        env,
        default,
        unit,
        check,
        secret: false,
    }
}

const fn secret(key: &'static str, env: &'static str, unit: &'static str) -> Spec {
    Spec {
        key,
        env,
        default: None,
        unit,
        check: Check::Text,
        secret: true,
    }
}

/// Every setting of the worker.
pub const SPECS: &[Spec] = &[
    spec(
        "database.url",
        "DATABASE_URL",
        None,
        "libpq connection string or postgres:// URL",
        Check::ConnInfo,
    ),
    spec(
        "database.ca_file",
        "DATABASE_CA_FILE",
        None,
        "path of a PEM CA bundle: verify PostgreSQL's certificate and host name",
        Check::Text,
    ),
    spec("odoo.url", "ODOO_URL", None, "http(s) URL", Check::Text),
    spec(
        "odoo.database",
        "ODOO_DB",
        None,
        "database name",
        Check::Text,
    ),
    spec("odoo.user", "ODOO_USER", None, "login", Check::Text),
    secret("odoo.api_key", "ODOO_API_KEY", "API key"),
    spec(
        "odoo.api_key_file",
        "ODOO_API_KEY_FILE",
        None,
        "path of a file holding the API key",
        Check::Text,
    ),
    secret("odoo.password", "ODOO_PASSWORD", "password"),
    spec(
        "odoo.password_file",
        "ODOO_PASSWORD_FILE",
        None,
        "path of a file holding the password",
        Check::Text,
    ),
    spec(
        "odoo.protocol",
        "ODOO_PROTOCOL",
        Some("auto"),
        "auto | jsonrpc | json2",
        Check::OneOf(&["auto", "jsonrpc", "json2"]),
    ),
    spec(
        "odoo.ca_file",
        "ODOO_CA_FILE",
        None,
        "path of a PEM CA bundle",
        Check::Text,
    ),
    spec(
        "odoo.connect_timeout_secs",
        "ODOO_CONNECT_TIMEOUT_SECS",
        Some("10"),
        "seconds",
        Check::Seconds {
            min: 0.1,
            max: 600.0,
        },
    ),
    spec(
        "odoo.request_timeout_secs",
        "ODOO_REQUEST_TIMEOUT_SECS",
        Some("120"),
        "seconds",
        Check::Seconds {
            min: 1.0,
            max: 3600.0,
        },
    ),
    spec(
        "worker.claim_size",
        "ODOO_SYNC_CLAIM_SIZE",
        Some("200"),
        "jobs per claim",
        Check::Int { min: 1, max: 1000 },
    ),
    spec(
        "worker.finishers",
        "ODOO_SYNC_FINISHERS",
        Some("3"),
        "extra PostgreSQL connections",
        Check::Int { min: 0, max: 16 },
    ),
    spec(
        "worker.metrics_addr",
        "ODOO_SYNC_METRICS_ADDR",
        Some("127.0.0.1:9464"),
        "host:port, or off",
        Check::ListenAddr,
    ),
    spec(
        "log.level",
        "RUST_LOG",
        Some("info"),
        "tracing filter (error | warn | info | debug | trace, per module with target=level)",
        Check::LogFilter,
    ),
    spec(
        "log.format",
        "LOG_FORMAT",
        Some("text"),
        "text | json",
        Check::OneOf(&["text", "json"]),
    ),
];

/// The credential keys: at most one may be set in the file, and any of them in the
/// environment replaces all of them from the file.
const SECRET_SOURCES: [&str; 4] = [
    "odoo.api_key",
    "odoo.api_key_file",
    "odoo.password",
    "odoo.password_file",
];

/// Why the configuration cannot be used. Each message names the key (and the file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` / `ODOO_SYNC_CONFIG` cannot be read.
    #[error("cannot read the config file {path}: {source} (check --config / ODOO_SYNC_CONFIG)")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key the worker does not know.
    #[error("unknown key {key} in {path} (known keys: {known})")]
    UnknownKey {
        /// The dotted key.
        key: String,
        /// The file.
        path: PathBuf,
        /// The keys of that section, or the sections.
        known: String,
    },
    /// A value that fails its check.
    #[error("{key} = {value} (must be {rule})")]
    Invalid {
        /// The dotted key, or `VARIABLE (section.key)` for the environment.
        key: String,
        /// The value as given (`***` for a secret).
        value: String,
        /// What is accepted.
        rule: String,
    },
    /// More than one credential in the file.
    #[error("{path} sets {keys}: set only one Odoo credential")]
    SeveralSecrets {
        /// The file.
        path: PathBuf,
        /// The credential keys it sets.
        keys: String,
    },
    /// An inline credential in a file everyone may read.
    #[error("{key} is set inline in {path}, which every user of this host can read (mode {mode:o}): run chmod o-rwx on it, or put the secret in a file of its own and set {key}_file")]
    SecretReadable {
        /// The credential key.
        key: String,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A setting the command needs is set nowhere.
    #[error("{key} is not set (in the config file, or as the environment variable {env})")]
    Missing {
        /// The dotted key.
        key: &'static str,
        /// Its environment variable.
        env: &'static str,
    },
    /// No Odoo credential anywhere.
    #[error("no Odoo credential: set odoo.api_key_file (or odoo.password_file) in the config file, or one of the environment variables ODOO_API_KEY_FILE, ODOO_API_KEY, ODOO_PASSWORD_FILE, ODOO_PASSWORD")]
    NoCredential,
    /// The Odoo settings are complete but unusable (e.g. an unreadable key file).
    #[error("Odoo settings: {0}")]
    Odoo(#[from] OdooError),
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The config file.
    File,
    /// The environment.
    Env,
}

/// A checked value and where it came from.
#[derive(Clone)]
struct Value {
    text: String,
    source: Source,
}

/// How the worker logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The configuration in effect: file and environment merged and checked.
#[derive(Clone)]
pub struct Settings {
    file: Option<PathBuf>,
    values: BTreeMap<&'static str, Value>,
    /// What the operator should know but that does not stop the worker (inline secrets). The
    /// caller logs them once logging is set up, which itself depends on these settings.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for spec in SPECS {
            if let Some(v) = self.values.get(spec.key) {
                // A connection string may hold a password, like the secrets themselves.
                if spec.secret || spec.key == "database.url" {
                    m.entry(&spec.key, &"***");
                } else {
                    m.entry(&spec.key, &v.text);
                }
            }
        }
        m.finish()
    }
}

fn spec_of(key: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.key == key)
}

/// Formats a value for an error message; secrets never.
fn shown(spec: &Spec, value: &str) -> String {
    if spec.secret {
        "***".into()
    } else {
        format!("{value:?}")
    }
}

fn toml_shown(spec: &Spec, value: &toml::Value) -> String {
    if spec.secret {
        return "***".into();
    }
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Table(_) => "a table".into(),
        other => other.to_string(),
    }
}

fn rule(spec: &Spec) -> String {
    match spec.check {
        Check::Text => "a non-empty string".into(),
        Check::ConnInfo => {
            "a libpq connection string (host=... dbname=...) or a postgres:// URL".into()
        }
        Check::OneOf(words) => format!("one of {}", words.join(", ")),
        Check::Int { min, max } => format!("{min}..{max}"),
        Check::Seconds { min, max } => format!("{min}..{max} seconds"),
        Check::ListenAddr => "host:port (e.g. 127.0.0.1:9464) or off".into(),
        Check::LogFilter => "a log filter such as info or odoo_sync_worker=debug,info".into(),
    }
}

/// Checks `text` against `spec` and returns its canonical form.
fn check_text(spec: &Spec, text: &str) -> Result<String, String> {
    let t = text.trim();
    let fail = || Err(rule(spec));
    match spec.check {
        Check::Text => {
            if t.is_empty() {
                return fail();
            }
            Ok(if spec.secret {
                text.to_string()
            } else {
                t.into()
            })
        }
        Check::ConnInfo => match t.parse::<tokio_postgres::Config>() {
            Ok(_) if !t.is_empty() => Ok(t.into()),
            _ => fail(),
        },
        Check::OneOf(words) => {
            let lower = t.to_ascii_lowercase();
            if words.contains(&lower.as_str()) {
                Ok(lower)
            } else {
                fail()
            }
        }
        Check::Int { min, max } => match t.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n.to_string()),
            _ => fail(),
        },
        Check::Seconds { min, max } => match t.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= min && s <= max => Ok(t.into()),
            _ => fail(),
        },
        Check::ListenAddr => {
            if t.eq_ignore_ascii_case("off") {
                return Ok("off".into());
            }
            match t.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(t.into())
                }
                _ => fail(),
            }
        }
        Check::LogFilter => match tracing_subscriber::EnvFilter::try_new(t) {
            Ok(_) if !t.is_empty() => Ok(t.into()),
            _ => fail(),
        },
    }
}

/// A file value as text for [`check_text`]: strings as they are, numbers as written; other
/// types are refused by the caller.
fn toml_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Whether a file value has the TOML type the setting takes: numbers for numeric settings,
/// strings for the others. Quoted numbers are refused too, so the file reads one way only.
fn type_fits(spec: &Spec, value: &toml::Value) -> bool {
    match spec.check {
        Check::Int { .. } => value.is_integer(),
        Check::Seconds { .. } => value.is_integer() || value.is_float(),
        _ => value.is_str(),
    }
}

/// Reads the file into `section.key → value`, refusing unknown keys.
fn read_file(path: &Path) -> Result<BTreeMap<String, toml::Value>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
    let mut sections: Vec<&str> = SPECS
        .iter()
        .filter_map(|s| s.key.split_once('.').map(|(sec, _)| sec))
        .collect();
    sections.dedup();
    let mut out = BTreeMap::new();
    for (section, body) in table {
        let toml::Value::Table(body) = body else {
            return Err(ConfigError::UnknownKey {
                key: section,
                path: path.to_path_buf(),
                known: format!(
                    "the sections {}",
                    sections
                        .iter()
                        .map(|s| format!("[{s}]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        if !sections.contains(&section.as_str()) {
            return Err(ConfigError::UnknownKey {
                key: format!("[{section}]"),
                path: path.to_path_buf(),
                known: format!(
                    "the sections {}",
                    sections
                        .iter()
                        .map(|s| format!("[{s}]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        for (name, value) in body {
            let key = format!("{section}.{name}");
            if spec_of(&key).is_none() {
                let known: Vec<&str> = SPECS
                    .iter()
                    .filter_map(|s| s.key.strip_prefix(&format!("{section}.")))
                    .collect();
                return Err(ConfigError::UnknownKey {
                    key,
                    path: path.to_path_buf(),
                    known: known.join(", "),
                });
            }
            out.insert(key, value);
        }
    }
    Ok(out)
}

/// Whether every user of the host may read `path`.
#[cfg(unix)]
fn world_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn world_readable(_path: &Path) -> Option<u32> {
    None
}

impl Settings {
    /// Loads the configuration: `file` (if any) first, then the variables `env` gives (in
    /// production `|k| std::env::var(k).ok()`), which win key by key. An empty variable counts
    /// as unset. Every value is checked; the first problem is returned.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let from_file = match file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        let lookup = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut warnings = Vec::new();

        // The credential: one source in the file at most; any in the environment replaces it.
        let file_secrets: Vec<&str> = SECRET_SOURCES
            .iter()
            .copied()
            .filter(|k| from_file.contains_key(*k))
            .collect();
        if let (Some(path), true) = (file, file_secrets.len() > 1) {
            return Err(ConfigError::SeveralSecrets {
                path: path.to_path_buf(),
                keys: file_secrets.join(" and "),
            });
        }
        let env_has_secret = SECRET_SOURCES
            .iter()
            .filter_map(|k| spec_of(k))
            .any(|s| lookup(s.env).is_some());

        let mut values = BTreeMap::new();
        for spec in SPECS {
            let ignore_file = env_has_secret && SECRET_SOURCES.contains(&spec.key);
            let (text, source) = if let Some(v) = lookup(spec.env) {
                let text = check_text(spec, &v).map_err(|rule| ConfigError::Invalid {
                    key: format!("{} ({})", spec.env, spec.key),
                    value: shown(spec, &v),
                    rule,
                })?;
                (text, Source::Env)
            } else if let Some(v) = from_file.get(spec.key).filter(|_| !ignore_file) {
                let invalid = |rule: String| ConfigError::Invalid {
                    key: spec.key.to_string(),
                    value: toml_shown(spec, v),
                    rule,
                };
                if !type_fits(spec, v) {
                    let what = match spec.check {
                        Check::Int { .. } => "a whole number",
                        Check::Seconds { .. } => "a number",
                        _ => "a string",
                    };
                    return Err(invalid(format!("{what}: {}", rule(spec))));
                }
                let raw = toml_text(v).ok_or_else(|| invalid(rule(spec)))?;
                (check_text(spec, &raw).map_err(invalid)?, Source::File)
            } else if let Some(d) = spec.default {
                (d.to_string(), Source::Default)
            } else {
                continue;
            };
            if spec.secret && source == Source::File {
                if let Some(path) = file {
                    if let Some(mode) = world_readable(path) {
                        return Err(ConfigError::SecretReadable {
                            key: spec.key.into(),
                            path: path.to_path_buf(),
                            mode,
                        });
                    }
                    warnings.push(format!(
                        "{} is set inline in {}; prefer {}_file (a file of its own, readable by the worker only) or the environment",
                        spec.key,
                        path.display(),
                        spec.key
                    ));
                }
            }
            values.insert(spec.key, Value { text, source });
        }
        Ok(Settings {
            file: file.map(Path::to_path_buf),
            values,
            warnings,
        })
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|v| v.text.as_str())
    }

    /// The config file in use, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Where the value of `key` came from; `None` when it is set nowhere.
    pub fn source(&self, key: &str) -> Option<Source> {
        self.values.get(key).map(|v| v.source)
    }

    /// The keys set by the environment (for `check` to say what overrides the file).
    pub fn from_env(&self) -> Vec<&'static str> {
        SPECS
            .iter()
            .filter(|s| self.source(s.key) == Some(Source::Env))
            .map(|s| s.env)
            .collect()
    }

    /// `database.url` / `DATABASE_URL`.
    pub fn database_url(&self) -> Result<&str, ConfigError> {
        self.text("database.url").ok_or(ConfigError::Missing {
            key: "database.url",
            env: "DATABASE_URL",
        })
    }

    /// `database.ca_file` / `DATABASE_CA_FILE`: the CA that signs PostgreSQL's certificate.
    pub fn database_ca_file(&self) -> Option<&Path> {
        self.text("database.ca_file").map(Path::new)
    }

    /// `worker.claim_size`: jobs claimed per batch.
    pub fn claim_size(&self) -> i32 {
        self.int("worker.claim_size", 200) as i32
    }

    /// `worker.finishers`: extra connections that finish jobs.
    pub fn finishers(&self) -> usize {
        self.int("worker.finishers", 3) as usize
    }

    fn int(&self, key: &str, fallback: i64) -> i64 {
        // Checked at load; the fallback only guards against a SPECS/accessor mismatch.
        self.text(key)
            .and_then(|t| t.parse().ok())
            .unwrap_or(fallback)
    }

    /// `worker.metrics_addr`: where `/metrics` and `/healthz` listen; `None` when `off`.
    pub fn metrics_addr(&self) -> Option<&str> {
        match self.text("worker.metrics_addr") {
            Some("off") => None,
            Some(addr) => Some(addr),
            None => Some("127.0.0.1:9464"),
        }
    }

    /// `log.level`: the tracing filter.
    pub fn log_filter(&self) -> &str {
        self.text("log.level").unwrap_or("info")
    }

    /// `log.format`.
    pub fn log_format(&self) -> LogFormat {
        match self.text("log.format") {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }

    /// The Odoo client configuration, built by [`OdooConfig::from_lookup`] from the merged
    /// settings under their environment names.
    pub fn odoo_config(&self) -> Result<OdooConfig, ConfigError> {
        for (key, env) in [
            ("odoo.url", "ODOO_URL"),
            ("odoo.database", "ODOO_DB"),
            ("odoo.user", "ODOO_USER"),
        ] {
            if self.text(key).is_none() {
                return Err(ConfigError::Missing { key, env });
            }
        }
        if !SECRET_SOURCES.iter().any(|k| self.text(k).is_some()) {
            return Err(ConfigError::NoCredential);
        }
        let by_env: BTreeMap<&str, &str> = SPECS
            .iter()
            .filter(|s| s.key.starts_with("odoo."))
            .filter_map(|s| Some((s.env, self.text(s.key)?)))
            .collect();
        Ok(OdooConfig::from_lookup(|name| {
            by_env.get(name).map(|v| v.to_string())
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    static N: AtomicU32 = AtomicU32::new(0);

    /// Writes `text` to a fresh file with `mode` and returns its path.
    fn file(text: &str, mode: u32) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "odoo_sync_settings_{}_{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        path
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const VALID: &str = r#"
[database]
url = "host=/tmp port=5432 dbname=app user=worker"

[odoo]
url = "https://odoo.example.com"
database = "prod"
user = "bot"
password_file = "/run/secrets/odoo_password"
protocol = "JSONRPC"
connect_timeout_secs = 2.5
request_timeout_secs = 60

[worker]
claim_size = 50
finishers = 0
metrics_addr = "off"

[log]
level = "odoo_sync_worker=debug,info"
format = "json"
"#;

    #[test]
    fn valid_file() {
        let path = file(VALID, 0o600);
        let s = Settings::load(Some(&path), no_env).unwrap();
        assert_eq!(
            s.database_url().unwrap(),
            "host=/tmp port=5432 dbname=app user=worker"
        );
        assert_eq!(s.claim_size(), 50);
        assert_eq!(s.finishers(), 0);
        assert_eq!(s.metrics_addr(), None);
        assert_eq!(s.log_filter(), "odoo_sync_worker=debug,info");
        assert_eq!(s.log_format(), LogFormat::Json);
        assert_eq!(s.source("odoo.protocol"), Some(Source::File));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // The password file does not exist: from_lookup says so, naming the variable.
        let e = s.odoo_config().unwrap_err().to_string();
        assert!(
            e.contains("ODOO_PASSWORD_FILE: cannot read /run/secrets/odoo_password"),
            "{e}"
        );
        assert!(!format!("{s:?}").contains("user=worker"), "{s:?}");
    }

    #[test]
    fn defaults_without_file() {
        let s = Settings::load(None, no_env).unwrap();
        assert_eq!(s.claim_size(), 200);
        assert_eq!(s.finishers(), 3);
        assert_eq!(s.metrics_addr(), Some("127.0.0.1:9464"));
        assert_eq!(s.log_format(), LogFormat::Text);
        let e = s.database_url().unwrap_err().to_string();
        assert_eq!(
            e,
            "database.url is not set (in the config file, or as the environment variable DATABASE_URL)"
        );
        let e = s.odoo_config().unwrap_err().to_string();
        assert!(e.starts_with("odoo.url is not set"), "{e}");
        // Every setting with a default passes its own check.
        for spec in SPECS {
            if let Some(d) = spec.default {
                assert_eq!(check_text(spec, d).as_deref(), Ok(d), "{}", spec.key);
            }
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let path = file("[worker]\nclaim_sise = 10\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert!(e.starts_with("unknown key worker.claim_sise in "), "{e}");
        assert!(
            e.contains("known keys: claim_size, finishers, metrics_addr"),
            "{e}"
        );
        let path = file("[wrker]\nclaim_size = 10\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert!(e.starts_with("unknown key [wrker] in "), "{e}");
        let path = file("claim_size = 10\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert!(e.starts_with("unknown key claim_size in "), "{e}");
    }

    #[test]
    fn out_of_range_value_names_the_key() {
        let path = file("[worker]\nclaim_size = 0\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert_eq!(e, "worker.claim_size = 0 (must be 1..1000)");
        let path = file("[worker]\nclaim_size = \"200\"\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert_eq!(
            e,
            "worker.claim_size = \"200\" (must be a whole number: 1..1000)"
        );
        let path = file("[odoo]\nprotocol = \"xmlrpc\"\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert_eq!(
            e,
            "odoo.protocol = \"xmlrpc\" (must be one of auto, jsonrpc, json2)"
        );
        let path = file("[worker]\nmetrics_addr = \"9464\"\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert!(
            e.starts_with("worker.metrics_addr = \"9464\" (must be host:port"),
            "{e}"
        );
        let path = file("[odoo]\nrequest_timeout_secs = 0\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert_eq!(e, "odoo.request_timeout_secs = 0 (must be 1..3600 seconds)");
        // The environment goes through the same checks.
        let e = Settings::load(None, |k| (k == "ODOO_SYNC_FINISHERS").then(|| "17".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "ODOO_SYNC_FINISHERS (worker.finishers) = \"17\" (must be 0..16)"
        );
        let path = file("[worker\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert!(e.contains("is not valid TOML"), "{e}");
    }

    #[test]
    fn environment_overrides_file() {
        let path = file(VALID, 0o600);
        let env = |k: &str| match k {
            "ODOO_SYNC_CLAIM_SIZE" => Some("7".to_string()),
            "LOG_FORMAT" => Some("text".into()),
            "ODOO_API_KEY" => Some("k-123".into()),
            // Empty means unset: the file's value stays.
            "ODOO_SYNC_FINISHERS" => Some("".into()),
            _ => None,
        };
        let s = Settings::load(Some(&path), env).unwrap();
        assert_eq!(s.claim_size(), 7);
        assert_eq!(s.source("worker.claim_size"), Some(Source::Env));
        assert_eq!(s.finishers(), 0);
        assert_eq!(s.log_format(), LogFormat::Text);
        // A credential from the environment replaces the file's (its password file is never
        // read), and the rest of the Odoo settings still come from the file.
        let c = s.odoo_config().unwrap();
        assert_eq!(c.secret.expose(), "k-123");
        assert_eq!(c.login, "bot");
        assert_eq!(c.protocol, crate::odoo::ProtocolChoice::JsonRpc);
        assert_eq!(c.connect_timeout, std::time::Duration::from_millis(2500));
        assert_eq!(
            s.from_env(),
            vec!["ODOO_API_KEY", "ODOO_SYNC_CLAIM_SIZE", "LOG_FORMAT"]
        );
        assert!(!format!("{s:?}").contains("k-123"));
    }

    #[test]
    fn missing_file_is_an_error() {
        let path = std::env::temp_dir().join("odoo_sync_no_such_config.toml");
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read the config file {}", path.display())),
            "{e}"
        );
        assert!(e.contains("No such file"), "{e}");
    }

    #[test]
    fn inline_secrets() {
        let text =
            "[odoo]\nurl = \"http://h\"\ndatabase = \"d\"\nuser = \"u\"\napi_key = \"sk-secret\"\n";
        let path = file(text, 0o640);
        let s = Settings::load(Some(&path), no_env).unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("odoo.api_key is set inline"));
        assert!(!s.warnings[0].contains("sk-secret"));
        assert_eq!(s.odoo_config().unwrap().secret.expose(), "sk-secret");
        #[cfg(unix)]
        {
            let path = file(text, 0o644);
            let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
            assert!(e.contains("odoo.api_key is set inline"), "{e}");
            assert!(e.contains("mode 644"), "{e}");
            assert!(!e.contains("sk-secret"), "{e}");
        }
        let path = file("[odoo]\napi_key = \"a\"\npassword_file = \"/x\"\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert!(
            e.contains("sets odoo.api_key and odoo.password_file"),
            "{e}"
        );
        let path = file("[odoo]\napi_key = 5\n", 0o600);
        let e = Settings::load(Some(&path), no_env).unwrap_err().to_string();
        assert_eq!(
            e,
            "odoo.api_key = *** (must be a string: a non-empty string)"
        );
    }

    #[test]
    fn example_file_documents_every_key_and_parses() {
        let example = include_str!("../../packaging/worker.toml.example");
        for spec in SPECS {
            let name = spec.key.split_once('.').map_or(spec.key, |(_, n)| n);
            assert!(
                example.contains(&format!("{name} =")),
                "{} is not in packaging/worker.toml.example",
                spec.key
            );
            assert!(
                example.contains(spec.env),
                "{} is not named in packaging/worker.toml.example",
                spec.env
            );
            if let Some(d) = spec.default {
                assert!(
                    example.contains(d),
                    "default {d} of {} is not in packaging/worker.toml.example",
                    spec.key
                );
            }
        }
        // As shipped, and with every commented assignment enabled (secrets left out: one
        // credential at most), the example is a valid config file.
        let path = file(example, 0o600);
        Settings::load(Some(&path), no_env).unwrap();
        let enabled: String = example
            .lines()
            .map(|l| {
                let t = l.trim_start();
                match t.strip_prefix("# ") {
                    Some(rest)
                        if rest.contains(" = ")
                            && !rest.starts_with("api_key ")
                            && !rest.starts_with("password") =>
                    {
                        rest.to_string()
                    }
                    _ => l.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = file(&enabled, 0o600);
        let s = Settings::load(Some(&path), no_env).unwrap_or_else(|e| panic!("{e}\n{enabled}"));
        assert_eq!(s.source("worker.claim_size"), Some(Source::File));
    }
}
