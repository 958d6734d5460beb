//! Local supplier → Odoo `res.partner`, local product → Odoo `product.product`.
//!
//! Order of strategies (DESIGN.md): the map table (`odoo_sync.partner_map` /
//! `odoo_sync.product_map`, manual or learned), then partner `ref` = local supplier id /
//! product `default_code` = local product code (or product id), then the exact name. What a
//! strategy finds is written back into the map table, so the next order costs no Odoo call.
//! A value no strategy finds is a permanent error naming the value and the strategies tried.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::PushError;
use crate::odoo::{Domain, OdooClient};

/// Resolves references, remembering what it found for the life of the resolver.
#[derive(Debug, Default)]
pub struct Resolver {
    partners: HashMap<String, i64>,
    products: HashMap<String, i64>,
}

/// The product columns of one order item.
#[derive(Debug, Clone)]
pub struct ProductRef<'a> {
    /// Local product id (the key of product_map).
    pub product_id: &'a str,
    /// Local product code, compared with `default_code`.
    pub product_code: Option<&'a str>,
    /// Local product name, compared with `name`.
    pub product_name: Option<&'a str>,
}

impl Resolver {
    /// A resolver with an empty in-process cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `res.partner` id of a local supplier.
    pub async fn partner(
        &mut self,
        pg: &Client,
        odoo: &OdooClient,
        supplier_id: &str,
        supplier_name: Option<&str>,
    ) -> Result<i64, PushError> {
        if let Some(id) = self.partners.get(supplier_id) {
            return Ok(*id);
        }
        let row = pg
            .query_opt(
                "SELECT odoo_partner_id FROM odoo_sync.partner_map WHERE local_supplier_id = $1",
                &[&supplier_id],
            )
            .await?;
        if let Some(row) = row {
            let id = i64::from(row.try_get::<_, i32>(0)?);
            self.partners.insert(supplier_id.to_string(), id);
            return Ok(id);
        }
        let mut tried = vec![format!("partner_map['{supplier_id}']")];
        let mut found = None;
        let by_ref = odoo
            .search(
                "res.partner",
                &Domain::eq("ref", supplier_id),
                Some(2),
                Some("id"),
            )
            .await?;
        tried.push(format!("res.partner ref = '{supplier_id}'"));
        if let Some(id) = by_ref.first() {
            found = Some((*id, "ref"));
        } else if let Some(name) = supplier_name.filter(|n| !n.is_empty()) {
            let by_name = odoo
                .search(
                    "res.partner",
                    &Domain::eq("name", name),
                    Some(2),
                    Some("id"),
                )
                .await?;
            tried.push(format!("res.partner name = '{name}'"));
            if let Some(id) = by_name.first() {
                found = Some((*id, "name"));
            }
        }
        let Some((id, source)) = found else {
            return Err(PushError::Unresolved(format!(
                "supplier '{supplier_id}' not found in Odoo (tried {})",
                tried.join(", ")
            )));
        };
        learn(
            pg,
            "partner_map",
            "local_supplier_id",
            "odoo_partner_id",
            supplier_id,
            id,
            source,
        )
        .await?;
        self.partners.insert(supplier_id.to_string(), id);
        Ok(id)
    }

    /// The `product.product` id of a local product.
    pub async fn product(
        &mut self,
        pg: &Client,
        odoo: &OdooClient,
        product: &ProductRef<'_>,
    ) -> Result<i64, PushError> {
        let key = product.product_id;
        if let Some(id) = self.products.get(key) {
            return Ok(*id);
        }
        let row = pg
            .query_opt(
                "SELECT odoo_product_id FROM odoo_sync.product_map WHERE local_product_id = $1",
                &[&key],
            )
            .await?;
        if let Some(row) = row {
            let id = i64::from(row.try_get::<_, i32>(0)?);
            self.products.insert(key.to_string(), id);
            return Ok(id);
        }
        let mut tried = vec![format!("product_map['{key}']")];
        let mut found = None;
        let code = product
            .product_code
            .filter(|c| !c.is_empty())
            .unwrap_or(key);
        let by_code = odoo
            .search(
                "product.product",
                &Domain::eq("default_code", code),
                Some(2),
                Some("id"),
            )
            .await?;
        tried.push(format!("product.product default_code = '{code}'"));
        if let Some(id) = by_code.first() {
            found = Some((*id, "default_code"));
        } else if let Some(name) = product.product_name.filter(|n| !n.is_empty()) {
            let by_name = odoo
                .search(
                    "product.product",
                    &Domain::eq("name", name),
                    Some(2),
                    Some("id"),
                )
                .await?;
            tried.push(format!("product.product name = '{name}'"));
            if let Some(id) = by_name.first() {
                found = Some((*id, "name"));
            }
        }
        let Some((id, source)) = found else {
            return Err(PushError::Unresolved(format!(
                "product '{key}' not found in Odoo (tried {})",
                tried.join(", ")
            )));
        };
        learn(
            pg,
            "product_map",
            "local_product_id",
            "odoo_product_id",
            key,
            id,
            source,
        )
        .await?;
        self.products.insert(key.to_string(), id);
        Ok(id)
    }
}

/// Stores a learned id; a row already there (manual, or learned by another worker) wins.
async fn learn(
    pg: &Client,
    table: &str,
    key_col: &str,
    id_col: &str,
    key: &str,
    id: i64,
    source: &str,
) -> Result<(), PushError> {
    let Ok(id) = i32::try_from(id) else {
        return Ok(());
    };
    pg.execute(
        &format!(
            "INSERT INTO odoo_sync.{table} ({key_col}, {id_col}, source) VALUES ($1, $2, $3) \
             ON CONFLICT ({key_col}) DO NOTHING"
        ),
        &[&key, &id, &source],
    )
    .await?;
    Ok(())
}
