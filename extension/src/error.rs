//! Errors raised inside the capture triggers and the privileged helpers. Each becomes a
//! PostgreSQL error with an SQLSTATE, so applications and DBAs can tell them apart.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiError;
use pgrx::PgSqlErrorCode;

/// Everything that can go wrong while odoo_sync records a change or writes back.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The trigger was attached by hand with the wrong arguments.
    #[error("odoo_sync trigger on {table} is misconfigured: {detail}")]
    BadTrigger { table: String, detail: String },
    /// A tracked row has no value in its key column.
    #[error("{table}.{column} is NULL: odoo_sync needs it to identify the order")]
    NullKey { table: String, column: String },
    /// A column named by the tracking configuration is gone (dropped or renamed).
    #[error("column \"{column}\" of {table} is tracked by odoo_sync but no longer exists")]
    MissingColumn { table: String, column: String },
    /// The extension's catalog entry could not be found.
    #[error("the odoo_sync extension is not installed in this database")]
    NotInstalled,
    /// A statement run through SPI failed.
    #[error("odoo_sync internal query failed: {0}")]
    Spi(#[from] SpiError),
    /// A trigger API call failed.
    #[error("odoo_sync trigger error: {0}")]
    Trigger(#[from] pgrx::PgTriggerError),
    /// Another transaction kept changing the order's sync state while this one recorded a change
    /// of the order, or changed it after this transaction's snapshot (REPEATABLE READ).
    #[error("the sync state of order {order_key} changed while this transaction recorded a change of it")]
    StateChanged { order_key: String },
    /// odoo_sync's SQL asked to notify with a payload it does not define.
    #[error("odoo_sync has no notification payload {0:?}")]
    UnknownPayload(String),
}

impl SyncError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            SyncError::BadTrigger { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            SyncError::NullKey { .. } => PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            SyncError::MissingColumn { .. } => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            SyncError::NotInstalled => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            SyncError::StateChanged { .. } => PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            SyncError::Spi(_) | SyncError::Trigger(_) | SyncError::UnknownPayload(_) => {
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
            }
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            SyncError::BadTrigger { .. } => {
                "Attach odoo_sync only through odoo_sync.track_orders(); untrack_orders() removes a broken one."
            }
            SyncError::NullKey { .. } => "Give every order a key value (make the key column NOT NULL).",
            SyncError::MissingColumn { .. } => {
                "Run odoo_sync.untrack_orders() and odoo_sync.track_orders() again with the new column names."
            }
            SyncError::NotInstalled => "Run CREATE EXTENSION odoo_sync.",
            SyncError::StateChanged { .. } => "Retry the transaction; nothing of it was kept.",
            SyncError::Spi(_) | SyncError::Trigger(_) | SyncError::UnknownPayload(_) => {
                "This is a bug in odoo_sync or a damaged installation; the change was not made."
            }
        }
    }

    /// Raises this error as a PostgreSQL ERROR (never returns).
    pub fn raise(self) -> ! {
        ErrorReport::new(self.sqlstate(), self.to_string(), "odoo_sync")
            .set_hint(self.hint())
            .report(PgLogLevel::ERROR);
        unreachable!("ERROR level reports do not return")
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, SyncError>;
