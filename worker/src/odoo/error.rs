//! Errors of the Odoo client, classified where they are born as transient (retry later) or
//! permanent (retrying sends the same request and gets the same answer).
//!
//! Classification follows `shared/odoo-api.md`: Odoo's exception name (`data.name` on JSON-RPC,
//! body `name` on JSON-2) decides first, the HTTP status second. JSON-RPC's numeric `code` is
//! never used: it changed from 200 to 0 in Odoo 19 and says nothing about the cause.
//!
//! Replies that are not what the protocol promises (an HTML page, truncated or invalid JSON,
//! missing keys, wrong types) are [`OdooError::Protocol`]: transient when the HTTP status is a
//! server-side failure (5xx, 429, 408: a proxy or an overloaded Odoo answered in its stead),
//! permanent otherwise, because a 200 that is not Odoo's JSON means the URL points at something
//! that is not Odoo (a login portal, another service), and retrying will not change that.

use std::fmt;
use std::time::Duration;

/// Result alias of the Odoo client.
pub type OdooResult<T> = Result<T, OdooError>;

/// An exception raised by Odoo, as it serialized it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Dotted Python class name, e.g. `odoo.exceptions.UserError`.
    pub name: String,
    /// Odoo's message, meant for a human (often a functional user or a DBA).
    pub message: String,
    /// The call that raised it, `model.method`, when known.
    pub call: Option<String>,
    /// HTTP status (JSON-2; JSON-RPC replies are always 200 and leave this `None`).
    pub http_status: Option<u16>,
    /// JSON-RPC `code`, kept for logs only (never branched on).
    pub code: Option<i64>,
    /// First part of Odoo's traceback, for logs; not part of `Display`.
    pub debug: String,
    /// `Retry-After` sent with the reply, if any.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Odoo raised {}", self.name)?;
        if let Some(call) = &self.call {
            write!(f, " in {call}")?;
        }
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything that can go wrong talking to Odoo.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OdooError {
    /// The client's own configuration is unusable (bad URL, unreadable CA file, ...).
    #[error("Odoo client configuration: {0}")]
    Config(String),
    /// No complete reply within the configured time.
    #[error(
        "Odoo at {url} did not answer within {after:?}; the call may or may not have been applied"
    )]
    Timeout {
        /// Endpoint called.
        url: String,
        /// The bound that expired.
        after: Duration,
    },
    /// The connection could not be established (DNS, refused, TLS handshake).
    #[error("cannot connect to Odoo at {url}: {detail}")]
    Connect {
        /// Endpoint called.
        url: String,
        /// What the network stack said.
        detail: String,
    },
    /// The connection broke after the request was sent (reset, closed, truncated reply).
    #[error("connection to Odoo at {url} broke before the reply was complete: {detail}; the call may or may not have been applied")]
    Transport {
        /// Endpoint called.
        url: String,
        /// What the network stack said.
        detail: String,
    },
    /// An HTTP error status without an Odoo exception in the body (proxy page, 429, ...).
    #[error("Odoo at {url} answered HTTP {status}{}: {excerpt:?}", retry_suffix(*.retry_after))]
    Http {
        /// Endpoint called.
        url: String,
        /// HTTP status.
        status: u16,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
        /// Start of the body, cleaned for logs.
        excerpt: String,
    },
    /// Login answered `false` (JSON-RPC) or 401 (JSON-2): wrong login, password or API key.
    #[error("Odoo refused the login {login:?} on database {database:?}: wrong login, password or API key, or an expired API key (check ODOO_USER and ODOO_API_KEY; Odoo 19 keys last at most 3 months)")]
    AuthenticationFailed {
        /// Login sent.
        login: String,
        /// Database sent.
        database: String,
    },
    /// Odoo raised an exception.
    #[error("{0}")]
    Server(Box<ServerError>),
    /// The reply is not what the protocol promises.
    #[error("unexpected reply from Odoo at {url} (HTTP {status}): {detail}; body starts with {excerpt:?}")]
    Protocol {
        /// Endpoint called.
        url: String,
        /// HTTP status of the reply.
        status: u16,
        /// What was wrong with it.
        detail: String,
        /// Start of the body, cleaned for logs.
        excerpt: String,
    },
    /// The reply body exceeds the configured bound.
    #[error(
        "reply from Odoo at {url} exceeds {limit} bytes; ask for fewer records or fields per call"
    )]
    ResponseTooLarge {
        /// Endpoint called.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// Odoo answered but refused the data without raising (a `load` whose `ids` is `false`);
    /// nothing of the call was written.
    #[error("Odoo refused {call}: {reasons}")]
    Rejected {
        /// `model.method`.
        call: String,
        /// Odoo's messages, joined.
        reasons: String,
    },
    /// A `load` whose `ids` is `false` because Odoo's database refused a record's write
    /// for a concurrent transaction (serialization failure, deadlock, lock not available).
    /// `load` catches those per record and reports them as messages, so Odoo's own retry of
    /// concurrency errors never sees them; nothing of the call was written.
    #[error("Odoo's database refused {call} because of a concurrent transaction (nothing was written; a later attempt can succeed): {reasons}")]
    Contended {
        /// `model.method`.
        call: String,
        /// Odoo's messages, joined.
        reasons: String,
    },
    /// A call that can write, not sent: the lease of the job it serves may have run out, and
    /// another worker may be pushing a newer version of the order (see [`super::WriteFence`]).
    #[error("{call} not sent: the job's lease may have run out {late:?} ago (the worker could not extend it in time); the order is pushed again by whoever holds it")]
    LeaseExpiring {
        /// `model.method`.
        call: String,
        /// How far past the deadline.
        late: Duration,
    },
    /// The request cannot be expressed with the chosen protocol or server.
    #[error("{0}")]
    Unsupported(String),
}

