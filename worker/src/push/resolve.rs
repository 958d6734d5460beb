//! Local supplier → Odoo `res.partner`, local product → Odoo `product.product`.
//!
//! Order of strategies (DESIGN.md): the map table (`odoo_sync.partner_map` /
//! `odoo_sync.product_map`, manual or learned), then partner `ref` = local supplier id /
//! product `default_code` = local product code (or product id), then the exact name — the
//! settings `partner_strategies` / `product_strategies` choose which and in what order. What a
//! strategy finds is written back into the map table, so the next order costs no Odoo call.
//! A value no strategy finds is a permanent error naming the value and the strategies tried.
//! Ids read from the map tables are checked against Odoo first: a contact merged into another
//! or a deleted product leaves a mapping that every push would fail on. A learned one is
//! resolved again and replaced; a manual one (`source = 'manual'`) is the DBA's, and reported.
//!
//! The map tables are the cache workers share; how they answered is the worker's
//! `cache_status` ([`CacheStatus`]). A learned resolution the worker cannot store is kept in
//! memory and the push goes on; a map table it cannot read fails the resolution.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;

use super::PushError;
use crate::odoo::{Domain, OdooClient};

/// Resolves references, remembering what it found for the life of the resolver.
#[derive(Debug, Default)]
pub struct Resolver {
    partners: HashMap<String, i64>,
    products: HashMap<String, i64>,
    health: MapHealth,
}

/// How the shared cache (the map tables) answered the resolver's latest calls, as the worker
/// reports it in its heartbeat (`health()`'s `cache_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Read and written as needed.
    Healthy,
    /// Readable, but a learned resolution could not be stored: this worker resolves from its
    /// memory and Odoo, and other workers ask Odoo again.
    Degraded,
    /// A map table could not be read: resolutions fail.
    Unavailable,
}

impl CacheStatus {
    /// The name `odoo_sync.heartbeat` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Healthy => "HEALTHY",
            CacheStatus::Degraded => "DEGRADED",
            CacheStatus::Unavailable => "UNAVAILABLE",
        }
    }
}

/// Whether the latest read and the latest store of the map tables failed.
#[derive(Debug, Default)]
struct MapHealth {
    read_failed: bool,
    store_failed: bool,
}

/// How a value is looked for in Odoo after the map table (settings `partner_strategies` /
/// `product_strategies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Partner `ref` / product `default_code` equals the local id (or code).
    Code,
    /// Exact `name`.
    Name,
}

impl Strategy {
    /// Parses a setting value (`ref`, `default_code`, `name`); unknown names are skipped (the
    /// extension validates the setting).
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Strategy> {
        names
            .into_iter()
            .filter_map(|n| match n {
                "ref" | "default_code" => Some(Strategy::Code),
                "name" => Some(Strategy::Name),
                _ => None,
            })
            .collect()
    }
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
    /// A resolver with an empty in-process cache and the default strategies.
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
        let wanted = Wanted {
            key: supplier_id.to_string(),
            code: supplier_id.to_string(),
            name: supplier_name.map(str::to_string),
        };
        if let Some(message) = self
            .partners_many(pg, odoo, &[wanted])
            .await?
            .remove(supplier_id)
        {
            return Err(PushError::Unresolved(message));
        }
        self.cached_partner(supplier_id)
            .ok_or_else(|| PushError::Unresolved(format!("supplier '{supplier_id}' not resolved")))
    }

    /// The `product.product` id of a local product.
    pub async fn product(
        &mut self,
        pg: &Client,
        odoo: &OdooClient,
        product: &ProductRef<'_>,
    ) -> Result<i64, PushError> {
        let key = product.product_id;
        let wanted = Wanted {
            key: key.to_string(),
            code: product
                .product_code
                .filter(|c| !c.is_empty())
                .unwrap_or(key)
                .to_string(),
            name: product.product_name.map(str::to_string),
        };
        if let Some(message) = self.products_many(pg, odoo, &[wanted]).await?.remove(key) {
            return Err(PushError::Unresolved(message));
        }
        self.cached_product(key)
            .ok_or_else(|| PushError::Unresolved(format!("product '{key}' not resolved")))
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
    strategies_setting: &'static str,
}

const PARTNER: Kind = Kind {
    label: "supplier",
    table: "partner_map",
    key_col: "local_supplier_id",
    id_col: "odoo_partner_id",
    model: "res.partner",
    code_field: "ref",
    strategies_setting: "partner_strategies",
};

