//! Test support for odoo_sync: a private PostgreSQL cluster for end-to-end tests and the Odoo
//! simulator (`odoo-sim`) that stands in for a real Odoo server.

pub mod pg_cluster;
pub mod sim;
