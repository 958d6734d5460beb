//! Orders written to Odoo by database id: orders imported from Odoo (linked by id, not by our
//! external id: creating external ids for existing records needs rights an API user seldom
//! has) and orders holding lines that were created from Odoo lines.
//!
//! One order at a time, every step idempotent, so a retry after an unknown outcome writes the
//! same thing again and creates nothing twice:
//! 1. lines added locally: `purchase.order.line.load` under external ids
//!    `odoo_sync.pol_<tracking>_<item id>` with `order_id/.id` (an upsert);
//! 2. one `write` of the order: partner, origin (not for imported orders: theirs is Odoo's),
//!    `[1, id, vals]` for lines known by id and
//!    `[2, id, 0]` for Odoo lines the document no longer has (filtered against the lines
//!    Odoo has now, so a repeated removal is not an error);
//! 3. after a vendor change, the lines' prices and discounts again (Odoo 18+ priced them from
//!    the new vendor's price list); 4. status buttons, as for pushed orders; 5. one `read` of
//!    name, state and amounts.
//!
//! A line's `discount` (17+) is Odoo's to set: lines added here get 0 (the local price is the
//! price paid), and the lines Odoo has keep theirs, also through the writes after which Odoo
//! would set it from the price list again (a quantity or product, from 18 the vendor).
//!
//! An order re-tracked after `untrack_orders` keeps its Odoo id (track_orders links it by the
//! `odoo_order_id` column) and its lines are found by the item key in their external ids.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tokio_postgres::Client;

use super::line_write::{day, LineWrite};
use super::order_push::{
    base_discount, canonical_snapshot, date_planned_to_write, decimal, item_scales,
    line_xmlid_name, line_xmlids, maps_notes, notes_to_write, pushed_snapshot, read_back_fields,
    text, vendor_write_reprices, xmlid_key, Amounts, PushLine, PushOutcome, XMLID_MODULE,
};
use super::resolve::{ProductRef, Resolver};
use super::status_action::StatusAction;
use super::PushError;
use crate::odoo::money::{self, money, quantity};
use crate::odoo::{Domain, OdooClient, OdooError};
use crate::pull::remote::many2one_id;

