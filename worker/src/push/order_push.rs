//! One order document → one Odoo write.
//!
//! Idempotency (DESIGN.md §7, odoo-api.md "Idempotent creates"): the order and each line are
//! written with `purchase.order.load` under external ids `odoo_sync.po_<tracking>_<key>` and
//! `odoo_sync.pol_<tracking>_<item id>`. `load` is an upsert by external id in one Odoo
//! transaction, so a push repeated after an unknown outcome (timeout, dropped connection,
//! killed worker) updates the order and lines it created the first time instead of creating
//! them again. Lines of the Odoo order whose external id is not in the document are removed
//! with `[2, id, 0]`. Of the lines Odoo has, only what changed since the last sync is written
//! (`line_write`). Local status transitions are sent as Odoo's calls (`status_action`; and
//! `button_draft` from a cancelled order). A deleted local order cancels its
//! Odoo order (`button_cancel`).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Instant;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::line_write::{line_write, LineNow, LineWrite};
use super::resolve::{ProductRef, Resolver};
use super::status_action::StatusAction;
use super::PushError;
use crate::odoo::money::money;
use crate::odoo::version::FieldNames;
use crate::odoo::{Domain, OdooClient, OdooError, Op};

/// Module of our external ids.
pub const XMLID_MODULE: &str = "odoo_sync";

/// External id name (without module) of an order: `po_<tracking>_<key>`.
pub fn order_xmlid_name(tracking_id: i64, order_key: &str) -> String {
    xmlid_name("po", tracking_id, order_key)
}

/// External id name (without module) of an order line: `pol_<tracking>_<item id>`.
pub fn line_xmlid_name(tracking_id: i64, item_id: &str) -> String {
    xmlid_name("pol", tracking_id, item_id)
}

/// `<kind>_<tracking>_<key>`; a key with a space goes under `<kind>x_` with `%` and the space
/// percent-encoded, because Odoo refuses external ids with spaces (`ir.model.data`'s
/// `name_nospaces` constraint). Keys without one keep the plain form, so the names of orders
/// pushed before stay what they were, and the `x` keeps the two forms apart.
/// `odoo_sync._xmlid_name` in sql/twoway.sql is the same rule.
fn xmlid_name(kind: &str, tracking_id: i64, key: &str) -> String {
    if key.contains(' ') {
        let encoded = key.replace('%', "%25").replace(' ', "%20");
        format!("{kind}x_{tracking_id}_{encoded}")
    } else {
        format!("{kind}_{tracking_id}_{key}")
    }
}

/// The tracking id and local key of one of our external id names of `kind` (`po` for orders,
/// `pol` for lines), the inverse of [`order_xmlid_name`] / [`line_xmlid_name`].
pub fn xmlid_key(kind: &str, name: &str) -> Option<(i64, String)> {
    let rest = name.strip_prefix(kind)?;
    let (encoded, rest) = match rest.strip_prefix('_') {
        Some(plain) => (false, plain),
        None => (true, rest.strip_prefix("x_")?),
    };
    let (tracking, key) = rest.split_once('_')?;
    let tracking = tracking.parse().ok()?;
    Some(if encoded {
        (tracking, key.replace("%20", " ").replace("%25", "%"))
    } else {
        (tracking, key.to_string())
    })
}

/// Amounts as Odoo computed them.
#[derive(Debug, Clone, PartialEq)]
pub struct Amounts {
    /// `amount_untaxed`.
    pub subtotal: Decimal,
    /// `amount_tax`.
    pub sales_tax: Decimal,
    /// `amount_total`.
    pub grand_total: Decimal,
}

/// What a push did, ready for `complete_job`.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// Odoo `purchase.order` id (None: a deleted order that never reached Odoo).
    pub odoo_order_id: Option<i64>,
    /// Odoo order name (`P00012`).
    pub odoo_name: Option<String>,
    /// CREATE, UPDATE or DELETE.
    pub operation: &'static str,
    /// Version of the document pushed.
    pub version: Option<i64>,
    /// What was written, the base of later conflict detection.
    pub snapshot: Value,
    /// Amounts read back.
    pub amounts: Option<Amounts>,
    /// Time spent.
    pub duration_ms: u128,
    /// Things worth knowing that did not stop the push.
    pub warnings: Vec<String>,
    /// The Odoo order's state after the push.
    pub odoo_state: Option<String>,
    /// The Odoo order's `write_date` after the push (the two-way sync's optimistic lock).
    pub odoo_write_date: Option<String>,
}

/// One line as a push by external id writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushLine {
    /// External id name of the line (without module).
    pub xmlid: String,
    /// Odoo `product.product` id.
    pub product: i64,
    /// Quantity.
    pub qty: Decimal,
    /// Unit price.
    pub price: Decimal,
    /// The discount (%) written where lines have one (Odoo 17+): see [`base_discount`].
    pub discount: Decimal,
    /// What the push writes of the line (see [`super::line_write`]).
    pub write: LineWrite,
}

impl PushLine {
    /// The line of item `line.item_key` of `doc`, written as [`line_write`] decides, when the
    /// push dates every line with `date`.
    pub(crate) fn of_item(
        doc: &Value,
        tracking_id: i64,
        line: &LineNow<'_>,
        date: Option<&str>,
    ) -> PushLine {
        PushLine {
            xmlid: line_xmlid_name(tracking_id, line.item_key),
            product: line.product,
            qty: line.qty,
            price: line.price,
            discount: base_discount(doc, line.item_key),
            write: line_write(doc, line, date),
        }
    }

