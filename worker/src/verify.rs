//! `odoo-sync-worker verify`: compares every tracked local order with its Odoo order and says
//! where they differ.
//!
//! The local side is what `odoo_sync.order_document` returns for each row of
//! `odoo_sync.order_status`; the Odoo side is read the way the pull reads it
//! ([`crate::pull::remote`]). Both are brought to the canonical form of sql/twoway.sql before
//! they are compared:
//! - the state as a status class (`_status_class` / `_remote_class`: a local `APPROVED` and an
//!   Odoo `draft` are the same thing);
//! - the partner and the products as Odoo ids (through `partner_map` / `product_map`; a local
//!   reference never resolved shows as `local:<id>`);
//! - each line by its local item key (our external id `pol_<tracking>_<key>`, or the Odoo line
//!   id an imported item carries), quantities and prices as exact decimals.
//!
//! Per order it reports: missing in Odoo, several Odoo orders for one local order (found by the
//! link, by our external id `odoo_sync.po_<tracking>_<key>` and by `origin` = order number),
//! an Odoo order our external id names that the local order is not linked to, and the
//! differences of state, partner, notes and lines, each with the exact field
//! (`lines.<key>.quantity`). Notes are compared as text by the extension's own
//! `odoo_sync.notes_text` (of the local value, of Odoo's HTML), so verify and the merge agree
//! on what "equal" means. Odoo orders that carry our external id but belong to no local
//! order are counted too. A deleted local order must be cancelled in Odoo (or never have
//! reached it); one whose Odoo order an Odoo user deleted, left so by its pushes (cancelled
//! here, or in a table without a status column), is equal without one.
//!
//! Reading is paged: 200 local orders per page, about ten Odoo calls per page.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::odoo::{money, Domain, OdooClient, OdooError, Op};
use crate::pull::remote;
use crate::pull::PullError;
use crate::push::order_push::{order_xmlid_name, xmlid_key, XMLID_MODULE};
use crate::queue;

/// Local orders compared per page (one `order_documents` statement, a few Odoo calls).
pub const PAGE: usize = 200;

/// Why the comparison could not be made (a divergence is not an error: see [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// PostgreSQL refused a read.
    #[error(
        "cannot read the local orders: {0} (verify needs a role that is a member of \
         odoo_sync_worker: it reads odoo_sync.order_document, partner_map and product_map)"
    )]
    Db(#[from] tokio_postgres::Error),
    /// Odoo could not be asked.
    #[error("cannot read the orders from Odoo: {0}")]
    Odoo(#[from] OdooError),
    /// Odoo's orders could not be read into documents.
    #[error("cannot read the orders from Odoo: {0}")]
    Remote(#[from] PullError),
    /// The extension answered something else than one document per order.
    #[error(
        "odoo_sync.order_document returned {got} documents for {asked} orders (is the worker \
         the same version as the extension? see odoo-sync-worker check)"
    )]
    Documents {
        /// Orders asked for.
        asked: usize,
        /// Documents returned.
        got: usize,
    },
}

/// What kind of divergence a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The order is not in Odoo.
    Missing,
    /// More than one Odoo order for this local order.
    Duplicate,
    /// Odoo has the order under our external id but the local order is not linked to it.
    Unlinked,
    /// The state classes differ.
    State,
    /// The partners differ.
    Partner,
    /// A line is missing on one side, or one of its attributes differs.
    Line,
    /// The notes' texts differ.
    Notes,
    /// The delivery days differ (the local requested date, Odoo's expected arrival).
    DeliveryDate,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Missing => "MISSING",
            Kind::Duplicate => "DUPLICATE",
            Kind::Unlinked => "UNLINKED",
            Kind::State => "STATE",
            Kind::Partner => "PARTNER",
            Kind::Line => "LINE",
            Kind::Notes => "NOTES",
            Kind::DeliveryDate => "DELIVERY_DATE",
        }
    }
}

/// One divergence of one order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What diverges.
    pub kind: Kind,
    /// The field, named as in sql/twoway.sql: `state`, `partner_id`, `lines.<key>` (a whole
    /// line), `lines.<key>.product_id|quantity|unit_price`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The local value in canonical form (ids as text, decimals normalized).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// Odoo's value in the same form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub odoo: Option<String>,
    /// Duplicate: every Odoo order found for the local order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub odoo_ids: Vec<i64>,
    /// For a person: what differs, with names where they help.
    pub message: String,
}

