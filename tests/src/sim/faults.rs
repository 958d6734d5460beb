//! Fault injection: latency, a share of failing requests, failures of chosen calls, "commit
//! then drop the connection" and outages. Random draws come from a seedable generator so tests
//! are reproducible.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How an injected failure shows itself to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// HTTP 502 from a proxy in front of Odoo.
    BadGateway,
    /// HTTP 503.
    Unavailable,
    /// The TCP connection is reset (RST) without a reply.
    Reset,
    /// No reply until the client gives up (the connection is closed after `timeout_ms`).
    Timeout,
    /// Odoo's `SerializationFailure` error (JSON-RPC error, JSON-2 409).
    Serialization,
}

impl FaultKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "502" => FaultKind::BadGateway,
            "503" => FaultKind::Unavailable,
            "reset" => FaultKind::Reset,
            "timeout" => FaultKind::Timeout,
            "serialization" => FaultKind::Serialization,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            FaultKind::BadGateway => "502",
            FaultKind::Unavailable => "503",
            FaultKind::Reset => "reset",
            FaultKind::Timeout => "timeout",
            FaultKind::Serialization => "serialization",
        }
    }
}

/// Body of `POST /__sim/faults`; every key is optional and only given keys change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Added delay before every Odoo request.
    pub latency_ms: Option<u64>,
    /// Share (0..=1) of Odoo requests failing before doing anything.
    pub error_rate: Option<f64>,
    /// How they fail: "502", "503", "reset", "timeout" or "serialization".
    pub error_kind: Option<String>,
    /// The next N writes are committed, then the connection is dropped without a reply.
    pub drop_after_commit: Option<u64>,
    /// Share (0..=1) of writes committed, then dropped without a reply (drawn from the same
    /// seeded generator as `error_rate`), for as long as it is set.
    pub drop_rate: Option<f64>,
    /// Every Odoo request gets 503 for this many seconds from now.
    pub outage_seconds: Option<f64>,
    /// Per call, named `model.method` as the stats name it: how many of its next calls fail
    /// (as `error_kind` says) before doing anything. 0 takes a call off the list.
    pub fail_calls: Option<BTreeMap<String, u64>>,
    /// Seed of the random draws of `error_rate`.
    pub seed: Option<u64>,
    /// How long a "timeout" request hangs before its connection is closed.
    pub timeout_ms: Option<u64>,
}

/// SplitMix64: tiny, fast and deterministic for a given seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next value in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The faults in force.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Added delay.
    pub latency: Duration,
    /// Failure share.
    pub error_rate: f64,
    /// Failure kind.
    pub error_kind: FaultKind,
    /// Writes still to be dropped after commit.
    pub drop_after_commit: u64,
    /// Share of writes dropped after commit.
    pub drop_rate: f64,
    /// End of the outage.
    pub outage_until: Option<Instant>,
    /// Hang time of "timeout" failures.
    pub timeout: Duration,
    /// Random source of `error_rate`.
    pub rng: Rng,
    /// Failures injected so far by `error_rate`, for reporting.
    pub injected: u64,
    /// Writes committed and then dropped so far (`drop_after_commit` and `drop_rate`).
    pub dropped: u64,
    /// Requests refused by an outage so far: the load a client puts on a server that is down.
    pub refused: u64,
    /// Calls (`model.method`) still to fail, with how many of their next calls fail.
    pub fail_calls: BTreeMap<String, u64>,
    /// Calls failed so far by `fail_calls`.
    pub failed_calls: u64,
}

/// Default seed of the fault generator.
pub const DEFAULT_SEED: u64 = 42;

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            error_rate: 0.0,
            error_kind: FaultKind::Unavailable,
            drop_after_commit: 0,
            drop_rate: 0.0,
            outage_until: None,
            timeout: Duration::from_secs(60),
            rng: Rng::new(DEFAULT_SEED),
            injected: 0,
            dropped: 0,
            refused: 0,
            fail_calls: BTreeMap::new(),
            failed_calls: 0,
        }
    }
}

/// What to do with one Odoo request before handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Proceed,
    /// Answer 503: outage.
    Outage,
    /// Fail it this way.
    Fail(FaultKind),
}

