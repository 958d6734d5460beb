//! The simulated database: records plus the company settings and the users' credentials.

use super::store::Store;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Company settings that change purchase behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `one_step` or `two_step` (orders at or above `po_double_validation_amount` need a
    /// manager when `two_step`).
    pub po_double_validation: String,
    /// Threshold of the two-step approval.
    pub po_double_validation_amount: Decimal,
    /// Lock orders on confirmation (`done` on 16–18, `locked` on 19).
    pub lock_confirmed_po: bool,
    /// The company record id.
    pub company_id: i64,
    /// The company currency id.
    pub currency_id: i64,
    /// Unit of measure given to products created without one.
    pub default_uom_id: i64,
    /// Purchase taxes given to products created without any.
    pub default_purchase_tax_ids: Vec<i64>,
    /// The decimal precisions float fields are rounded to.
    #[serde(default)]
    pub precision: Precision,
}

/// Digits of Odoo's decimal precisions (`decimal.precision`, set per database in Settings >
/// Technical). Defaults of the `product` module's data on 16–17: 2 for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Precision {
    /// `Product Price`.
    pub product_price: u32,
    /// `Discount`.
    pub discount: u32,
    /// `Product Unit of Measure`.
    pub product_uom: u32,
}

impl Default for Precision {
    fn default() -> Self {
        Precision {
            product_price: 2,
            discount: 2,
            product_uom: 2,
        }
    }
}

impl Precision {
    /// The digits of precision `digits`.
    pub fn of(&self, digits: super::schema::Digits) -> u32 {
        match digits {
            super::schema::Digits::ProductPrice => self.product_price,
            super::schema::Digits::Discount => self.discount,
            super::schema::Digits::ProductUom => self.product_uom,
        }
    }
}

/// Credentials and rights of one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserAuth {
    /// `res.users` id (the uid).
    pub id: i64,
    /// Login.
    pub login: String,
    /// Password.
    pub password: String,
    /// API key, usable wherever the password is, and as JSON-2 bearer token.
    pub api_key: Option<String>,
    /// Purchase manager: may approve orders above the two-step threshold.
    pub purchase_manager: bool,
    /// Models this user may not touch at all: every call on them raises `AccessError`.
    pub denied_models: Vec<String>,
    /// Records that record rules hide from this user, by model (an order of a company the user
    /// has no access to): searches leave them out without a word, and a call on them raises
    /// `AccessError`. Set by tests on the in-process simulator.
    #[serde(default)]
    pub hidden: std::collections::BTreeMap<String, std::collections::BTreeSet<i64>>,
}

/// All state of one simulated database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct World {
    /// Records.
    pub store: Store,
    /// Company settings.
    pub settings: Settings,
    /// Users who can log in.
    pub users: Vec<UserAuth>,
}

impl World {
    /// The user whose password or API key is `secret`, found by login.
    pub fn login(&self, login: &str, secret: &str) -> Option<&UserAuth> {
        self.users.iter().find(|u| {
            u.login == login && (u.password == secret || u.api_key.as_deref() == Some(secret))
        })
    }
    /// The user `uid` if `secret` is its password or API key (Odoo's `security.check`).
    pub fn check(&self, uid: i64, secret: &str) -> Option<&UserAuth> {
        self.users
            .iter()
            .find(|u| u.id == uid && (u.password == secret || u.api_key.as_deref() == Some(secret)))
    }
    /// The user owning the API key `key` (JSON-2 bearer authentication).
    pub fn by_api_key(&self, key: &str) -> Option<&UserAuth> {
        self.users
            .iter()
            .find(|u| u.api_key.as_deref() == Some(key))
    }
}
