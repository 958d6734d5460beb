//! `odoo-sync-worker import`: asks the extension for an import batch
//! (`odoo_sync.import_orders(filter)`), works the queue in-process the way `sync` does (the
//! import job and anything else that is ready), and follows the batch with
//! `odoo_sync.batch_status(batch_id)` until no job of it is left.
//!
//! Progress comes from the batch alone — `found` / `imported` / `failed` / `skipped` as the
//! import job reports them through `complete_job` or `report_progress` — so it reads the same
//! whichever worker (this process or a `run` elsewhere) does the work.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::odoo::OdooClient;
use crate::push::resolve::Resolver;
use crate::run::run_batch;

/// The orders to import, as the command line gives them; keys of `import_orders`' filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportFilter {
    /// `date_from`: ISO date or timestamp; None imports orders of any date.
    pub since: Option<String>,
    /// `date_to`.
    pub until: Option<String>,
    /// `states`: Odoo order states.
    pub states: Vec<String>,
    /// `partner_ids`: Odoo partner ids.
    pub partner_ids: Vec<i64>,
    /// `limit`: most orders imported.
    pub limit: Option<i64>,
}

impl ImportFilter {
    /// The filter object `import_orders` takes. Values are passed as they are: the extension
    /// checks each key and says what is wrong.
    pub fn to_json(&self) -> Value {
        let mut f = serde_json::Map::new();
        if let Some(since) = &self.since {
            f.insert("date_from".into(), json!(since));
        }
        if let Some(until) = &self.until {
            f.insert("date_to".into(), json!(until));
        }
        if !self.states.is_empty() {
            f.insert("states".into(), json!(self.states));
        }
        if !self.partner_ids.is_empty() {
            f.insert("partner_ids".into(), json!(self.partner_ids));
        }
        if let Some(limit) = self.limit {
            f.insert("limit".into(), json!(limit));
        }
        Value::Object(f)
    }
}

/// Why an import could not be run or followed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The connected role may not request imports.
    #[error("role {role} may not request imports (odoo_sync.import_orders needs odoo_sync_admin): as a superuser, GRANT odoo_sync_admin TO {role}; or set DATABASE_URL to a login that has odoo_sync_admin and odoo_sync_worker")]
    NotAllowed {
        /// The connected role.
        role: String,
    },
    /// The extension refused the filter.
    #[error("odoo_sync.import_orders refused the filter {filter}: {message}")]
    Refused {
        /// The filter sent.
        filter: String,
        /// The extension's message and hint.
        message: String,
    },
    /// PostgreSQL failed while following the batch.
    #[error("{what}: {message}")]
    Db {
        /// What was being done.
        what: String,
        /// PostgreSQL's message.
        message: String,
    },
    /// Stopped by the operator; the batch goes on with any running worker.
    #[error("interrupted: batch {batch_id} goes on with any running worker; follow it with SELECT * FROM odoo_sync.batch_status({batch_id})")]
    Interrupted {
        /// The batch.
        batch_id: i64,
    },
}

/// The database error's message, detail and hint, or the error itself.
fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_string();
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => e.to_string(),
    }
}

fn db(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ImportError {
    let what = what.into();
    move |e| ImportError::Db {
        what,
        message: pg_text(&e),
    }
}

/// One reading of `odoo_sync.batch_status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchStatus {
    /// Orders found in Odoo (0 until the import job has searched).
    pub total: i32,
    /// Imported.
    pub successful: i32,
    /// Failed.
    pub failed: i32,
    /// Skipped (already linked, or not importable).
    pub skipped: i32,
    /// Jobs of the batch still in the queue.
    pub pending: i32,
    /// Time since the batch was created, or until its last job finished.
    pub seconds: f64,
}

impl BatchStatus {
    /// Reads the batch's status.
    pub async fn read(pg: &Client, batch_id: i64) -> Result<BatchStatus, tokio_postgres::Error> {
        let row = pg
            .query_one(
                "SELECT total, successful, failed, skipped, pending,
                        extract(epoch FROM duration)::float8
                 FROM odoo_sync.batch_status($1)",
                &[&batch_id],
            )
            .await?;
        Ok(BatchStatus {
            total: row.try_get(0)?,
            successful: row.try_get(1)?,
            failed: row.try_get(2)?,
            skipped: row.try_get(3)?,
            pending: row.try_get(4)?,
            seconds: row.try_get::<_, Option<f64>>(5)?.unwrap_or(0.0),
        })
    }

    /// No job of the batch is left.
    pub fn finished(&self) -> bool {
        self.pending == 0
    }

