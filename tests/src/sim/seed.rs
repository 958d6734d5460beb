//! Seed data: vendors, purchasable products and vendor price lists, loaded at start and by
//! `POST /__sim/reset`. `--seed FILE` replaces the default with a JSON file of the same shape.

use super::errors::OdooError;
use super::orm::{format_now, Env};
use super::schema::Schema;
use super::store::{Store, Txn};
use super::world::{Settings, UserAuth, World};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The admin's time zone (res.users `tz`): +05:30 all year, so `load` without a time zone in
/// its context visibly shifts datetimes.
pub const ADMIN_TZ: &str = "Asia/Kolkata";

/// The whole seed file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Company settings.
    #[serde(default)]
    pub company: SeedCompany,
    /// Users besides the admin given on the command line.
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Taxes.
    #[serde(default)]
    pub taxes: Vec<SeedTax>,
    /// Vendors and other contacts.
    #[serde(default)]
    pub partners: Vec<SeedPartner>,
    /// Products.
    #[serde(default)]
    pub products: Vec<SeedProduct>,
    /// Vendor price-list entries.
    #[serde(default)]
    pub supplierinfo: Vec<SeedSupplierInfo>,
}

/// The company.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeedCompany {
    /// Company name.
    pub name: String,
    /// Currency code (its record is named after it).
    pub currency: String,
    /// `one_step` or `two_step`.
    pub po_double_validation: String,
    /// Two-step approval threshold.
    pub po_double_validation_amount: Decimal,
    /// Lock orders on confirmation.
    pub lock_confirmed_po: bool,
    /// Decimal precisions (`{"product_price": 3}` for prices of three decimals).
    pub precision: super::world::Precision,
}

impl Default for SeedCompany {
    fn default() -> Self {
        SeedCompany {
            name: "YourCompany".into(),
            currency: "USD".into(),
            po_double_validation: "one_step".into(),
            po_double_validation_amount: Decimal::from(5000),
            lock_confirmed_po: false,
            precision: super::world::Precision::default(),
        }
    }
}

/// A user besides the admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Login.
    pub login: String,
    /// Password.
    pub password: String,
    /// API key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Purchase manager (may approve above the two-step threshold).
    #[serde(default)]
    pub purchase_manager: bool,
    /// Models refused to this user (`AccessError` on every call).
    #[serde(default)]
    pub denied_models: Vec<String>,
}

/// A tax.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTax {
    /// Name, e.g. `15%`.
    pub name: String,
    /// Percentage.
    pub amount: Decimal,
    /// Put on products that name no taxes.
    #[serde(default)]
    pub default_purchase: bool,
}

/// A contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPartner {
    /// Name.
    pub name: String,
    /// Internal reference (how our worker finds vendors).
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Vendor rank (> 0 for vendors).
    #[serde(default = "one")]
    pub supplier_rank: i64,
}

fn one() -> i64 {
    1
}

/// A product.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProduct {
    /// Name.
    pub name: String,
    /// Internal reference.
    #[serde(default)]
    pub default_code: Option<String>,
    /// Cost.
    pub standard_price: Decimal,
    /// Sales price.
    #[serde(default)]
    pub list_price: Decimal,
    /// Names of purchase taxes; the default purchase taxes when absent.
    #[serde(default)]
    pub taxes: Option<Vec<String>>,
}

/// A vendor price-list entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSupplierInfo {
    /// Vendor, by name or `ref`.
    pub vendor: String,
    /// Product, by default code or name.
    pub product: String,
    /// Minimal quantity for this price.
    pub min_qty: Decimal,
    /// Unit price.
    pub price: Decimal,
    /// Discount in percent (17+; Odoo's lines take it with the price).
    #[serde(default)]
    pub discount: Decimal,
    /// Lead time in days.
    #[serde(default = "one")]
    pub delay: i64,
}

fn d(text: &str) -> Decimal {
    text.parse().unwrap_or_default()
}