fn retry_suffix(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {}s)", d.as_secs()),
        None => String::new(),
    }
}

/// Exception names whose cause is gone on a later attempt: lock and serialization conflicts
/// (Odoo already retried them internally), a database restarting, a busy front end.
const TRANSIENT_NAMES: &[&str] = &[
    "psycopg2.errors.SerializationFailure",
    "psycopg2.errors.DeadlockDetected",
    "psycopg2.errors.LockNotAvailable",
    "psycopg2.extensions.TransactionRollbackError",
    "psycopg2.errors.TransactionRollbackError",
    "psycopg2.errors.QueryCanceled",
    "psycopg2.InterfaceError",
    "odoo.exceptions.ConcurrencyError",
    "werkzeug.exceptions.ServiceUnavailable",
    "werkzeug.exceptions.TooManyRequests",
    "werkzeug.exceptions.BadGateway",
    "werkzeug.exceptions.GatewayTimeout",
    "werkzeug.exceptions.RequestTimeout",
];

/// Exception names that mean "this request is wrong": business rules, constraints, access,
/// missing records, invalid fields, programming errors in the request, bad credentials.
const PERMANENT_NAMES: &[&str] = &[
    "odoo.exceptions.UserError",
    "odoo.exceptions.ValidationError",
    "odoo.exceptions.AccessError",
    "odoo.exceptions.AccessDenied",
    "odoo.exceptions.MissingError",
    "odoo.exceptions.RedirectWarning",
    "odoo.exceptions.except_orm",
    "builtins.ValueError",
    "builtins.TypeError",
    "builtins.KeyError",
    "builtins.AttributeError",
    "builtins.IndexError",
    "builtins.NameError",
    "werkzeug.exceptions.BadRequest",
    "werkzeug.exceptions.Unauthorized",
    "werkzeug.exceptions.Forbidden",
    "werkzeug.exceptions.NotFound",
    "werkzeug.exceptions.UnprocessableEntity",
    "psycopg2.IntegrityError",
    "psycopg2.errors.UniqueViolation",
    "psycopg2.errors.NotNullViolation",
    "psycopg2.errors.ForeignKeyViolation",
    "psycopg2.errors.CheckViolation",
];

