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

/// One value to resolve in bulk: the map-table key, the code compared with `ref` /
/// `default_code`, and the name compared with `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Wanted {
    /// Key of the map table (local supplier id / local product id).
    pub key: String,
    /// Compared with `ref` / `default_code`.
    pub code: String,
    /// Compared with `name` when the code finds nothing.
    pub name: Option<String>,
}

/// How one kind of reference is resolved.
struct Kind {
    label: &'static str,
    table: &'static str,
    key_col: &'static str,
    id_col: &'static str,
    model: &'static str,
    code_field: &'static str,
}

const PARTNER: Kind = Kind {
    label: "supplier",
    table: "partner_map",
    key_col: "local_supplier_id",
    id_col: "odoo_partner_id",
    model: "res.partner",
    code_field: "ref",
};

const PRODUCT: Kind = Kind {
    label: "product",
    table: "product_map",
    key_col: "local_product_id",
    id_col: "odoo_product_id",
    model: "product.product",
    code_field: "default_code",
};

impl Resolver {
    /// The cached `res.partner` id of a local supplier (after [`Resolver::partners_many`]).
    pub fn cached_partner(&self, supplier_id: &str) -> Option<i64> {
        self.partners.get(supplier_id).copied()
    }

    /// The cached `product.product` id of a local product (after [`Resolver::products_many`]).
    pub fn cached_product(&self, product_id: &str) -> Option<i64> {
        self.products.get(product_id).copied()
    }

    /// Number of references held in the in-process cache.
    pub fn cached_len(&self) -> usize {
        self.partners.len() + self.products.len()
    }

    /// Resolves many suppliers at once: one map-table query, then one `search_read` per
    /// strategy for all the values still unknown. Returns the values no strategy found, with
    /// the message naming the strategies tried; the others are in the cache.
    pub async fn partners_many(
        &mut self,
        pg: &Client,
        odoo: &OdooClient,
        wanted: &[Wanted],
    ) -> Result<HashMap<String, String>, PushError> {
        resolve_many(&mut self.partners, &PARTNER, pg, odoo, wanted).await
    }

    /// Resolves many products at once (see [`Resolver::partners_many`]).
    pub async fn products_many(
        &mut self,
        pg: &Client,
        odoo: &OdooClient,
        wanted: &[Wanted],
    ) -> Result<HashMap<String, String>, PushError> {
        resolve_many(&mut self.products, &PRODUCT, pg, odoo, wanted).await
    }
}

/// First id per value of `field` among the records of `model` whose `field` is in `values`.
async fn first_ids_by(
    odoo: &OdooClient,
    model: &str,
    field: &str,
    values: Vec<String>,
) -> Result<HashMap<String, i64>, PushError> {
    let mut found = HashMap::new();
    if values.is_empty() {
        return Ok(found);
    }
    let rows = odoo
        .search_read(
            model,
            &Domain::is_in(field, values),
            &[field],
            0,
            None,
            Some("id"),
        )
        .await?;
    for r in rows {
        let (Some(id), Some(v)) = (
            r.get("id").and_then(serde_json::Value::as_i64),
            r.get(field).and_then(serde_json::Value::as_str),
        ) else {
            continue;
        };
        found.entry(v.to_string()).or_insert(id);
    }
    Ok(found)
}

async fn resolve_many(
    cache: &mut HashMap<String, i64>,
    kind: &Kind,
    pg: &Client,
    odoo: &OdooClient,
    wanted: &[Wanted],
) -> Result<HashMap<String, String>, PushError> {
    let mut missing: Vec<&Wanted> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for w in wanted {
        let hit = cache.contains_key(&w.key);
        crate::metrics::global().cache_lookup(hit);
        if !hit && seen.insert(w.key.as_str()) {
            missing.push(w);
        }
    }
    let mut errors = HashMap::new();
    if missing.is_empty() {
        return Ok(errors);
    }
    let keys: Vec<&str> = missing.iter().map(|w| w.key.as_str()).collect();
    let rows = pg
        .query(
            &format!(
                "SELECT {key}, {id} FROM odoo_sync.{table} WHERE {key} = ANY($1)",
                key = kind.key_col,
                id = kind.id_col,
                table = kind.table
            ),
            &[&keys],
        )
        .await?;
    for row in rows {
        let key: String = row.try_get(0)?;
        let id: i32 = row.try_get(1)?;
        cache.insert(key, i64::from(id));
    }
    missing.retain(|w| !cache.contains_key(&w.key));
    if missing.is_empty() {
        return Ok(errors);
    }
    let mut codes: Vec<String> = missing.iter().map(|w| w.code.clone()).collect();
    codes.sort();
    codes.dedup();
    let by_code = first_ids_by(odoo, kind.model, kind.code_field, codes).await?;
    let mut learned: Vec<(String, i64, &'static str)> = Vec::new();
    let mut by_name_wanted = Vec::new();
    for w in &missing {
        match by_code.get(&w.code) {
            Some(id) => learned.push((w.key.clone(), *id, kind.code_field)),
            None => by_name_wanted.push(*w),
        }
    }
    let mut names: Vec<String> = by_name_wanted
        .iter()
        .filter_map(|w| w.name.clone().filter(|n| !n.is_empty()))
        .collect();
    names.sort();
    names.dedup();
    let by_name = first_ids_by(odoo, kind.model, "name", names).await?;
    for w in by_name_wanted {
        let name = w.name.as_deref().filter(|n| !n.is_empty());
        match name.and_then(|n| by_name.get(n)) {
            Some(id) => learned.push((w.key.clone(), *id, "name")),
            None => {
                let mut tried = vec![
                    format!("{}['{}']", kind.table, w.key),
                    format!("{} {} = '{}'", kind.model, kind.code_field, w.code),
                ];
                if let Some(n) = name {
                    tried.push(format!("{} name = '{n}'", kind.model));
                }
                errors.insert(
                    w.key.clone(),
                    format!(
                        "{} '{}' not found in Odoo (tried {})",
                        kind.label,
                        w.key,
                        tried.join(", ")
                    ),
                );
            }
        }
    }
    if !learned.is_empty() {
        let keys: Vec<&str> = learned.iter().map(|l| l.0.as_str()).collect();
        let ids: Vec<i32> = learned
            .iter()
            .map(|l| i32::try_from(l.1).unwrap_or(i32::MAX))
            .collect();
        let sources: Vec<&str> = learned.iter().map(|l| l.2).collect();
        pg.execute(
            &format!(
                "INSERT INTO odoo_sync.{table} ({key}, {id}, source) \
                 SELECT k, i, s FROM unnest($1::text[], $2::int[], $3::text[]) AS u(k, i, s) \
                 WHERE i < 2147483647 ON CONFLICT ({key}) DO NOTHING",
                table = kind.table,
                key = kind.key_col,
                id = kind.id_col
            ),
            &[&keys, &ids, &sources],
        )
        .await?;
        for (key, id, _) in learned {
            cache.insert(key, id);
        }
    }
    Ok(errors)
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
