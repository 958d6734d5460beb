//! Our Odoo client: JSON-RPC and JSON-2 over reqwest (rustls) and serde_json, with errors
//! classified as transient or permanent where they are born. `shared/odoo-api.md` holds the
//! facts about Odoo it follows.
//!
//! - [`config`]: URL, database, login, [`Secret`], timeouts, protocol choice;
//! - [`error`]: [`OdooError`] and its classification;
//! - [`jsonrpc`], [`json2`]: the two wire formats and the reading of their replies;
//! - [`client`]: [`OdooClient`], the typed calls used by the worker;
//! - [`domain`]: [`Domain`], search domains built without splicing text;
//! - [`fence`]: [`WriteFence`], no writes once a batch's leases may have run out;
//! - [`money`]: floats from Odoo to [`rust_decimal::Decimal`] at the edge;
//! - [`version`]: [`OdooVersion`] and the [`FieldNames`] renamed in Odoo 19.

pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod fence;
pub mod http;
pub mod json2;
pub mod jsonrpc;
pub mod money;
pub mod version;

pub use client::{LoadMessage, LoadResult, OdooClient, Protocol, Session};
pub use config::{OdooConfig, ProtocolChoice, Secret, SecretKind};
pub use domain::{Domain, Op};
pub use error::{OdooError, OdooResult, ServerError};
pub use fence::WriteFence;
pub use version::{FieldNames, OdooVersion};