const PRODUCT: Kind = Kind {
    label: "product",
    table: "product_map",
    key_col: "local_product_id",
    id_col: "odoo_product_id",
    model: "product.product",
    code_field: "default_code",
    strategies_setting: "product_strategies",
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

    /// Forgets the in-process resolutions to these `res.partner` and `product.product` ids: the
    /// next lookup of their local values reads the map tables, and checks them, again.
    pub fn forget(&mut self, partners: &HashSet<i64>, products: &HashSet<i64>) {
        self.partners.retain(|_, id| !partners.contains(id));
        self.products.retain(|_, id| !products.contains(id));
    }

    /// Number of references held in the in-process cache.
    pub fn cached_len(&self) -> usize {
        self.partners.len() + self.products.len()
    }

    /// How the map tables answered the latest calls (see [`CacheStatus`]).
    pub fn cache_status(&self) -> CacheStatus {
        if self.health.read_failed {
            CacheStatus::Unavailable
        } else if self.health.store_failed {
            CacheStatus::Degraded
        } else {
            CacheStatus::Healthy
        }
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
        resolve_many(
            &mut self.partners,
            &mut self.health,
            &PARTNER,
            pg,
            odoo,
            wanted,
        )
        .await
    }

    /// Resolves many products at once (see [`Resolver::partners_many`]).
    pub async fn products_many(
        &mut self,
        pg: &Client,
        odoo: &OdooClient,
        wanted: &[Wanted],
    ) -> Result<HashMap<String, String>, PushError> {
        resolve_many(
            &mut self.products,
            &mut self.health,
            &PRODUCT,
            pg,
            odoo,
            wanted,
        )
        .await
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

/// What Odoo holds of the records `ids` of `model`: the ids it has no record for (deleted, or
/// merged into another), and those it holds archived (Odoo 18+ takes an archived vendor or
/// product on an order; up to 17 `load` does not take one by database id). One `search_read`,
/// none for no ids.
pub async fn reference_states(
    odoo: &OdooClient,
    model: &str,
    mut ids: Vec<i64>,
) -> Result<(HashSet<i64>, HashSet<i64>), PushError> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Default::default());
    }
    // A domain that names `active` turns off Odoo's filter of archived records.
    let rows = odoo
        .search_read(
            model,
            &Domain::is_in("id", ids.clone()).and(Domain::is_in("active", [true, false])),
            &["active"],
            0,
            None,
            None,
        )
        .await?;
    let mut present = HashSet::new();
    let mut archived = HashSet::new();
    for row in rows {
        let Some(id) = row.get("id").and_then(serde_json::Value::as_i64) else {
            continue;
        };
        present.insert(id);
        if row.get("active") == Some(&serde_json::Value::Bool(false)) {
            archived.insert(id);
        }
    }
    let gone = ids.into_iter().filter(|id| !present.contains(id)).collect();
    Ok((gone, archived))
}

