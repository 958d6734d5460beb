//! Realtime pull: Odoo orders changed since the watermark (odoo-api.md "Batching and polling").
//!
//! Each poll asks for `write_date >= watermark - overlap`, ordered by `write_date asc, id asc`.
//! Odoo stamps `write_date` with the writing transaction's start, so a long transaction can
//! commit rows dated before the watermark: the overlap window catches them. Rows already
//! applied inside the window are skipped when they come back with the same `write_date` and the
//! same content (a fingerprint of the row): a second transaction that started in the same
//! second as the first and committed later has the same `write_date`, but not the same row.
//! The watermark is only ever a value Odoo returned, and it is stored in the database with the
//! pairs, after the orders were applied: a worker killed mid-poll reads the same orders again
//! (applying one twice changes nothing), never fewer. Odoo's `write_date` has one-second
//! resolution, so rows of the newest second are never counted as seen.
//!
//! Pages follow a key, not an offset: the next page starts at the second of the last row read,
//! leaving out the ids already read in that second. An order edited in Odoo while the poll
//! pages moves to the end of the order, which with offsets shifted every later row and skipped
//! one at each page boundary. A pass that runs out of pages saves where it stopped, and the
//! next poll goes on from there rather than from the overlap again: otherwise a window holding
//! more rows than one poll reads (a mass edit in Odoo) would be read again and again, and the
//! watermark would never pass it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use chrono::NaiveDateTime;
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::remote::{apply, database_clock, documents, order_fields, PAGE};
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
    /// Distinct Odoo orders among them.
    pub orders: usize,
    /// True when the poll ran out of pages before the end of the changes: the next poll goes
    /// on from where this one stopped.
    pub resumes: bool,
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
    /// Most pages one poll reads ([`MAX_PAGES`]); the rest is for the next poll.
    pub max_pages: usize,
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
            max_pages: MAX_PAGES,
        })
    }
}

/// Key of the `seen` entry that holds where an unfinished pass stopped (the other keys are
/// Odoo order ids).
const RESUME_KEY: &str = "resume";

/// Where paging goes on: rows from the second `second` on, except the ids already read in it.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    second: String,
    ids: Vec<i64>,
}

impl Cursor {
    /// The rows after the cursor: those of later seconds, and those of its second not read
    /// yet. (Odoo stores `write_date` with microseconds but returns it cut to the second, so a
    /// row of the same second can compare greater than the second's value: the later seconds
    /// are asked for from the next second on.) An order read in the cursor's second and
    /// edited since has a later second: it is read again.
    fn domain(&self) -> Domain {
        let from = Domain::leaf("write_date", Op::Ge, self.second.as_str());
        if self.ids.is_empty() {
            return from;
        }
        let same_second = from.and(Domain::leaf("id", Op::NotIn, json!(self.ids)));
        match shift(&self.second, Duration::from_secs(1), true) {
            Some(next) => Domain::leaf("write_date", Op::Ge, next.as_str()).or(same_second),
            None => same_second,
        }
    }

    /// Moves past `rows` (a page, in `write_date, id` order).
    fn advance(&mut self, rows: &[serde_json::Map<String, Value>]) {
        for r in rows {
            let (Some(wd), Some(id)) = (
                r.get("write_date").and_then(Value::as_str),
                r.get("id").and_then(Value::as_i64),
            ) else {
                continue;
            };
            if wd != self.second {
                self.second = wd.to_string();
                self.ids.clear();
            }
            self.ids.push(id);
        }
    }

    fn to_json(&self) -> Value {
        json!({"second": self.second, "ids": self.ids})
    }

    fn from_json(v: &Value) -> Option<Cursor> {
        Some(Cursor {
            second: v.get("second")?.as_str()?.to_string(),
            ids: v
                .get("ids")?
                .as_array()?
                .iter()
                .filter_map(Value::as_i64)
                .collect(),
        })
    }
}

/// What `seen` remembers of an applied row: its `write_date` and a fingerprint of the row.
fn seen_value(row: &serde_json::Map<String, Value>) -> String {
    let mut h = DefaultHasher::new();
    Value::Object(row.clone()).to_string().hash(&mut h);
    let wd = row
        .get("write_date")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{wd} {:016x}", h.finish())
}

/// The `write_date` part of a `seen` value (`YYYY-MM-DD HH:MM:SS`, then the fingerprint).
fn seen_write_date(v: &str) -> &str {
    v.get(..ODOO_FORMAT_LEN).unwrap_or(v)
}