/// Whether `doc` must be written by id (see the module documentation).
pub fn needs_linked_push(doc: &Value) -> bool {
    doc["odoo_id"].as_i64().is_some()
        && !doc["deleted"].as_bool().unwrap_or(false)
        && (doc["link"].as_str() == Some("dbid")
            || doc["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|i| i["odoo_line_id"].as_i64().is_some())))
}

/// One local item to write.
struct Line {
    xmlid: String,
    odoo_line_id: Option<i64>,
    product: i64,
    qty: Decimal,
    price: Decimal,
}

/// Pushes one order by id.
pub async fn push_linked(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    doc: &Value,
) -> Result<PushOutcome, PushError> {
    let started = Instant::now();
    let tracking_id = doc["tracking_id"]
        .as_i64()
        .ok_or_else(|| PushError::Document("tracking_id is missing".into()))?;
    let odoo_id = doc["odoo_id"]
        .as_i64()
        .ok_or_else(|| PushError::Document("odoo_id is missing".into()))?;
    let order_key = text(&doc["order_key"]).unwrap_or_default();
    let order = &doc["order"];
    let supplier_id = text(&order["supplier_id"])
        .ok_or_else(|| PushError::Document("order.supplier_id is missing".into()))?;
    let partner = resolver
        .partner(
            pg,
            odoo,
            &supplier_id,
            text(&order["supplier_name"]).as_deref(),
        )
        .await?;
    let origin = text(&order["order_number"]).unwrap_or_else(|| order_key.clone());
    let status = text(&order["status"]).unwrap_or_default();

    let empty = Vec::new();
    let mut lines = Vec::new();
    for item in doc["items"].as_array().unwrap_or(&empty) {
        let item_id =
            text(&item["id"]).ok_or_else(|| PushError::Document("an item has no id".into()))?;
        let product_id = text(&item["product_id"])
            .ok_or_else(|| PushError::Document(format!("item {item_id} has no product_id")))?;
        let product = resolver
            .product(
                pg,
                odoo,
                &ProductRef {
                    product_id: &product_id,
                    product_code: text(&item["product_code"]).as_deref(),
                    product_name: text(&item["product_name"]).as_deref(),
                },
            )
            .await?;
        lines.push(Line {
            xmlid: line_xmlid_name(tracking_id, &item_id),
            odoo_line_id: item["odoo_line_id"].as_i64(),
            product,
            qty: decimal(&item["quantity"], &format!("item {item_id} quantity"))?,
            price: decimal(&item["unit_price"], &format!("item {item_id} unit_price"))?,
        });
    }

    // The merge does not compare discounts, and this push reads Odoo's own (below): the
    // snapshot carries the base's, like a push by external id.
    let snapshot_lines: Vec<PushLine> = lines
        .iter()
        .map(|l| PushLine {
            xmlid: l.xmlid.clone(),
            product: l.product,
            qty: l.qty,
            price: l.price,
            discount: xmlid_key("pol", &l.xmlid)
                .map_or(Decimal::ZERO, |(_, key)| base_discount(doc, &key)),
            // Only the snapshot's: this push compares with Odoo's lines as read.
            write: LineWrite::Full,
        })
        .collect();
    super::note_attempts(pg, &[(doc, canonical_snapshot(partner, &snapshot_lines))]).await?;

    let current = odoo
        .read(
            "purchase.order",
            &[odoo_id],
            &["state", "order_line", "partner_id", "date_planned"],
        )
        .await?;
    let Some(current) = current.first() else {
        return Err(PushError::Odoo(OdooError::Rejected {
            call: "purchase.order.read".into(),
            reasons: format!("Odoo order {odoo_id} no longer exists"),
        }));
    };
    if status == "DRAFT" && current.get("state").and_then(Value::as_str) == Some("cancel") {
        odoo.call_button("purchase.order", "button_draft", &[odoo_id])
            .await?;
    }
    let all_lines: Vec<i64> = current
        .get("order_line")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let names = odoo.field_names().await?;
    let in_odoo = odoo_lines(odoo, &all_lines, names.line_discount).await?;
    // Goods only: sections and notes are layout the pull never brings here, and stay as they are.
    let present: Vec<i64> = all_lines
        .iter()
        .copied()
        .filter(|id| in_odoo.get(id).is_some_and(|l| !l.layout))
        .collect();

    // Lines pushed under an earlier tracking of the same tables carry our external id with
    // another tracking number (pol_<tracking>_<item>): they are this order's lines by item key.
    if lines.iter().any(|l| l.odoo_line_id.is_none()) && !present.is_empty() {
        let known: HashMap<String, i64> =
            line_xmlids(odoo, Domain::is_in("res_id", present.iter().copied()))
                .await?
                .into_iter()
                .filter_map(|(name, id)| Some((xmlid_key("pol", &name)?.1, id)))
                .collect();
        for l in lines.iter_mut().filter(|l| l.odoo_line_id.is_none()) {
            let item = xmlid_key("pol", &l.xmlid).map(|(_, item)| item);
            l.odoo_line_id = item.and_then(|i| known.get(&i)).copied();
        }
    }

    let date_planned = date_planned_to_write(doc);
    // 1. Lines added here: upserted by external id.
    let new_lines: Vec<&Line> = lines.iter().filter(|l| l.odoo_line_id.is_none()).collect();
    let mut keep: HashSet<i64> = lines.iter().filter_map(|l| l.odoo_line_id).collect();
    // Every goods line of the order with its local price and its discount in Odoo (for a
    // vendor change, below).
    let mut priced: Vec<(i64, Decimal, Option<Decimal>)> = lines
        .iter()
        .filter_map(|l| {
            let id = l.odoo_line_id.filter(|id| present.contains(id))?;
            Some((id, l.price, in_odoo.get(&id)?.discount))
        })
        .collect();
    // Lines created here get no discount: the local price is the price paid (see LoadShape::of).
    let new_discount = names.line_discount.then_some(Decimal::ZERO);
    if !new_lines.is_empty() {
        let rows: Vec<Vec<Value>> = new_lines
            .iter()
            .map(|l| {
                let mut row = vec![
                    json!(format!("{XMLID_MODULE}.{}", l.xmlid)),
                    json!(odoo_id.to_string()),
                    json!(l.product.to_string()),
                    json!(l.qty.to_string()),
                    json!(l.price.to_string()),
                ];
                row.extend(new_discount.map(|d| json!(d.to_string())));
                row.extend(date_planned.iter().map(|d| json!(d)));
                row
            })
            .collect();
        let mut fields = vec![
            "id",
            "order_id/.id",
            "product_id/.id",
            "product_qty",
            "price_unit",
        ];
        if new_discount.is_some() {
            fields.push("discount");
        }
        if date_planned.is_some() {
            fields.push("date_planned");
        }
        let ids = odoo
            .load("purchase.order.line", &fields, &rows)
            .await?
            .into_ids("purchase.order.line")?;
        for (l, id) in new_lines.iter().zip(&ids) {
            priced.push((*id, l.price, new_discount));
        }
        keep.extend(ids);
    }

    // 2. The order and the lines known by id, in one write, with only what differs from Odoo:
    // writing a value Odoo already has is not neutral there (it recomputes what depends on it),
    // and a value a local column rounded must not replace Odoo's.
    let (qty_scale, price_scale) = item_scales(doc);
    let dates_differ = date_planned.as_deref().map(day)
        != current.get("date_planned").and_then(Value::as_str).map(day);
    let mut commands: Vec<Value> = lines
        .iter()
        .filter_map(|l| {
            let id = l.odoo_line_id.filter(|id| present.contains(id))?;
            let now = in_odoo.get(&id)?;
            let mut vals = Map::new();
            let mut dated = dates_differ;
            if now.product != Some(l.product) || money::as_stored(now.qty, qty_scale) != l.qty {
                // A product or quantity change makes Odoo price, discount and date the line
                // again: the price and the date go with it, and the discount Odoo has (which
                // odoo_sync does not sync, so never changes).
                vals.insert("product_id".into(), json!(l.product));
                vals.insert("product_qty".into(), money::to_json(l.qty));
                vals.insert("price_unit".into(), money::to_json(l.price));
                if let Some(discount) = now.discount {
                    vals.insert("discount".into(), money::to_json(discount));
                }
                dated = true;
            } else if money::as_stored(now.price, price_scale) != l.price {
                vals.insert("price_unit".into(), money::to_json(l.price));
            }
            if let Some(d) = date_planned.as_ref().filter(|_| dated) {
                vals.insert("date_planned".into(), json!(d));
            }
            (!vals.is_empty()).then(|| json!([1, id, vals]))
        })
        .collect();
    commands.extend(
        present
            .iter()
            .filter(|id| !keep.contains(id))
            .map(|id| json!([2, id, 0])),
    );
    let notes_field = names.order_notes;
    let mut vals = Map::new();
    if !commands.is_empty() {
        vals.insert("order_line".into(), Value::Array(commands));
    }
    let vendor_changed = current.get("partner_id").and_then(many2one_id) != Some(partner);
    if vendor_changed {
        vals.insert("partner_id".into(), json!(partner));
    }
    // An order created here carries its number as `origin`. An imported order's number is
    // Odoo's `name`, and its `origin` (the sales order or replenishment that made it) is Odoo's.
    if doc["link"].as_str() != Some("dbid") {
        vals.insert("origin".into(), json!(origin));
    }
    if let Some(notes) = notes_to_write(doc) {
        vals.insert(notes_field.into(), notes);
    }
    if !vals.is_empty() {
        odoo.write("purchase.order", &[odoo_id], &Value::Object(vals))
            .await?;
    }
    if vendor_changed && !priced.is_empty() && vendor_write_reprices(odoo).await? {
        // 3. Odoo 18+ priced every line from the new vendor's price list (see writes_vendor):
        // the local prices (and dates) again, alone, and the discounts the lines had.
        let commands: Vec<Value> = priced
            .iter()
            .map(|(id, price, discount)| {
                let mut vals = Map::new();
                vals.insert("price_unit".into(), money::to_json(*price));
                if let Some(discount) = discount {
                    vals.insert("discount".into(), money::to_json(*discount));
                }
                if let Some(d) = &date_planned {
                    vals.insert("date_planned".into(), json!(d));
                }
                json!([1, id, vals])
            })
            .collect();
        odoo.write(
            "purchase.order",
            &[odoo_id],
            &json!({ "order_line": commands }),
        )
        .await?;
    }

    // 4. Status call.
    let state = current.get("state").and_then(Value::as_str).unwrap_or("");
    if let Some(action) = StatusAction::for_status(&status, state) {
        action.run(odoo, &[odoo_id]).await?;
    }

    // 5. What Odoo made of it.
    let read = odoo
        .read(
            "purchase.order",
            &[odoo_id],
            &read_back_fields(doc, notes_field),
        )
        .await?;
    let rec = read.first().ok_or_else(|| {
        PushError::Odoo(OdooError::Rejected {
            call: "purchase.order.read".into(),
            reasons: format!("order {odoo_id} vanished after the write"),
        })
    })?;
    let get = |f: &str| rec.get(f).unwrap_or(&Value::Null).clone();
    let amounts = Amounts {
        subtotal: money(&get("amount_untaxed"), "amount_untaxed")?,
        sales_tax: money(&get("amount_tax"), "amount_tax")?,
        grand_total: money(&get("amount_total"), "amount_total")?,
    };
    Ok(PushOutcome {
        odoo_order_id: Some(odoo_id),
        odoo_name: rec.get("name").and_then(Value::as_str).map(str::to_string),
        operation: "UPDATE",
        version: doc["version"].as_i64(),
        snapshot: pushed_snapshot(partner, &snapshot_lines, rec, maps_notes(doc), notes_field),
        amounts: Some(amounts),
        duration_ms: started.elapsed().as_millis(),
        warnings: Vec::new(),
        odoo_state: rec.get("state").and_then(Value::as_str).map(str::to_string),
        odoo_write_date: rec
            .get("write_date")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// An Odoo line as the push compares it.
struct OdooLine {
    product: Option<i64>,
    qty: Decimal,
    price: Decimal,
    /// The discount (%), where lines have one (17+).
    discount: Option<Decimal>,
    /// A section or a note: layout, not goods.
    layout: bool,
}

/// The lines `ids` as Odoo holds them now (one `read`), with their discount when `discount`.
async fn odoo_lines(
    odoo: &OdooClient,
    ids: &[i64],
    discount: bool,
) -> Result<HashMap<i64, OdooLine>, PushError> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut fields = vec!["product_id", "product_qty", "price_unit", "display_type"];
    if discount {
        fields.push("discount");
    }
    let rows = odoo.read("purchase.order.line", ids, &fields).await?;
    for r in rows {
        let Some(id) = r.get("id").and_then(Value::as_i64) else {
            continue;
        };
        let what = |f: &str| format!("purchase.order.line {id} {f}");
        out.insert(
            id,
            OdooLine {
                product: r.get("product_id").and_then(many2one_id),
                qty: quantity(
                    r.get("product_qty").unwrap_or(&Value::Null),
                    &what("product_qty"),
                )?,
                price: quantity(
                    r.get("price_unit").unwrap_or(&Value::Null),
                    &what("price_unit"),
                )?,
                discount: match r.get("discount").filter(|_| discount) {
                    Some(d) => Some(quantity(d, &what("discount"))?),
                    None => None,
                },
                layout: r.get("display_type").and_then(Value::as_str).is_some(),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    #[test]
    fn a_value_only_a_local_column_rounded_is_the_same() {
        let same = |local: &str, odoo: &str, scale| money::as_stored(d(odoo), scale) == d(local);
        assert!(same("12.35", "12.345", Some(2)));
        assert!(same("0.01", "0.0125", Some(2)));
        assert!(same("2", "2.000", None));
        assert!(!same("12.35", "12.345", None));
        assert!(!same("12.34", "12.345", Some(2)));
        assert!(!same("10", "10.5", Some(2)));
    }
}