    /// `imported 40/120, failed 0, skipped 3`.
    pub fn line(&self) -> String {
        let total = if self.total > 0 || self.finished() {
            self.total.to_string()
        } else {
            "?".into()
        };
        format!(
            "imported {}/{total}, failed {}, skipped {}",
            self.successful, self.failed, self.skipped
        )
    }

    /// `[#########-----------]  40/120 imported, 0 failed, 3 skipped  2.1 s`, `width` marks wide.
    pub fn bar(&self, width: usize) -> String {
        let done = (self.successful + self.failed + self.skipped).max(0) as usize;
        let filled = match self.total {
            t if t > 0 => (done.min(t as usize) * width) / t as usize,
            _ => 0,
        };
        let total = if self.total > 0 {
            self.total.to_string()
        } else {
            "?".into()
        };
        format!(
            "[{}{}] {}/{total} imported, {} failed, {} skipped  {:.1} s",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.successful,
            self.failed,
            self.skipped,
            self.seconds
        )
    }
}

/// What the command prints as the batch moves: on a terminal one line redrawn in place, else a
/// plain line each time the figures change.
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    last: Option<String>,
}

impl Progress {
    /// A printer for a terminal (`tty`) or for a log / pipe.
    pub fn new(tty: bool) -> Self {
        Progress { tty, last: None }
    }

    /// The text to write for `status`, if any.
    pub fn update(&mut self, status: &BatchStatus) -> Option<String> {
        if self.tty {
            // \r and "erase line": the bar is redrawn in place, whatever was there.
            return Some(format!("\r\x1b[2K{}", status.bar(30)));
        }
        let line = status.line();
        if self.last.as_deref() == Some(line.as_str()) {
            return None;
        }
        self.last = Some(line.clone());
        Some(format!("{line}\n"))
    }

    /// What to write before the summary (ends the redrawn line).
    pub fn finish(&self) -> &'static str {
        if self.tty {
            "\n"
        } else {
            ""
        }
    }
}

/// The end of an import.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// The batch.
    pub batch_id: i64,
    /// Its final status.
    pub status: BatchStatus,
    /// Errors of the batch's jobs seen by this process (`job <id>: <message>`).
    pub errors: Vec<String>,
}

impl ImportOutcome {
    /// `import batch 7: found 120, imported 117, failed 0, skipped 3 in 4.2 s`, then the errors.
    pub fn summary(&self) -> String {
        let s = &self.status;
        let mut out = format!(
            "import batch {}: found {}, imported {}, failed {}, skipped {} in {:.1} s\n",
            self.batch_id, s.total, s.successful, s.failed, s.skipped, s.seconds
        );
        for e in self.errors.iter().take(20) {
            out.push_str(&format!("  {e}\n"));
        }
        if self.errors.len() > 20 {
            out.push_str(&format!("  ... and {} more\n", self.errors.len() - 20));
        }
        out
    }

    /// Nothing failed.
    pub fn succeeded(&self) -> bool {
        self.status.failed == 0
    }
}