impl Seed {
    /// The default data: five vendors, eight products, and price lists including Gemini
    /// Furniture's Office Chair entry with `min_qty` 12 (the case seen on 19.0).
    pub fn default_data() -> Self {
        let vendor = |name: &str, r: &str, email: &str| SeedPartner {
            name: name.into(),
            reference: Some(r.into()),
            email: Some(email.into()),
            supplier_rank: 1,
        };
        let product = |name: &str, code: &str, cost: &str, price: &str| SeedProduct {
            name: name.into(),
            default_code: Some(code.into()),
            standard_price: d(cost),
            list_price: d(price),
            taxes: None,
        };
        let info = |vendor: &str, product: &str, min: &str, price: &str| SeedSupplierInfo {
            vendor: vendor.into(),
            product: product.into(),
            min_qty: d(min),
            price: d(price),
            discount: Decimal::ZERO,
            delay: 1,
        };
        Seed {
            company: SeedCompany::default(),
            users: vec![SeedUser {
                login: "viewer".into(),
                password: "viewer".into(),
                api_key: Some("viewer-api-key".into()),
                name: Some("Restricted Viewer".into()),
                purchase_manager: false,
                denied_models: vec!["purchase.order".into(), "purchase.order.line".into()],
            }],
            taxes: vec![
                SeedTax {
                    name: "15%".into(),
                    amount: d("15"),
                    default_purchase: true,
                },
                SeedTax {
                    name: "5%".into(),
                    amount: d("5"),
                    default_purchase: false,
                },
            ],
            partners: vec![
                vendor(
                    "Gemini Furniture",
                    "V-GEMINI",
                    "gemini.furniture39@example.com",
                ),
                vendor("Wood Corner", "V-WOOD", "wood.corner26@example.com"),
                vendor("Azure Interior", "V-AZURE", "azure.Interior24@example.com"),
                vendor("Deco Addict", "V-DECO", "deco.addict82@example.com"),
                vendor("Ready Mat", "V-READY", "ready.mat28@example.com"),
            ],
            products: vec![
                product("Office Chair", "FURN_7777", "55", "70"),
                product("Office Chair Black", "FURN_0269", "120.5", "140"),
                product("Large Desk", "FURN_8220", "500", "600"),
                product("Corner Desk Left Sit", "FURN_0001", "78", "85"),
                product("Drawer Black", "FURN_8900", "20", "25"),
                product("Cabinet with Doors", "E-COM11", "120.5", "140"),
                product("Storage Box", "E-COM08", "14", "15.8"),
                product("Desk Pad", "FURN_0002", "2.5", "4"),
            ],
            supplierinfo: vec![
                info("Gemini Furniture", "FURN_7777", "12", "50"),
                info("Wood Corner", "FURN_8220", "1", "480"),
                info("Wood Corner", "FURN_8220", "10", "450"),
                info("Azure Interior", "E-COM11", "1", "115"),
                info("Deco Addict", "FURN_8900", "5", "18.5"),
                info("Ready Mat", "E-COM08", "1", "13"),
            ],
        }
    }

