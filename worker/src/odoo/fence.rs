//! [`WriteFence`]: stops a worker from writing to Odoo once the lease of its jobs may have
//! run out.
//!
//! A job's lease is the queue's only guard against two workers pushing one order, and Odoo
//! cannot check an attempt token. A worker that cannot extend its leases (its database
//! connection lost, its process paused) keeps running its batch; after the lease expires
//! another worker pushes the same order, perhaps a newer version of it, and a late write of the
//! first would put the older version back in Odoo. So the batch's client refuses every call
//! that can write once its deadline, the lease as last extended minus a margin, has passed: the
//! job then fails with a transient error, or is already someone else's.
//!
//! What remains: a call sent just before the deadline that Odoo takes longer than the margin to
//! commit. The margin is a third of the lease (the leases are extended every third).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::OdooError;

/// Methods that only read: they are allowed after the deadline (nothing they do can overwrite
/// a newer push).
const READ_ONLY_METHODS: &[&str] = &[
    "read",
    "search",
    "search_read",
    "search_count",
    "fields_get",
    "name_search",
    "read_group",
    "check_access_rights",
    "has_group",
];

/// A deadline for writes, moved on each time the leases are extended.
#[derive(Debug)]
pub struct WriteFence {
    deadline: Mutex<Instant>,
    margin: Duration,
}

impl WriteFence {
    /// A fence for jobs whose lease of `lease` was asked for at `asked_at` (taken before the
    /// request, so the deadline is never later than the database's).
    pub fn new(asked_at: Instant, lease: Duration) -> Self {
        let margin = lease / 3;
        WriteFence {
            deadline: Mutex::new(asked_at + lease - margin),
            margin,
        }
    }

    /// The leases were extended by `lease`, as asked at `asked_at`.
    pub fn extended(&self, asked_at: Instant, lease: Duration) {
        let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        *deadline = (*deadline).max(asked_at + lease - self.margin);
    }

    /// Refuses `model.method` when it can write and the deadline has passed.
    pub fn check(&self, model: &str, method: &str) -> Result<(), OdooError> {
        if READ_ONLY_METHODS.contains(&method) {
            return Ok(());
        }
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now < deadline {
            return Ok(());
        }
        Err(OdooError::LeaseExpiring {
            call: format!("{model}.{method}"),
            late: now - deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stop_at_the_deadline_and_reads_go_on() {
        let lease = Duration::from_secs(3);
        let fence = WriteFence::new(Instant::now() - Duration::from_secs(2), lease);
        // Asked 2 s ago for 3 s, margin 1 s: the deadline is now.
        assert!(fence.check("purchase.order", "read").is_ok());
        let err = fence
            .check("purchase.order", "load")
            .expect_err("past the deadline");
        assert!(err.is_transient());
        assert_eq!(err.kind(), "lease_expiring");
        assert!(fence.check("purchase.order", "button_confirm").is_err());
        fence.extended(Instant::now(), lease);
        assert!(fence.check("purchase.order", "load").is_ok());
        // An older extension does not move the deadline back.
        fence.extended(Instant::now() - Duration::from_secs(10), lease);
        assert!(fence.check("purchase.order", "write").is_ok());
    }
}