/// Whether an HTTP status says "try again later": server failures, 408, 409 (Odoo's lock
/// conflict on JSON-2), 425 and 429.
pub fn status_is_transient(status: u16) -> bool {
    status >= 500 || matches!(status, 408 | 409 | 425 | 429)
}

impl ServerError {
    /// Reads Odoo's serialized exception `{name, message, arguments, context, debug}`; `None`
    /// when `data` has no string `name` (then it is not an Odoo exception).
    pub fn from_data(
        data: &serde_json::Value,
        http_status: Option<u16>,
        code: Option<i64>,
        retry_after: Option<Duration>,
    ) -> Option<ServerError> {
        let name = data.get("name")?.as_str()?.to_string();
        let message = match data.get("message") {
            Some(serde_json::Value::String(m)) => m.clone(),
            // Some exceptions carry their text only in `arguments`.
            _ => data
                .get("arguments")
                .and_then(|a| a.get(0))
                .and_then(|a| a.as_str())
                .unwrap_or("(no message)")
                .to_string(),
        };
        let debug = data
            .get("debug")
            .and_then(|d| d.as_str())
            .map(|d| d.chars().take(4000).collect())
            .unwrap_or_default();
        Some(ServerError {
            name,
            message,
            call: None,
            http_status,
            code,
            debug,
            retry_after,
        })
    }

    /// Transient or permanent, by exception name first and HTTP status second.
    pub fn is_transient(&self) -> bool {
        let name = self.name.as_str();
        if PERMANENT_NAMES.contains(&name) {
            return false;
        }
        if TRANSIENT_NAMES.contains(&name) {
            return true;
        }
        if name == "psycopg2.OperationalError" || name == "psycopg2.errors.OperationalError" {
            // The database server restarting is worth a retry; a database that does not exist
            // (ODOO_DB misspelled) is not.
            return !self.message.contains("does not exist");
        }
        match self.http_status {
            Some(status) => status_is_transient(status),
            // An exception class we do not know, on JSON-RPC: most likely the request is at
            // fault (Odoo raises Python errors for bad arguments); retrying would repeat it.
            None => false,
        }
    }
}

impl OdooError {
    /// Worth retrying later with the same request.
    pub fn is_transient(&self) -> bool {
        match self {
            OdooError::Timeout { .. }
            | OdooError::Connect { .. }
            | OdooError::Transport { .. }
            | OdooError::Contended { .. }
            | OdooError::LeaseExpiring { .. } => true,
            OdooError::Http { status, .. } | OdooError::Protocol { status, .. } => {
                status_is_transient(*status)
            }
            OdooError::Server(e) => e.is_transient(),
            OdooError::Config(_)
            | OdooError::AuthenticationFailed { .. }
            | OdooError::ResponseTooLarge { .. }
            | OdooError::Rejected { .. }
            | OdooError::Unsupported(_) => false,
        }
    }

    /// Odoo refused our credentials (wrong or expired API key or password): every call will
    /// fail alike until someone fixes the configuration, so no single order is to blame.
    pub fn is_credentials(&self) -> bool {
        match self {
            OdooError::AuthenticationFailed { .. } => true,
            OdooError::Http { status, .. } => *status == 401,
            OdooError::Server(e) => matches!(
                e.name.as_str(),
                "odoo.exceptions.AccessDenied" | "werkzeug.exceptions.Unauthorized"
            ),
            _ => false,
        }
    }

    /// Retrying the same request will fail the same way: fix the data, the config or the code.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// Odoo's `MissingError` about a record of `model`: it was deleted, or never existed. Odoo
    /// names the model in both of its wordings, `(Record: purchase.order.line(7,), User: 2)`
    /// and `(Document type: purchase.order.line, Operation: write, ...)`.
    pub fn is_missing(&self, model: &str) -> bool {
        let OdooError::Server(e) = self else {
            return false;
        };
        e.name == "odoo.exceptions.MissingError"
            && [format!("{model}("), format!("{model},")]
                .iter()
                .any(|named| e.message.contains(named.as_str()))
    }

