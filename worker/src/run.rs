//! The push loop: claim a batch, push its orders together (see [`crate::push::batch`]:
//! references resolved at once, chunks written concurrently with one `load` each), then
//! complete or fail each job with its attempt token, one job per statement. While a batch is
//! in flight longer than a third of the lease, the leases are extended; a job whose lease was
//! lost meanwhile is dropped (another worker owns it; the push is idempotent).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};

use crate::odoo::{OdooClient, OdooError, WriteFence};
use crate::pull::jobs::{import_job, pull_job};
use crate::pull::poll::{poll_once, PollSettings};
use crate::pull::PullError;
use crate::push::batch::{join_all, push_orders, BatchOptions};
use crate::push::order_push::{push_order, PushOutcome};
use crate::push::resolve::Resolver;
use crate::push::PushError;
use crate::queue::{self, Job};

/// How long a claimed job stays ours before another worker may take it.
pub const LEASE: Duration = Duration::from_secs(60);

/// How long a pull job waits when its order is busy (its push running, or just finished).
pub const PULL_BUSY_DELAY: Duration = Duration::from_secs(2);

/// How long jobs wait, and how often the loop asks Odoo again, after Odoo refused our
/// credentials (an expired API key must not dead-letter every order).
pub const CREDENTIALS_PAUSE: Duration = Duration::from_secs(60);

fn set_credentials_refused(odoo: &OdooClient, refused: bool) {
    let was = odoo.set_credentials_refused(refused);
    if refused && !was {
        tracing::error!("Odoo refused the worker's credentials: the worker stops claiming jobs and asks Odoo again every minute (the refused jobs retry then); check ODOO_USER / ODOO_API_KEY (Odoo 19 API keys expire)");
    } else if !refused && was {
        tracing::info!("Odoo accepts the worker's credentials again; resuming");
    }
}

/// How long the run loop trusts its in-process resolution cache.
pub const RESOLVER_TTL: Duration = Duration::from_secs(300);

/// Most partner/product ids the in-process cache holds before it starts over (the shared
/// map tables in PostgreSQL remain the second level).
pub const RESOLVER_MAX_ENTRIES: usize = 100_000;

/// What the loop does between batches.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Jobs claimed per batch.
    pub max_jobs: i32,
    /// Sleep when the queue is empty.
    pub poll_interval: Duration,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// Woken by queue notifications (see [`spawn_listener`]); the poll interval is the
    /// fallback when a notification is lost or the LISTEN connection is down.
    pub wake: Option<Arc<Notify>>,
    /// Chunks of a batch written to Odoo at the same time.
    pub concurrency: usize,
    /// Lease of claimed jobs (extended while a batch is in flight).
    pub lease: Duration,
    /// Most orders in one `purchase.order.load` (the `batch_size` setting).
    pub max_chunk: usize,
    /// Extra connections that finish jobs (complete_job / fail_job) in parallel. Finishing is
    /// PostgreSQL work that one backend does one job at a time; with none, the main
    /// connection finishes them all.
    pub finishers: FinishPool,
}

/// Connections used to finish jobs; see [`RunOptions::finishers`].
#[derive(Clone, Default)]
pub struct FinishPool(pub Vec<Arc<Client>>);

impl std::fmt::Debug for FinishPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FinishPool({} connections)", self.0.len())
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_jobs: 200,
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(15),
            wake: None,
            concurrency: 4,
            lease: LEASE,
            max_chunk: 50,
            finishers: FinishPool::default(),
        }
    }
}

/// What happened to one job.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// The job.
    pub job_id: i64,
    /// Its order.
    pub order_key: Option<String>,
    /// What complete_job / fail_job answered ('done', 'requeued', 'retry', 'dead'), or
    /// `lost: ...` when the job could not be finished (its lease passed to another worker).
    pub state: String,
    /// The push result, when the push succeeded.
    pub outcome: Option<PushOutcome>,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// Claims one batch and processes it; returns the number of jobs claimed.
pub async fn run_once(
    pg: &Client,
    odoo: &OdooClient,
    worker_id: &str,
    max_jobs: i32,
) -> Result<usize, tokio_postgres::Error> {
    let mut resolver = Resolver::new();
    Ok(run_batch(pg, odoo, &mut resolver, worker_id, max_jobs)
        .await?
        .len())
}

