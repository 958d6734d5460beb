//! Pushing local orders to Odoo.
//!
//! - [`resolve`]: local supplier / product → Odoo `res.partner` / `product.product` ids;
//! - [`order_push`]: one order document → one idempotent Odoo write (`load` with external ids);
//! - [`line_write`]: which lines a push writes, and what of them (only what changed);
//! - [`linked_push`]: orders imported from Odoo (linked by database id) written by id;
//! - [`batch`]: many order documents → one `load` and one `read` per chunk, chunks written
//!   concurrently, poison orders isolated;
//! - [`status_action`]: the Odoo call that moves an order to its local status.

pub mod batch;
pub mod line_write;
pub mod linked_push;
pub mod order_push;
pub mod resolve;
pub mod status_action;

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
    /// Odoo refused the order, which names a vendor or product Odoo no longer has (merged into
    /// another record, deleted) since it was resolved: the next attempt resolves it again
    /// (transient).
    #[error("{0}")]
    StaleReference(String),
    /// The database (transient).
    #[error("database: {}", crate::queue::describe_pg(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A database error shared by several orders of one batch (transient).
    #[error("database: {0}")]
    DbShared(String),
    /// Odoo changed the order while the push wrote it (a line it had moments before is gone):
    /// the next attempt reads it first (transient).
    #[error("{0}")]
    ChangedInOdoo(String),
}

impl PushError {
    /// Whether a later attempt may succeed. An order or line Odoo no longer has is one the push
    /// read moments before: an Odoo user deleted it in between. The next attempt reads the order
    /// again and pushes against what Odoo then holds.
    pub fn is_transient(&self) -> bool {
        match self {
            PushError::Odoo(e) => {
                e.is_transient()
                    || e.is_missing("purchase.order.line")
                    || e.is_missing("purchase.order")
            }
            PushError::Unresolved(_) | PushError::Document(_) => false,
            PushError::StaleReference(_)
            | PushError::ChangedInOdoo(_)
            | PushError::Db(_)
            | PushError::DbShared(_) => true,
        }
    }

    /// Odoo refused our credentials (see [`OdooError::is_credentials`]).
    pub fn is_credentials(&self) -> bool {
        matches!(self, PushError::Odoo(e) if e.is_credentials())
    }

    /// Short type name for the error JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            PushError::Odoo(e) => e.kind(),
            PushError::Unresolved(_) => "unresolved_reference",
            PushError::Document(_) => "bad_document",
            PushError::StaleReference(_) => "stale_reference",
            PushError::Db(_) | PushError::DbShared(_) => "database",
            PushError::ChangedInOdoo(_) => "changed_in_odoo",
        }
    }

    /// The same error for another order of the batch it hit.
    pub fn duplicate(&self) -> PushError {
        match self {
            PushError::Odoo(e) => PushError::Odoo(e.clone()),
            PushError::Unresolved(m) => PushError::Unresolved(m.clone()),
            PushError::Document(m) => PushError::Document(m.clone()),
            PushError::StaleReference(m) => PushError::StaleReference(m.clone()),
            PushError::Db(e) => PushError::DbShared(e.to_string()),
            PushError::DbShared(m) => PushError::DbShared(m.clone()),
            PushError::ChangedInOdoo(m) => PushError::ChangedInOdoo(m.clone()),
        }
    }
}

/// Notes in the database what pushes are about to write to Odoo, before writing it
/// (`odoo_sync.note_attempts`): when a reply is lost, the next merge recognises our own write.
/// Each element: the order's document and the canonical snapshot of what will be written.
///
/// One statement per order, pipelined on the connection, each committed on its own: an
/// application transaction that changes an order holds its state row until it commits (capture
/// writes the order's version there), and a statement that waits for it then holds no other
/// state row. One statement for the whole batch would wait while holding the rows it had
/// already updated, and deadlock with an application transaction that changes two of them.
pub async fn note_attempts(
    pg: &tokio_postgres::Client,
    attempts: &[(&serde_json::Value, serde_json::Value)],
) -> Result<(), PushError> {
    let notes = attempts.iter().map(|(doc, snapshot)| {
        let one = serde_json::json!([{
            "tracking_id": doc["tracking_id"],
            "order_key": doc["order_key"],
            "status": doc["order"]["status"],
            "snapshot": snapshot,
        }]);
        async move {
            pg.execute("SELECT odoo_sync.note_attempts($1)", &[&one])
                .await
        }
    });
    for noted in batch::join_all(notes.collect()).await {
        noted?;
    }
    Ok(())
}