    /// Odoo's exception name (`odoo.exceptions.UserError`, ...), when Odoo raised one.
    pub fn odoo_name(&self) -> Option<&str> {
        match self {
            OdooError::Server(e) => Some(&e.name),
            _ => None,
        }
    }

    /// Odoo's message, when Odoo raised an exception.
    pub fn odoo_message(&self) -> Option<&str> {
        match self {
            OdooError::Server(e) => Some(&e.message),
            _ => None,
        }
    }

    /// HTTP status of the failed reply, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            OdooError::Http { status, .. } | OdooError::Protocol { status, .. } => Some(*status),
            OdooError::Server(e) => e.http_status,
            _ => None,
        }
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OdooError::Http { retry_after, .. } => *retry_after,
            OdooError::Server(e) => e.retry_after,
            _ => None,
        }
    }

    /// The outcome of the call is unknown: it may have been applied by Odoo. Callers that create
    /// records must retry idempotently (external ids, `load`).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            OdooError::Timeout { .. } | OdooError::Transport { .. }
        )
    }

    /// A short stable label of the error's kind, for metrics and the error columns.
    pub fn kind(&self) -> &'static str {
        match self {
            OdooError::Config(_) => "config",
            OdooError::Timeout { .. } => "timeout",
            OdooError::Connect { .. } => "connect",
            OdooError::Transport { .. } => "transport",
            OdooError::Http { .. } => "http",
            OdooError::AuthenticationFailed { .. } => "authentication",
            OdooError::Server(_) => "odoo",
            OdooError::Protocol { .. } => "protocol",
            OdooError::ResponseTooLarge { .. } => "too_large",
            OdooError::Rejected { .. } => "rejected",
            OdooError::Contended { .. } => "contended",
            OdooError::LeaseExpiring { .. } => "lease_expiring",
            OdooError::Unsupported(_) => "unsupported",
        }
    }

    /// Removes every occurrence of `secret` from the texts this error carries. Odoo does not
    /// echo credentials, but a misbehaving proxy or a traceback might; this is the last line
    /// of defence before an error reaches a log or the database.
    pub fn redact(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let r = |s: String| {
            if s.contains(secret) {
                s.replace(secret, "***")
            } else {
                s
            }
        };
        match self {
            OdooError::Config(s) => OdooError::Config(r(s)),
            OdooError::Timeout { url, after } => OdooError::Timeout { url: r(url), after },
            OdooError::Connect { url, detail } => OdooError::Connect {
                url: r(url),
                detail: r(detail),
            },
            OdooError::Transport { url, detail } => OdooError::Transport {
                url: r(url),
                detail: r(detail),
            },
            OdooError::Http {
                url,
                status,
                retry_after,
                excerpt,
            } => OdooError::Http {
                url: r(url),
                status,
                retry_after,
                excerpt: r(excerpt),
            },
            OdooError::AuthenticationFailed { login, database } => {
                OdooError::AuthenticationFailed {
                    login: r(login),
                    database: r(database),
                }
            }
            OdooError::Server(mut e) => {
                e.name = r(std::mem::take(&mut e.name));
                e.message = r(std::mem::take(&mut e.message));
                e.debug = r(std::mem::take(&mut e.debug));
                e.call = e.call.take().map(r);
                OdooError::Server(e)
            }
            OdooError::Protocol {
                url,
                status,
                detail,
                excerpt,
            } => OdooError::Protocol {
                url: r(url),
                status,
                detail: r(detail),
                excerpt: r(excerpt),
            },
            OdooError::ResponseTooLarge { url, limit } => {
                OdooError::ResponseTooLarge { url: r(url), limit }
            }
            OdooError::Rejected { call, reasons } => OdooError::Rejected {
                call,
                reasons: r(reasons),
            },
            OdooError::Contended { call, reasons } => OdooError::Contended {
                call,
                reasons: r(reasons),
            },
            OdooError::LeaseExpiring { call, late } => OdooError::LeaseExpiring { call, late },
            OdooError::Unsupported(s) => OdooError::Unsupported(r(s)),
        }
    }

    /// Names the call (`model.method`) in an Odoo exception that does not name it yet.
    pub(crate) fn in_call(self, model: &str, method: &str) -> Self {
        match self {
            OdooError::Server(mut e) if e.call.is_none() => {
                e.call = Some(format!("{model}.{method}"));
                OdooError::Server(e)
            }
            other => other,
        }
    }
}