    /// This line as [`reprice_lines`] takes it, when the push writes its price after the load:
    /// every line (`all`: the load wrote the vendor, and Odoo priced them all again), with the
    /// order's date `date`; otherwise a line whose price alone changed, without a date (a
    /// changed day writes every line in full, see [`super::line_write`]).
    pub(crate) fn repriced<'a>(&'a self, date: Option<&'a str>, all: bool) -> Option<Repriced<'a>> {
        match self.write {
            _ if all => Some((self, date)),
            LineWrite::Price => Some((self, None)),
            LineWrite::Full | LineWrite::Skip => None,
        }
    }
}

/// A line as [`reprice_lines`] writes it: its price and discount, and the date when given.
pub type Repriced<'a> = (&'a PushLine, Option<&'a str>);

/// The discount (%) a push writes on the line of item `item_key`: the one Odoo had at the last
/// sync (the base), or 0 for a line new to Odoo.
///
/// A discount is Odoo's to set (purchasers negotiate it there; the local side only has the
/// unit price), but from 17 Odoo computes it again, from the vendor's price list, whenever a
/// line's quantity or product is written (and from 18 its vendor), and a `load` writes every
/// line's. So each line carries its discount explicitly: the base's keeps a discount typed in
/// Odoo, and 0 on a new line makes the local price the price paid. An Odoo change of the
/// discount since the base moves the order's write_date, and the push then merges it into the
/// base first (see `run::changed_in_odoo`).
pub fn base_discount(doc: &Value, item_key: &str) -> Decimal {
    let held = &doc["base_snapshot"]["lines"][item_key]["discount"];
    text(held)
        .and_then(|d| Decimal::from_str(d.trim()).ok())
        .map_or(Decimal::ZERO, |d| d.normalize())
}

/// The base of the next three-way merge (sql/twoway.sql's canonical form) of what a push
/// wrote: the partner, and each line by its local item key (from its external id), with the
/// discount it carries (see [`base_discount`]; the merge does not compare it).
pub fn canonical_snapshot(partner: i64, lines: &[PushLine]) -> Value {
    let mut by_key = serde_json::Map::new();
    for l in lines {
        let key = xmlid_key("pol", &l.xmlid).map_or_else(|| l.xmlid.clone(), |(_, key)| key);
        by_key.insert(
            key,
            json!({"product_id": l.product.to_string(),
                   "quantity": Value::Number(number(&l.qty)),
                   "unit_price": Value::Number(number(&l.price)),
                   "discount": Value::Number(number(&l.discount))}),
        );
    }
    json!({"partner_id": partner.to_string(), "lines": by_key})
}

/// The line columns of a `purchase.order.load` call.
const LOAD_LINE_FIELDS: [&str; 4] = [
    "order_line/id",
    "order_line/product_id/.id",
    "order_line/product_qty",
    "order_line/price_unit",
];

/// Which columns one `purchase.order.load` call carries: every order of the call has lines or
/// none has, every order writes its notes or none does (a notes column empties the notes of an
/// order that leaves its cell empty), and every order dates its lines or none does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LoadShape {
    /// The orders have lines.
    pub with_lines: bool,
    /// The notes field (`notes` or `note`), when the orders write their notes.
    pub notes_field: Option<&'static str>,
    /// The lines carry `date_planned`.
    pub with_dates: bool,
    /// The lines carry `discount` (Odoo 17+, see [`base_discount`]).
    pub with_discount: bool,
    /// The orders write their vendor.
    pub with_partner: bool,
}

/// One order as `purchase.order.load` rows carry it.
pub(crate) struct LoadOrder<'a> {
    /// External id name (without module).
    pub xmlid: &'a str,
    /// Odoo partner id to write; None leaves the vendor alone (see [`writes_vendor`]).
    pub partner: Option<i64>,
    /// `origin`: the order number.
    pub origin: &'a str,
    /// The HTML, or `false` to empty the notes (see [`notes_to_write`]).
    pub notes: Option<&'a Value>,
    /// Every line's expected arrival (see [`date_planned_to_write`]).
    pub date_planned: Option<&'a str>,
    /// The lines, each with what the push writes of it.
    pub lines: &'a [PushLine],
}

impl LoadOrder<'_> {
    /// The lines the `load` writes (the others get their price alone, or nothing).
    pub fn full_lines(&self) -> impl Iterator<Item = &PushLine> {
        self.lines.iter().filter(|l| l.write == LineWrite::Full)
    }
}

impl LoadShape {
    /// The shape of a call carrying `order` alone, on a server whose field names are `names`.
    /// Only the lines written in full ([`LineWrite::Full`]) are rows of the call. Where lines
    /// have a `discount` (17+), every line carries one (see [`base_discount`]).
    pub fn of(order: &LoadOrder<'_>, names: &FieldNames) -> LoadShape {
        let with_lines = order.full_lines().next().is_some();
        LoadShape {
            with_lines,
            notes_field: order.notes.map(|_| names.order_notes),
            with_dates: with_lines && order.date_planned.is_some(),
            with_partner: order.partner.is_some(),
            with_discount: with_lines && names.line_discount,
        }
    }

