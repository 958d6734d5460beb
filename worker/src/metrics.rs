//! The worker's Prometheus metrics, kept in process and rendered in the text exposition format
//! (no exporter crate: a handful of counters and one histogram family do not need one).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `odoo_sync_jobs_claimed_total` | counter | jobs this worker claimed |
//! | `odoo_sync_claim_rounds_total` | counter | `claim_jobs` calls, empty ones included |
//! | `odoo_sync_jobs_finished_total{outcome}` | counter | done, requeued, retry, dead, lost |
//! | `odoo_sync_rpc_duration_seconds{method}` | histogram | Odoo calls by `model.method` |
//! | `odoo_sync_rpc_errors_total{method,kind}` | counter | failed Odoo calls, transient or permanent |
//! | `odoo_sync_cache_lookups_total{result}` | counter | partner/product lookups, hit or miss |
//! | `odoo_sync_cache_entries` | gauge | entries in the in-process lookup cache |
//! | `odoo_sync_queue_jobs{state}` | gauge | jobs in the queue (ready, waiting, running), from the database |
//! | `odoo_sync_queue_oldest_ready_seconds` | gauge | age of the oldest ready job |
//! | `odoo_sync_dead_letters` | gauge | dead letters kept |
//! | `odoo_sync_conflicts_open` | gauge | conflicts waiting for a decision |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Upper bounds of the RPC latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One latency histogram.
#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Gauges read from the database when metrics are scraped.
#[derive(Debug, Default, Clone)]
pub struct QueueGauges {
    /// Jobs ready to be claimed.
    pub ready: i64,
    /// Jobs waiting for a retry.
    pub waiting: i64,
    /// Jobs being worked on.
    pub running: i64,
    /// Age of the oldest ready job, in seconds.
    pub oldest_ready_seconds: f64,
    /// Dead letters kept.
    pub dead_letters: i64,
    /// Conflicts waiting for a decision.
    pub conflicts_open: i64,
}