/// The start of a body, safe to log: lossy UTF-8, control characters as spaces, whitespace
/// runs collapsed, at most `max` characters.
pub fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max * 4)]);
    let mut out = String::new();
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if out.chars().count() >= max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, status: Option<u16>, message: &str) -> OdooError {
        OdooError::Server(Box::new(ServerError {
            name: name.into(),
            message: message.into(),
            call: None,
            http_status: status,
            code: Some(0),
            debug: String::new(),
            retry_after: None,
        }))
    }

    #[test]
    fn names_decide_before_statuses() {
        for name in [
            "odoo.exceptions.UserError",
            "odoo.exceptions.ValidationError",
            "odoo.exceptions.AccessError",
            "odoo.exceptions.AccessDenied",
            "odoo.exceptions.MissingError",
            "builtins.ValueError",
        ] {
            assert!(server(name, None, "m").is_permanent(), "{name}");
            // A 500 carrying a business exception is still that exception.
            assert!(server(name, Some(500), "m").is_permanent(), "{name}");
        }
        assert!(server("psycopg2.errors.SerializationFailure", None, "m").is_transient());
        assert!(server("psycopg2.errors.SerializationFailure", Some(409), "m").is_transient());
        assert!(server("psycopg2.OperationalError", None, "server closed").is_transient());
        assert!(server(
            "psycopg2.OperationalError",
            None,
            "database \"x\" does not exist"
        )
        .is_permanent());
        assert!(server("some.Unknown", None, "m").is_permanent());
        assert!(server("some.Unknown", Some(503), "m").is_transient());
        assert!(server("some.Unknown", Some(409), "m").is_transient());
    }

    #[test]
    fn missing_errors_name_their_model() {
        let line = server(
            "odoo.exceptions.MissingError",
            None,
            "Record does not exist or has been deleted.\n(Record: purchase.order.line(7,), User: 2)",
        );
        assert!(line.is_missing("purchase.order.line"));
        assert!(!line.is_missing("purchase.order"));
        let order = server(
            "odoo.exceptions.MissingError",
            Some(404),
            "One of the documents you are trying to access has been deleted, please try again \
             after refreshing.\n\n(Document type: purchase.order, Operation: write, Records: [9], User: 2)",
        );
        assert!(order.is_missing("purchase.order"));
        assert!(!order.is_missing("purchase.order.line"));
        let user_error = server("odoo.exceptions.UserError", None, "purchase.order.line(7,)");
        assert!(!user_error.is_missing("purchase.order.line"));
    }

    #[test]
    fn statuses() {
        for s in [500, 502, 503, 504, 429, 409, 408] {
            assert!(status_is_transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 422, 200] {
            assert!(!status_is_transient(s), "{s}");
        }
    }

    #[test]
    fn redact_removes_secret_everywhere() {
        let e = server("x", None, "key sk-123 leaked").redact("sk-123");
        assert!(!format!("{e} {e:?}").contains("sk-123"));
    }

    #[test]
    fn excerpt_is_bounded_and_clean() {
        assert_eq!(excerpt(b"<html>\n\n  <b>x</b>\t", 100), "<html> <b>x</b>");
        assert_eq!(excerpt("ééééé".as_bytes(), 3), "ééé…");
        assert_eq!(excerpt(&[0xff, 0xfe, b'a'], 10), "��a");
    }
}