/// The per-order errors an import job recorded in its batch's progress (`errors`:
/// `{odoo_order_id, error}`), as `Odoo order <id>: <error>`. `None` when this role may not read
/// `odoo_sync.batches` (only its owner may; `batch_status` gives the counts alone).
pub async fn recorded_errors(pg: &Client, batch_id: i64) -> Option<Vec<String>> {
    let row = pg
        .query_opt(
            "SELECT progress -> 'errors' FROM odoo_sync.batches WHERE id = $1",
            &[&batch_id],
        )
        .await
        .ok()??;
    let errors: Option<Value> = row.try_get(0).ok()?;
    Some(
        errors
            .as_ref()
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|e| match (e.get("odoo_order_id"), e.get("error")) {
                        (Some(id), Some(Value::String(m))) => format!("Odoo order {id}: {m}"),
                        _ => e.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Requests the import; returns the batch id.
pub async fn start(pg: &Client, filter: &ImportFilter) -> Result<i64, ImportError> {
    let sent = filter.to_json();
    match pg
        .query_one("SELECT odoo_sync.import_orders($1::jsonb)", &[&sent])
        .await
    {
        Ok(row) => row.try_get(0).map_err(db("reading the batch id")),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            let role = pg
                .query_one("SELECT current_user::text", &[])
                .await
                .and_then(|r| r.try_get::<_, String>(0))
                .unwrap_or_else(|_| "this role".into());
            Err(ImportError::NotAllowed { role })
        }
        Err(e) if e.as_db_error().is_some() => Err(ImportError::Refused {
            filter: sent.to_string(),
            message: pg_text(&e),
        }),
        Err(e) => Err(db("odoo_sync.import_orders")(e)),
    }
}

/// Works the queue until no job of `batch_id` is left (or `stop` resolves), calling `seen`
/// with each reading of the batch's status: between batches, and every `tick` while one is in
/// flight when a `monitor` connection is given (the import job itself runs inside a batch, and
/// reports its progress as it goes).
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    pg: &Client,
    monitor: Option<&Client>,
    odoo: &OdooClient,
    worker_id: &str,
    batch_id: i64,
    claim_size: i32,
    stop: impl Future<Output = ()>,
    mut seen: impl FnMut(&BatchStatus),
) -> Result<ImportOutcome, ImportError> {
    let tick = Duration::from_millis(250);
    tokio::pin!(stop);
    let mut resolver = Resolver::new();
    let mut errors = Vec::new();
    let mut jobs: BTreeSet<i64> = BTreeSet::new();
    let started = Instant::now();
    loop {
        // The import may queue further jobs under its batch: the set is refreshed each round.
        for row in pg
            .query(
                "SELECT job_id FROM odoo_sync.queue WHERE batch_id = $1",
                &[&batch_id],
            )
            .await
            .map_err(db("reading the batch's jobs"))?
        {
            jobs.insert(row.try_get(0).map_err(db("reading the batch's jobs"))?);
        }
        let status = BatchStatus::read(pg, batch_id)
            .await
            .map_err(db(format!("odoo_sync.batch_status({batch_id})")))?;
        seen(&status);
        if status.finished() {
            if status.failed > 0 {
                match recorded_errors(pg, batch_id).await {
                    Some(recorded) => errors.extend(recorded),
                    None if errors.is_empty() => errors.push(format!(
                        "the reasons are in odoo_sync.batches.progress -> 'errors' of batch {batch_id}, readable by the extension's owner"
                    )),
                    None => {}
                }
            }
            return Ok(ImportOutcome {
                batch_id,
                status,
                errors,
            });
        }
        let work = run_batch(pg, odoo, &mut resolver, worker_id, claim_size);
        tokio::pin!(work);
        let reports = loop {
            tokio::select! {
                r = &mut work => break r.map_err(db("working the queue"))?,
                () = &mut stop => return Err(ImportError::Interrupted { batch_id }),
                () = tokio::time::sleep(tick), if monitor.is_some() => {
                    if let Some(m) = monitor {
                        // A failed reading only delays the display; the loop reads again.
                        if let Ok(s) = BatchStatus::read(m, batch_id).await {
                            seen(&s);
                        }
                    }
                }
            }
        };
        for r in &reports {
            if let (true, Some(e)) = (jobs.contains(&r.job_id), &r.error) {
                errors.push(format!("job {} ({}): {e}", r.job_id, r.state));
            }
        }
        if reports.is_empty() {
            // The batch's job is waiting for a retry, or another worker holds it.
            let pause = if started.elapsed() < Duration::from_secs(2) {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(500)
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut stop => return Err(ImportError::Interrupted { batch_id }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keys() {
        assert_eq!(ImportFilter::default().to_json(), json!({}));
        let f = ImportFilter {
            since: Some("2026-01-01".into()),
            ..ImportFilter::default()
        };
        assert_eq!(f.to_json(), json!({"date_from": "2026-01-01"}));
        let f = ImportFilter {
            since: Some("2026-01-01".into()),
            until: Some("2026-02-01T12:00:00Z".into()),
            states: vec!["purchase".into(), "to approve".into()],
            partner_ids: vec![7, 9],
            limit: Some(50),
        };
        assert_eq!(
            f.to_json(),
            json!({"date_from": "2026-01-01", "date_to": "2026-02-01T12:00:00Z",
                   "states": ["purchase", "to approve"], "partner_ids": [7, 9], "limit": 50})
        );
    }

    #[test]
    fn progress_lines() {
        let mut s = BatchStatus {
            pending: 1,
            ..BatchStatus::default()
        };
        assert_eq!(s.line(), "imported 0/?, failed 0, skipped 0");
        s.total = 120;
        s.successful = 40;
        s.skipped = 3;
        s.seconds = 2.06;
        assert_eq!(s.line(), "imported 40/120, failed 0, skipped 3");
        assert_eq!(
            s.bar(10),
            "[###-------] 40/120 imported, 0 failed, 3 skipped  2.1 s"
        );
        let mut plain = Progress::new(false);
        assert_eq!(
            plain.update(&s).as_deref(),
            Some("imported 40/120, failed 0, skipped 3\n")
        );
        assert_eq!(plain.update(&s), None);
        let mut tty = Progress::new(true);
        assert!(tty.update(&s).unwrap().starts_with("\r\x1b[2K[#########"));
        s.pending = 0;
        s.total = 0;
        assert_eq!(s.line(), "imported 40/0, failed 0, skipped 3");
        // More done than found (a late `found`) never overflows the bar.
        s.total = 10;
        assert!(s.bar(10).starts_with("[##########]"));
    }
}
