//! How to reach Odoo: URL, database, login, secret, timeouts and protocol.
//!
//! The secret (API key or password) lives in a [`Secret`] whose `Debug` and `Display` print
//! `***`, so a config, an error or a log line that formats it never leaks the credential.

use super::error::OdooError;
use reqwest::Url;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A credential. Formatting it prints `***`; only [`Secret::expose`] gives the text, and only
/// the code that puts it on the wire calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The credential itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What the secret is: JSON-2 accepts only API keys; JSON-RPC takes either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An Odoo API key (Preferences → Account Security), usable by both protocols.
    ApiKey,
    /// The user's password: JSON-RPC only.
    Password,
}

/// Which wire protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolChoice {
    /// Ask `common.version`: JSON-2 on Odoo 19+ when an API key is configured, else JSON-RPC.
    #[default]
    Auto,
    /// `POST /jsonrpc` (Odoo 8–21; deprecated in 19, removed in 22).
    JsonRpc,
    /// `POST /json/2/<model>/<method>` (Odoo 19+, API key only).
    Json2,
}

impl FromStr for ProtocolChoice {
    type Err = OdooError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(ProtocolChoice::Auto),
            "jsonrpc" | "json-rpc" => Ok(ProtocolChoice::JsonRpc),
            "json2" | "json-2" => Ok(ProtocolChoice::Json2),
            other => Err(OdooError::Config(format!(
                "ODOO_PROTOCOL is {other:?}; use auto, jsonrpc or json2"
            ))),
        }
    }
}

/// Default bound on a response body: a `search_read` of a few thousand orders fits easily,
/// a runaway reply does not exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Everything the client needs to talk to one Odoo database.
#[derive(Debug, Clone)]
pub struct OdooConfig {
    /// Base URL, e.g. `https://odoo.example.com` (a path prefix is kept).
    pub url: Url,
    /// Database name (`X-Odoo-Database` on JSON-2, first `execute_kw` argument on JSON-RPC).
    pub database: String,
    /// Login of the integration user.
    pub login: String,
    /// API key or password.
    pub secret: Secret,
    /// Whether [`OdooConfig::secret`] is an API key or a password.
    pub secret_kind: SecretKind,
    /// Protocol choice.
    pub protocol: ProtocolChoice,
    /// Bound on establishing a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Bound on one whole request: connect, send, wait and read the body.
    pub request_timeout: Duration,
    /// Extra PEM CA bundle trusted next to the built-in roots (a private CA); verification
    /// itself is never turned off.
    pub ca_file: Option<PathBuf>,
    /// Largest response body accepted.
    pub max_body_bytes: usize,
}

