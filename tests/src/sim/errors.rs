//! The exceptions Odoo raises, with the names and messages a client branches on.
//!
//! Odoo serializes an exception as `{name, message, arguments, context, debug}`; JSON-RPC wraps
//! it in `{"code", "message": "Odoo Server Error", "data": ...}` and JSON-2 sends it as the body
//! with an HTTP status chosen from the exception class.

use serde_json::{json, Value};

/// The exception classes the simulator can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `odoo.exceptions.UserError`: a business rule refused the operation.
    User,
    /// `odoo.exceptions.ValidationError`: a constraint (required field, unique index) failed.
    Validation,
    /// `odoo.exceptions.AccessError`: the user may not touch this model.
    Access,
    /// `odoo.exceptions.AccessDenied`: bad credentials.
    AccessDenied,
    /// `odoo.exceptions.MissingError`: a record id does not exist.
    Missing,
    /// `builtins.ValueError`: invalid field, operator or value.
    Value,
    /// `builtins.AttributeError`: unknown method.
    Attribute,
    /// `builtins.TypeError`: arguments that do not fit the method's signature.
    Type,
    /// `builtins.IndexError`: a record method called without its ids.
    Index,
    /// `builtins.AssertionError`: an `assert` in Odoo's code failed (e.g. an invalid access mode).
    Assertion,
    /// `builtins.NameError` / `builtins.KeyError`: unknown JSON-RPC service method.
    Name,
    /// `psycopg2.errors.SerializationFailure`: concurrent update (after Odoo's own retries).
    Serialization,
    /// `psycopg2.OperationalError`: e.g. the database does not exist.
    Operational,
    /// `werkzeug.exceptions.Unauthorized` (JSON-2 bad API key).
    Unauthorized,
    /// `werkzeug.exceptions.NotFound` (JSON-2 unknown model or method, unknown database).
    NotFound,
    /// `werkzeug.exceptions.BadRequest` (malformed JSON body).
    BadRequest,
}

/// An Odoo exception: its class and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdooError {
    /// Which exception class.
    pub kind: ErrorKind,
    /// The message, exactly as Odoo words it.
    pub message: String,
}

/// Result alias for everything that can raise an Odoo exception.
pub type OdooResult<T> = Result<T, OdooError>;

impl OdooError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        OdooError {
            kind,
            message: message.into(),
        }
    }
    /// `UserError(message)`.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::User, message)
    }
    /// `ValidationError(message)`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }
    /// `ValueError(message)`.
    pub fn value(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Value, message)
    }
    /// `TypeError(message)`.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Type, message)
    }
    /// `MissingError` for `model(ids)` as Odoo words it.
    pub fn missing(model: &str, ids: &[i64], uid: i64) -> Self {
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        Self::new(
            ErrorKind::Missing,
            format!(
                "Record does not exist or has been deleted.\n(Record: {model}({},), User: {uid})",
                list.join(", ")
            ),
        )
    }
    /// `AccessDenied()`: Odoo's message is always the same, to leak nothing.
    pub fn access_denied() -> Self {
        Self::new(ErrorKind::AccessDenied, "Access Denied")
    }

    /// The dotted Python name clients branch on (`data.name` / body `name`).
    pub fn name(&self) -> &'static str {
        match self.kind {
            ErrorKind::User => "odoo.exceptions.UserError",
            ErrorKind::Validation => "odoo.exceptions.ValidationError",
            ErrorKind::Access => "odoo.exceptions.AccessError",
            ErrorKind::AccessDenied => "odoo.exceptions.AccessDenied",
            ErrorKind::Missing => "odoo.exceptions.MissingError",
            ErrorKind::Value => "builtins.ValueError",
            ErrorKind::Attribute => "builtins.AttributeError",
            ErrorKind::Type => "builtins.TypeError",
            ErrorKind::Index => "builtins.IndexError",
            ErrorKind::Assertion => "builtins.AssertionError",
            ErrorKind::Name => "builtins.NameError",
            ErrorKind::Serialization => "psycopg2.errors.SerializationFailure",
            ErrorKind::Operational => "psycopg2.OperationalError",
            ErrorKind::Unauthorized => "werkzeug.exceptions.Unauthorized",
            ErrorKind::NotFound => "werkzeug.exceptions.NotFound",
            ErrorKind::BadRequest => "werkzeug.exceptions.BadRequest",
        }
    }

    /// HTTP status of this error on JSON-2 (odoo-api.md: 401, 403, 404, 409 for Odoo's lock
    /// error, 422, 400, else 500). A serialization failure that outlived Odoo's retries is none
    /// of those: Odoo's JSON-2 error handler answers anything but a `UserError` or an HTTP
    /// exception with 500.
    pub fn json2_status(&self) -> u16 {
        match self.kind {
            ErrorKind::Unauthorized | ErrorKind::AccessDenied => 401,
            ErrorKind::Access => 403,
            ErrorKind::Missing | ErrorKind::NotFound => 404,
            ErrorKind::User | ErrorKind::Validation | ErrorKind::Type => 422,
            ErrorKind::BadRequest => 400,
            _ => 500,
        }
    }

    /// The serialized exception (`data` of JSON-RPC, the whole body of JSON-2).
    pub fn to_data(&self) -> Value {
        // AccessDenied carries no traceback in Odoo so as not to reveal anything.
        let debug = if self.kind == ErrorKind::AccessDenied {
            String::new()
        } else {
            format!(
                "Traceback (most recent call last):\n  File \"odoo-sim\", line 1, in <simulated>\n{}: {}\n",
                self.name(),
                self.message
            )
        };
        json!({
            "name": self.name(),
            "message": self.message,
            "arguments": [self.message],
            "context": {},
            "debug": debug,
        })
    }
}

impl std::fmt::Display for OdooError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name(), self.message)
    }
}

impl std::error::Error for OdooError {}