/// Length of an Odoo datetime, `YYYY-MM-DD HH:MM:SS`.
const ODOO_FORMAT_LEN: usize = 19;

/// `watermark` moved by `by`, back or (`forward`) ahead.
fn shift(watermark: &str, by: Duration, forward: bool) -> Option<String> {
    let t = NaiveDateTime::parse_from_str(watermark, ODOO_FORMAT).ok()?;
    let by = chrono::Duration::from_std(by).ok()?;
    let t = if forward { t + by } else { t - by };
    Some(t.format(ODOO_FORMAT).to_string())
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
    let resume = seen.get(RESUME_KEY).and_then(Cursor::from_json);
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
    let from = shift(&start, settings.overlap, false).ok_or_else(|| {
        PullError::Unexpected(format!("write_date {start:?} is not an Odoo datetime"))
    })?;
    let mut cursor = resume.unwrap_or(Cursor {
        second: from,
        ids: Vec::new(),
    });
    let mut new_watermark = start.clone();
    let mut orders = HashSet::new();
    report.resumes = true;
    for _ in 0..settings.max_pages.max(1) {
        let read_at = database_clock(pg).await?;
        let rows = odoo
            .search_read(
                "purchase.order",
                &cursor.domain(),
                &fields,
                0,
                Some(PAGE),
                Some(order),
            )
            .await?;
        report.seen += rows.len();
        let mut fresh = Vec::new();
        let mut fingerprints: HashMap<i64, String> = HashMap::new();
        for r in &rows {
            let id = r.get("id").and_then(Value::as_i64).unwrap_or_default();
            orders.insert(id);
            let fingerprint = seen_value(r);
            if seen.get(&id.to_string()) != Some(&fingerprint) {
                fresh.push(r.clone());
                fingerprints.insert(id, fingerprint);
            }
        }
        for doc in documents(odoo, &fresh, &read_at).await? {
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
            // Busy: its push is running. Stale: a push finished while this page was read.
            // Either way a pull job reads it afresh after the push, and it is not marked seen,
            // so the next poll applies it too (a pull job already running may have read it
            // before this change). Failed: the pull job retries it and reports the error.
            let again = outcome == "busy" || outcome == "stale";
            if again || outcome == "failed" {
                pg.execute("SELECT odoo_sync.queue_pull($1)", &[&odoo_id])
                    .await?;
            }
            *report.outcomes.entry(outcome).or_default() += 1;
            report.handed += 1;
            if let Some(fingerprint) = fingerprints.get(&i64::from(odoo_id)).filter(|_| !again) {
                seen.insert(odoo_id.to_string(), fingerprint.clone());
            }
        }
        for r in &rows {
            if let Some(wd) = r.get("write_date").and_then(Value::as_str) {
                if wd > new_watermark.as_str() {
                    new_watermark = wd.to_string();
                }
            }
        }
        cursor.advance(&rows);
        if rows.len() < PAGE {
            report.resumes = false;
            break;
        }
    }
    report.orders = orders.len();
    // Only the pairs inside the next window matter, and not those of the newest second: a
    // record written again within that second keeps the same write_date, so those rows are
    // applied again by the next poll (unchanged ones cost one comparison in the database).
    let floor = shift(&new_watermark, settings.overlap, false).unwrap_or_default();
    seen.retain(|_, v| {
        let wd = seen_write_date(v);
        wd >= floor.as_str() && wd < new_watermark.as_str()
    });
    let mut seen_json: serde_json::Map<String, Value> = seen
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if report.resumes {
        seen_json.insert(RESUME_KEY.to_string(), cursor.to_json());
    }
    let seen_json = Value::Object(seen_json);

    // The position first: a reconciliation that fails (Odoo refusing to read hidden orders)
    // must not hold the pull back, or every later poll would read a growing window again.
    let save = "SELECT odoo_sync.save_pull_position($1, $2, $3)";
    pg.execute(save, &[&new_watermark, &seen_json, &false])
        .await?;
    report.watermark = Some(new_watermark.clone());
    if reconcile_due {
        report.deleted = reconcile(pg, odoo).await?;
        pg.execute(save, &[&new_watermark, &seen_json, &true])
            .await?;
    }
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
        let found: HashSet<i64> = odoo
            .search("purchase.order", &Domain::ids(&wanted), None, None)
            .await?
            .into_iter()
            .collect();
        let missing: Vec<i64> = wanted
            .iter()
            .copied()
            .filter(|i| !found.contains(i))
            .collect();
        // `search` leaves out, without a word, what record rules hide from the API user (an
        // order of a company it lost access to); `read` answers a deleted id with nothing and
        // a hidden one with an AccessError, which stops the reconciliation here instead of
        // cancelling orders that still exist.
        let still_there = match odoo.read("purchase.order", &missing, &["id"]).await {
            Ok(rows) => rows,
            Err(e) if e.odoo_name() == Some("odoo.exceptions.AccessError") => {
                let ids: Vec<String> = missing.iter().take(20).map(i64::to_string).collect();
                return Err(PullError::Hidden {
                    count: missing.len(),
                    ids: ids.join(", "),
                    source: e,
                });
            }
            Err(e) => return Err(e.into()),
        };
        for id in deleted_ids(&missing, &still_there) {
            cancel_deleted_locally(pg, id).await?;
            gone += 1;
        }
        if ids.len() < 1000 {
            break;
        }
    }
    Ok(gone)
}