impl OdooConfig {
    /// A config with default timeouts (connect 10 s, request 120 s: Odoo kills requests after
    /// 120 s of real time anyway), automatic protocol and an API key.
    pub fn new(
        url: &str,
        database: impl Into<String>,
        login: impl Into<String>,
        secret: Secret,
        secret_kind: SecretKind,
    ) -> Result<Self, OdooError> {
        Ok(OdooConfig {
            url: parse_url(url)?,
            database: database.into(),
            login: login.into(),
            secret,
            secret_kind,
            protocol: ProtocolChoice::Auto,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            ca_file: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
    }

    /// Reads the config from variables: `ODOO_URL`, `ODOO_DB`, `ODOO_USER`, then the secret from
    /// `ODOO_API_KEY`, `ODOO_API_KEY_FILE`, `ODOO_PASSWORD` or `ODOO_PASSWORD_FILE` (first set
    /// wins), and optionally `ODOO_PROTOCOL`, `ODOO_CA_FILE`, `ODOO_CONNECT_TIMEOUT_SECS`,
    /// `ODOO_REQUEST_TIMEOUT_SECS`. `lookup` is `std::env::var(..).ok()` in production and a
    /// map in tests.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OdooError> {
        let need = |name: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| OdooError::Config(format!("{name} is not set")))
        };
        let url = need("ODOO_URL")?;
        let database = need("ODOO_DB")?;
        let login = need("ODOO_USER")?;
        let read_file = |var: &str, path: String| {
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| OdooError::Config(format!("{var}: cannot read {path}: {e}")))
        };
        let (secret, kind) = if let Some(v) = lookup("ODOO_API_KEY").filter(|v| !v.is_empty()) {
            (v, SecretKind::ApiKey)
        } else if let Some(p) = lookup("ODOO_API_KEY_FILE").filter(|v| !v.is_empty()) {
            (read_file("ODOO_API_KEY_FILE", p)?, SecretKind::ApiKey)
        } else if let Some(v) = lookup("ODOO_PASSWORD").filter(|v| !v.is_empty()) {
            (v, SecretKind::Password)
        } else if let Some(p) = lookup("ODOO_PASSWORD_FILE").filter(|v| !v.is_empty()) {
            (read_file("ODOO_PASSWORD_FILE", p)?, SecretKind::Password)
        } else {
            return Err(OdooError::Config(
                "no Odoo credential: set ODOO_API_KEY (or ODOO_API_KEY_FILE, ODOO_PASSWORD)".into(),
            ));
        };
        let mut config = OdooConfig::new(&url, database, login, Secret::new(secret), kind)?;
        if let Some(p) = lookup("ODOO_PROTOCOL") {
            config.protocol = p.parse()?;
        }
        if let Some(p) = lookup("ODOO_CA_FILE").filter(|v| !v.is_empty()) {
            config.ca_file = Some(PathBuf::from(p));
        }
        let secs = |name: &str| -> Result<Option<Duration>, OdooError> {
            match lookup(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(|s| Some(Duration::from_secs_f64(s)))
                    .ok_or_else(|| {
                        OdooError::Config(format!("{name} is {v:?}; expected seconds > 0"))
                    }),
            }
        };
        if let Some(d) = secs("ODOO_CONNECT_TIMEOUT_SECS")? {
            config.connect_timeout = d;
        }
        if let Some(d) = secs("ODOO_REQUEST_TIMEOUT_SECS")? {
            config.request_timeout = d;
        }
        Ok(config)
    }
}

/// Parses and checks the base URL: http(s) only, and no credentials inside it, because URLs
/// end up in error messages and logs.
fn parse_url(text: &str) -> Result<Url, OdooError> {
    let url = Url::parse(text.trim())
        .map_err(|e| OdooError::Config(format!("ODOO_URL {text:?} is not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(OdooError::Config(format!(
            "ODOO_URL must start with http:// or https://, not {}://",
            url.scheme()
        )));
    }
    if url.password().is_some() || !url.username().is_empty() {
        return Err(OdooError::Config(
            "ODOO_URL must not contain a user or password; use ODOO_USER and ODOO_API_KEY".into(),
        ));
    }
    if url.host_str().is_none() {
        return Err(OdooError::Config(format!("ODOO_URL {text:?} has no host")));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let c = OdooConfig::new("http://h", "db", "u", s, SecretKind::Password).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn url_with_credentials_is_refused() {
        let e = OdooConfig::new(
            "http://u:p@h",
            "db",
            "u",
            Secret::new("x"),
            SecretKind::ApiKey,
        )
        .unwrap_err();
        assert!(e.to_string().contains("must not contain"), "{e}");
        assert!(e.is_permanent());
    }

    #[test]
    fn from_lookup_reads_variables() {
        let vars = [
            ("ODOO_URL", "https://odoo.example.com"),
            ("ODOO_DB", "prod"),
            ("ODOO_USER", "sync"),
            ("ODOO_PASSWORD", "pw"),
            ("ODOO_PROTOCOL", "JSONRPC"),
            ("ODOO_REQUEST_TIMEOUT_SECS", "2.5"),
        ];
        let c = OdooConfig::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        assert_eq!(c.secret_kind, SecretKind::Password);
        assert_eq!(c.protocol, ProtocolChoice::JsonRpc);
        assert_eq!(c.request_timeout, Duration::from_millis(2500));
        let e = OdooConfig::from_lookup(|_| None).unwrap_err();
        assert!(e.to_string().contains("ODOO_URL is not set"), "{e}");
    }
}
