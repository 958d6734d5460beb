//! Pushing local orders to Odoo.
//!
//! - [`resolve`]: local supplier / product → Odoo `res.partner` / `product.product` ids;
//! - [`order_push`]: one order document → one idempotent Odoo write (`load` with external ids).

pub mod order_push;
pub mod resolve;

use crate::odoo::OdooError;

/// Why a push failed: an Odoo error (classified by the client), a reference that cannot be
/// resolved, a document we cannot read, or the database.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Odoo said no, or could not be reached.
    #[error(transparent)]
    Odoo(#[from] OdooError),
    /// A supplier or product that no strategy resolves (permanent).
    #[error("{0}")]
    Unresolved(String),
    /// The order document is not what the extension promises (permanent).
    #[error("bad order document: {0}")]
    Document(String),
    /// The database (transient).
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl PushError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PushError::Odoo(e) => e.is_transient(),
            PushError::Unresolved(_) | PushError::Document(_) => false,
            PushError::Db(_) => true,
        }
    }

    /// Short type name for the error JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            PushError::Odoo(e) => e.kind(),
            PushError::Unresolved(_) => "unresolved_reference",
            PushError::Document(_) => "bad_document",
            PushError::Db(_) => "database",
        }
    }
}