/// Tells the database that Odoo no longer has order `odoo_id` (`remote_deleted`: the local
/// order is cancelled and unlinked).
pub(crate) async fn cancel_deleted_locally(
    pg: &Client,
    odoo_id: i64,
) -> Result<(), tokio_postgres::Error> {
    // Odoo ids are `integer` in the database; a larger one cannot be linked to anything.
    let Ok(odoo_id) = i32::try_from(odoo_id) else {
        return Ok(());
    };
    pg.execute("SELECT odoo_sync.remote_deleted($1)", &[&odoo_id])
        .await?;
    Ok(())
}

/// The ids of `asked` that `read` did not return: deleted (`read` answers a deleted id with
/// nothing, and a hidden one with an AccessError for the whole call).
pub(crate) fn deleted_ids(asked: &[i64], read: &[serde_json::Map<String, Value>]) -> Vec<i64> {
    let read: HashSet<i64> = read
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_i64))
        .collect();
    asked
        .iter()
        .copied()
        .filter(|i| !read.contains(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, write_date: &str, state: &str) -> serde_json::Map<String, Value> {
        json!({"id": id, "write_date": write_date, "state": state})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn the_cursor_goes_on_after_the_ids_of_its_second() {
        let mut c = Cursor {
            second: "2026-01-01 09:59:00".into(),
            ids: vec![],
        };
        assert_eq!(
            c.domain().to_value(),
            json!([["write_date", ">=", "2026-01-01 09:59:00"]])
        );
        c.advance(&[
            row(4, "2026-01-01 09:59:30", "draft"),
            row(2, "2026-01-01 10:00:00", "draft"),
            row(3, "2026-01-01 10:00:00", "draft"),
        ]);
        assert_eq!(c.second, "2026-01-01 10:00:00");
        assert_eq!(c.ids, [2, 3]);
        assert_eq!(
            c.domain().to_value(),
            json!([
                "|",
                ["write_date", ">=", "2026-01-01 10:00:01"],
                "&",
                ["write_date", ">=", "2026-01-01 10:00:00"],
                ["id", "not in", [2, 3]]
            ])
        );
        c.advance(&[row(1, "2026-01-01 10:00:00", "draft")]);
        assert_eq!(c.ids, [2, 3, 1]);
        assert_eq!(Cursor::from_json(&c.to_json()), Some(c));
        assert_eq!(Cursor::from_json(&json!({"second": 5})), None);
    }

    #[test]
    fn only_what_read_does_not_return_is_deleted() {
        let read = [row(5, "2026-01-01 10:00:00", "draft")];
        assert_eq!(deleted_ids(&[4, 5, 6], &read), [4, 6]);
        assert!(deleted_ids(&[], &read).is_empty());
    }

    #[test]
    fn seen_tells_a_changed_row_of_the_same_second() {
        let first = seen_value(&row(7, "2026-01-01 10:00:00", "draft"));
        assert_eq!(first, seen_value(&row(7, "2026-01-01 10:00:00", "draft")));
        assert_ne!(
            first,
            seen_value(&row(7, "2026-01-01 10:00:00", "purchase"))
        );
        assert_eq!(seen_write_date(&first), "2026-01-01 10:00:00");
        // Positions saved before fingerprints hold the write_date alone.
        assert_eq!(
            seen_write_date("2026-01-01 10:00:00"),
            "2026-01-01 10:00:00"
        );
    }
}
