//! Odoo purchase orders as `odoo_sync.apply_remote` documents.
//!
//! Per page of orders: the orders (`search_read` or `read`), their lines, the default codes
//! of their products, the refs of their partners and our external ids of orders and lines
//! (`ir.model.data`, module `odoo_sync`): five calls however many orders the page holds.
//! Floats become decimal strings here, at the edge (money rounded to the currency).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::PullError;
use crate::odoo::money::{money, quantity};
use crate::odoo::{Domain, OdooClient, Op};
use crate::push::order_push::XMLID_MODULE;

/// Most orders read in one page.
pub const PAGE: usize = 200;

/// Order fields the pull reads (`locked` exists from Odoo 19 on; the notes are `notes`, or
/// `note` from 19 on).
pub async fn order_fields(odoo: &OdooClient) -> Result<Vec<&'static str>, PullError> {
    let names = odoo.field_names().await?;
    let mut fields = vec![
        "id",
        "name",
        "state",
        "partner_id",
        "origin",
        "write_date",
        "date_order",
        "date_planned",
        "amount_untaxed",
        "amount_tax",
        "amount_total",
        "order_line",
        names.order_notes,
    ];
    if names.order_locked {
        fields.push("locked");
    }
    Ok(fields)
}

/// The id of a many2one value (`[id, name]` on JSON-RPC, `id` on JSON-2).
pub(crate) fn many2one_id(v: &Value) -> Option<i64> {
    match v {
        Value::Array(a) => a.first().and_then(Value::as_i64),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn many2one_name(v: &Value) -> Option<String> {
    match v {
        Value::Array(a) => a.get(1).and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn ids_of(v: Option<&Value>) -> Vec<i64> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// Our external ids (name without module) of records of `model`, by record id.
async fn xmlids(
    odoo: &OdooClient,
    model: &str,
    ids: &[i64],
) -> Result<HashMap<i64, String>, PullError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let domain = Domain::eq("module", XMLID_MODULE)
        .and(Domain::eq("model", model))
        .and(Domain::leaf("res_id", Op::In, json!(ids)));
    let rows = odoo
        .search_read("ir.model.data", &domain, &["name", "res_id"], 0, None, None)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.get("res_id")?.as_i64()?, text(r.get("name"))?)))
        .collect())
}

/// The database's clock, taken just before Odoo is read: the documents carry it as `read_at`.
/// Odoo's `write_date` has one-second resolution, so a read and one of our pushes in the same
/// second cannot be ordered by it; `apply_remote` orders them by this time instead, and takes a
/// read that began before the order's last sync as stale rather than undoing that sync with it.
pub async fn database_clock(pg: &tokio_postgres::Client) -> Result<String, PullError> {
    // JSON's ISO 8601 form: independent of the session's DateStyle and time zone names.
    let row = pg
        .query_one("SELECT to_json(clock_timestamp()) #>> '{}'", &[])
        .await?;
    Ok(row.try_get(0)?)
}