/// One local order that differs from Odoo.
#[derive(Debug, Clone, Serialize)]
pub struct OrderReport {
    /// Tracking (`odoo_sync.tracked_tables.id`).
    pub tracking_id: i32,
    /// The order's key in the application's table.
    pub order_key: String,
    /// Its order number (Odoo's `origin`).
    pub order_number: Option<String>,
    /// The Odoo order it was compared with.
    pub odoo_id: Option<i64>,
    /// `sync_status` of the order.
    pub sync_status: String,
    /// A job of this order is still queued, running or waiting for a retry: the divergence
    /// may be work in progress.
    pub pending: bool,
    /// Deleted locally.
    pub deleted: bool,
    /// What differs.
    pub findings: Vec<Finding>,
}

impl OrderReport {
    /// The finding about `field`, if any.
    pub fn finding(&self, field: &str) -> Option<&Finding> {
        self.findings
            .iter()
            .find(|f| f.field.as_deref() == Some(field))
    }

    /// Whether a finding of this kind was made.
    pub fn has(&self, kind: Kind) -> bool {
        self.findings.iter().any(|f| f.kind == kind)
    }
}

/// The counts of a comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Local orders compared.
    pub compared: usize,
    /// Equal to Odoo (deleted orders that never reached Odoo included).
    pub equal: usize,
    /// With at least one finding.
    pub differing: usize,
    /// Not in Odoo.
    pub missing: usize,
    /// With more than one Odoo order.
    pub duplicates: usize,
    /// In Odoo under our external id without being linked to it.
    pub unlinked: usize,
    /// With a different state class.
    pub state_differences: usize,
    /// With a different partner.
    pub partner_differences: usize,
    /// With at least one line difference.
    pub line_differences: usize,
    /// With different notes.
    pub notes_differences: usize,
    /// With a different delivery day.
    pub date_differences: usize,
    /// With a job still to do (of all compared orders).
    pub pending: usize,
    /// Odoo orders with our external id that belong to no local order.
    pub orphans: usize,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Counts.
    pub summary: Summary,
    /// The orders that differ (equal ones are only counted).
    pub orders: Vec<OrderReport>,
    /// Names of our external ids (`po_<tracking>_<key>`) of orphan Odoo orders, at most 20.
    pub orphan_examples: Vec<String>,
}

impl Report {
    /// True when every local order equals its Odoo order and Odoo holds nothing extra of ours.
    pub fn is_clean(&self) -> bool {
        self.summary.differing == 0 && self.summary.orphans == 0
    }

    /// The report of one order (by its key), when it differs.
    pub fn order(&self, order_key: &str) -> Option<&OrderReport> {
        self.orders.iter().find(|o| o.order_key == order_key)
    }

    /// One line per finding, then the summary.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for o in &self.orders {
            let mut what = format!("order {}", o.order_key);
            let mut notes = Vec::new();
            if let Some(n) = &o.order_number {
                notes.push(n.clone());
            }
            if let Some(id) = o.odoo_id {
                notes.push(format!("Odoo {id}"));
            }
            if o.deleted {
                notes.push("deleted".into());
            }
            if o.pending {
                notes.push("sync pending".into());
            }
            if o.sync_status != "SYNCED" {
                notes.push(o.sync_status.clone());
            }
            if !notes.is_empty() {
                let _ = write!(what, " ({})", notes.join(", "));
            }
            for f in &o.findings {
                let _ = writeln!(out, "{:<9} {what}: {}", f.kind.label(), f.message);
            }
        }
        if self.summary.orphans > 0 {
            let _ = writeln!(
                out,
                "ORPHAN    {} Odoo order(s) carry our external id but belong to no local order: {}{}",
                self.summary.orphans,
                self.orphan_examples.join(", "),
                if self.summary.orphans > self.orphan_examples.len() {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "verify: {} orders compared: {} equal, {} differing ({} missing in Odoo, {} with duplicate Odoo orders, \
             {} unlinked, {} with state differences, {} with partner differences, {} with line differences, \
             {} with notes differences, {} with delivery date differences); {} with a job still pending; \
             {} orphan Odoo orders",
            s.compared,
            s.equal,
            s.differing,
            s.missing,
            s.duplicates,
            s.unlinked,
            s.state_differences,
            s.partner_differences,
            s.line_differences,
            s.notes_differences,
            s.date_differences,
            s.pending,
            s.orphans
        );
        out
    }

    /// The report as JSON (`--json`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|e| json!({"error": e.to_string()}))
    }
}

