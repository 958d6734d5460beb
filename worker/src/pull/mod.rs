//! Pulling Odoo changes into PostgreSQL (DESIGN.md section 4, odoo-api.md "Batching and
//! polling").
//!
//! - [`remote`]: Odoo purchase orders → the documents `odoo_sync.apply_remote` takes (a few
//!   calls per page of orders: the orders, their lines, products, partners, external ids);
//! - [`poll`]: the realtime loop: orders changed since a watermark, de-duplicated within an
//!   overlap window, and a periodic reconciliation of deleted orders;
//! - [`jobs`]: the `pull` (`sync_order_from_odoo`) and `import` (`import_orders`) jobs.
//!
//! Every decision (merge, conflict, import) is taken by the extension in the database; the
//! worker only fetches and hands over.

pub mod jobs;
pub mod poll;
pub mod remote;

use crate::odoo::OdooError;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Odoo said no, or could not be reached.
    #[error(transparent)]
    Odoo(#[from] OdooError),
    /// The database (transient).
    #[error("database: {}", crate::queue::describe_pg(.0))]
    Db(#[from] tokio_postgres::Error),
    /// Odoo answered something the pull cannot use (permanent).
    #[error("unexpected answer from Odoo: {0}")]
    Unexpected(String),
    /// The order cannot be applied now (its push is running); try again later (transient).
    #[error("{0}")]
    Busy(String),
    /// The job asks for something that does not exist (permanent).
    #[error("{0}")]
    NotFound(String),
    /// The reconciliation found linked orders that `search` no longer lists but that Odoo
    /// refuses to read: record rules hide them from the API user; they are not deleted.
    #[error("reconciliation stopped, nothing cancelled: Odoo no longer lists {count} linked order(s) (ids {ids}) but refuses to read them, so the API user lost access to them (allowed companies, record rules) rather than they were deleted; give it access again. Odoo said: {source}")]
    Hidden {
        /// How many linked orders search missed.
        count: usize,
        /// Their Odoo ids (the first 20).
        ids: String,
        /// Odoo's refusal of the read.
        source: OdooError,
    },
}

impl PullError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PullError::Odoo(e) | PullError::Hidden { source: e, .. } => e.is_transient(),
            PullError::Db(_) | PullError::Busy(_) => true,
            PullError::Unexpected(_) | PullError::NotFound(_) => false,
        }
    }

    /// Odoo refused our credentials (see [`OdooError::is_credentials`]).
    pub fn is_credentials(&self) -> bool {
        matches!(self, PullError::Odoo(e) if e.is_credentials())
    }

    /// Short type name for the error JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            PullError::Odoo(e) | PullError::Hidden { source: e, .. } => e.kind(),
            PullError::Db(_) => "database",
            PullError::Unexpected(_) => "unexpected_answer",
            PullError::Busy(_) => "busy",
            PullError::NotFound(_) => "not_found",
        }
    }
}