/// Builds the documents of `orders` (records read with [`order_fields`], after the database
/// clock showed `read_at`, see [`database_clock`]).
pub async fn documents(
    odoo: &OdooClient,
    orders: &[Map<String, Value>],
    read_at: &str,
) -> Result<Vec<Value>, PullError> {
    let order_ids: Vec<i64> = orders
        .iter()
        .filter_map(|o| o.get("id").and_then(Value::as_i64))
        .collect();
    let line_ids: Vec<i64> = orders
        .iter()
        .flat_map(|o| ids_of(o.get("order_line")))
        .collect();
    let names = odoo.field_names().await?;
    let mut line_fields = vec![
        "id",
        "order_id",
        "product_id",
        "name",
        "product_qty",
        "price_unit",
        "qty_received",
        "price_subtotal",
        "display_type",
    ];
    // The discount (17+) is Odoo's to set: the base keeps it, and pushes write it back (see
    // push::order_push::base_discount).
    if names.line_discount {
        line_fields.push("discount");
    }
    let lines = odoo
        .read("purchase.order.line", &line_ids, &line_fields)
        .await?;
    let mut lines_by_order: HashMap<i64, Vec<&Map<String, Value>>> = HashMap::new();
    for l in &lines {
        if let Some(o) = l.get("order_id").and_then(many2one_id) {
            lines_by_order.entry(o).or_default().push(l);
        }
    }
    let products: Vec<i64> = lines
        .iter()
        .filter_map(|l| l.get("product_id").and_then(many2one_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let codes: HashMap<i64, String> = odoo
        .read("product.product", &products, &["id", "default_code"])
        .await?
        .iter()
        .filter_map(|p| Some((p.get("id")?.as_i64()?, text(p.get("default_code"))?)))
        .collect();
    let partners: Vec<i64> = orders
        .iter()
        .filter_map(|o| o.get("partner_id").and_then(many2one_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let refs: HashMap<i64, String> = odoo
        .read("res.partner", &partners, &["id", "ref"])
        .await?
        .iter()
        .filter_map(|p| Some((p.get("id")?.as_i64()?, text(p.get("ref"))?)))
        .collect();
    let notes_field = names.order_notes;
    let order_xmlids = xmlids(odoo, "purchase.order", &order_ids).await?;
    let line_xmlids = xmlids(odoo, "purchase.order.line", &line_ids).await?;

    let mut docs = Vec::with_capacity(orders.len());
    for o in orders {
        let id = o
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| PullError::Unexpected("a purchase.order without id".into()))?;
        let partner = o.get("partner_id").and_then(many2one_id);
        let mut doc_lines = Vec::new();
        for l in lines_by_order.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
            // Sections and notes are layout, not goods.
            if l.get("display_type").and_then(Value::as_str).is_some() {
                continue;
            }
            let line_id = l.get("id").and_then(Value::as_i64).unwrap_or_default();
            let product = l.get("product_id").and_then(many2one_id);
            let what = |f: &str| format!("purchase.order.line {line_id} {f}");
            let mut doc_line = json!({
                "odoo_line_id": line_id,
                "xmlid": line_xmlids.get(&line_id),
                "product_id": product,
                "product_code": product.and_then(|p| codes.get(&p)),
                "name": text(l.get("name")),
                "quantity": quantity(l.get("product_qty").unwrap_or(&Value::Null), &what("product_qty"))?.to_string(),
                "unit_price": quantity(l.get("price_unit").unwrap_or(&Value::Null), &what("price_unit"))?.to_string(),
                "qty_received": quantity(l.get("qty_received").unwrap_or(&Value::Null), &what("qty_received"))?.to_string(),
                "subtotal": money(l.get("price_subtotal").unwrap_or(&Value::Null), &what("price_subtotal"))?.to_string(),
            });
            if let (Some(discount), Some(fields)) = (l.get("discount"), doc_line.as_object_mut()) {
                fields.insert(
                    "discount".into(),
                    json!(quantity(discount, &what("discount"))?.to_string()),
                );
            }
            doc_lines.push(doc_line);
        }
        let what = |f: &str| format!("purchase.order {id} {f}");
        let mut doc = json!({
            "odoo_id": id,
            "name": text(o.get("name")),
            "state": text(o.get("state")).unwrap_or_else(|| "draft".into()),
            "locked": o.get("locked").and_then(Value::as_bool).unwrap_or(false),
            "write_date": text(o.get("write_date")),
            "partner_id": partner,
            "partner_name": o.get("partner_id").and_then(many2one_name),
            "partner_ref": partner.and_then(|p| refs.get(&p)),
            "origin": text(o.get("origin")),
            // Expected arrival (UTC), false without lines: the extension compares its day.
            "date_planned": o.get("date_planned").cloned().unwrap_or(Value::Bool(false)),
            "xmlid": order_xmlids.get(&id),
            "amounts": {
                "subtotal": money(o.get("amount_untaxed").unwrap_or(&Value::Null), &what("amount_untaxed"))?.to_string(),
                "sales_tax": money(o.get("amount_tax").unwrap_or(&Value::Null), &what("amount_tax"))?.to_string(),
                "grand_total": money(o.get("amount_total").unwrap_or(&Value::Null), &what("amount_total"))?.to_string(),
            },
            "lines": doc_lines,
            "read_at": read_at,
        });
        // The notes' HTML as Odoo keeps it (null when empty); the extension compares its text.
        // Only when they were read: an absent key leaves them out of the comparison.
        if let (Some(notes), Some(fields)) = (o.get(notes_field), doc.as_object_mut()) {
            fields.insert("notes_html".into(), json!(text(Some(notes))));
        }
        docs.push(doc);
    }
    Ok(docs)
}

/// The documents of the Odoo orders `ids` (missing ids are absent).
pub async fn fetch(
    pg: &tokio_postgres::Client,
    odoo: &OdooClient,
    ids: &[i64],
) -> Result<Vec<Value>, PullError> {
    let fields = order_fields(odoo).await?;
    let mut docs = Vec::new();
    for page in ids.chunks(PAGE) {
        let read_at = database_clock(pg).await?;
        let orders = odoo.read("purchase.order", page, &fields).await?;
        docs.extend(documents(odoo, &orders, &read_at).await?);
    }
    Ok(docs)
}

/// What `odoo_sync.apply_remote` decided for one order.
#[derive(Debug, Clone)]
pub struct Applied {
    /// imported, applied, unchanged, conflict, busy, stale or unlinked.
    pub outcome: String,
    /// The full answer.
    pub answer: Value,
}

/// Hands one document to the database.
pub async fn apply(
    pg: &tokio_postgres::Client,
    doc: &Value,
    import: bool,
    job: Option<(i64, i64)>,
) -> Result<Applied, tokio_postgres::Error> {
    let (job_id, token) = (job.map(|j| j.0), job.map(|j| j.1));
    let row = pg
        .query_one(
            "SELECT odoo_sync.apply_remote($1, $2, $3, $4)",
            &[doc, &import, &job_id, &token],
        )
        .await?;
    let answer: Value = row.try_get(0)?;
    Ok(Applied {
        outcome: answer["outcome"].as_str().unwrap_or("unknown").to_string(),
        answer,
    })
}