    /// The column names.
    pub fn fields(self) -> Vec<&'static str> {
        let mut fields = vec!["id"];
        if self.with_partner {
            fields.push("partner_id/.id");
        }
        fields.push("origin");
        fields.extend(self.notes_field);
        if self.with_lines {
            fields.extend(LOAD_LINE_FIELDS);
            if self.with_discount {
                fields.push("order_line/discount");
            }
            if self.with_dates {
                fields.push("order_line/date_planned");
            }
        }
        fields
    }

    /// The rows of one order: its head (external id, partner, origin, notes) on the row of its
    /// first line written in full, each further one on a row whose head cells are empty.
    pub fn rows(self, order: &LoadOrder<'_>) -> Vec<Vec<Value>> {
        let mut head = vec![json!(format!("{XMLID_MODULE}.{}", order.xmlid))];
        if self.with_partner {
            head.push(json!(order
                .partner
                .map(|p| p.to_string())
                .unwrap_or_default()));
        }
        head.push(json!(order.origin));
        if self.notes_field.is_some() {
            // An empty cell empties the field.
            head.push(match order.notes {
                Some(Value::String(html)) => json!(html),
                _ => json!(""),
            });
        }
        if !self.with_lines || order.full_lines().next().is_none() {
            return vec![head];
        }
        let blank = vec![json!(""); head.len()];
        order
            .full_lines()
            .enumerate()
            .map(|(i, l)| {
                let mut row = if i == 0 { head.clone() } else { blank.clone() };
                row.extend([
                    json!(format!("{XMLID_MODULE}.{}", l.xmlid)),
                    json!(l.product.to_string()),
                    json!(l.qty.to_string()),
                    json!(l.price.to_string()),
                ]);
                if self.with_discount {
                    row.push(json!(l.discount.to_string()));
                }
                if self.with_dates {
                    row.push(json!(order.date_planned.unwrap_or_default()));
                }
                row
            })
            .collect()
    }
}

/// What the document asks to write into Odoo's notes (`odoo_sync.order_document`'s
/// `odoo_notes`): None leaves them alone; else the HTML, or `false` to empty them.
pub(crate) fn notes_to_write(doc: &Value) -> Option<Value> {
    let wanted = doc.get("odoo_notes")?.as_object()?;
    Some(match wanted.get("html") {
        Some(Value::String(html)) => Value::String(html.clone()),
        _ => Value::Bool(false),
    })
}

/// Whether a push of `doc` writes `order` with `load`: an order Odoo may not have yet, one
/// whose vendor, notes or origin (the order number) differ from the base's, one with a line to
/// write in full. A push with none of these (a status change, an edit of a column odoo_sync does
/// not send, a price edit) leaves the order's head alone: a write of the same origin would
/// still move Odoo's `write_date`, and the next pull would read the order for nothing.
pub(crate) fn needs_load(doc: &Value, order: &LoadOrder<'_>) -> bool {
    let base = &doc["base_snapshot"];
    // Notes unchanged here are sent as Odoo's own HTML (the base's), which needs no write.
    let notes_changed = order.notes.is_some_and(|n| match (n, &base["notes_html"]) {
        (Value::String(wanted), Value::String(held)) => wanted != held,
        (Value::Bool(false), Value::Null) => false,
        _ => true,
    });
    doc["odoo_id"].as_i64().is_none()
        || order.partner.is_some()
        || notes_changed
        || order.full_lines().next().is_some()
        || text(&base["origin"]).as_deref() != Some(order.origin)
}

/// The error of a push whose Odoo order `id` is gone when it is read back: an Odoo user deleted
/// it while the push ran (the push read it moments before). The next attempt finds it deleted
/// and treats it as such.
pub(crate) fn vanished(id: i64) -> PushError {
    PushError::ChangedInOdoo(format!(
        "Odoo order {id} was deleted in Odoo while the push wrote it; the next attempt reads it first"
    ))
}

/// Whether the Odoo order of `doc` may exist already: its id is known, or an earlier push was
/// noted and not acknowledged (its create may have landed with its reply lost). A `load` of it
/// is then perhaps a write, not a create.
pub(crate) fn may_exist(doc: &Value) -> bool {
    doc["odoo_id"].as_i64().is_some() || doc["attempted"].as_bool() == Some(true)
}

/// Whether a push of `doc` leaves its order as an Odoo user left it, deleted: Odoo deleted the
/// order's Odoo order (`remote_deleted` cancelled it here and unlinked it, noting the id in
/// `deleted_in_odoo`) and the order is still `CANCELLED`. Pushed, it would become a new,
/// cancelled Odoo order, bringing back what the Odoo user deleted. Set back to another status
/// (reopened), it is created again. A table without a status column could not cancel it: its
/// edits stay here until `odoo_sync.sync_order` asks for it by name, which clears the mark. An
/// earlier push noted and not acknowledged may have created it already: then it is pushed, to
/// cancel that one.
pub(crate) fn stays_deleted_in_odoo(doc: &Value) -> bool {
    doc["deleted_in_odoo"].as_i64().is_some()
        && !may_exist(doc)
        && !doc["deleted"].as_bool().unwrap_or(false)
        && (is_cancelled(doc) || !maps_status(doc))
}

/// Whether the tracking maps a status column.
fn maps_status(doc: &Value) -> bool {
    doc["order"].get("status").is_some()
}