/// Class of a local status: sql/twoway.sql `_status_class` (keep the two in step). None for a
/// status odoo_sync does not know, or no status column: the state is then not compared.
pub fn status_class(status: &str) -> Option<&'static str> {
    Some(match status.to_ascii_uppercase().as_str() {
        "DRAFT" | "APPROVED" => "draft",
        "PENDING_APPROVAL" => "to approve",
        "SENT_TO_SUPPLIER" => "sent",
        "CONFIRMED" => "purchase",
        "PARTIALLY_RECEIVED" => "partial",
        "RECEIVED" => "received",
        "CANCELLED" => "cancel",
        _ => return None,
    })
}

/// Class of an Odoo order document ([`remote::documents`]): sql/twoway.sql `_remote_class`.
pub fn remote_class(doc: &Value) -> String {
    let state = doc["state"].as_str().unwrap_or("draft");
    if state == "done" || (state == "purchase" && doc["locked"].as_bool().unwrap_or(false)) {
        return "received".into();
    }
    if state != "purchase" {
        return state.into();
    }
    let (mut lines, mut full, mut some) = (0, 0, 0);
    for l in doc["lines"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let qty = dec(&l["quantity"]).unwrap_or_default();
        let received = dec(&l["qty_received"]).unwrap_or_default();
        if qty > Decimal::ZERO {
            lines += 1;
            if received >= qty {
                full += 1;
            }
        }
        if received > Decimal::ZERO {
            some += 1;
        }
    }
    if lines > 0 && full == lines {
        "received".into()
    } else if some > 0 {
        "partial".into()
    } else {
        "purchase".into()
    }
}

/// A document value (decimal text or JSON number) as a normalized decimal.
fn dec(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Decimal::from_str(text.trim()).ok().map(|d| d.normalize())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One row of `odoo_sync.order_status`.
#[derive(Debug, Clone)]
struct LocalOrder {
    tracking_id: i32,
    order_key: String,
    order_number: Option<String>,
    odoo_id: Option<i64>,
    deleted: bool,
    sync_status: String,
    pending: bool,
}

impl LocalOrder {
    /// What a push sends as `origin`.
    fn origin(&self) -> String {
        self.order_number
            .clone()
            .unwrap_or_else(|| self.order_key.clone())
    }

    fn xmlid(&self) -> String {
        order_xmlid_name(i64::from(self.tracking_id), &self.order_key)
    }
}

/// One line in canonical form.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    product: String,
    quantity: Option<Decimal>,
    unit_price: Option<Decimal>,
    /// For messages: the local product id or Odoo's default code.
    product_label: String,
}