impl Faults {
    /// Applies a spec; returns an error text for invalid values (nothing is changed then).
    pub fn apply(&mut self, spec: &FaultSpec) -> Result<(), String> {
        let kind = match &spec.error_kind {
            Some(k) => Some(FaultKind::parse(k).ok_or_else(|| {
                format!("error_kind must be one of \"502\", \"503\", \"reset\", \"timeout\", \"serialization\", not {k:?}")
            })?),
            None => None,
        };
        for (key, rate) in [
            ("error_rate", spec.error_rate),
            ("drop_rate", spec.drop_rate),
        ] {
            if let Some(rate) = rate {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("{key} must be between 0 and 1, not {rate}"));
                }
            }
        }
        if let Some(calls) = &spec.fail_calls {
            if let Some(name) = calls.keys().find(|name| !is_call_name(name)) {
                return Err(format!(
                    "fail_calls keys are model.method, like \"purchase.order.write\", not {name:?}"
                ));
            }
        }
        if let Some(secs) = spec.outage_seconds {
            if !(secs >= 0.0 && secs.is_finite()) {
                return Err(format!(
                    "outage_seconds must be a positive number, not {secs}"
                ));
            }
        }
        if let Some(ms) = spec.latency_ms {
            self.latency = Duration::from_millis(ms);
        }
        if let Some(rate) = spec.error_rate {
            self.error_rate = rate;
        }
        if let Some(kind) = kind {
            self.error_kind = kind;
        }
        if let Some(n) = spec.drop_after_commit {
            self.drop_after_commit = n;
        }
        if let Some(rate) = spec.drop_rate {
            self.drop_rate = rate;
        }
        if let Some(secs) = spec.outage_seconds {
            self.outage_until = Some(Instant::now() + Duration::from_secs_f64(secs));
        }
        for (name, count) in spec.fail_calls.iter().flatten() {
            if *count == 0 {
                self.fail_calls.remove(name);
            } else {
                self.fail_calls.insert(name.clone(), *count);
            }
        }
        if let Some(seed) = spec.seed {
            self.rng = Rng::new(seed);
        }
        if let Some(ms) = spec.timeout_ms {
            self.timeout = Duration::from_millis(ms);
        }
        Ok(())
    }

    /// Decides the fate of the next Odoo request; `call` tells the model/method it calls
    /// (`model.method`), when it calls one. It reads the request, so it runs only while
    /// `fail_calls` names a call.
    pub fn verdict(&mut self, call: impl FnOnce() -> Option<String>) -> Verdict {
        if self.outage_until.is_some_and(|t| Instant::now() < t) {
            self.refused += 1;
            return Verdict::Outage;
        }
        let chosen = if self.fail_calls.is_empty() {
            None
        } else {
            call().and_then(|c| self.fail_calls.get_mut(&c))
        };
        if let Some(left) = chosen {
            *left -= 1;
            if *left == 0 {
                self.fail_calls.retain(|_, n| *n > 0);
            }
            self.failed_calls += 1;
            return Verdict::Fail(self.error_kind);
        }
        if self.error_rate > 0.0 && self.rng.next_f64() < self.error_rate {
            self.injected += 1;
            return Verdict::Fail(self.error_kind);
        }
        Verdict::Proceed
    }

    /// Decides whether a committed write loses its reply: a `drop_after_commit` token if any
    /// are left, else a draw against `drop_rate`.
    pub fn take_drop(&mut self) -> bool {
        let drop = if self.drop_after_commit > 0 {
            self.drop_after_commit -= 1;
            true
        } else {
            self.drop_rate > 0.0 && self.rng.next_f64() < self.drop_rate
        };
        if drop {
            self.dropped += 1;
        }
        drop
    }

    /// The faults in force, as `GET /__sim/faults` shows them.
    pub fn to_json(&self) -> Value {
        let outage = self
            .outage_until
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        json!({
            "latency_ms": self.latency.as_millis() as u64,
            "error_rate": self.error_rate,
            "error_kind": self.error_kind.name(),
            "drop_after_commit": self.drop_after_commit,
            "drop_rate": self.drop_rate,
            "outage_seconds": outage,
            "timeout_ms": self.timeout.as_millis() as u64,
            "injected": self.injected,
            "dropped": self.dropped,
            "refused": self.refused,
            "fail_calls": self.fail_calls,
            "failed_calls": self.failed_calls,
        })
    }
}

/// True for a `model.method` name: dot-separated words of lower-case letters, digits and `_`,
/// at least two of them.
fn is_call_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_call_fails_as_often_as_asked_and_no_other() {
        let mut faults = Faults::default();
        let spec: FaultSpec =
            serde_json::from_value(json!({"fail_calls": {"purchase.order.line.load": 2}}))
                .expect("spec");
        faults.apply(&spec).expect("apply");
        let line_load = || Some("purchase.order.line.load".to_string());
        assert_eq!(
            faults.verdict(|| Some("purchase.order.load".to_string())),
            Verdict::Proceed
        );
        assert_eq!(faults.verdict(|| None), Verdict::Proceed);
        assert_eq!(
            faults.verdict(line_load),
            Verdict::Fail(FaultKind::Unavailable)
        );
        assert_eq!(
            faults.verdict(line_load),
            Verdict::Fail(FaultKind::Unavailable)
        );
        assert_eq!(faults.verdict(line_load), Verdict::Proceed);
        assert_eq!(faults.to_json()["failed_calls"], 2);
        assert_eq!(faults.to_json()["fail_calls"], json!({}));
    }

    #[test]
    fn a_bad_call_name_changes_nothing() {
        let mut faults = Faults::default();
        let spec: FaultSpec = serde_json::from_value(
            json!({"latency_ms": 5, "fail_calls": {"purchase.order.write": 1, "write": 1}}),
        )
        .expect("spec");
        let err = faults.apply(&spec).expect_err("a name without a model");
        assert!(err.contains("\"write\""), "{err}");
        assert!(faults.fail_calls.is_empty());
        assert!(faults.latency.is_zero());
    }

    #[test]
    fn same_seed_same_draws() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!((0.0..1.0).contains(&x));
        }
    }
}
