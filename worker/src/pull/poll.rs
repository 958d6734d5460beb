//! Realtime pull: Odoo orders changed since the watermark (odoo-api.md "Batching and polling").
//!
//! Each poll asks for `write_date >= watermark - overlap`, ordered by `write_date asc, id asc`,
//! page by page. Odoo stamps `write_date` with the writing transaction's start, so a long
//! transaction can commit rows dated before the watermark: the overlap window catches them,
//! and the `(id, write_date)` pairs already applied inside the window are skipped. The
//! watermark is only ever a value Odoo returned, and it is stored in the database with the
//! pairs, after the orders were applied: a worker killed mid-poll reads the same orders again
//! (applying one twice changes nothing), never fewer. Odoo's `write_date` has one-second
//! resolution, so rows of the newest second are never counted as seen.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::NaiveDateTime;
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::remote::{apply, documents, order_fields, PAGE};
use super::PullError;
use crate::odoo::{Domain, OdooClient, Op};

/// Most pages one poll reads before it hands over to the push loop again.
pub const MAX_PAGES: usize = 25;

const ODOO_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Orders Odoo returned (overlap included).
    pub seen: usize,
    /// Orders handed to apply_remote (not skipped as already applied).
    pub handed: usize,
    /// Outcome counts (applied, unchanged, conflict, unlinked, busy, stale, failed).
    pub outcomes: BTreeMap<String, usize>,
    /// The watermark after the poll.
    pub watermark: Option<String>,
    /// Linked orders found deleted in Odoo by the reconciliation.
    pub deleted: usize,
}

/// Settings the poll follows (from `odoo_sync.get_settings()`).
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// `realtime_enabled`.
    pub enabled: bool,
    /// `poll_interval_seconds`.
    pub interval: Duration,
    /// `pull_overlap_seconds`.
    pub overlap: Duration,
    /// `reconcile_interval_seconds`.
    pub reconcile_every: Duration,
}