/// Compares every tracked local order with Odoo.
pub async fn verify(pg: &Client, odoo: &OdooClient) -> Result<Report, VerifyError> {
    let locals = local_orders(pg).await?;
    let partners: HashMap<String, i64> = pg
        .query(
            "SELECT local_supplier_id, odoo_partner_id FROM odoo_sync.partner_map",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, i64::from(r.try_get::<_, i32>(1)?))))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let products: HashMap<String, i64> = pg
        .query(
            "SELECT local_product_id, odoo_product_id FROM odoo_sync.product_map",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, i64::from(r.try_get::<_, i32>(1)?))))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    // Odoo orders claimed by a link or by our external id: an `origin` match that another local
    // order claims is that order's, not a duplicate (order numbers need not be unique).
    let mut report = Report {
        summary: Summary::default(),
        orders: Vec::new(),
        orphan_examples: Vec::new(),
    };
    let linked: HashMap<i64, usize> = locals
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((o.odoo_id?, i)))
        .collect();
    let all_xmlids = our_order_xmlids(odoo).await?;
    let by_xmlid: HashMap<String, i64> = all_xmlids.iter().cloned().collect();
    let known: HashSet<String> = locals.iter().map(LocalOrder::xmlid).collect();
    let mut orphans: Vec<String> = all_xmlids
        .iter()
        .filter(|(name, _)| !known.contains(name))
        .map(|(name, _)| name.clone())
        .collect();
    orphans.sort();
    report.summary.orphans = orphans.len();
    report.orphan_examples = orphans.into_iter().take(20).collect();
    let claimed_by_xmlid: HashMap<i64, String> =
        all_xmlids.iter().map(|(n, id)| (*id, n.clone())).collect();

    for page in locals.chunks(PAGE) {
        let pairs: Vec<(i32, String)> = page
            .iter()
            .map(|o| (o.tracking_id, o.order_key.clone()))
            .collect();
        let mut docs = queue::order_documents(pg, &pairs).await?;
        if docs.len() != page.len() {
            return Err(VerifyError::Documents {
                asked: page.len(),
                got: docs.len(),
            });
        }
        let origins: Vec<String> = page.iter().map(LocalOrder::origin).collect();
        let mut by_origin: HashMap<String, Vec<i64>> = HashMap::new();
        for r in odoo
            .search_read(
                "purchase.order",
                &Domain::leaf("origin", Op::In, json!(origins)),
                &["id", "origin"],
                0,
                None,
                Some("id"),
            )
            .await?
        {
            if let (Some(id), Some(origin)) = (
                r.get("id").and_then(Value::as_i64),
                r.get("origin").and_then(Value::as_str),
            ) {
                by_origin.entry(origin.to_string()).or_default().push(id);
            }
        }
        // Every Odoo order any local order of the page may be compared with.
        let mut wanted: BTreeSet<i64> = BTreeSet::new();
        let mut candidates: Vec<BTreeMap<i64, Vec<&'static str>>> = Vec::with_capacity(page.len());
        for (i, o) in page.iter().enumerate() {
            let mut found: BTreeMap<i64, Vec<&'static str>> = BTreeMap::new();
            if let Some(id) = o.odoo_id {
                found.entry(id).or_default().push("linked");
            }
            if let Some(id) = by_xmlid.get(&o.xmlid()) {
                found.entry(*id).or_default().push("external id");
            }
            let me = o.xmlid();
            for id in by_origin.get(&o.origin()).map(Vec::as_slice).unwrap_or(&[]) {
                let other_link = linked.get(id).is_some_and(|j| {
                    locals[*j].order_key != o.order_key || locals[*j].tracking_id != o.tracking_id
                });
                let other_xmlid = claimed_by_xmlid.get(id).is_some_and(|n| *n != me);
                if !other_link && !other_xmlid {
                    found.entry(*id).or_default().push("origin");
                }
            }
            // Imported orders keep Odoo's origin, which says nothing about us.
            if docs[i]["link"].as_str() == Some("dbid") {
                found.retain(|_, how| how.iter().any(|h| *h != "origin"));
            }
            wanted.extend(found.keys().copied());
            candidates.push(found);
        }
        let ids: Vec<i64> = wanted.into_iter().collect();
        let mut remote_docs: HashMap<i64, Value> = remote::fetch(pg, odoo, &ids)
            .await?
            .into_iter()
            .filter_map(|d| Some((d["odoo_id"].as_i64()?, d)))
            .collect();
        add_notes_texts(pg, &mut docs, &mut remote_docs).await?;
        for ((o, doc), found) in page.iter().zip(&docs).zip(candidates) {
            report.summary.compared += 1;
            if o.pending {
                report.summary.pending += 1;
            }
            let r = compare(o, doc, &found, &remote_docs, &partners, &products);
            if r.findings.is_empty() {
                report.summary.equal += 1;
                continue;
            }
            let s = &mut report.summary;
            s.differing += 1;
            for (kind, count) in [
                (Kind::Missing, &mut s.missing),
                (Kind::Duplicate, &mut s.duplicates),
                (Kind::Unlinked, &mut s.unlinked),
                (Kind::State, &mut s.state_differences),
                (Kind::Partner, &mut s.partner_differences),
                (Kind::Line, &mut s.line_differences),
                (Kind::Notes, &mut s.notes_differences),
                (Kind::DeliveryDate, &mut s.date_differences),
            ] {
                if r.has(kind) {
                    *count += 1;
                }
            }
            report.orders.push(r);
        }
    }
    Ok(report)
}

