//! odoo_sync: the in-database half of the PostgreSQL ↔ Odoo purchase order sync.
//!
//! The SQL contract (tables, queue, requests, views, roles) is hand-written in the top-level
//! `sql/` folder and loaded here in order. Rust holds what must be fast or must not be forgeable:
//! the capture triggers that run on every write to a tracked table, and the switch to a table
//! owner's privileges when odoo_sync writes back to user tables.

use pgrx::prelude::*;

mod capture;
mod error;
mod notify;
mod plans;
mod privileges;
mod tuple;
mod unguarded;

::pgrx::pg_module_magic!(name, version);

/// Runs when a backend loads the library: registers odoo_sync's GUC settings.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    notify::define_settings();
}

extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../../sql/settings.sql",
    name = "settings",
    requires = [
        capture::order_trigger::capture_order_change,
        capture::item_trigger::capture_item_change,
        notify::_notify,
        privileges::_exec_as_owner,
        privileges::_query_as_owner
    ]
);
extension_sql_file!(
    "../../sql/tracking.sql",
    name = "tracking",
    requires = ["settings"]
);
extension_sql_file!(
    "../../sql/queue.sql",
    name = "queue",
    requires = ["tracking"]
);
extension_sql_file!(
    "../../sql/requests.sql",
    name = "requests",
    requires = ["queue"]
);
extension_sql_file!(
    "../../sql/twoway.sql",
    name = "twoway",
    requires = ["requests"]
);
extension_sql_file!(
    "../../sql/conflicts.sql",
    name = "conflicts",
    requires = ["twoway"]
);
extension_sql_file!(
    "../../sql/monitoring.sql",
    name = "monitoring",
    requires = ["conflicts"]
);
extension_sql_file!(
    "../../sql/views.sql",
    name = "views",
    requires = ["monitoring"]
);
extension_sql_file!("../../sql/security.sql", name = "security", finalize);
