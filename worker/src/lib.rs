//! Library of `odoo-sync-worker`: the parts of the worker that tests and the binary share.

pub mod check;
pub mod http;
pub mod import;
pub mod metrics;
pub mod odoo;
pub mod pg_tls;
pub mod pull;
pub mod push;
pub mod queue;
pub mod run;
pub mod settings_file;
pub mod status;
pub mod verify;