/// Counters of this process.
#[derive(Default)]
pub struct Metrics {
    jobs_claimed: AtomicU64,
    claim_rounds: AtomicU64,
    finished: Mutex<BTreeMap<String, u64>>,
    rpc: Mutex<BTreeMap<String, Histogram>>,
    rpc_errors: Mutex<BTreeMap<(String, &'static str), u64>>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_entries: AtomicU64,
    odoo: Mutex<OdooReachability>,
}

/// When Odoo last answered, and when a call last failed for a transient reason.
#[derive(Default, Clone, Copy, Debug)]
pub struct OdooReachability {
    /// Last call that got an answer from Odoo (an Odoo error is an answer too).
    pub last_answer: Option<Instant>,
    /// Last call that failed for a transient reason (timeout, connection, 5xx).
    pub last_transient_failure: Option<Instant>,
}

impl OdooReachability {
    /// CONNECTED or DISCONNECTED, as `odoo_sync.health()` names them (its third value, ERROR
    /// for refused credentials, is known to the Odoo client, not to these counters).
    pub fn status(&self) -> &'static str {
        match (self.last_answer, self.last_transient_failure) {
            (Some(ok), Some(bad)) if bad > ok => "DISCONNECTED",
            (Some(_), _) => "CONNECTED",
            (None, Some(_)) => "DISCONNECTED",
            (None, None) => "DISCONNECTED",
        }
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(Metrics::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves counters that are still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// One `claim_jobs` call that claimed `n` jobs.
    pub fn jobs_claimed(&self, n: usize) {
        self.claim_rounds.fetch_add(1, Ordering::Relaxed);
        self.jobs_claimed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A job finished with `outcome` (what complete_job / fail_job answered, or `lost`).
    pub fn job_finished(&self, outcome: &str) {
        let outcome = match outcome {
            "done" | "requeued" | "retry" | "dead" => outcome,
            _ => "lost",
        };
        *lock(&self.finished).entry(outcome.to_string()).or_default() += 1;
    }

    /// One Odoo call and how it ended: `Ok(())`, or `Err(transient)`.
    pub fn rpc(&self, model: &str, method: &str, elapsed: Duration, outcome: Result<(), bool>) {
        let key = format!("{model}.{method}");
        lock(&self.rpc)
            .entry(key.clone())
            .or_default()
            .observe(elapsed.as_secs_f64());
        let now = Instant::now();
        let mut odoo = lock(&self.odoo);
        match outcome {
            Ok(()) => odoo.last_answer = Some(now),
            Err(transient) => {
                let kind = if transient { "transient" } else { "permanent" };
                *lock(&self.rpc_errors).entry((key, kind)).or_default() += 1;
                if transient {
                    odoo.last_transient_failure = Some(now);
                } else {
                    odoo.last_answer = Some(now);
                }
            }
        }
    }

    /// A lookup in the partner/product cache.
    pub fn cache_lookup(&self, hit: bool) {
        let counter = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Current number of cache entries.
    pub fn cache_entries(&self, n: usize) {
        self.cache_entries.store(n as u64, Ordering::Relaxed);
    }

    /// Share of cache lookups that hit, 0 when there were none.
    pub fn cache_hit_ratio(&self) -> f64 {
        let hits = self.cache_hits.load(Ordering::Relaxed) as f64;
        let total = hits + self.cache_misses.load(Ordering::Relaxed) as f64;
        if total == 0.0 {
            0.0
        } else {
            hits / total
        }
    }

    /// How Odoo looked from here lately.
    pub fn odoo(&self) -> OdooReachability {
        *lock(&self.odoo)
    }

    /// Total Odoo calls so far.
    pub fn rpc_count(&self) -> u64 {
        lock(&self.rpc).values().map(|h| h.count).sum()
    }

    /// The text exposition format, with the queue gauges read from the database.
    pub fn render(&self, queue: Option<&QueueGauges>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP odoo_sync_jobs_claimed_total Jobs this worker claimed."
        );
        let _ = writeln!(out, "# TYPE odoo_sync_jobs_claimed_total counter");
        let _ = writeln!(
            out,
            "odoo_sync_jobs_claimed_total {}",
            self.jobs_claimed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP odoo_sync_claim_rounds_total claim_jobs calls, empty ones included."
        );
        let _ = writeln!(out, "# TYPE odoo_sync_claim_rounds_total counter");
        let _ = writeln!(
            out,
            "odoo_sync_claim_rounds_total {}",
            self.claim_rounds.load(Ordering::Relaxed)
        );

        let _ = writeln!(
            out,
            "# HELP odoo_sync_jobs_finished_total Jobs finished by outcome."
        );
        let _ = writeln!(out, "# TYPE odoo_sync_jobs_finished_total counter");
        let finished = lock(&self.finished).clone();
        for outcome in ["done", "requeued", "retry", "dead", "lost"] {
            let n = finished.get(outcome).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "odoo_sync_jobs_finished_total{{outcome=\"{outcome}\"}} {n}"
            );
        }

        let _ = writeln!(
            out,
            "# HELP odoo_sync_rpc_duration_seconds Odoo calls by model.method."
        );
        let _ = writeln!(out, "# TYPE odoo_sync_rpc_duration_seconds histogram");
        for (method, h) in lock(&self.rpc).iter() {
            let m = escape(method);
            for (bound, n) in BUCKETS.iter().zip(h.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "odoo_sync_rpc_duration_seconds_bucket{{method=\"{m}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "odoo_sync_rpc_duration_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "odoo_sync_rpc_duration_seconds_sum{{method=\"{m}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "odoo_sync_rpc_duration_seconds_count{{method=\"{m}\"}} {}",
                h.count
            );
        }

        let _ = writeln!(
            out,
            "# HELP odoo_sync_rpc_errors_total Failed Odoo calls by kind."
        );
        let _ = writeln!(out, "# TYPE odoo_sync_rpc_errors_total counter");
        for ((method, kind), n) in lock(&self.rpc_errors).iter() {
            let _ = writeln!(
                out,
                "odoo_sync_rpc_errors_total{{method=\"{}\",kind=\"{kind}\"}} {n}",
                escape(method)
            );
        }

        let _ = writeln!(
            out,
            "# HELP odoo_sync_cache_lookups_total Partner/product lookups in the in-process cache."
        );
        let _ = writeln!(out, "# TYPE odoo_sync_cache_lookups_total counter");
        let _ = writeln!(
            out,
            "odoo_sync_cache_lookups_total{{result=\"hit\"}} {}",
            self.cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "odoo_sync_cache_lookups_total{{result=\"miss\"}} {}",
            self.cache_misses.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP odoo_sync_cache_entries Entries in the in-process lookup cache."
        );
        let _ = writeln!(out, "# TYPE odoo_sync_cache_entries gauge");
        let _ = writeln!(
            out,
            "odoo_sync_cache_entries {}",
            self.cache_entries.load(Ordering::Relaxed)
        );

        if let Some(q) = queue {
            let _ = writeln!(
                out,
                "# HELP odoo_sync_queue_jobs Jobs in the queue by state."
            );
            let _ = writeln!(out, "# TYPE odoo_sync_queue_jobs gauge");
            let _ = writeln!(out, "odoo_sync_queue_jobs{{state=\"ready\"}} {}", q.ready);
            let _ = writeln!(
                out,
                "odoo_sync_queue_jobs{{state=\"waiting\"}} {}",
                q.waiting
            );
            let _ = writeln!(
                out,
                "odoo_sync_queue_jobs{{state=\"running\"}} {}",
                q.running
            );
            let _ = writeln!(
                out,
                "# HELP odoo_sync_queue_oldest_ready_seconds Age of the oldest ready job."
            );
            let _ = writeln!(out, "# TYPE odoo_sync_queue_oldest_ready_seconds gauge");
            let _ = writeln!(
                out,
                "odoo_sync_queue_oldest_ready_seconds {}",
                q.oldest_ready_seconds
            );
            let _ = writeln!(out, "# HELP odoo_sync_dead_letters Dead letters kept.");
            let _ = writeln!(out, "# TYPE odoo_sync_dead_letters gauge");
            let _ = writeln!(out, "odoo_sync_dead_letters {}", q.dead_letters);
            let _ = writeln!(
                out,
                "# HELP odoo_sync_conflicts_open Conflicts waiting for a decision."
            );
            let _ = writeln!(out, "# TYPE odoo_sync_conflicts_open gauge");
            let _ = writeln!(out, "odoo_sync_conflicts_open {}", q.conflicts_open);
        }
        out
    }
}

/// Label values are ours (model and method names), but escape them anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_rendered() {
        let m = Metrics::default();
        m.rpc("purchase.order", "load", Duration::from_millis(30), Ok(()));
        m.rpc(
            "purchase.order",
            "load",
            Duration::from_millis(300),
            Err(true),
        );
        m.job_finished("done");
        m.job_finished("weird");
        let text = m.render(Some(&QueueGauges {
            ready: 3,
            ..QueueGauges::default()
        }));
        assert!(text.contains(
            "odoo_sync_rpc_duration_seconds_bucket{method=\"purchase.order.load\",le=\"0.05\"} 1"
        ));
        assert!(text.contains(
            "odoo_sync_rpc_duration_seconds_bucket{method=\"purchase.order.load\",le=\"0.5\"} 2"
        ));
        assert!(
            text.contains("odoo_sync_rpc_duration_seconds_count{method=\"purchase.order.load\"} 2")
        );
        assert!(text.contains(
            "odoo_sync_rpc_errors_total{method=\"purchase.order.load\",kind=\"transient\"} 1"
        ));
        assert!(text.contains("odoo_sync_jobs_finished_total{outcome=\"done\"} 1"));
        assert!(text.contains("odoo_sync_jobs_finished_total{outcome=\"lost\"} 1"));
        assert!(text.contains("odoo_sync_queue_jobs{state=\"ready\"} 3"));
        assert_eq!(
            m.odoo().status(),
            "DISCONNECTED",
            "the last call failed transiently"
        );
        m.rpc("purchase.order", "read", Duration::from_millis(5), Ok(()));
        assert_eq!(m.odoo().status(), "CONNECTED");
    }
}