/// Every row of `odoo_sync.order_status`, integer keys in numeric order.
async fn local_orders(pg: &Client) -> Result<Vec<LocalOrder>, tokio_postgres::Error> {
    let rows = pg
        .query(
            "SELECT t.id, s.local_order_id, s.order_number, s.odoo_order_id, s.deleted, s.sync_status, \
                    s.job_id IS NOT NULL \
             FROM odoo_sync.order_status s JOIN odoo_sync.tracked_tables t ON t.orders_table = s.orders_table \
             ORDER BY t.id, length(s.local_order_id), s.local_order_id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LocalOrder {
                tracking_id: r.try_get(0)?,
                order_key: r.try_get(1)?,
                order_number: r.try_get(2)?,
                odoo_id: r.try_get::<_, Option<i32>>(3)?.map(i64::from),
                deleted: r.try_get(4)?,
                sync_status: r.try_get(5)?,
                pending: r.try_get(6)?,
            })
        })
        .collect()
}

/// Our external ids of purchase orders in Odoo: (name, res_id), in pages.
async fn our_order_xmlids(odoo: &OdooClient) -> Result<Vec<(String, i64)>, OdooError> {
    const XMLID_PAGE: usize = 5000;
    let domain = Domain::eq("module", XMLID_MODULE).and(Domain::eq("model", "purchase.order"));
    let mut out = Vec::new();
    loop {
        let rows = odoo
            .search_read(
                "ir.model.data",
                &domain,
                &["name", "res_id"],
                out.len(),
                Some(XMLID_PAGE),
                Some("id"),
            )
            .await?;
        let n = rows.len();
        out.extend(rows.iter().filter_map(|r| {
            Some((
                r.get("name")?.as_str()?.to_string(),
                r.get("res_id")?.as_i64()?,
            ))
        }));
        if n < XMLID_PAGE {
            return Ok(out);
        }
    }
}

/// Adds `notes_text`, the text the merge compares (`odoo_sync.notes_text`), to each local
/// document whose tracking maps notes and to each Odoo document that carries them.
async fn add_notes_texts(
    pg: &Client,
    docs: &mut [Value],
    remote_docs: &mut HashMap<i64, Value>,
) -> Result<(), tokio_postgres::Error> {
    let local: Vec<&mut Value> = docs
        .iter_mut()
        .filter(|d| d["order"].get("notes").is_some())
        .collect();
    let values: Vec<Option<String>> = local.iter().map(|d| text(&d["order"]["notes"])).collect();
    for (d, t) in local
        .into_iter()
        .zip(notes_texts(pg, &values, false).await?)
    {
        d["notes_text"] = json!(t);
    }
    let odoo: Vec<&mut Value> = remote_docs
        .values_mut()
        .filter(|d| d.get("notes_html").is_some())
        .collect();
    let values: Vec<Option<String>> = odoo.iter().map(|d| text(&d["notes_html"])).collect();
    for (d, t) in odoo.into_iter().zip(notes_texts(pg, &values, true).await?) {
        d["notes_text"] = json!(t);
    }
    Ok(())
}

/// `odoo_sync.notes_text` of each value, in order.
async fn notes_texts(
    pg: &Client,
    values: &[Option<String>],
    from_odoo: bool,
) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
    pg.query(
        "SELECT odoo_sync.notes_text(x, $2) FROM unnest($1::text[]) WITH ORDINALITY u(x, n) ORDER BY n",
        &[&values, &from_odoo],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect()
}