async fn resolve_many(
    cache: &mut HashMap<String, i64>,
    health: &mut MapHealth,
    kind: &Kind,
    pg: &Client,
    odoo: &OdooClient,
    wanted: &[Wanted],
) -> Result<HashMap<String, String>, PushError> {
    let mut missing: Vec<&Wanted> = Vec::new();
    let mut seen = HashSet::new();
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
                "SELECT {key}, {id}, source FROM odoo_sync.{table} WHERE {key} = ANY($1)",
                key = kind.key_col,
                id = kind.id_col,
                table = kind.table
            ),
            &[&keys],
        )
        .await;
    health.read_failed = rows.is_err();
    let mut mapped: Vec<(String, i64, String)> = Vec::new();
    for row in rows? {
        let id: i32 = row.try_get(1)?;
        mapped.push((row.try_get(0)?, i64::from(id), row.try_get(2)?));
    }
    // A mapped record Odoo no longer has (merged into another contact, deleted) would fail
    // every push that names it. A learned mapping is resolved again; a DBA's is reported.
    let (gone, _) =
        reference_states(odoo, kind.model, mapped.iter().map(|m| m.1).collect()).await?;
    let mut stale: HashMap<String, i64> = HashMap::new();
    for (key, id, source) in mapped {
        if !gone.contains(&id) {
            cache.insert(key, id);
        } else if source == "manual" {
            errors.insert(
                key.clone(),
                format!(
                    "{table}['{key}'] maps {label} '{key}' to {model} {id}, which Odoo no longer \
                     has (deleted, or merged into another record): correct or delete that row \
                     as odoo_sync_admin",
                    table = kind.table,
                    label = kind.label,
                    model = kind.model
                ),
            );
        } else {
            tracing::warn!(table = kind.table, key = %key, odoo_id = id,
                "learned mapping names a record Odoo no longer has; resolving it again");
            stale.insert(key, id);
        }
    }
    missing.retain(|w| !cache.contains_key(&w.key) && !errors.contains_key(&w.key));
    if missing.is_empty() {
        return Ok(errors);
    }
    // The strategies setting, read when it matters (a value the map table does not know), so
    // a DBA's change applies to the next batch of every worker.
    let setting: Option<serde_json::Value> = pg
        .query_one(
            "SELECT odoo_sync.get_settings() -> $1",
            &[&kind.strategies_setting],
        )
        .await?
        .try_get(0)?;
    let strategies = match setting.as_ref().and_then(|v| v.as_array()) {
        Some(names) => Strategy::parse_list(names.iter().filter_map(|n| n.as_str())),
        None => vec![Strategy::Code, Strategy::Name],
    };
    let strategies = strategies.as_slice();
    // Each strategy in turn, one search for all the values still unknown.
    let mut learned: Vec<(String, i64, &'static str)> = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    let mut left: Vec<&Wanted> = missing;
    for strategy in strategies {
        let (field, value_of): (&'static str, fn(&Wanted) -> Option<String>) = match strategy {
            Strategy::Code => (kind.code_field, |w| Some(w.code.clone())),
            Strategy::Name => ("name", |w| w.name.clone().filter(|n| !n.is_empty())),
        };
        tried.push(field.to_string());
        let mut values: Vec<String> = left.iter().filter_map(|w| value_of(w)).collect();
        values.sort();
        values.dedup();
        let found = first_ids_by(odoo, kind.model, field, values).await?;
        left.retain(|w| match value_of(w).and_then(|v| found.get(&v)) {
            Some(id) => {
                learned.push((w.key.clone(), *id, field));
                false
            }
            None => true,
        });
        if left.is_empty() {
            break;
        }
    }
    for w in left {
        let mut attempts = vec![match stale.get(&w.key) {
            Some(id) => format!(
                "{}['{}'] = {id}, which Odoo no longer has",
                kind.table, w.key
            ),
            None => format!("{}['{}']", kind.table, w.key),
        }];
        for strategy in strategies {
            match strategy {
                Strategy::Code => {
                    attempts.push(format!("{} {} = '{}'", kind.model, kind.code_field, w.code))
                }
                Strategy::Name => {
                    if let Some(n) = w.name.as_deref().filter(|n| !n.is_empty()) {
                        attempts.push(format!("{} name = '{n}'", kind.model));
                    }
                }
            }
        }
        errors.insert(
            w.key.clone(),
            format!(
                "{} '{}' not found in Odoo (tried {}; strategies: {})",
                kind.label,
                w.key,
                attempts.join(", "),
                if tried.is_empty() {
                    "none".to_string()
                } else {
                    tried.join(", ")
                }
            ),
        );
    }
    if !learned.is_empty() {
        let keys: Vec<&str> = learned.iter().map(|l| l.0.as_str()).collect();
        let ids: Vec<i32> = learned
            .iter()
            .map(|l| i32::try_from(l.1).unwrap_or(i32::MAX))
            .collect();
        let sources: Vec<&str> = learned.iter().map(|l| l.2).collect();
        let stored = pg
            .execute(
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
            .await;
        // A stale learned row is replaced, unless another worker replaced it first or a DBA
        // took it over meanwhile (a separate UPDATE: the INSERT needs no UPDATE privilege).
        let replaced: Vec<(&str, i32, &str, i32)> = learned
            .iter()
            .filter_map(|(key, id, source)| {
                let old = i32::try_from(*stale.get(key)?).ok()?;
                Some((key.as_str(), i32::try_from(*id).ok()?, *source, old))
            })
            .collect();
        let stored = match stored {
            Ok(_) if !replaced.is_empty() => {
                let keys: Vec<&str> = replaced.iter().map(|r| r.0).collect();
                let ids: Vec<i32> = replaced.iter().map(|r| r.1).collect();
                let sources: Vec<&str> = replaced.iter().map(|r| r.2).collect();
                let old: Vec<i32> = replaced.iter().map(|r| r.3).collect();
                pg.execute(
                    &format!(
                        "UPDATE odoo_sync.{table} m SET {id} = u.i, source = u.s, \
                         learned_at = pg_catalog.now() \
                         FROM unnest($1::text[], $2::int[], $3::text[], $4::int[]) AS u(k, i, s, old) \
                         WHERE m.{key} = u.k AND m.{id} = u.old AND m.source <> 'manual'",
                        table = kind.table,
                        key = kind.key_col,
                        id = kind.id_col
                    ),
                    &[&keys, &ids, &sources, &old],
                )
                .await
            }
            other => other,
        };
        health.store_failed = stored.is_err();
        if let Err(e) = stored {
            tracing::warn!(table = kind.table, error = %crate::queue::describe_pg(&e),
                "cannot store learned resolutions; this worker keeps them in memory");
        }
        for (key, id, _) in learned {
            cache.insert(key, id);
        }
    }
    Ok(errors)
}