/// Whether the local status of `doc`'s order is `CANCELLED` (in any case, as `_status_class`
/// reads it).
fn is_cancelled(doc: &Value) -> bool {
    doc["order"]["status"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED"))
}

/// The outcome of a push that [`stays_deleted_in_odoo`]: nothing written, the order's Odoo
/// side stays deleted (`DELETE` without an Odoo id, as for an order deleted here before it
/// reached Odoo).
pub(crate) fn left_deleted(doc: &Value) -> PushOutcome {
    let deleted = doc["deleted_in_odoo"].as_i64().unwrap_or_default();
    PushOutcome {
        odoo_order_id: None,
        odoo_name: None,
        operation: "DELETE",
        version: doc["version"].as_i64(),
        snapshot: json!({"deleted_in_odoo": deleted}),
        amounts: None,
        duration_ms: 0,
        warnings: vec![if maps_status(doc) {
            format!(
                "nothing written to Odoo: an Odoo user deleted this order's Odoo order {deleted} and it is CANCELLED here; give it another status (DRAFT, say) to create it in Odoo again"
            )
        } else {
            format!(
                "nothing written to Odoo: an Odoo user deleted this order's Odoo order {deleted}; SELECT odoo_sync.sync_order('{}') creates it in Odoo again",
                text(&doc["order_key"]).unwrap_or_default().replace('\'', "''")
            )
        }],
        odoo_state: None,
        odoo_write_date: None,
    }
}

/// Whether a push writes the vendor: when it creates the order, or when the vendor differs
/// from the one of the last sync (the base). From Odoo 18 writing the vendor, even the same
/// one, prices every line again from the vendor's price list at the end of the call, over the
/// prices written with it (`_compute_price_unit_and_date_planned_and_name` depends on
/// `order_id.partner_id`, and `write` marks what depends on every field it is given).
pub(crate) fn writes_vendor(doc: &Value, partner: i64) -> bool {
    doc["odoo_id"].as_i64().is_none()
        || doc["base_snapshot"]["partner_id"]
            .as_str()
            .and_then(|p| p.parse::<i64>().ok())
            != Some(partner)
}

/// Whether writing an order's vendor prices its lines again on this server (Odoo 18 and
/// later, see [`writes_vendor`]).
pub(crate) async fn vendor_write_reprices(odoo: &OdooClient) -> Result<bool, OdooError> {
    Ok(odoo.version().await?.major >= 18)
}

/// Writes the lines' prices and discounts (see [`base_discount`]), and dates when given, by
/// their external ids, in a call of their own: for lines whose price alone changed
/// ([`LineWrite::Price`]), and after a call that wrote the vendor of existing orders, which on
/// Odoo 18+ priced the lines from the vendor's price list (see [`writes_vendor`]). A price
/// written alone triggers no such computation.
pub(crate) async fn reprice_lines(
    odoo: &OdooClient,
    lines: &[Repriced<'_>],
) -> Result<(), OdooError> {
    let with_discount = odoo.field_names().await?.line_discount;
    // One call for the lines with a date and one for those without: an empty date cell would
    // empty the line's date.
    for with_dates in [true, false] {
        let rows: Vec<Vec<Value>> = lines
            .iter()
            .filter(|l| l.1.is_some() == with_dates)
            .map(|(line, date)| {
                let mut row = vec![
                    json!(format!("{XMLID_MODULE}.{}", line.xmlid)),
                    json!(line.price.to_string()),
                ];
                if with_discount {
                    row.push(json!(line.discount.to_string()));
                }
                row.extend(date.map(|d| json!(d)));
                row
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mut fields = vec!["id", "price_unit"];
        if with_discount {
            fields.push("discount");
        }
        if with_dates {
            fields.push("date_planned");
        }
        odoo.load("purchase.order.line", &fields, &rows)
            .await?
            .into_ids("purchase.order.line")?;
    }
    Ok(())
}

/// The lines of `lines` a load left out (unchanged, or written for their price alone) that
/// Odoo does not have under their external id (`existing`, see [`line_ids_by_xmlid`]), as
/// lines to write in full.
pub(crate) fn lost_lines(lines: &[PushLine], existing: &HashMap<String, i64>) -> Vec<PushLine> {
    lines
        .iter()
        .filter(|l| l.write != LineWrite::Full && !existing.contains_key(&l.xmlid))
        .map(|l| PushLine {
            write: LineWrite::Full,
            ..l.clone()
        })
        .collect()
}

/// Loads `order` once more with `lines` (from [`lost_lines`]) as its only lines.
pub(crate) async fn load_in_full(
    odoo: &OdooClient,
    order: &LoadOrder<'_>,
    lines: &[PushLine],
    names: &FieldNames,
) -> Result<(), OdooError> {
    let again = LoadOrder { lines, ..*order };
    let shape = LoadShape::of(&again, names);
    odoo.load("purchase.order", &shape.fields(), &shape.rows(&again))
        .await?
        .into_ids("purchase.order")?;
    Ok(())
}

/// The Odoo ids of the lines registered under our external id names `names` (without module).
pub(crate) async fn line_ids_by_xmlid<'a>(
    odoo: &OdooClient,
    names: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, i64>, OdooError> {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(
        line_xmlids(odoo, Domain::leaf("name", Op::In, json!(names)))
            .await?
            .into_iter()
            .collect(),
    )
}

/// Our external ids of order lines that `filter` (on `ir.model.data`) selects: (name without
/// module, line id).
pub(crate) async fn line_xmlids(
    odoo: &OdooClient,
    filter: Domain,
) -> Result<Vec<(String, i64)>, OdooError> {
    Ok(odoo
        .search_read(
            "ir.model.data",
            &Domain::eq("module", XMLID_MODULE)
                .and(Domain::eq("model", "purchase.order.line"))
                .and(filter),
            &["name", "res_id"],
            0,
            None,
            None,
        )
        .await?
        .iter()
        .filter_map(|r| {
            let name = r.get("name")?.as_str()?.to_string();
            Some((name, r.get("res_id")?.as_i64()?))
        })
        .collect())
}

/// [`reprice_lines`] for the lines of one order. Odoo refusing it when one of the lines is gone
/// by then (an Odoo user removed it while the push ran: `load` would create it again, and
/// Odoo refuses a line without its order) is a change in Odoo, not a refusal of the order:
/// the next attempt reads the order first.
pub async fn reprice_order_lines(
    odoo: &OdooClient,
    lines: &[Repriced<'_>],
) -> Result<(), PushError> {
    if lines.is_empty() {
        return Ok(());
    }
    let refused = match reprice_lines(odoo, lines).await {
        Ok(()) => return Ok(()),
        Err(e) if e.is_transient() || e.is_credentials() => return Err(e.into()),
        Err(e) => e,
    };
    let existing = line_ids_by_xmlid(odoo, lines.iter().map(|(l, _)| l.xmlid.as_str())).await?;
    match lines.iter().find(|(l, _)| !existing.contains_key(&l.xmlid)) {
        Some((gone, _)) => Err(PushError::ChangedInOdoo(format!(
            "line {} of the order was removed in Odoo while its prices were written ({refused}); the next attempt reads the order first",
            gone.xmlid
        ))),
        None => Err(refused.into()),
    }
}

/// The goods lines of the orders `ids` (sections and notes left out: the pull never brings
/// those here, so a push must never take them for lines removed locally): (line, order).
pub(crate) async fn goods_lines(
    odoo: &OdooClient,
    ids: &[i64],
) -> Result<Vec<(i64, i64)>, OdooError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(odoo
        .search_read(
            "purchase.order.line",
            &Domain::is_in("order_id", ids.iter().copied()).and(Domain::eq("display_type", false)),
            &["order_id"],
            0,
            None,
            Some("id"),
        )
        .await?
        .iter()
        .filter_map(|r| {
            let order = r
                .get("order_id")
                .and_then(crate::pull::remote::many2one_id)?;
            Some((r.get("id").and_then(Value::as_i64)?, order))
        })
        .collect())
}

/// The UTC datetime to write into every line's `date_planned` (`odoo_sync.order_document`'s
/// `odoo_date_planned`): None leaves Odoo's dates alone. Sent with every write of the lines,
/// because a quantity written without it can move a line's date to Odoo's own computation.
pub(crate) fn date_planned_to_write(doc: &Value) -> Option<String> {
    text(&doc["odoo_date_planned"])
}

/// Decimals the local item columns keep, `(quantity, unit_price)` (`order_document`'s
/// `item_scales`; None: a column that keeps what it is given).
pub fn item_scales(doc: &Value) -> (Option<u32>, Option<u32>) {
    let scale = |k: &str| {
        doc["item_scales"][k]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
    };
    (scale("quantity"), scale("unit_price"))
}

/// True when the tracking maps a notes column: the push then reads Odoo's notes back, and the
/// snapshot carries them (the base of the next comparison of notes).
pub(crate) fn maps_notes(doc: &Value) -> bool {
    doc["order"].get("notes").is_some()
}

/// The fields of an Odoo order every push reads back: what completion writes back (name,
/// state, write_date, totals) and what the base of the next merge keeps of Odoo's (vendor,
/// expected arrival, origin; see [`pushed_snapshot`]). One list for both push paths: a field
/// missing from one of them left every base it wrote without it.
pub(crate) const READ_BACK: [&str; 9] = [
    "name",
    "state",
    "write_date",
    "amount_untaxed",
    "amount_tax",
    "amount_total",
    "date_planned",
    "partner_id",
    "origin",
];

/// [`READ_BACK`], and the notes when the tracking maps them.
pub(crate) fn read_back_fields(doc: &Value, notes_field: &'static str) -> Vec<&'static str> {
    let mut fields = READ_BACK.to_vec();
    if maps_notes(doc) {
        fields.push(notes_field);
    }
    fields
}

/// What a push wrote, read back: the base of the next three-way merge. The partner and lines
/// as written (see [`canonical_snapshot`]), Odoo's expected arrival as read (`date_planned`,
/// false when the order has no lines), its `origin` (null when empty), and Odoo's notes
/// (`notes_html`, null when empty) when the tracking maps notes (`maps_notes`).
pub(crate) fn pushed_snapshot(
    partner: i64,
    lines: &[PushLine],
    read: &serde_json::Map<String, Value>,
    maps_notes: bool,
    notes_field: &str,
) -> Value {
    // The vendor Odoo holds after the push: the one written, or, when the push left it alone
    // as unchanged since the last sync, the one Odoo had.
    let partner = read
        .get("partner_id")
        .and_then(crate::pull::remote::many2one_id)
        .unwrap_or(partner);
    let mut snapshot = canonical_snapshot(partner, lines);
    if let Some(fields) = snapshot.as_object_mut() {
        fields.insert(
            "date_planned".into(),
            read.get("date_planned")
                .cloned()
                .unwrap_or(Value::Bool(false)),
        );
        fields.insert(
            "origin".into(),
            json!(text(read.get("origin").unwrap_or(&Value::Null))),
        );
        if maps_notes {
            let html = read.get(notes_field).filter(|v| v.is_string()).cloned();
            fields.insert("notes_html".into(), html.unwrap_or(Value::Null));
        }
    }
    snapshot
}

/// A decimal as an exact JSON number (the extension reads it as numeric, never as a float).
fn number(d: &Decimal) -> serde_json::Number {
    serde_json::Number::from_str(&d.normalize().to_string())
        .unwrap_or_else(|_| serde_json::Number::from(0))
}

impl PushOutcome {
    /// The `result` argument of `odoo_sync.complete_job`.
    pub fn to_result_json(&self) -> Value {
        let amounts = self.amounts.as_ref().map(|a| {
            json!({"subtotal": a.subtotal.to_string(), "sales_tax": a.sales_tax.to_string(),
                   "grand_total": a.grand_total.to_string()})
        });
        json!({
            "odoo_order_id": self.odoo_order_id,
            "odoo_name": self.odoo_name,
            "operation": self.operation,
            "version": self.version,
            "snapshot": self.snapshot,
            "amounts": amounts,
            "duration_ms": self.duration_ms as u64,
            "warnings": self.warnings,
            "odoo_state": self.odoo_state,
            "odoo_write_date": self.odoo_write_date,
        })
    }
}

/// A document value as text: strings as they are, numbers in their JSON form.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A document value (money and quantities travel as strings) as a Decimal.
pub(crate) fn decimal(v: &Value, what: &str) -> Result<Decimal, PushError> {
    let s = text(v).ok_or_else(|| PushError::Document(format!("{what} is missing")))?;
    Decimal::from_str(s.trim())
        .map(|d| d.normalize())
        .map_err(|e| PushError::Document(format!("{what} '{s}' is not a number: {e}")))
}

/// The Odoo id registered under one of our external ids, if any.
async fn xmlid_res_id(
    odoo: &OdooClient,
    model: &str,
    name: &str,
) -> Result<Option<i64>, PushError> {
    let rows = odoo
        .search_read(
            "ir.model.data",
            &Domain::eq("module", XMLID_MODULE)
                .and(Domain::eq("name", name))
                .and(Domain::eq("model", model)),
            &["res_id"],
            0,
            Some(1),
            None,
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.get("res_id"))
        .and_then(Value::as_i64))
}

/// The `state` of an Odoo order (None: it does not exist).
async fn odoo_state(odoo: &OdooClient, id: i64) -> Result<Option<String>, PushError> {
    let rows = odoo.read("purchase.order", &[id], &["state"]).await?;
    Ok(rows
        .first()
        .and_then(|r| r.get("state"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// Pushes one order document (`odoo_sync.order_document`) to Odoo.
pub async fn push_order(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    doc: &Value,
) -> Result<PushOutcome, PushError> {
    if stays_deleted_in_odoo(doc) {
        return Ok(left_deleted(doc));
    }
    if !doc["deleted"].as_bool().unwrap_or(false) && !doc["order"].is_null() {
        super::batch::resolve_ahead(pg, odoo, resolver, &[doc]).await;
    }
    if super::linked_push::needs_linked_push(doc) {
        return super::linked_push::push_linked(pg, odoo, resolver, doc).await;
    }
    let started = Instant::now();
    let tracking_id = doc["tracking_id"]
        .as_i64()
        .ok_or_else(|| PushError::Document("tracking_id is missing".into()))?;
    let order_key = text(&doc["order_key"])
        .ok_or_else(|| PushError::Document("order_key is missing".into()))?;
    let version = doc["version"].as_i64();
    let order_name = order_xmlid_name(tracking_id, &order_key);
    let known_id = doc["odoo_id"].as_i64();

    if doc["deleted"].as_bool().unwrap_or(false) || doc["order"].is_null() {
        // Also look the external id up: the create may have happened without its completion.
        let odoo_id = match known_id {
            Some(id) => Some(id),
            None => xmlid_res_id(odoo, "purchase.order", &order_name).await?,
        };
        let mut warnings = Vec::new();
        if let Some(id) = odoo_id {
            let rows = odoo.read("purchase.order", &[id], &["state"]).await?;
            match rows.first() {
                None => warnings.push(format!("Odoo order {id} no longer exists")),
                Some(r) if r.get("state").and_then(Value::as_str) == Some("cancel") => {}
                Some(_) => {
                    odoo.call_button("purchase.order", "button_cancel", &[id])
                        .await?;
                }
            }
        }
        return Ok(PushOutcome {
            odoo_order_id: odoo_id,
            odoo_name: None,
            operation: "DELETE",
            version,
            snapshot: json!({"deleted": true}),
            amounts: None,
            duration_ms: started.elapsed().as_millis(),
            warnings,
            odoo_state: Some("cancel".into()),
            odoo_write_date: None,
        });
    }

    let order = &doc["order"];
    let supplier_id = text(&order["supplier_id"])
        .ok_or_else(|| PushError::Document("order.supplier_id is missing".into()))?;
    let supplier_name = text(&order["supplier_name"]);
    let partner = resolver
        .partner(pg, odoo, &supplier_id, supplier_name.as_deref())
        .await?;
    let origin = text(&order["order_number"]).unwrap_or_else(|| order_key.clone());

    let date_planned = date_planned_to_write(doc);
    let empty = Vec::new();
    let items = doc["items"].as_array().unwrap_or(&empty);
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        let item_id =
            text(&item["id"]).ok_or_else(|| PushError::Document("an item has no id".into()))?;
        let product_id = text(&item["product_id"])
            .ok_or_else(|| PushError::Document(format!("item {item_id} has no product_id")))?;
        let code = text(&item["product_code"]);
        let name = text(&item["product_name"]);
        let product = resolver
            .product(
                pg,
                odoo,
                &ProductRef {
                    product_id: &product_id,
                    product_code: code.as_deref(),
                    product_name: name.as_deref(),
                },
            )
            .await?;
        let qty = decimal(&item["quantity"], &format!("item {item_id} quantity"))?;
        let price = decimal(&item["unit_price"], &format!("item {item_id} unit_price"))?;
        lines.push(PushLine::of_item(
            doc,
            tracking_id,
            &LineNow {
                item_key: &item_id,
                product,
                qty,
                price,
            },
            date_planned.as_deref(),
        ));
    }

    // What will be written, noted first (see super::note_attempts).
    super::note_attempts(pg, &[(doc, canonical_snapshot(partner, &lines))]).await?;

    // Local status → Odoo buttons (DESIGN.md §3). Coming back to DRAFT from a cancelled Odoo
    // order reopens it first, so the write below applies to a draft.
    let status = text(&order["status"]).unwrap_or_default();
    if let Some(id) = known_id {
        if status == "DRAFT" && odoo_state(odoo, id).await?.as_deref() == Some("cancel") {
            odoo.call_button("purchase.order", "button_draft", &[id])
                .await?;
        }
    }

    let names = odoo.field_names().await?;
    let notes = notes_to_write(doc);
    let vendor = writes_vendor(doc, partner);
    let load_order = LoadOrder {
        xmlid: &order_name,
        partner: vendor.then_some(partner),
        origin: &origin,
        notes: notes.as_ref(),
        date_planned: date_planned.as_deref(),
        lines: &lines,
    };
    let odoo_id = match known_id.filter(|_| !needs_load(doc, &load_order)) {
        Some(id) => id,
        None => {
            let shape = LoadShape::of(&load_order, &names);
            let ids = odoo
                .load("purchase.order", &shape.fields(), &shape.rows(&load_order))
                .await?
                .into_ids("purchase.order")?;
            *ids.first().ok_or_else(|| {
                PushError::Odoo(crate::odoo::OdooError::Rejected {
                    call: "purchase.order.load".into(),
                    reasons: "no id returned".into(),
                })
            })?
        }
    };

    // The lines the load left out as unchanged must be there: one Odoo no longer has (its
    // order was replaced, say) is written in full.
    let mut existing = line_ids_by_xmlid(odoo, lines.iter().map(|l| l.xmlid.as_str())).await?;
    let lost = lost_lines(&lines, &existing);
    if !lost.is_empty() {
        load_in_full(odoo, &load_order, &lost, &names).await?;
        existing = line_ids_by_xmlid(odoo, lines.iter().map(|l| l.xmlid.as_str())).await?;
    }
    let all = vendor && may_exist(doc) && vendor_write_reprices(odoo).await?;
    let repriced: Vec<Repriced<'_>> = lines
        .iter()
        .filter_map(|l| l.repriced(date_planned.as_deref(), all))
        .collect();
    reprice_order_lines(odoo, &repriced).await?;
    // Lines of the Odoo order that the document no longer has.
    let keep: HashSet<i64> = existing.into_values().collect();
    let removed: Vec<Value> = goods_lines(odoo, &[odoo_id])
        .await?
        .iter()
        .filter(|(id, _)| !keep.contains(id))
        .map(|(id, _)| json!([2, id, 0]))
        .collect();
    if !removed.is_empty() {
        odoo.write(
            "purchase.order",
            &[odoo_id],
            &json!({"order_line": removed}),
        )
        .await?;
    }

    let state = odoo_state(odoo, odoo_id).await?;
    if let Some(action) = StatusAction::for_status(&status, state.as_deref().unwrap_or("")) {
        action.run(odoo, &[odoo_id]).await?;
    }

    let read = odoo
        .read(
            "purchase.order",
            &[odoo_id],
            &read_back_fields(doc, names.order_notes),
        )
        .await?;
    let rec = read.first().ok_or_else(|| vanished(odoo_id))?;
    let amounts = Amounts {
        subtotal: money(
            rec.get("amount_untaxed").unwrap_or(&Value::Null),
            "amount_untaxed",
        )?,
        sales_tax: money(rec.get("amount_tax").unwrap_or(&Value::Null), "amount_tax")?,
        grand_total: money(
            rec.get("amount_total").unwrap_or(&Value::Null),
            "amount_total",
        )?,
    };
    let snapshot = pushed_snapshot(partner, &lines, rec, maps_notes(doc), names.order_notes);
    Ok(PushOutcome {
        odoo_order_id: Some(odoo_id),
        odoo_name: rec.get("name").and_then(Value::as_str).map(str::to_string),
        operation: if known_id.is_some() {
            "UPDATE"
        } else {
            "CREATE"
        },
        version,
        snapshot,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odoo::version::OdooVersion;

    /// Names Odoo accepts (no space) for every key, read back as the same key, and the
    /// names of keys without a space unchanged.
    #[test]
    fn external_id_names_have_no_space_and_map_back() {
        for key in [
            "9", "a_b", "a b", "a%20b", "a %20 b", "%", " ", "x_1_y", "é ü",
        ] {
            for (kind, name) in [
                ("po", order_xmlid_name(12, key)),
                ("pol", line_xmlid_name(12, key)),
            ] {
                assert!(!name.contains(' '), "{name}");
                assert_eq!(
                    xmlid_key(kind, &name),
                    Some((12, key.to_string())),
                    "{name}"
                );
                if !key.contains(' ') {
                    assert_eq!(name, format!("{kind}_12_{key}"));
                }
            }
        }
        assert_eq!(line_xmlid_name(1, "a b"), "polx_1_a%20b");
        // An order's name is not a line's, and names of others are not ours.
        assert_eq!(xmlid_key("po", "pol_1_a"), None);
        assert_eq!(xmlid_key("pol", "po_1_a"), None);
        assert_eq!(xmlid_key("po", "pox_1_a%20b"), Some((1, "a b".to_string())));
        assert_eq!(xmlid_key("po", "po_x_a"), None);
        assert_eq!(xmlid_key("po", "purchase_order_1"), None);
    }

    #[test]
    fn a_line_keeps_the_base_discount_and_a_new_line_has_none() {
        let doc = json!({"base_snapshot": {"lines": {
            "1": {"discount": 12.5}, "2": {"discount": "3"}, "3": {"discount": null}, "4": {}}}});
        assert_eq!(base_discount(&doc, "1"), Decimal::new(125, 1));
        assert_eq!(base_discount(&doc, "2"), Decimal::from(3));
        for key in ["3", "4", "5"] {
            assert_eq!(base_discount(&doc, key), Decimal::ZERO, "{key}");
        }
        assert_eq!(
            base_discount(&json!({"base_snapshot": null}), "1"),
            Decimal::ZERO
        );
    }

    #[test]
    fn every_line_row_carries_the_date_and_the_head_row_the_order() {
        let line = |xmlid: &str, product, qty: i64, price: i64, discount| PushLine {
            xmlid: xmlid.to_string(),
            product,
            qty: Decimal::from(qty),
            price: Decimal::from(price),
            discount,
            write: LineWrite::Full,
        };
        let lines = vec![
            line("pol_1_a", 7, 2, 10, Decimal::new(125, 1)),
            line("pol_1_b", 8, 1, 3, Decimal::ZERO),
        ];
        let order = LoadOrder {
            xmlid: "po_1_9",
            partner: Some(5),
            origin: "PO-9",
            notes: None,
            date_planned: Some("2026-12-15 12:00:00"),
            lines: &lines,
        };
        let v17 = FieldNames::for_version(
            &OdooVersion::from_value(&json!({"server_version": "17.0"})).expect("version"),
        );
        let shape = LoadShape::of(&order, &v17);
        assert_eq!(
            shape.fields(),
            vec![
                "id",
                "partner_id/.id",
                "origin",
                "order_line/id",
                "order_line/product_id/.id",
                "order_line/product_qty",
                "order_line/price_unit",
                "order_line/discount",
                "order_line/date_planned"
            ]
        );
        let rows = shape.rows(&order);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], json!("odoo_sync.po_1_9"));
        assert_eq!(rows[1][0], json!(""));
        assert!(rows
            .iter()
            .all(|r| r.last() == Some(&json!("2026-12-15 12:00:00"))));
        // Each line's own discount: the base's (12.5 %), 0 for a line new to Odoo.
        assert_eq!(rows[0][rows[0].len() - 2], json!("12.5"));
        assert_eq!(rows[1][rows[1].len() - 2], json!("0"));

        // Lines have no discount before 17.
        let v16 = FieldNames::for_version(
            &OdooVersion::from_value(&json!({"server_version": "16.0"})).expect("version"),
        );
        assert!(!LoadShape::of(&order, &v16)
            .fields()
            .contains(&"order_line/discount"));

        // Without lines there is nothing to date: the order's date is Odoo's to compute.
        let bare = LoadOrder {
            lines: &[],
            ..order
        };
        let shape = LoadShape::of(&bare, &v17);
        assert!(!shape.with_dates);
        assert_eq!(shape.fields(), vec!["id", "partner_id/.id", "origin"]);
    }

    #[test]
    fn an_order_deleted_in_odoo_during_its_push_is_tried_again() {
        let e = vanished(17);
        assert!(e.is_transient());
        assert_eq!(e.type_name(), "changed_in_odoo");
        assert!(e.to_string().contains("Odoo order 17 was deleted in Odoo"));
    }

    #[test]
    fn an_order_is_loaded_only_when_its_head_or_a_whole_line_changed() {
        let doc =
            json!({"odoo_id": 9, "base_snapshot": {"origin": "PO-9", "notes_html": "<p>a</p>"}});
        let line = |write| PushLine {
            xmlid: "pol_1_a".into(),
            product: 7,
            qty: Decimal::ONE,
            price: Decimal::TEN,
            discount: Decimal::ZERO,
            write,
        };
        let skipped = [line(LineWrite::Skip), line(LineWrite::Price)];
        let same_notes = json!("<p>a</p>");
        let order = LoadOrder {
            xmlid: "po_1_9",
            partner: None,
            origin: "PO-9",
            notes: Some(&same_notes),
            date_planned: None,
            lines: &skipped,
        };
        assert!(!needs_load(&doc, &order));
        assert!(!needs_load(
            &doc,
            &LoadOrder {
                notes: None,
                ..order
            }
        ));
        let other_notes = json!("<p>b</p>");
        assert!(needs_load(
            &doc,
            &LoadOrder {
                notes: Some(&other_notes),
                ..order
            }
        ));
        let emptied = json!(false);
        assert!(needs_load(
            &doc,
            &LoadOrder {
                notes: Some(&emptied),
                ..order
            }
        ));
        let empty_base =
            json!({"odoo_id": 9, "base_snapshot": {"origin": "PO-9", "notes_html": null}});
        assert!(!needs_load(
            &empty_base,
            &LoadOrder {
                notes: Some(&emptied),
                ..order
            }
        ));
        assert!(needs_load(
            &doc,
            &LoadOrder {
                origin: "PO-10",
                ..order
            }
        ));
        assert!(needs_load(
            &doc,
            &LoadOrder {
                partner: Some(4),
                ..order
            }
        ));
        let full = [line(LineWrite::Full)];
        assert!(needs_load(
            &doc,
            &LoadOrder {
                lines: &full,
                ..order
            }
        ));
        assert!(needs_load(
            &json!({"odoo_id": null, "base_snapshot": doc["base_snapshot"]}),
            &order
        ));
    }

    #[test]
    fn only_lines_written_in_full_are_rows_of_the_load() {
        let line = |xmlid: &str, write| PushLine {
            xmlid: xmlid.to_string(),
            product: 7,
            qty: Decimal::ONE,
            price: Decimal::TEN,
            discount: Decimal::ZERO,
            write,
        };
        let v17 = FieldNames::for_version(
            &OdooVersion::from_value(&json!({"server_version": "17.0"})).expect("version"),
        );
        let mixed = vec![
            line("pol_1_a", LineWrite::Skip),
            line("pol_1_b", LineWrite::Full),
            line("pol_1_c", LineWrite::Price),
        ];
        let order = LoadOrder {
            xmlid: "po_1_9",
            partner: None,
            origin: "PO-9",
            notes: None,
            date_planned: None,
            lines: &mixed,
        };
        let rows = LoadShape::of(&order, &v17).rows(&order);
        // The head goes on the row of the only line written in full.
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][0], json!("odoo_sync.po_1_9"));
        assert_eq!(rows[0][2], json!("odoo_sync.pol_1_b"));

        // No line written in full: the order's head alone, no line columns.
        let unchanged = vec![
            line("pol_1_a", LineWrite::Skip),
            line("pol_1_c", LineWrite::Price),
        ];
        let head_only = LoadOrder {
            lines: &unchanged,
            ..order
        };
        let shape = LoadShape::of(&head_only, &v17);
        assert_eq!(shape.fields(), vec!["id", "origin"]);
        assert_eq!(
            shape.rows(&head_only),
            vec![vec![json!("odoo_sync.po_1_9"), json!("PO-9")]]
        );
    }
}