/// Compares one local order with the Odoo orders found for it.
fn compare(
    o: &LocalOrder,
    doc: &Value,
    found: &BTreeMap<i64, Vec<&'static str>>,
    remote_docs: &HashMap<i64, Value>,
    partners: &HashMap<String, i64>,
    products: &HashMap<String, i64>,
) -> OrderReport {
    let mut findings = Vec::new();
    // Only Odoo orders that exist count; a link to a deleted Odoo order is "missing".
    let existing: Vec<i64> = found
        .keys()
        .copied()
        .filter(|id| remote_docs.contains_key(id))
        .collect();
    if existing.len() > 1 {
        let how: Vec<String> = existing
            .iter()
            .map(|id| format!("{id} ({})", found[id].join(", ")))
            .collect();
        findings.push(Finding {
            kind: Kind::Duplicate,
            field: None,
            local: None,
            odoo: None,
            odoo_ids: existing.clone(),
            message: format!(
                "{} Odoo orders for one local order: {}",
                existing.len(),
                how.join("; ")
            ),
        });
    }
    // The one to compare with: the linked order, else the one our external id names, else the
    // first found by origin.
    let primary = o
        .odoo_id
        .filter(|id| remote_docs.contains_key(id))
        .or_else(|| {
            existing
                .iter()
                .copied()
                .find(|id| found[id].contains(&"external id"))
        })
        .or_else(|| existing.first().copied());
    let mut report = OrderReport {
        tracking_id: o.tracking_id,
        order_key: o.order_key.clone(),
        order_number: o.order_number.clone(),
        odoo_id: primary.or(o.odoo_id),
        sync_status: o.sync_status.clone(),
        pending: o.pending,
        deleted: o.deleted || doc["deleted"].as_bool().unwrap_or(false),
        findings: Vec::new(),
    };
    let Some(primary) = primary else {
        // An order an Odoo user deleted, left so by its pushes: as it should be (their rule).
        let deleted_in_odoo = doc["deleted_in_odoo"].as_i64();
        let left_deleted = crate::push::order_push::stays_deleted_in_odoo(doc);
        if !report.deleted && !left_deleted {
            let message = match (o.odoo_id, deleted_in_odoo) {
                (Some(id), _) => {
                    format!("not in Odoo: the linked Odoo order {id} does not exist")
                }
                (None, _) if o.pending => "not in Odoo yet: its push is still queued".into(),
                (None, Some(deleted)) => format!(
                    "not in Odoo: an Odoo user deleted its Odoo order {deleted} (sync status {})",
                    o.sync_status
                ),
                (None, None) => {
                    format!("not in Odoo: never pushed (sync status {})", o.sync_status)
                }
            };
            findings.push(Finding {
                kind: Kind::Missing,
                field: None,
                local: None,
                odoo: None,
                odoo_ids: Vec::new(),
                message,
            });
        }
        report.findings = findings;
        return report;
    };
    let remote = &remote_docs[&primary];
    if o.odoo_id.is_none() {
        findings.push(Finding {
            kind: Kind::Unlinked,
            field: Some("odoo_id".into()),
            local: None,
            odoo: Some(primary.to_string()),
            odoo_ids: Vec::new(),
            message: format!(
                "Odoo holds it as order {primary} ({}), but the local order is not linked to it",
                found[&primary].join(", ")
            ),
        });
    }
    let remote_state = remote_class(remote);
    if report.deleted {
        if remote_state != "cancel" {
            findings.push(Finding {
                kind: Kind::State,
                field: Some("state".into()),
                local: Some("cancel".into()),
                odoo: Some(remote_state.clone()),
                odoo_ids: Vec::new(),
                message: format!(
                    "state: deleted locally, so Odoo's order must be cancelled; Odoo has {remote_state:?}"
                ),
            });
        }
        report.findings = findings;
        return report;
    }
    let order = &doc["order"];
    if let Some(local_state) = text(&order["status"]).as_deref().and_then(status_class) {
        if local_state != remote_state {
            findings.push(Finding {
                kind: Kind::State,
                field: Some("state".into()),
                local: Some(local_state.into()),
                odoo: Some(remote_state.clone()),
                odoo_ids: Vec::new(),
                message: format!(
                    "state: local {:?} ({local_state}), Odoo {:?} ({remote_state})",
                    text(&order["status"]).unwrap_or_default(),
                    remote["state"].as_str().unwrap_or_default()
                ),
            });
        }
    }
    let supplier = text(&order["supplier_id"]).unwrap_or_default();
    let local_partner = partners
        .get(&supplier)
        .map(i64::to_string)
        .unwrap_or_else(|| format!("local:{supplier}"));
    let remote_partner = remote["partner_id"]
        .as_i64()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if local_partner != remote_partner {
        findings.push(Finding {
            kind: Kind::Partner,
            field: Some("partner_id".into()),
            local: Some(local_partner.clone()),
            odoo: Some(remote_partner.clone()),
            odoo_ids: Vec::new(),
            message: format!(
                "partner_id: local supplier {supplier:?} ({}), Odoo partner {remote_partner} ({}, ref {})",
                if local_partner.starts_with("local:") {
                    "not mapped to an Odoo partner".to_string()
                } else {
                    format!("Odoo partner {local_partner}")
                },
                remote["partner_name"].as_str().unwrap_or("?"),
                remote["partner_ref"].as_str().unwrap_or("none")
            ),
        });
    }
    // Compared only when both sides carry notes (see add_notes_texts).
    if let (Some(local), Some(odoo)) = (doc.get("notes_text"), remote.get("notes_text")) {
        if local != odoo {
            let shown = |v: &Value| v.as_str().map_or("none".into(), |t| format!("{t:?}"));
            findings.push(Finding {
                kind: Kind::Notes,
                field: Some("notes".into()),
                local: local.as_str().map(str::to_string),
                odoo: odoo.as_str().map(str::to_string),
                odoo_ids: Vec::new(),
                message: format!("notes: local {}, Odoo {}", shown(local), shown(odoo)),
            });
        }
    }
    // The day the merge compares: that of the datetime a push writes (odoo_date_planned), and
    // Odoo's expected arrival's UTC date. An empty local date leaves Odoo's alone: no finding.
    let day = |v: &Value| v.as_str().and_then(|t| t.get(..10)).map(str::to_string);
    if let Some(local) = day(&doc["odoo_date_planned"]) {
        let odoo = day(&remote["date_planned"]);
        if odoo.as_deref() != Some(local.as_str()) {
            findings.push(Finding {
                kind: Kind::DeliveryDate,
                field: Some("delivery_date".into()),
                message: format!(
                    "delivery_date: local {local}, Odoo {}",
                    odoo.as_deref().unwrap_or("none")
                ),
                local: Some(local),
                odoo,
                odoo_ids: Vec::new(),
            });
        }
    }
    let (local_lines, remote_lines) = lines_of(o.tracking_id, doc, remote, products);
    let keys: BTreeSet<&String> = local_lines.keys().chain(remote_lines.keys()).collect();
    for key in keys {
        let field = format!("lines.{key}");
        match (local_lines.get(key), remote_lines.get(key)) {
            (Some(l), None) => findings.push(Finding {
                kind: Kind::Line,
                field: Some(field.clone()),
                local: Some(describe(l)),
                odoo: None,
                odoo_ids: Vec::new(),
                message: format!("{field}: local line ({}) is not in Odoo", describe(l)),
            }),
            (None, Some(r)) => findings.push(Finding {
                kind: Kind::Line,
                field: Some(field.clone()),
                local: None,
                odoo: Some(describe(r)),
                odoo_ids: Vec::new(),
                message: format!(
                    "{field}: Odoo line ({}) is not in the local order",
                    describe(r)
                ),
            }),
            (Some(l), Some(r)) => {
                let attrs = [
                    (
                        "product_id",
                        Some(l.product.clone()),
                        Some(r.product.clone()),
                    ),
                    (
                        "quantity",
                        l.quantity.map(|d| d.to_string()),
                        r.quantity.map(|d| d.to_string()),
                    ),
                    (
                        "unit_price",
                        l.unit_price.map(|d| d.to_string()),
                        r.unit_price.map(|d| d.to_string()),
                    ),
                ];
                for (attr, lv, rv) in attrs {
                    if lv != rv {
                        let field = format!("lines.{key}.{attr}");
                        let shown = |v: &Option<String>, label: &str| {
                            let v = v.clone().unwrap_or_else(|| "none".into());
                            if attr == "product_id" {
                                format!("{v} ({label})")
                            } else {
                                v
                            }
                        };
                        findings.push(Finding {
                            kind: Kind::Line,
                            message: format!(
                                "{field}: local {}, Odoo {}",
                                shown(&lv, &l.product_label),
                                shown(&rv, &r.product_label)
                            ),
                            field: Some(field),
                            local: lv,
                            odoo: rv,
                            odoo_ids: Vec::new(),
                        });
                    }
                }
            }
            (None, None) => {}
        }
    }
    report.findings = findings;
    report
}