    /// Builds a fresh database from this seed, with the admin of the command line as uid 2.
    pub fn build(&self, schema: &Schema, admin: &UserAuth) -> Result<World, OdooError> {
        let mut store = Store::default();
        let mut settings = Settings {
            po_double_validation: self.company.po_double_validation.clone(),
            po_double_validation_amount: self.company.po_double_validation_amount,
            lock_confirmed_po: self.company.lock_confirmed_po,
            company_id: 1,
            currency_id: 1,
            default_uom_id: 1,
            default_purchase_tax_ids: vec![],
            precision: self.company.precision,
        };
        let mut users = vec![admin.clone()];
        let now = format_now(chrono::Utc::now());
        // Taxes first: products created later pick up the default purchase taxes.
        let mut tax_ids = Vec::new();
        {
            let mut env = new_env(&mut store, schema, &settings, &now);
            let obj =
                |v: Value| -> Map<String, Value> { v.as_object().cloned().unwrap_or_default() };
            env.create_one(
                "res.currency",
                &obj(json!({"name": self.company.currency, "symbol": "$", "rounding": 0.01})),
            )?;
            env.create_one(
                "res.company",
                &obj(json!({"name": self.company.name, "currency_id": 1})),
            )?;
            env.create_one("uom.uom", &obj(json!({"name": "Units"})))?;
            env.create_one("uom.uom", &obj(json!({"name": "Dozens"})))?;
            // uid 1 is OdooBot in Odoo; the admin is uid 2.
            env.create_one(
                "res.users",
                &obj(json!({"name": "OdooBot", "login": "__system__", "active": false})),
            )?;
            env.create_one(
                "res.users",
                // A time zone other than UTC, as admins usually have: `load` reads datetimes
                // in it unless the call's context names another.
                &obj(json!({"name": "Mitchell Admin", "login": admin.login, "tz": ADMIN_TZ})),
            )?;
            for user in &self.users {
                let name = user.name.clone().unwrap_or_else(|| user.login.clone());
                let id = env.create_one(
                    "res.users",
                    &obj(json!({"name": name, "login": user.login})),
                )?;
                users.push(UserAuth {
                    id,
                    login: user.login.clone(),
                    password: user.password.clone(),
                    api_key: user.api_key.clone(),
                    purchase_manager: user.purchase_manager,
                    denied_models: user.denied_models.clone(),
                    hidden: Default::default(),
                });
            }
            env.create_one(
                "res.partner",
                &obj(json!({"name": self.company.name, "is_company": true})),
            )?;
            env.create_one(
                "res.partner",
                &obj(json!({"name": "Mitchell Admin", "email": "admin@yourcompany.example.com"})),
            )?;
            for tax in &self.taxes {
                let id = env.create_one(
                    "account.tax",
                    &obj(json!({"name": tax.name, "amount": tax.amount.to_string().parse::<f64>().unwrap_or(0.0),
                        "amount_type": "percent", "type_tax_use": "purchase"})),
                )?;
                tax_ids.push((tax.name.clone(), id, tax.default_purchase));
            }
        }
        settings.default_purchase_tax_ids = tax_ids
            .iter()
            .filter(|(_, _, default)| *default)
            .map(|(_, id, _)| *id)
            .collect();
        let mut env = new_env(&mut store, schema, &settings, &now);
        let obj = |v: Value| -> Map<String, Value> { v.as_object().cloned().unwrap_or_default() };
        let mut partner_ids = Vec::new();
        for p in &self.partners {
            let id = env.create_one(
                "res.partner",
                &obj(
                    json!({"name": p.name, "ref": p.reference.clone().unwrap_or_default(),
                    "email": p.email.clone().unwrap_or_default(), "supplier_rank": p.supplier_rank,
                    "is_company": true}),
                ),
            )?;
            partner_ids.push((p.name.clone(), p.reference.clone(), id));
        }
        let mut product_ids = Vec::new();
        for p in &self.products {
            let taxes: Vec<i64> = match &p.taxes {
                None => settings.default_purchase_tax_ids.clone(),
                Some(names) => tax_ids
                    .iter()
                    .filter(|(n, _, _)| names.contains(n))
                    .map(|(_, id, _)| *id)
                    .collect(),
            };
            let id = env.create_one(
                "product.product",
                &obj(json!({"name": p.name, "default_code": p.default_code.clone().unwrap_or_default(),
                    "standard_price": dec_f64(p.standard_price), "list_price": dec_f64(p.list_price),
                    "supplier_taxes_id": [[6, 0, taxes]]})),
            )?;
            product_ids.push((p.name.clone(), p.default_code.clone(), id));
        }
        for (seq, s) in self.supplierinfo.iter().enumerate() {
            let vendor = partner_ids
                .iter()
                .find(|(n, r, _)| *n == s.vendor || r.as_deref() == Some(s.vendor.as_str()))
                .map(|(_, _, id)| *id)
                .ok_or_else(|| OdooError::value(format!("seed: unknown vendor '{}'", s.vendor)))?;
            let product = product_ids
                .iter()
                .find(|(n, c, _)| *n == s.product || c.as_deref() == Some(s.product.as_str()))
                .map(|(_, _, id)| *id)
                .ok_or_else(|| {
                    OdooError::value(format!("seed: unknown product '{}'", s.product))
                })?;
            let tmpl = env.get("product.product", product, "product_tmpl_id");
            let mut vals = obj(
                json!({"partner_id": vendor, "product_tmpl_id": tmpl.ref_id(),
                "min_qty": dec_f64(s.min_qty), "price": dec_f64(s.price), "delay": s.delay,
                "sequence": seq as i64 + 1}),
            );
            if !s.discount.is_zero() {
                vals.insert("discount".into(), json!(dec_f64(s.discount)));
            }
            env.create_one("product.supplierinfo", &vals)?;
        }
        drop(env);
        Ok(World {
            store,
            settings,
            users,
        })
    }
}

fn dec_f64(d: Decimal) -> f64 {
    d.to_string().parse().unwrap_or(0.0)
}

fn new_env<'a>(
    store: &'a mut Store,
    schema: &'a Schema,
    settings: &'a Settings,
    now: &str,
) -> Env<'a> {
    Env {
        txn: Txn::new(store),
        schema,
        settings,
        uid: 1,
        purchase_manager: true,
        now: now.to_string(),
        touched_orders: BTreeSet::new(),
        planned_kept: BTreeSet::new(),
        vendor_written: BTreeSet::new(),
        input_tz: None,
        active_test: true,
    }
}
