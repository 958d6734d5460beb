//! The `pull` and `import` jobs of the queue.
//!
//! - `pull` (`odoo_sync.sync_order_from_odoo(id)`): one Odoo order, imported when it is not
//!   linked yet, merged when it is;
//! - `import` (`odoo_sync.import_orders(filter)`): the ids matching the typed filter are
//!   searched once (newest filter values never reach a domain as text), then read and handed
//!   over page by page; progress goes to `batch_status()` after each page. Orders already
//!   linked are merged, not imported again, and counted as skipped: running the same import
//!   twice imports each order once.

use serde_json::{json, Value};
use tokio_postgres::Client;

use super::remote::{apply, fetch, PAGE};
use super::PullError;
use crate::odoo::{Domain, OdooClient, Op};
use crate::queue::Job;

/// What a pull or import job produced, for `complete_job`.
pub type JobResult = Result<Value, PullError>;

/// Runs one `pull` job.
pub async fn pull_job(pg: &Client, odoo: &OdooClient, job: &Job) -> JobResult {
    let id = job
        .odoo_id
        .map(i64::from)
        .or_else(|| job.payload.as_ref()?.get("odoo_order_id")?.as_i64())
        .ok_or_else(|| PullError::NotFound("pull job without an Odoo order id".into()))?;
    let docs = fetch(pg, odoo, &[id]).await?;
    let Some(doc) = docs.first() else {
        return Err(PullError::NotFound(format!(
            "Odoo purchase.order {id} does not exist (deleted, or not readable by this user)"
        )));
    };
    let applied = apply(pg, doc, true, None).await?;
    if applied.outcome == "busy" {
        return Err(PullError::Busy(format!(
            "the local order of Odoo order {id} is being pushed right now; pulling it again shortly"
        )));
    }
    if applied.outcome == "stale" {
        // A push of the order finished while Odoo was being read: a fresh read says more.
        return Err(PullError::Busy(format!(
            "Odoo order {id} was read while its local order was being synced; reading it again shortly"
        )));
    }
    Ok(json!({"odoo_order_id": id, "outcome": applied.outcome, "apply": applied.answer}))
}

/// The Odoo domain of a stored import filter (keys validated by `import_orders`).
pub fn import_domain(filter: &Value) -> Domain {
    let mut domain = Domain::all();
    if let Some(from) = filter.get("date_from").and_then(Value::as_str) {
        domain = domain.and(Domain::leaf("date_order", Op::Ge, from));
    }
    if let Some(to) = filter.get("date_to").and_then(Value::as_str) {
        domain = domain.and(Domain::leaf("date_order", Op::Le, to));
    }
    if let Some(states) = filter.get("states").and_then(Value::as_array) {
        domain = domain.and(Domain::leaf("state", Op::In, Value::Array(states.clone())));
    }
    if let Some(partners) = filter.get("partner_ids").and_then(Value::as_array) {
        domain = domain.and(Domain::leaf(
            "partner_id",
            Op::In,
            Value::Array(partners.clone()),
        ));
    }
    domain
}

/// Runs one `import` job.
pub async fn import_job(pg: &Client, odoo: &OdooClient, job: &Job) -> JobResult {
    let filter = job
        .payload
        .as_ref()
        .and_then(|p| p.get("filter"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let limit = filter
        .get("limit")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let ids = odoo
        .search(
            "purchase.order",
            &import_domain(&filter),
            limit,
            Some("id asc"),
        )
        .await?;
    let (mut imported, mut skipped, mut failed) = (0u64, 0u64, 0u64);
    let mut errors: Vec<Value> = Vec::new();
    let progress = |imported: u64, skipped: u64, failed: u64, errors: &Vec<Value>| {
        json!({"found": ids.len(), "imported": imported, "skipped": skipped, "failed": failed,
               "errors": errors})
    };
    report(pg, job, &progress(0, 0, 0, &errors)).await?;
    for page in ids.chunks(PAGE) {
        for doc in fetch(pg, odoo, page).await? {
            match apply(pg, &doc, true, None).await {
                Ok(a) if a.outcome == "imported" => imported += 1,
                Ok(a) => {
                    skipped += 1;
                    if a.outcome == "stale" || a.outcome == "busy" {
                        // Linked already, and being synced right now: a pull reads it again.
                        if let Some(id) =
                            doc["odoo_id"].as_i64().and_then(|i| i32::try_from(i).ok())
                        {
                            pg.execute("SELECT odoo_sync.queue_pull($1)", &[&id])
                                .await?;
                        }
                    }
                }
                Err(e) => {
                    // One order that cannot be created here (a key without a default, a
                    // value that does not fit a column) does not stop the others.
                    failed += 1;
                    if errors.len() < 20 {
                        errors.push(json!({"odoo_order_id": doc["odoo_id"],
                                           "error": e.as_db_error().map(|d| d.message().to_string())
                                                .unwrap_or_else(|| e.to_string())}));
                    }
                }
            }
        }
        report(pg, job, &progress(imported, skipped, failed, &errors)).await?;
    }
    Ok(json!({"progress": progress(imported, skipped, failed, &errors)}))
}

async fn report(pg: &Client, job: &Job, progress: &Value) -> Result<(), PullError> {
    pg.execute(
        "SELECT odoo_sync.report_progress($1, $2, $3)",
        &[&job.job_id, &job.attempt_token, progress],
    )
    .await?;
    Ok(())
}