impl PollSettings {
    /// Reads the settings.
    pub async fn read(pg: &Client) -> Result<PollSettings, tokio_postgres::Error> {
        let s: Value = pg
            .query_one("SELECT odoo_sync.get_settings()", &[])
            .await?
            .try_get(0)?;
        let secs =
            |k: &str, d: u64| Duration::from_secs(s.get(k).and_then(Value::as_u64).unwrap_or(d));
        Ok(PollSettings {
            enabled: s
                .get("realtime_enabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            interval: secs("poll_interval_seconds", 10),
            overlap: secs("pull_overlap_seconds", 120),
            reconcile_every: secs("reconcile_interval_seconds", 300),
        })
    }
}

fn shift(watermark: &str, back: Duration) -> Option<String> {
    let t = NaiveDateTime::parse_from_str(watermark, ODOO_FORMAT).ok()?;
    let back = chrono::Duration::from_std(back).ok()?;
    Some((t - back).format(ODOO_FORMAT).to_string())
}

/// One poll: changed orders applied, position saved, deleted orders reconciled when due.
pub async fn poll_once(
    pg: &Client,
    odoo: &OdooClient,
    settings: &PollSettings,
) -> Result<PollReport, PullError> {
    let row = pg
        .query_opt("SELECT watermark, seen, reconciled_at IS NULL OR reconciled_at < now() - $1::text::interval \
                    FROM odoo_sync.pull_position()",
                   &[&format!("{} seconds", settings.reconcile_every.as_secs())])
        .await?;
    let (watermark, seen, reconcile_due): (Option<String>, Value, bool) = match &row {
        Some(r) => (
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get::<_, Option<bool>>(2)?.unwrap_or(true),
        ),
        None => (None, json!({}), true),
    };
    let mut seen: HashMap<String, String> = seen
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let fields = order_fields(odoo).await?;
    let order = "write_date asc, id asc";
    let mut report = PollReport::default();

    // First poll: start from the newest change Odoo has, minus the overlap.
    let start = match &watermark {
        Some(w) => w.clone(),
        None => {
            let newest = odoo
                .search_read(
                    "purchase.order",
                    &Domain::all(),
                    &["write_date"],
                    0,
                    Some(1),
                    Some("write_date desc, id desc"),
                )
                .await?;
            match newest
                .first()
                .and_then(|r| r.get("write_date"))
                .and_then(Value::as_str)
            {
                Some(w) => w.to_string(),
                None => {
                    pg.execute(
                        "SELECT odoo_sync.save_pull_position(NULL, '{}', $1)",
                        &[&reconcile_due],
                    )
                    .await?;
                    return Ok(report);
                }
            }
        }
    };
    let from = shift(&start, settings.overlap).ok_or_else(|| {
        PullError::Unexpected(format!("write_date {start:?} is not an Odoo datetime"))
    })?;
    let domain = Domain::leaf("write_date", Op::Ge, from.as_str());
    let mut new_watermark = start.clone();
    for page in 0..MAX_PAGES {
        let rows = odoo
            .search_read(
                "purchase.order",
                &domain,
                &fields,
                page * PAGE,
                Some(PAGE),
                Some(order),
            )
            .await?;
        report.seen += rows.len();
        let fresh: Vec<_> = rows
            .iter()
            .filter(|r| {
                let id = r
                    .get("id")
                    .and_then(Value::as_i64)
                    .unwrap_or_default()
                    .to_string();
                let wd = r
                    .get("write_date")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                seen.get(&id).map(String::as_str) != Some(wd)
            })
            .cloned()
            .collect();
        for doc in documents(odoo, &fresh).await? {
            let odoo_id = doc["odoo_id"].as_i64().unwrap_or_default() as i32;
            let outcome = match apply(pg, &doc, false, None).await {
                Ok(applied) => applied.outcome,
                // One order the database refuses (e.g. a value that does not fit a local
                // column) must not stop the pull of every other: it becomes a pull job, which
                // retries with backoff and ends in the dead letters with this error.
                Err(e) if e.as_db_error().is_some() => {
                    tracing::warn!(odoo_id, error = %crate::queue::describe_pg(&e), "cannot apply an Odoo order; queued as a pull job");
                    "failed".to_string()
                }
                Err(e) => return Err(e.into()),
            };
            if outcome == "busy" || outcome == "failed" {
                // Busy: its push is running; a pull job takes it up after the push.
                pg.execute("SELECT odoo_sync.queue_pull($1)", &[&odoo_id])
                    .await?;
            }
            *report.outcomes.entry(outcome).or_default() += 1;
            report.handed += 1;
            if let (Some(id), Some(wd)) = (doc["odoo_id"].as_i64(), doc["write_date"].as_str()) {
                seen.insert(id.to_string(), wd.to_string());
            }
        }
        for r in &rows {
            if let Some(wd) = r.get("write_date").and_then(Value::as_str) {
                if wd > new_watermark.as_str() {
                    new_watermark = wd.to_string();
                }
            }
        }
        if rows.len() < PAGE {
            break;
        }
    }
    // Only the pairs inside the next window matter, and not those of the newest second: a
    // record written again within that second keeps the same write_date, so those rows are
    // applied again by the next poll (unchanged ones cost one comparison in the database).
    let floor = shift(&new_watermark, settings.overlap).unwrap_or_default();
    seen.retain(|_, wd| wd.as_str() >= floor.as_str() && wd.as_str() < new_watermark.as_str());
    let seen_json = Value::Object(
        seen.into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    );

    if reconcile_due {
        report.deleted = reconcile(pg, odoo).await?;
    }
    pg.execute(
        "SELECT odoo_sync.save_pull_position($1, $2, $3)",
        &[&new_watermark, &seen_json, &reconcile_due],
    )
    .await?;
    report.watermark = Some(new_watermark);
    Ok(report)
}

/// Finds linked Odoo orders that no longer exist (Odoo deletes leave no trace in a
/// `write_date` poll) and tells the database. Returns how many were gone.
pub async fn reconcile(pg: &Client, odoo: &OdooClient) -> Result<usize, PullError> {
    let mut after = 0i32;
    let mut gone = 0;
    loop {
        let ids: Vec<i32> = pg
            .query("SELECT odoo_sync.linked_odoo_ids($1, 1000)", &[&after])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let Some(last) = ids.last() else { break };
        after = *last;
        let wanted: Vec<i64> = ids.iter().map(|i| i64::from(*i)).collect();
        let found: std::collections::HashSet<i64> = odoo
            .search("purchase.order", &Domain::ids(&wanted), None, None)
            .await?
            .into_iter()
            .collect();
        for id in wanted.iter().filter(|i| !found.contains(i)) {
            pg.execute("SELECT odoo_sync.remote_deleted($1)", &[&(*id as i32)])
                .await?;
            gone += 1;
        }
        if ids.len() < 1000 {
            break;
        }
    }
    Ok(gone)
}
