//! The worker's side of the SQL contract (sql/queue.sql, sql/monitoring.sql): claim jobs, read
//! an order document, complete or fail a job with its attempt token, heartbeat. Each call is
//! its own statement on an autocommit connection: one job per transaction.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// A PostgreSQL error as the server put it: message and SQLSTATE, then detail and hint
/// (tokio_postgres's own Display is only "db error").
pub fn describe_pg(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut out = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                out.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                out.push_str(&format!("; hint: {hint}"));
            }
            out
        }
        None => {
            // Connection errors carry their cause one level down.
            match std::error::Error::source(e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            }
        }
    }
}

/// One claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Job id.
    pub job_id: i64,
    /// push, pull or import.
    pub kind: String,
    /// Local order key (push).
    pub order_key: Option<String>,
    /// Job payload.
    pub payload: Option<Value>,
    /// Token proving this claim; required to finish the job.
    pub attempt_token: i64,
    /// Tracking the order belongs to.
    pub tracking_id: Option<i32>,
    /// Odoo order id known when the job was claimed.
    pub odoo_id: Option<i32>,
    /// Attempt number.
    pub attempt: i32,
    /// Version of the order when claimed.
    pub version: Option<i64>,
}

fn interval(d: Duration) -> String {
    format!("{} milliseconds", d.as_millis())
}

/// `odoo_sync.claim_jobs`.
pub async fn claim(
    pg: &Client,
    worker_id: &str,
    max_jobs: i32,
    lease: Duration,
) -> Result<Vec<Job>, tokio_postgres::Error> {
    let rows = pg
        .query(
            "SELECT job_id, kind, order_key, payload, attempt_token, tracking_id, odoo_id, attempt, version \
             FROM odoo_sync.claim_jobs($1, $2, $3::text::interval)",
            &[&worker_id, &max_jobs, &interval(lease)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Job {
                job_id: r.try_get(0)?,
                kind: r.try_get(1)?,
                order_key: r.try_get(2)?,
                payload: r.try_get(3)?,
                attempt_token: r.try_get(4)?,
                tracking_id: r.try_get(5)?,
                odoo_id: r.try_get(6)?,
                attempt: r.try_get::<_, Option<i32>>(7)?.unwrap_or(0),
                version: r.try_get(8)?,
            })
        })
        .collect()
}

/// `odoo_sync.order_document`.
pub async fn order_document(
    pg: &Client,
    tracking_id: i32,
    order_key: &str,
) -> Result<Value, tokio_postgres::Error> {
    let row = pg
        .query_one(
            "SELECT odoo_sync.order_document($1, $2)",
            &[&tracking_id, &order_key],
        )
        .await?;
    row.try_get(0)
}

/// `odoo_sync.order_documents`: the documents of many orders in one call, in the order asked.
pub async fn order_documents(
    pg: &Client,
    orders: &[(i32, String)],
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let trackings: Vec<i32> = orders.iter().map(|o| o.0).collect();
    let keys: Vec<&str> = orders.iter().map(|o| o.1.as_str()).collect();
    let rows = pg
        .query(
            "SELECT d.document FROM odoo_sync.order_documents($1::int[], $2::text[]) d ORDER BY d.n",
            &[&trackings, &keys],
        )
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// `odoo_sync.extend_leases`: the ids of the jobs still held.
pub async fn extend_leases(
    pg: &Client,
    worker_id: &str,
    job_ids: &[i64],
    lease: Duration,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let rows = pg
        .query(
            "SELECT odoo_sync.extend_leases($1, $2, $3::text::interval)",
            &[&worker_id, &job_ids, &interval(lease)],
        )
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// `odoo_sync.complete_job`: 'done' or 'requeued'.
///
/// The reports of jobs are sent with their parameter types (one round trip, not a prepare
/// and then an execute): every finished job makes one, so the round trip counts.
pub async fn complete(
    pg: &Client,
    job: &Job,
    result: &Value,
) -> Result<String, tokio_postgres::Error> {
    let row = pg
        .query_typed_one(
            "SELECT odoo_sync.complete_job($1, $2, $3)",
            &[
                (&job.job_id, Type::INT8),
                (&job.attempt_token, Type::INT8),
                (result, Type::JSONB),
            ],
        )
        .await?;
    row.try_get(0)
}

/// `odoo_sync.fail_job`: 'retry', 'requeued' or 'dead'.
pub async fn fail(
    pg: &Client,
    job: &Job,
    error_type: &str,
    message: &str,
    odoo_error: Option<&str>,
    permanent: bool,
    retry_after: Option<Duration>,
) -> Result<String, tokio_postgres::Error> {
    let error = json!({"type": error_type, "message": message, "odoo_error": odoo_error});
    let retry = retry_after.map(|d| interval(d.min(Duration::from_secs(86_400))));
    let row = pg
        .query_typed_one(
            "SELECT odoo_sync.fail_job($1, $2, $3, $4, $5::text::interval)",
            &[
                (&job.job_id, Type::INT8),
                (&job.attempt_token, Type::INT8),
                (&error, Type::JSONB),
                (&permanent, Type::BOOL),
                (&retry, Type::TEXT),
            ],
        )
        .await?;
    row.try_get(0)
}

/// `odoo_sync.requeue_job`: hands a running job back without counting an attempt, to run
/// again after `retry_in`. 'queued', or 'held' while its order is in conflict.
pub async fn requeue(
    pg: &Client,
    job: &Job,
    retry_in: Duration,
) -> Result<String, tokio_postgres::Error> {
    let row = pg
        .query_one(
            "SELECT odoo_sync.requeue_job($1, $2, $3::text::interval)",
            &[&job.job_id, &job.attempt_token, &interval(retry_in)],
        )
        .await?;
    row.try_get(0)
}

/// `odoo_sync.heartbeat`.
pub async fn heartbeat(
    pg: &Client,
    worker_id: &str,
    info: &Value,
) -> Result<Value, tokio_postgres::Error> {
    pg.query_one("SELECT odoo_sync.heartbeat($1, $2)", &[&worker_id, info])
        .await?
        .try_get(0)
}