fn describe(l: &Line) -> String {
    format!(
        "product {} ({}), quantity {}, unit price {}",
        l.product,
        l.product_label,
        l.quantity
            .map(|d| d.to_string())
            .unwrap_or_else(|| "none".into()),
        l.unit_price
            .map(|d| d.to_string())
            .unwrap_or_else(|| "none".into())
    )
}

/// Both sides' lines by local item key (sql/twoway.sql `_line_key`): our external id, the Odoo
/// line id an imported item carries, else `odoo:<line id>` for a line the local side never saw.
fn lines_of(
    tracking_id: i32,
    doc: &Value,
    remote: &Value,
    products: &HashMap<String, i64>,
) -> (BTreeMap<String, Line>, BTreeMap<String, Line>) {
    let mut local = BTreeMap::new();
    let mut by_odoo_line: HashMap<i64, String> = HashMap::new();
    for item in doc["items"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let Some(key) = text(&item["id"]) else {
            continue;
        };
        if let Some(line) = item["odoo_line_id"].as_i64() {
            by_odoo_line.insert(line, key.clone());
        }
        let product_id = text(&item["product_id"]).unwrap_or_default();
        local.insert(
            key,
            Line {
                product: products
                    .get(&product_id)
                    .map(i64::to_string)
                    .unwrap_or_else(|| format!("local:{product_id}")),
                quantity: dec(&item["quantity"]),
                unit_price: dec(&item["unit_price"]),
                product_label: product_id,
            },
        );
    }
    // Odoo's numbers as the local columns store them: 12.345 in Odoo is 12.35 in a
    // numeric(12,2) column, which is no difference (the merge compares them the same way).
    let (qty_scale, price_scale) = crate::push::order_push::item_scales(doc);
    let stored = |v: &Value, scale| dec(v).map(|d| money::as_stored(d, scale).normalize());
    let mut remote_lines = BTreeMap::new();
    for l in remote["lines"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let line_id = l["odoo_line_id"].as_i64().unwrap_or_default();
        let key = l["xmlid"]
            .as_str()
            .and_then(|x| xmlid_key("pol", x))
            .filter(|(tracking, _)| *tracking == i64::from(tracking_id))
            .map(|(_, key)| key)
            .or_else(|| by_odoo_line.get(&line_id).cloned())
            .unwrap_or_else(|| format!("odoo:{line_id}"));
        remote_lines.insert(
            key,
            Line {
                product: l["product_id"]
                    .as_i64()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                quantity: stored(&l["quantity"], qty_scale),
                unit_price: stored(&l["unit_price"], price_scale),
                product_label: l["product_code"]
                    .as_str()
                    .or_else(|| l["name"].as_str())
                    .unwrap_or("?")
                    .to_string(),
            },
        );
    }
    (local, remote_lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_follow_twoway_sql() {
        assert_eq!(status_class("APPROVED"), Some("draft"));
        assert_eq!(status_class("confirmed"), Some("purchase"));
        assert_eq!(status_class("SOMETHING"), None);
    }

    #[test]
    fn remote_classes_refine_purchase_by_receipts() {
        let doc = |state: &str, locked: bool, lines: Value| json!({"state": state, "locked": locked, "lines": lines});
        assert_eq!(remote_class(&doc("draft", false, json!([]))), "draft");
        assert_eq!(remote_class(&doc("done", false, json!([]))), "received");
        assert_eq!(remote_class(&doc("purchase", true, json!([]))), "received");
        let two = |a: &str, b: &str| json!([{"quantity": "2", "qty_received": a}, {"quantity": "1.5", "qty_received": b}]);
        assert_eq!(
            remote_class(&doc("purchase", false, two("0", "0"))),
            "purchase"
        );
        assert_eq!(
            remote_class(&doc("purchase", false, two("1", "0"))),
            "partial"
        );
        assert_eq!(
            remote_class(&doc("purchase", false, two("2", "1.5"))),
            "received"
        );
    }

    #[test]
    fn a_quantity_edit_is_one_finding_with_its_field() {
        let o = LocalOrder {
            tracking_id: 1,
            order_key: "7".into(),
            order_number: Some("PO-7".into()),
            odoo_id: Some(40),
            deleted: false,
            sync_status: "SYNCED".into(),
            pending: false,
        };
        let doc = json!({"link": "xmlid", "deleted": false,
            "order": {"status": "DRAFT", "supplier_id": "V-A"},
            "items": [{"id": 3, "product_id": "P1", "quantity": "2.000", "unit_price": "10.50"}]});
        let remote = json!({"odoo_id": 40, "state": "draft", "partner_id": 5, "lines": [
            {"odoo_line_id": 90, "xmlid": "pol_1_3", "product_id": 8, "product_code": "P1",
             "quantity": "5", "unit_price": "10.5", "qty_received": "0"}]});
        let found = BTreeMap::from([(40, vec!["linked", "external id", "origin"])]);
        let remotes = HashMap::from([(40, remote)]);
        let partners = HashMap::from([("V-A".to_string(), 5)]);
        let products = HashMap::from([("P1".to_string(), 8)]);
        let r = compare(&o, &doc, &found, &remotes, &partners, &products);
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        let f = r.finding("lines.3.quantity").expect("quantity finding");
        assert_eq!(f.kind, Kind::Line);
        assert_eq!(
            (f.local.as_deref(), f.odoo.as_deref()),
            (Some("2"), Some("5"))
        );
    }
}