/// Claims one batch and processes it, reporting each job.
pub async fn run_batch(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    worker_id: &str,
    max_jobs: i32,
) -> Result<Vec<JobReport>, tokio_postgres::Error> {
    let options = RunOptions {
        max_jobs,
        ..RunOptions::default()
    };
    run_batch_with(pg, odoo, resolver, worker_id, &options).await
}

/// Claims up to `options.max_jobs` jobs and processes them as one batch: documents read in
/// one statement, orders pushed by [`push_orders`] with `options.concurrency` chunks in
/// flight, leases extended every third of `options.lease`, each job finished on its own.
pub async fn run_batch_with(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    worker_id: &str,
    options: &RunOptions,
) -> Result<Vec<JobReport>, tokio_postgres::Error> {
    let asked_at = Instant::now();
    let jobs = queue::claim(pg, worker_id, options.max_jobs, options.lease).await?;
    crate::metrics::global().jobs_claimed(jobs.len());
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    // No writes to Odoo once these leases may have run out (see WriteFence).
    let fence = Arc::new(WriteFence::new(asked_at, options.lease));
    let fenced = odoo.fenced(fence.clone());
    let odoo = &fenced;
    let lost: Mutex<HashSet<i64>> = Mutex::new(HashSet::new());
    let ids: Vec<i64> = jobs.iter().map(|j| j.job_id).collect();
    let extender = async {
        let period = (options.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(period).await;
            let held: Vec<i64> = {
                let lost = lost.lock().unwrap_or_else(|e| e.into_inner());
                ids.iter()
                    .filter(|id| !lost.contains(id))
                    .copied()
                    .collect()
            };
            let asked_at = Instant::now();
            match queue::extend_leases(pg, worker_id, &held, options.lease).await {
                Ok(kept) => {
                    let kept: HashSet<i64> = kept.into_iter().collect();
                    // A lease already lost means this batch ran late: its other writes stop
                    // at the old deadline too (their jobs fail, transiently, and run again).
                    if held.iter().all(|id| kept.contains(id)) {
                        fence.extended(asked_at, options.lease);
                    }
                    let mut lost = lost.lock().unwrap_or_else(|e| e.into_inner());
                    for id in held.iter().filter(|id| !kept.contains(id)) {
                        tracing::warn!(job_id = id, "lease lost; dropping the job");
                        lost.insert(*id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not extend leases"),
            }
        }
    };
    let work =
        async {
            let mut reports: Vec<Option<JobReport>> = jobs.iter().map(|_| None).collect();
            let mut push: Vec<usize> = Vec::new();
            for (i, job) in jobs.iter().enumerate() {
                if job.kind == "push" && job.tracking_id.is_some() && job.order_key.is_some() {
                    push.push(i);
                } else {
                    reports[i] = Some(process(pg, odoo, resolver, job).await);
                }
            }
            let pairs: Vec<(i32, String)> = push
                .iter()
                .filter_map(|i| Some((jobs[*i].tracking_id?, jobs[*i].order_key.clone()?)))
                .collect();
            let docs: Vec<Result<serde_json::Value, PushError>> =
                match queue::order_documents(pg, &pairs).await {
                    Ok(docs) if docs.len() == pairs.len() => docs.into_iter().map(Ok).collect(),
                    _ => {
                        // One document could not be built: read them one by one.
                        let mut docs = Vec::with_capacity(pairs.len());
                        for (t, k) in &pairs {
                            docs.push(
                                queue::order_document(pg, *t, k)
                                    .await
                                    .map_err(PushError::from),
                            );
                        }
                        docs
                    }
                };
            // Optimistic lock: an order Odoo changed since our last sync is merged first
            // (apply_remote, conflicts recorded as VERSION_CONFLICT) and pushed on the next claim,
            // so a push never overwrites an Odoo change nobody has seen.
            let read = changed_in_odoo(pg, odoo, &docs).await;
            let mut docs = docs;
            let mut diverted: Vec<(usize, InOdoo, serde_json::Value)> = Vec::new();
            for (n, d) in docs.iter_mut().enumerate() {
                let Ok(doc) = d else { continue };
                let Some(odoo_id) = doc["odoo_id"].as_i64() else {
                    continue;
                };
                if let Some(e) = read.unreadable.get(&odoo_id) {
                    *d = Err(e.duplicate());
                } else if let Some(remote) = read.found.get(&odoo_id) {
                    diverted.push((n, remote.clone(), doc.clone()));
                    *d = Err(PushError::Document("diverted".into()));
                }
            }
            // Each merge is a transaction of its own, on one order: spread over the main
            // connection and the finishers, they run side by side.
            let pool = &options.finishers.0;
            let merges = join_all(
                diverted
                    .iter()
                    .enumerate()
                    .map(|(m, (n, remote, _))| {
                        merge_then_requeue(spread(pg, pool, m), &jobs[push[*n]], remote)
                    })
                    .collect(),
            )
            .await;
            for ((n, remote, doc), merged) in diverted.into_iter().zip(merges) {
                let i = push[n];
                let job = &jobs[i];
                // Two merges side by side can deadlock where they learn the same new products
                // in opposite order; PostgreSQL aborts one, which is tried again here, alone.
                let merged = match merged {
                    Err(e) if is_deadlock_or_serialization(&e) => {
                        merge_then_requeue(pg, job, &remote).await
                    }
                    other => other,
                };
                let state = match merged {
                    // Odoo had not changed after all (same-second write_date): push as it is,
                    // with the document read again when the merge wrote to the local rows.
                    Ok(Merged::Unchanged { local_written }) => {
                        docs[n] = if local_written {
                            let (t, k) = pairs[n].clone();
                            queue::order_document(pg, t, &k)
                                .await
                                .map_err(PushError::from)
                        } else {
                            Ok(doc)
                        };
                        continue;
                    }
                    Ok(Merged::Requeued(state)) => state,
                    Err(e) => format!("lost: {e}"),
                };
                crate::metrics::global().job_finished(if state.starts_with("lost") {
                    "lost"
                } else {
                    "requeued"
                });
                reports[i] = Some(JobReport {
                    job_id: job.job_id,
                    order_key: job.order_key.clone(),
                    state,
                    outcome: None,
                    error: None,
                });
            }
            let readable: Vec<serde_json::Value> = docs
                .iter()
                .filter_map(|d| d.as_ref().ok().cloned())
                .collect();
            let batch = BatchOptions {
                concurrency: options.concurrency.max(1),
                max_chunk: options.max_chunk.max(1),
            };
            let mut pushed = push_orders(pg, odoo, resolver, &readable, batch)
                .await
                .into_iter();
            let mut outcomes = Vec::with_capacity(push.len());
            for d in docs {
                outcomes.push(match d {
                    Ok(_) => Some(pushed.next().unwrap_or_else(|| {
                        Err(PushError::Document("order was not processed".into()))
                    })),
                    Err(PushError::Document(m)) if m == "diverted" => None,
                    Err(e) => Some(Err(e)),
                });
            }
            let lost_now = lost.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let finishing = push
                .iter()
                .zip(outcomes)
                .filter_map(|(i, o)| o.map(|o| (i, o)))
                .enumerate()
                .map(|(n, (i, outcome))| {
                    let job = &jobs[*i];
                    let dropped = lost_now.contains(&job.job_id);
                    let pg = spread(pg, pool, n);
                    async move {
                        if dropped {
                            JobReport {
                                job_id: job.job_id,
                                order_key: job.order_key.clone(),
                                state: {
                                    crate::metrics::global().job_finished("lost");
                                    "lost: lease expired while in flight".into()
                                },
                                outcome: outcome.ok(),
                                error: None,
                            }
                        } else {
                            finish(pg, odoo, job, outcome).await
                        }
                    }
                })
                .collect();
            let finished_ids: Vec<usize> = push
                .iter()
                .copied()
                .filter(|i| reports[*i].is_none())
                .collect();
            for (i, report) in finished_ids.iter().zip(join_all(finishing).await) {
                reports[*i] = Some(report);
            }
            reports.into_iter().flatten().collect::<Vec<JobReport>>()
        };
    tokio::select! {
        reports = work => Ok(reports),
        // The extender loops forever; this arm is never taken.
        () = extender => Ok(Vec::new()),
    }
}

/// The Odoo orders among `docs` whose `write_date` moved past (or equals: one-second
/// resolution) the one stored at our last sync, as apply_remote documents; those Odoo no longer
/// has; and those it would not let us read. One `read` for the batch (none when no order is
/// linked), split where Odoo refuses it (see [`read_write_dates`]).
async fn changed_in_odoo(
    pg: &Client,
    odoo: &OdooClient,
    docs: &[Result<serde_json::Value, PushError>],
) -> PrePushRead {
    // Every linked order, for whether Odoo still has it; the write_date where the last sync
    // stored one (orders linked by hand at track_orders have none yet).
    let known: HashMap<i64, Option<String>> = docs
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .filter(|d| !d["deleted"].as_bool().unwrap_or(false))
        .filter_map(|d| {
            Some((
                d["odoo_id"].as_i64()?,
                d["odoo_write_date"].as_str().map(str::to_string),
            ))
        })
        .collect();
    if known.is_empty() {
        return Default::default();
    }
    let ids: Vec<i64> = known.keys().copied().collect();
    let (rows, unreadable) = read_write_dates(odoo, &ids).await;
    let asked: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !unreadable.contains_key(id))
        .collect();
    let mut read = PrePushRead {
        found: crate::pull::poll::deleted_ids(&asked, &rows)
            .into_iter()
            .map(|id| (id, InOdoo::Deleted(id)))
            .collect(),
        unreadable,
    };
    let moved: Vec<i64> = rows
        .iter()
        .filter_map(|r| {
            let id = r.get("id")?.as_i64()?;
            let now = r.get("write_date")?.as_str()?;
            // Equal is ambiguous: write_date has one-second resolution, so an Odoo edit in the
            // second of our last sync looks unchanged; apply_remote compares the content.
            (now >= known.get(&id)?.as_deref()?).then_some(id)
        })
        .collect();
    if moved.is_empty() {
        return read;
    }
    // One fetch for all; when Odoo refuses it for good, one per order, so that one order's
    // refusal (a product of it hidden by a record rule, say) holds only that order.
    let mut parts = vec![moved];
    while let Some(part) = parts.pop() {
        let mut fetched = crate::pull::remote::fetch(pg, odoo, &part).await;
        if matches!(&fetched, Err(crate::pull::PullError::Odoo(e)) if passes_at_once(e)) {
            fetched = crate::pull::remote::fetch(pg, odoo, &part).await;
        }
        match fetched {
            Ok(remote) => read.found.extend(
                remote
                    .into_iter()
                    .filter_map(|d| Some((d["odoo_id"].as_i64()?, InOdoo::Changed(d)))),
            ),
            Err(e) if part.len() > 1 && !e.is_transient() && !e.is_credentials() => {
                parts.extend(part.iter().map(|id| vec![*id]));
            }
            Err(e) => {
                // Not pushed blind: each waits for its next attempt, as a failed push would.
                tracing::warn!(error = %e, "cannot read orders changed in Odoo; trying them again later");
                let e = Arc::new(match e {
                    crate::pull::PullError::Odoo(o) => PushError::Odoo(o),
                    crate::pull::PullError::Db(d) => PushError::Db(d),
                    other => PushError::Document(format!(
                        "cannot use Odoo's answer for an order changed there since the last sync: {other}"
                    )),
                });
                read.unreadable
                    .extend(part.into_iter().map(|id| (id, e.clone())));
            }
        }
    }
    read
}

/// The `write_date` of Odoo orders `ids`, and the ids Odoo would not let us read, each with
/// its error. A `read` fails whole for one record it refuses (a record rule hiding an order of
/// a company the API user lost, a `MissingError` raised by an override): such a refusal is
/// split in halves until it names single orders, so the others are still checked (about two
/// calls per halving for one refused order among 200). When both halves are refused alike, the
/// refusal is not about some records (the user may not read purchase orders at all): it holds
/// the whole part, as does a failure that is not a refusal (network, credentials). Pushing
/// them without the check could overwrite an Odoo change nobody has seen.
async fn read_write_dates(
    odoo: &OdooClient,
    ids: &[i64],
) -> (
    Vec<serde_json::Map<String, serde_json::Value>>,
    HashMap<i64, Arc<PushError>>,
) {
    let mut rows = Vec::new();
    let mut refused = HashMap::new();
    let mut hold = |part: &[i64], e: OdooError| {
        let e = Arc::new(PushError::Odoo(e));
        refused.extend(part.iter().map(|id| (*id, e.clone())));
    };
    // Each part with the result of its read when already known (a half read by its parent).
    let mut pending = vec![(ids, None)];
    while let Some((part, known)) = pending.pop() {
        let result = match known {
            Some(result) => result,
            None => read_dates_once_more(odoo, part).await,
        };
        let e = match result {
            Ok(read) => {
                rows.extend(read);
                continue;
            }
            Err(e) if part.len() > 1 && refuses_records(&e) => e,
            Err(e) => {
                hold(part, e);
                continue;
            }
        };
        let (a, b) = part.split_at(part.len() / 2);
        let (ra, rb) = (
            read_dates_once_more(odoo, a).await,
            read_dates_once_more(odoo, b).await,
        );
        match (ra, rb) {
            (Err(ea), Err(eb)) if ea.to_string() == eb.to_string() => hold(part, e),
            (ra, rb) => {
                pending.push((a, Some(ra)));
                pending.push((b, Some(rb)));
            }
        }
    }
    (rows, refused)
}

/// `read` of the `write_date` of `ids`, sent a second time when its failure may pass at once.
async fn read_dates_once_more(
    odoo: &OdooClient,
    ids: &[i64],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, OdooError> {
    match odoo.read("purchase.order", ids, &["write_date"]).await {
        Err(e) if passes_at_once(&e) => odoo.read("purchase.order", ids, &["write_date"]).await,
        other => other,
    }
}

/// Whether Odoo answered a call by refusing some of its records (or its size), which a call on
/// fewer records may not meet: an exception it raised that a retry would meet again, other
/// than refused credentials.
fn refuses_records(e: &OdooError) -> bool {
    matches!(e, OdooError::Server(_) | OdooError::ResponseTooLarge { .. })
        && e.is_permanent()
        && !e.is_credentials()
}

/// Whether a read that failed may pass when sent again right away: a transient failure that
/// neither took the whole timeout nor is a rate limit or came with a wait asked for
/// (`Retry-After`).
fn passes_at_once(e: &OdooError) -> bool {
    e.is_transient()
        && !matches!(e, OdooError::Timeout { .. })
        && e.http_status() != Some(429)
        && e.retry_after().is_none()
}

/// True for the errors PostgreSQL gives one of two transactions it cannot both let through
/// (deadlock, serialization failure): the same statement may succeed when run again.
fn is_deadlock_or_serialization(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// The connection of the `n`th of a batch's jobs: the main one and the finishers, round robin.
fn spread<'a>(main: &'a Client, finishers: &'a [Arc<Client>], n: usize) -> &'a Client {
    match n % (finishers.len() + 1) {
        0 => main,
        k => &finishers[k - 1],
    }
}

/// What merging Odoo's version into the order of a running push job came to.
enum Merged {
    /// Odoo had not changed the order after all (its write_date only equalled the stored one):
    /// the push goes ahead. `local_written` tells whether the merge wrote to the local rows
    /// (then the order's document must be read again).
    Unchanged { local_written: bool },
    /// Odoo's changes were merged and the job handed back (held while a conflict is open).
    Requeued(String),
}

/// What a batch finds of the Odoo order of a document it is about to push, when that is not
/// the order as last synced.
#[derive(Debug, Clone)]
enum InOdoo {
    /// Odoo changed it since: its current version, to merge first.
    Changed(serde_json::Value),
    /// Odoo no longer has it (`read` returns nothing for its id, given here).
    Deleted(i64),
}

/// What a batch found of the Odoo orders of the documents it is about to push: by Odoo id,
/// those not as last synced, and those Odoo would not let us read (hidden by a record rule,
/// unreachable, ...), with the error their push fails with, as the write would: tried again
/// when the error is transient.
#[derive(Default)]
struct PrePushRead {
    found: HashMap<i64, InOdoo>,
    unreadable: HashMap<i64, Arc<PushError>>,
}

/// Merges Odoo's newer version into the order of a running push job, then hands the job back.
/// An order deleted in Odoo is taken as the reconciliation takes it (`remote_deleted`: cancelled
/// here and unlinked): pushing it as it was would `load` a new order without the vendor it
/// leaves out when unchanged, which Odoo refuses.
async fn merge_then_requeue(
    pg: &Client,
    job: &Job,
    remote: &InOdoo,
) -> Result<Merged, tokio_postgres::Error> {
    let remote = match remote {
        InOdoo::Changed(remote) => remote,
        InOdoo::Deleted(odoo_id) => {
            crate::pull::poll::cancel_deleted_locally(pg, *odoo_id).await?;
            tracing::info!(
                job_id = job.job_id,
                odoo_id,
                "order deleted in Odoo: cancelled here before pushing"
            );
            return requeue(pg, job, "after finding the order deleted in Odoo").await;
        }
    };
    let applied =
        crate::pull::remote::apply(pg, remote, false, Some((job.job_id, job.attempt_token)))
            .await?;
    if applied.outcome == "unchanged" || applied.outcome == "stale" {
        return Ok(Merged::Unchanged {
            local_written: applied.answer["local_written"].as_bool() != Some(false),
        });
    }
    tracing::info!(job_id = job.job_id, outcome = %applied.outcome, "order changed in Odoo since the last sync: merged before pushing");
    requeue(pg, job, "after merging Odoo changes").await
}

/// Hands a running push job back to the queue (`requeue_job`), saying `why` in its state.
async fn requeue(pg: &Client, job: &Job, why: &str) -> Result<Merged, tokio_postgres::Error> {
    let row = pg
        .query_one(
            "SELECT odoo_sync.requeue_job($1, $2)",
            &[&job.job_id, &job.attempt_token],
        )
        .await?;
    let state: String = row.try_get(0)?;
    Ok(Merged::Requeued(format!("requeued ({state}) {why}")))
}

async fn push_job(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    job: &Job,
) -> Result<PushOutcome, PushError> {
    let (Some(tracking_id), Some(order_key)) = (job.tracking_id, job.order_key.as_deref()) else {
        return Err(PushError::Document(
            "push job without tracking_id or order_key".into(),
        ));
    };
    let doc = queue::order_document(pg, tracking_id, order_key).await?;
    push_order(pg, odoo, resolver, &doc).await
}

/// Pushes one claimed job and finishes it with its attempt token.
pub async fn process(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    job: &Job,
) -> JobReport {
    if job.kind != "push" {
        let result = match job.kind.as_str() {
            "pull" => pull_job(pg, odoo, job).await,
            "import" => import_job(pg, odoo, job).await,
            other => Err(PullError::NotFound(format!("unknown job kind {other:?}"))),
        };
        let mut report = JobReport {
            job_id: job.job_id,
            order_key: job.order_key.clone(),
            state: String::new(),
            outcome: None,
            error: None,
        };
        let finished = match result {
            Ok(result) => queue::complete(pg, job, &result).await,
            // Not a failure: the order's push is running (or just finished). Again shortly,
            // without using up an attempt.
            Err(PullError::Busy(message)) => {
                tracing::debug!(job_id = job.job_id, reason = %message, "pull deferred");
                queue::requeue(pg, job, PULL_BUSY_DELAY).await
            }
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(job_id = job.job_id, kind = %job.kind, error = %message, "pull failed");
                report.error = Some(message.clone());
                let (odoo_error, retry_after) = match &e {
                    PullError::Odoo(o) => (o.odoo_name().map(str::to_string), o.retry_after()),
                    _ => (None, None),
                };
                let credentials = e.is_credentials();
                if credentials {
                    set_credentials_refused(odoo, true);
                }
                queue::fail(
                    pg,
                    job,
                    e.type_name(),
                    &message,
                    odoo_error.as_deref(),
                    !e.is_transient() && !credentials,
                    if credentials {
                        Some(CREDENTIALS_PAUSE)
                    } else {
                        retry_after
                    },
                )
                .await
            }
        };
        report.state = finished_state(job, finished);
        return report;
    }
    let outcome = push_job(pg, odoo, resolver, job).await;
    finish(pg, odoo, job, outcome).await
}

fn finished_state(job: &Job, finished: Result<String, tokio_postgres::Error>) -> String {
    let state = finished_state_text(job, finished);
    crate::metrics::global().job_finished(&state);
    state
}

fn finished_state_text(job: &Job, finished: Result<String, tokio_postgres::Error>) -> String {
    match finished {
        Ok(state) => state,
        Err(e) => {
            // Most often a stale attempt token: the lease passed to another worker, which
            // reports the job. The push itself is idempotent, so nothing is duplicated.
            tracing::warn!(job_id = job.job_id, error = %queue::describe_pg(&e), "could not finish job");
            format!("lost: {e}")
        }
    }
}

/// Completes or fails one job with the result of its push.
pub async fn finish(
    pg: &Client,
    odoo: &OdooClient,
    job: &Job,
    outcome: Result<PushOutcome, PushError>,
) -> JobReport {
    let mut report = JobReport {
        job_id: job.job_id,
        order_key: job.order_key.clone(),
        state: String::new(),
        outcome: None,
        error: None,
    };
    let finished = match outcome {
        Ok(outcome) => {
            let r = queue::complete(pg, job, &outcome.to_result_json()).await;
            report.outcome = Some(outcome);
            r
        }
        Err(e) => {
            let message = e.to_string();
            tracing::warn!(job_id = job.job_id, order_key = ?job.order_key, error = %message, "push failed");
            report.error = Some(message.clone());
            let (odoo_error, retry_after) = match &e {
                PushError::Odoo(o) => (o.odoo_name().map(str::to_string), o.retry_after()),
                _ => (None, None),
            };
            // Refused credentials are nobody's order's fault: retry later, pause the loop.
            let credentials = e.is_credentials();
            if credentials {
                set_credentials_refused(odoo, true);
            }
            queue::fail(
                pg,
                job,
                e.type_name(),
                &message,
                odoo_error.as_deref(),
                !e.is_transient() && !credentials,
                if credentials {
                    Some(CREDENTIALS_PAUSE)
                } else {
                    retry_after
                },
            )
            .await
        }
    };
    report.state = finished_state(job, finished);
    report
}

/// Processes batches until `shutdown` resolves, polling when the queue is empty.
pub async fn run(
    pg: &Client,
    odoo: &OdooClient,
    worker_id: &str,
    options: &RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tokio_postgres::Error> {
    tokio::pin!(shutdown);
    // The lease follows the `lease_seconds` setting, read with every heartbeat: a DBA who
    // shortens it gets a dead worker's jobs re-handed sooner without restarting anything.
    let mut options = options.clone();
    let mut resolver = Resolver::new();
    let mut resolver_born = tokio::time::Instant::now();
    let mut last_heartbeat: Option<tokio::time::Instant> = None;
    let mut realtime: Option<(PollSettings, tokio::time::Instant)> = None;
    let mut last_maintenance = tokio::time::Instant::now();
    let mut last_credentials_check: Option<tokio::time::Instant> = None;
    let mut last_poll: Option<tokio::time::Instant> = None;
    let mut woken_for_nothing = false;
    loop {
        // Realtime pull: settings re-read every second (start_realtime() also wakes the
        // loop), Odoo polled every poll_interval_seconds while enabled.
        if realtime
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= Duration::from_secs(1))
        {
            match PollSettings::read(pg).await {
                Ok(s) => realtime = Some((s, tokio::time::Instant::now())),
                Err(e) => tracing::warn!(error = %e, "cannot read the realtime settings"),
            }
        }
        if let Some((settings, _)) = realtime.as_ref().filter(|(s, _)| s.enabled) {
            if last_poll.is_none_or(|t| t.elapsed() >= settings.interval) {
                last_poll = Some(tokio::time::Instant::now());
                match poll_once(pg, odoo, settings).await {
                    Ok(report) if report.handed > 0 || report.deleted > 0 => {
                        tracing::info!(?report, "pulled Odoo changes")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "realtime pull failed; next poll retries"),
                }
            }
        }
        if last_heartbeat.is_none_or(|t| t.elapsed() >= options.heartbeat_interval) {
            let odoo_status = odoo_status(odoo).await;
            let info = json!({
                "odoo_status": odoo_status,
                "cache_status": resolver.cache_status().as_str(),
                "hostname": std::env::var("HOSTNAME").unwrap_or_default(),
                "pid": std::process::id(),
                "version": env!("CARGO_PKG_VERSION"),
            });
            match queue::heartbeat(pg, worker_id, &info).await {
                Ok(settings) => {
                    if let Some(secs) = settings.get("lease_seconds").and_then(|v| v.as_u64()) {
                        options.lease = Duration::from_secs(secs.max(1));
                    }
                    if let Some(n) = settings.get("batch_size").and_then(|v| v.as_u64()) {
                        options.max_chunk = n.max(1) as usize;
                    }
                }
                Err(e) => tracing::warn!(error = %queue::describe_pg(&e), "heartbeat failed"),
            }
            last_heartbeat = Some(tokio::time::Instant::now());
        }
        if last_maintenance.elapsed() >= MAINTENANCE_EVERY {
            last_maintenance = tokio::time::Instant::now();
            match pg.query_one("SELECT odoo_sync.maintenance()", &[]).await {
                Ok(row) => {
                    tracing::info!(removed = %row.get::<_, serde_json::Value>(0), "retention applied")
                }
                Err(e) => tracing::warn!(error = %e, "maintenance() failed"),
            }
        }
        // The in-process cache forgets after a while, so edits of the map tables are seen, and
        // is bounded in size.
        if resolver_born.elapsed() >= RESOLVER_TTL || resolver.cached_len() > RESOLVER_MAX_ENTRIES {
            resolver = Resolver::new();
            resolver_born = tokio::time::Instant::now();
        }
        // A batch in flight is finished, not dropped: its jobs are completed or failed.
        tokio::select! {
            biased;
            _ = &mut shutdown => return Ok(()),
            _ = std::future::ready(()) => {}
        }
        if odoo.credentials_refused() {
            // One authenticated call a minute tells whether the credentials work again; the
            // loop keeps heartbeating meanwhile (it naps a second at a time).
            if last_credentials_check.is_none_or(|t| t.elapsed() >= CREDENTIALS_PAUSE) {
                last_credentials_check = Some(tokio::time::Instant::now());
                let probe = odoo
                    .search("res.partner", &crate::odoo::Domain::all(), Some(1), None)
                    .await;
                if !matches!(&probe, Err(e) if e.is_credentials()) {
                    last_credentials_check = None;
                    set_credentials_refused(odoo, false);
                }
            }
            if odoo.credentials_refused() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = &mut shutdown => return Ok(()),
                }
                continue;
            }
        }
        let claimed = run_batch_with(pg, odoo, &mut resolver, worker_id, &options)
            .await?
            .len();
        crate::metrics::global().cache_entries(resolver.cached_len());
        if claimed == 0 {
            // A notification that brought no work (an order edited while its job runs
            // elsewhere or waits for a conflict decision: capture notifies on every change)
            // makes the next one wait a little, so a stream of edits costs a few empty claims
            // a second, not one per commit.
            if woken_for_nothing {
                tokio::select! {
                    _ = tokio::time::sleep(WAKE_DEBOUNCE) => {}
                    _ = &mut shutdown => return Ok(()),
                }
            }
            let woken = async {
                match &options.wake {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            // While realtime is on, wake in time for the next poll.
            let nap = match (&realtime, last_poll) {
                (Some((s, _)), Some(t)) if s.enabled => options.poll_interval.min(
                    s.interval
                        .saturating_sub(t.elapsed())
                        .max(Duration::from_millis(50)),
                ),
                _ => options.poll_interval,
            };
            tokio::select! {
                _ = tokio::time::sleep(nap) => woken_for_nothing = false,
                _ = woken => woken_for_nothing = true,
                _ = &mut shutdown => return Ok(()),
            }
        } else {
            woken_for_nothing = false;
        }
    }
}

/// The pause after a notification that brought no work, before the next one is acted on.
pub const WAKE_DEBOUNCE: Duration = Duration::from_millis(100);

/// What the heartbeat reports for Odoo: a real round trip now (the session is cached, so
/// `connect` alone would say CONNECTED forever after the first login), and ERROR while Odoo
/// refuses the credentials.
async fn odoo_status(odoo: &OdooClient) -> &'static str {
    let probe = match odoo.connect().await {
        Ok(_) => odoo.server_version().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match probe {
        Err(e) if e.is_transient() => "DISCONNECTED",
        Err(_) => "ERROR",
        Ok(()) if odoo.credentials_refused() => "ERROR",
        Ok(()) => "CONNECTED",
    }
}

/// Applies retention (`odoo_sync.maintenance()`: finished jobs, attempt logs and events older
/// than their retention settings) about every ten minutes; any worker may do it.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

/// Keeps a connection LISTENing on `odoo_sync_events` and wakes `wake` at each notification
/// but those with payload `event` (and at each (re)connection, since notifications sent while
/// it was down are lost). A dropped connection is reopened after a pause; abort the handle to
/// stop.
pub fn spawn_listener(conninfo: String, wake: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match crate::pg_tls::connect(&conninfo).await {
                Ok((client, mut connection)) => {
                    let notify = wake.clone();
                    let driver = tokio::spawn(async move {
                        loop {
                            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                                // 'event' tells applications about odoo_sync's own events
                                // (sync results, imports): never work for a worker.
                                Some(Ok(AsyncMessage::Notification(n)))
                                    if n.payload() == "event" => {}
                                Some(Ok(AsyncMessage::Notification(_))) => notify.notify_one(),
                                Some(Ok(_)) => {}
                                Some(Err(e)) => {
                                    let error = crate::queue::describe_pg(&e);
                                    tracing::warn!(%error, "LISTEN connection failed");
                                    return;
                                }
                                None => return,
                            }
                        }
                    });
                    match client.batch_execute("LISTEN odoo_sync_events").await {
                        Ok(()) => {
                            wake.notify_one();
                            let _ = driver.await;
                        }
                        Err(e) => {
                            let error = crate::queue::describe_pg(&e);
                            tracing::warn!(%error, "LISTEN failed");
                            driver.abort();
                        }
                    }
                    drop(client);
                }
                Err(e) => tracing::warn!(error = %e, "cannot open the LISTEN connection"),
            }
            wake.notify_one();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
