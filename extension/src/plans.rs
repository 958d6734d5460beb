//! Prepared statements kept for the life of the backend, keyed by their SQL text.
//!
//! Planning a statement costs more than running these small ones, and the capture trigger runs
//! them on every user write. Statements that name a user table are keyed by text that contains
//! the table's current name, so a renamed table simply gets a new entry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys::PgOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};

use crate::error::Result;

/// More distinct statements than this in one backend means names keep changing: start over
/// rather than grow without bound.
const MAX_PLANS: usize = 256;

thread_local! {
    static PLANS: RefCell<HashMap<String, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// The kept plan for `sql`, preparing it on first use. PostgreSQL's plan cache re-plans a kept
/// statement by itself when the objects it uses change.
pub fn plan(
    client: &SpiClient<'_>,
    sql: &str,
    args: &[PgOid],
) -> Result<Rc<OwnedPreparedStatement>> {
    if let Some(plan) = PLANS.with(|p| p.borrow().get(sql).cloned()) {
        return Ok(plan);
    }
    let plan = Rc::new(client.prepare_mut(sql, args)?.keep());
    PLANS.with(|p| {
        let mut plans = p.borrow_mut();
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(sql.to_string(), plan.clone());
    });
    Ok(plan)
}
