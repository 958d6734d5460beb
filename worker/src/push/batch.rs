//! Many order documents → few Odoo calls.
//!
//! Per claimed batch: references are resolved for all orders at once (one map-table query and
//! one `search_read` per strategy and model, with `in` domains); the orders are then split
//! into chunks written concurrently, each chunk with ONE `purchase.order.load` (rows of the
//! next order start with its external id) and ONE `read` of names, states, line ids and
//! amounts. Line removals (rare) cost one `ir.model.data` lookup for the chunk plus one
//! `write` per order concerned; status buttons one call per button for the chunk; deleted
//! orders one external-id lookup, one `read` of states and one `button_cancel` for all.
//!
//! `load` is all-or-nothing per call: when Odoo refuses a chunk, the orders its messages name
//! are loaded alone (their refusal becomes their permanent error, with Odoo's message) and the
//! rest is loaded again; without such hints the chunk is bisected. A poison order therefore
//! fails alone and its neighbours succeed. Idempotency is that of [`super::order_push`]: the
//! order and its lines carry external ids, so a chunk retried after an unknown outcome updates
//! what the first attempt created.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tokio_postgres::Client;

use super::line_write::{LineNow, LineWrite};
use super::linked_push::{needs_linked_push, push_linked};
use super::order_push::{
    canonical_snapshot, date_planned_to_write, decimal, goods_lines, left_deleted,
    line_ids_by_xmlid, load_in_full, lost_lines, maps_notes, may_exist, needs_load, notes_to_write,
    order_xmlid_name, push_order, pushed_snapshot, reprice_lines, reprice_order_lines,
    stays_deleted_in_odoo, text, vanished, writes_vendor, Amounts, LoadOrder, LoadShape, PushLine,
    PushOutcome, Repriced, READ_BACK, XMLID_MODULE,
};
use super::resolve::{reference_states, Resolver, Wanted};
use super::status_action::StatusAction;
use super::PushError;
use crate::odoo::money::money;
use crate::odoo::version::FieldNames;
use crate::odoo::{Domain, OdooClient, OdooError};

/// How a batch is written.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Chunks written at the same time.
    pub concurrency: usize,
    /// Most orders in one `load`.
    pub max_chunk: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            concurrency: 4,
            max_chunk: 100,
        }
    }
}

/// Polls all futures together and returns their outputs in order (a dependency-free
/// `join_all`: the futures share the caller's task, and so its borrowed connections).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

struct Item {
    /// The local item's key.
    key: String,
    product: Wanted,
    qty: Decimal,
    price: Decimal,
}

/// One live order document, checked.
struct Prepared {
    tracking_id: i64,
    version: Option<i64>,
    known_id: Option<i64>,
    xmlid: String,
    supplier: Wanted,
    origin: String,
    status: String,
    items: Vec<Item>,
    /// What to write into Odoo's notes (None: leave them alone).
    notes: Option<Value>,
    /// The tracking maps a notes column (the snapshot then carries Odoo's notes).
    maps_notes: bool,
    /// Every line's expected arrival (None: leave Odoo's dates alone).
    date_planned: Option<String>,
}

/// An order ready for `load`: references resolved.
struct Ready {
    index: usize,
    version: Option<i64>,
    known_id: Option<i64>,
    xmlid: String,
    partner: i64,
    origin: String,
    status: String,
    lines: Vec<PushLine>,
    notes: Option<Value>,
    maps_notes: bool,
    date_planned: Option<String>,
    /// The load writes the vendor (see [`writes_vendor`]).
    writes_vendor: bool,
    /// The Odoo order may exist already (see [`may_exist`]).
    may_exist: bool,
    /// The push writes the order with `load` (see [`needs_load`]).
    needs_load: bool,
}

fn prepare(doc: &Value) -> Result<Prepared, PushError> {
    let tracking_id = doc["tracking_id"]
        .as_i64()
        .ok_or_else(|| PushError::Document("tracking_id is missing".into()))?;
    let order_key = text(&doc["order_key"])
        .ok_or_else(|| PushError::Document("order_key is missing".into()))?;
    let order = &doc["order"];
    let supplier_id = text(&order["supplier_id"])
        .ok_or_else(|| PushError::Document("order.supplier_id is missing".into()))?;
    let empty = Vec::new();
    let mut items = Vec::new();
    for item in doc["items"].as_array().unwrap_or(&empty) {
        let item_id =
            text(&item["id"]).ok_or_else(|| PushError::Document("an item has no id".into()))?;
        let product_id = text(&item["product_id"])
            .ok_or_else(|| PushError::Document(format!("item {item_id} has no product_id")))?;
        let code = text(&item["product_code"])
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| product_id.clone());
        items.push(Item {
            product: Wanted {
                key: product_id,
                code,
                name: text(&item["product_name"]),
            },
            qty: decimal(&item["quantity"], &format!("item {item_id} quantity"))?,
            price: decimal(&item["unit_price"], &format!("item {item_id} unit_price"))?,
            key: item_id,
        });
    }
    Ok(Prepared {
        tracking_id,
        version: doc["version"].as_i64(),
        known_id: doc["odoo_id"].as_i64(),
        xmlid: order_xmlid_name(tracking_id, &order_key),
        supplier: Wanted {
            key: supplier_id.clone(),
            code: supplier_id,
            name: text(&order["supplier_name"]),
        },
        origin: text(&order["order_number"]).unwrap_or(order_key),
        status: text(&order["status"]).unwrap_or_default(),
        items,
        notes: notes_to_write(doc),
        maps_notes: maps_notes(doc),
        date_planned: date_planned_to_write(doc),
    })
}

/// Pushes many order documents (`odoo_sync.order_document`) with few Odoo calls; one result
/// per document, in order. A failure of one order never fails another, except errors that hit
/// a whole call (Odoo unreachable, database down), which fail every order of that call.
pub async fn push_orders(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    docs: &[Value],
    options: BatchOptions,
) -> Vec<Result<PushOutcome, PushError>> {
    let mut results = push_resolved(pg, odoo, resolver, docs, options).await;
    recheck_references(odoo, resolver, docs, &mut results).await;
    results
}

/// Odoo refuses an order naming a vendor or product it no longer has: one an Odoo user merged
/// into another contact, or deleted, after this worker resolved it (the resolver keeps what it
/// found for a while). Such a refusal is the resolution's fault, not the order's: for the
/// orders Odoo refused in a way a missing record can cause ([`may_name_a_lost_reference`]),
/// the vendors and products they name are looked up (one `search_read` per kind, only then),
/// the missing ones forgotten, and those orders retried, so that their next attempt resolves
/// them again (see `resolve`).
///
/// Up to 17, `load` also refuses an archived record given by database id, saying only "No
/// matching record found for database id '42' in field 'Vendor'". Such an order's refusal then
/// names the archived record and what to do (only the ids Odoo's message names count: a vendor
/// the push did not send, or a product a record rule hides, is not blamed), and the resolver
/// forgets it, so that a map row pointed at an active record is read again.
async fn recheck_references(
    odoo: &OdooClient,
    resolver: &mut Resolver,
    docs: &[Value],
    results: &mut [Result<PushOutcome, PushError>],
) {
    let refused: Vec<usize> = (0..results.len())
        .filter(|i| matches!(&results[*i], Err(PushError::Odoo(e)) if may_name_a_lost_reference(e)))
        .collect();
    if refused.is_empty() {
        return;
    }
    // The references as a push takes them from the document (see `prepare`), with the ids the
    // resolver gave them.
    let refs: Vec<Named> = refused
        .iter()
        .filter_map(|&index| {
            let p = prepare(&docs[index]).ok()?;
            Some(Named {
                index,
                partner: resolver
                    .cached_partner(&p.supplier.key)
                    .map(|id| (p.supplier.key.clone(), id)),
                products: p
                    .items
                    .iter()
                    .filter_map(|it| {
                        let id = resolver.cached_product(&it.product.key)?;
                        Some((it.product.key.clone(), id))
                    })
                    .collect(),
            })
        })
        .collect();
    let partner_ids = refs
        .iter()
        .filter_map(|r| r.partner.as_ref().map(|p| p.1))
        .collect();
    let product_ids = refs
        .iter()
        .flat_map(|r| r.products.iter().map(|p| p.1))
        .collect();
    // A lookup that fails changes nothing: the orders keep the error Odoo gave.
    let (Ok((gone_partners, archived_partners)), Ok((gone_products, archived_products))) = (
        reference_states(odoo, "res.partner", partner_ids).await,
        reference_states(odoo, "product.product", product_ids).await,
    ) else {
        return;
    };
    let archived_refused = !odoo.version().await.is_ok_and(|v| v.major >= 18);
    let mut forget_partners = gone_partners.clone();
    let mut forget_products = gone_products.clone();
    for r in &refs {
        let refusal = match &results[r.index] {
            Err(e) => e.to_string(),
            Ok(_) => continue,
        };
        let gone = r.describe(&gone_partners, &gone_products, false);
        if !gone.is_empty() {
            results[r.index] = Err(PushError::StaleReference(format!(
                "Odoo no longer has {} (merged into another record, or deleted): resolving again \
                 on the next attempt. Odoo said: {refusal}",
                gone.join(", ")
            )));
            continue;
        }
        let named = match &results[r.index] {
            Err(PushError::Odoo(OdooError::Rejected { reasons, .. })) if archived_refused => {
                refused_database_ids(reasons)
            }
            _ => continue,
        };
        let partners: HashSet<i64> = archived_partners.intersection(&named).copied().collect();
        let products: HashSet<i64> = archived_products.intersection(&named).copied().collect();
        let archived = r.describe(&partners, &products, true);
        if archived.is_empty() {
            continue;
        }
        forget_partners.extend(partners);
        forget_products.extend(products);
        results[r.index] = Err(PushError::Unresolved(format!(
            "Odoo refused the order because it names the archived {}: this Odoo version takes no \
             archived record by database id. Restore (unarchive) it in Odoo, or point its \
             partner_map / product_map row at an active record (as odoo_sync_admin), then retry \
             the job. Odoo said: {refusal}",
            archived.join(" and the archived ")
        )));
    }
    resolver.forget(&forget_partners, &forget_products);
}

/// The ids of Odoo's "No matching record found for database id '42' in field 'Vendor'"
/// messages in `reasons`.
fn refused_database_ids(reasons: &str) -> HashSet<i64> {
    const MARK: &str = "database id '";
    reasons
        .match_indices(MARK)
        .filter_map(|(at, _)| {
            let rest = &reasons[at + MARK.len()..];
            rest[..rest.find('\'')?].trim().parse().ok()
        })
        .collect()
}

/// Resolves the vendors and products of `docs` at once, so that the pushes that look them up
/// one line at a time (orders pushed by id, a single order) find them in the resolver instead
/// of reading the map tables, and checking them in Odoo, line by line. What this cannot
/// resolve, each push reports itself.
pub(crate) async fn resolve_ahead(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    docs: &[&Value],
) {
    let prepared: Vec<Prepared> = docs.iter().filter_map(|d| prepare(d).ok()).collect();
    if prepared.is_empty() {
        return;
    }
    let suppliers: Vec<Wanted> = prepared.iter().map(|p| p.supplier.clone()).collect();
    let products: Vec<Wanted> = prepared
        .iter()
        .flat_map(|p| p.items.iter().map(|it| it.product.clone()))
        .collect();
    if let Err(e) = resolver.partners_many(pg, odoo, &suppliers).await {
        tracing::debug!(error = %e, "vendors not resolved ahead");
    }
    if let Err(e) = resolver.products_many(pg, odoo, &products).await {
        tracing::debug!(error = %e, "products not resolved ahead");
    }
}

/// Whether Odoo's refusal may come from a vendor or product it no longer has: a refused
/// `load` (its message for a missing record is "No matching record found for database id"),
/// or a `MissingError` about one. A refused button or a business rule is about the order.
fn may_name_a_lost_reference(e: &OdooError) -> bool {
    match e {
        OdooError::Rejected { call, .. } => call.ends_with(".load"),
        _ => e.is_missing("res.partner") || e.is_missing("product.product"),
    }
}

/// The vendor and products a refused order names, as (local value, Odoo id) pairs.
struct Named {
    index: usize,
    partner: Option<(String, i64)>,
    products: Vec<(String, i64)>,
}

impl Named {
    /// The references among `partners` / `products`, as the refusal names them
    /// (`res.partner 42 (supplier 'V-WOOD')`, with `kind`: `vendor res.partner 42 ...`).
    fn describe(
        &self,
        partners: &HashSet<i64>,
        products: &HashSet<i64>,
        kind: bool,
    ) -> Vec<String> {
        let (vendor, product) = if kind {
            ("vendor ", "product ")
        } else {
            ("", "")
        };
        self.partner
            .iter()
            .filter(|(_, id)| partners.contains(id))
            .map(|(k, id)| format!("{vendor}res.partner {id} (supplier '{k}')"))
            .chain(
                self.products
                    .iter()
                    .filter(|(_, id)| products.contains(id))
                    .map(|(k, id)| format!("{product}product.product {id} (product '{k}')")),
            )
            .collect()
    }
}

/// [`push_orders`] with the references as the resolver has them.
async fn push_resolved(
    pg: &Client,
    odoo: &OdooClient,
    resolver: &mut Resolver,
    docs: &[Value],
    options: BatchOptions,
) -> Vec<Result<PushOutcome, PushError>> {
    let started = Instant::now();
    let mut results: Vec<Option<Result<PushOutcome, PushError>>> =
        docs.iter().map(|_| None).collect();
    let mut live: Vec<(usize, Prepared)> = Vec::new();
    let mut deleted: Vec<usize> = Vec::new();
    let linked: Vec<&Value> = docs.iter().filter(|d| needs_linked_push(d)).collect();
    resolve_ahead(pg, odoo, resolver, &linked).await;
    for (i, doc) in docs.iter().enumerate() {
        if stays_deleted_in_odoo(doc) {
            results[i] = Some(Ok(left_deleted(doc)));
        } else if needs_linked_push(doc) {
            results[i] = Some(push_linked(pg, odoo, resolver, doc).await);
        } else if doc["deleted"].as_bool().unwrap_or(false) || doc["order"].is_null() {
            deleted.push(i);
        } else {
            match prepare(doc) {
                Ok(p) => live.push((i, p)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
    }
    if !deleted.is_empty() {
        let del_docs: Vec<&Value> = deleted.iter().map(|i| &docs[*i]).collect();
        match cancel_deleted(odoo, &del_docs).await {
            Ok(outs) => {
                for (i, r) in deleted.iter().zip(outs) {
                    results[*i] = Some(r);
                }
            }
            // The batched path could not run: the single-order path, one by one.
            Err(_) => {
                for i in &deleted {
                    results[*i] = Some(push_order(pg, odoo, resolver, &docs[*i]).await);
                }
            }
        }
    }

    // References of all orders at once.
    let suppliers: Vec<Wanted> = live.iter().map(|(_, p)| p.supplier.clone()).collect();
    let products: Vec<Wanted> = live
        .iter()
        .flat_map(|(_, p)| p.items.iter().map(|it| it.product.clone()))
        .collect();
    let resolved = match resolver.partners_many(pg, odoo, &suppliers).await {
        Ok(mut errs) => match resolver.products_many(pg, odoo, &products).await {
            Ok(more) => {
                errs.extend(more.into_iter().map(|(k, v)| (format!("\u{1}{k}"), v)));
                Ok(errs)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let errors = match resolved {
        Ok(errors) => errors,
        Err(e) => {
            for (i, _) in &live {
                results[*i] = Some(Err(e.duplicate()));
            }
            return finish(results);
        }
    };
    let mut ready = Vec::new();
    'orders: for (i, p) in live {
        if let Some(m) = errors.get(&p.supplier.key) {
            results[i] = Some(Err(PushError::Unresolved(m.clone())));
            continue;
        }
        let Some(partner) = resolver.cached_partner(&p.supplier.key) else {
            results[i] = Some(Err(PushError::Unresolved(format!(
                "supplier '{}' not resolved",
                p.supplier.key
            ))));
            continue;
        };
        let mut lines = Vec::with_capacity(p.items.len());
        for it in p.items {
            if let Some(m) = errors.get(&format!("\u{1}{}", it.product.key)) {
                results[i] = Some(Err(PushError::Unresolved(m.clone())));
                continue 'orders;
            }
            let Some(product) = resolver.cached_product(&it.product.key) else {
                results[i] = Some(Err(PushError::Unresolved(format!(
                    "product '{}' not resolved",
                    it.product.key
                ))));
                continue 'orders;
            };
            lines.push(PushLine::of_item(
                &docs[i],
                p.tracking_id,
                &LineNow {
                    item_key: &it.key,
                    product,
                    qty: it.qty,
                    price: it.price,
                },
                p.date_planned.as_deref(),
            ));
        }
        let mut r = Ready {
            index: i,
            version: p.version,
            known_id: p.known_id,
            xmlid: p.xmlid,
            writes_vendor: writes_vendor(&docs[i], partner),
            may_exist: may_exist(&docs[i]),
            partner,
            origin: p.origin,
            status: p.status,
            lines,
            notes: p.notes,
            maps_notes: p.maps_notes,
            date_planned: p.date_planned,
            needs_load: true,
        };
        r.needs_load = needs_load(&docs[i], &r.load_order());
        ready.push(r);
    }

    // Back to DRAFT from a cancelled Odoo order: reopen first (one read, one button).
    let reopen: Vec<i64> = ready
        .iter()
        .filter(|r| r.status == "DRAFT")
        .filter_map(|r| r.known_id)
        .collect();
    if !reopen.is_empty() {
        let reopened = async {
            let states = odoo.read("purchase.order", &reopen, &["state"]).await?;
            let cancelled: Vec<i64> = states
                .iter()
                .filter(|r| r.get("state").and_then(Value::as_str) == Some("cancel"))
                .filter_map(|r| r.get("id").and_then(Value::as_i64))
                .collect();
            if !cancelled.is_empty() {
                odoo.call_button("purchase.order", "button_draft", &cancelled)
                    .await?;
            }
            Ok::<(), OdooError>(())
        }
        .await;
        if let Err(e) = reopened {
            for r in ready
                .iter()
                .filter(|r| r.status == "DRAFT" && r.known_id.is_some())
            {
                results[r.index] = Some(Err(PushError::Odoo(e.clone())));
            }
            ready.retain(|r| !(r.status == "DRAFT" && r.known_id.is_some()));
        }
    }

    // What will be written, noted first (see note_attempts); if that fails, nothing is sent.
    let attempts: Vec<(&Value, Value)> = ready
        .iter()
        .map(|r| (&docs[r.index], canonical_snapshot(r.partner, &r.lines)))
        .collect();
    if let Err(e) = super::note_attempts(pg, &attempts).await {
        for r in &ready {
            results[r.index] = Some(Err(e.duplicate()));
        }
        return finish(results);
    }

    // Chunks written concurrently.
    let n = ready.len();
    if n > 0 {
        let per = n
            .div_ceil(options.concurrency.max(1))
            .clamp(1, options.max_chunk.max(1));
        let chunks: Vec<&[Ready]> = ready.chunks(per).collect();
        let mut outs = Vec::new();
        for wave in chunks.chunks(options.concurrency.max(1)) {
            outs.extend(join_all(wave.iter().map(|c| write_chunk(odoo, c)).collect()).await);
        }
        for (chunk, out) in chunks.iter().zip(outs) {
            for (r, res) in chunk.iter().zip(out) {
                results[r.index] = Some(res);
            }
        }
    }
    let elapsed = started.elapsed().as_millis();
    for r in results.iter_mut().flatten().flatten() {
        r.duration_ms = r.duration_ms.max(elapsed);
    }
    finish(results)
}

/// Deleted local orders: their Odoo orders are cancelled with one external-id lookup (for
/// orders whose Odoo id was never written back), one `read` of states and one
/// `button_cancel` for all (one per order if that call fails).
async fn cancel_deleted(
    odoo: &OdooClient,
    docs: &[&Value],
) -> Result<Vec<Result<PushOutcome, PushError>>, PushError> {
    let started = Instant::now();
    let mut names: Vec<String> = Vec::with_capacity(docs.len());
    for doc in docs {
        let tracking_id = doc["tracking_id"]
            .as_i64()
            .ok_or_else(|| PushError::Document("tracking_id is missing".into()))?;
        let order_key = text(&doc["order_key"])
            .ok_or_else(|| PushError::Document("order_key is missing".into()))?;
        names.push(order_xmlid_name(tracking_id, &order_key));
    }
    let mut ids: Vec<Option<i64>> = docs.iter().map(|d| d["odoo_id"].as_i64()).collect();
    let unknown: Vec<String> = ids
        .iter()
        .zip(&names)
        .filter(|(id, _)| id.is_none())
        .map(|(_, n)| n.clone())
        .collect();
    if !unknown.is_empty() {
        let rows = odoo
            .search_read(
                "ir.model.data",
                &Domain::eq("module", XMLID_MODULE)
                    .and(Domain::eq("model", "purchase.order"))
                    .and(Domain::is_in("name", unknown)),
                &["name", "res_id"],
                0,
                None,
                None,
            )
            .await?;
        let found: HashMap<String, i64> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.get("name")?.as_str()?.to_string(),
                    r.get("res_id")?.as_i64()?,
                ))
            })
            .collect();
        for (id, name) in ids.iter_mut().zip(&names) {
            if id.is_none() {
                *id = found.get(name).copied();
            }
        }
    }
    let known: Vec<i64> = ids.iter().flatten().copied().collect();
    let states: HashMap<i64, String> = odoo
        .read("purchase.order", &known, &["state"])
        .await?
        .iter()
        .filter_map(|r| {
            Some((
                r.get("id")?.as_i64()?,
                r.get("state")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let to_cancel: Vec<i64> = known
        .iter()
        .filter(|id| states.get(id).is_some_and(|s| s != "cancel"))
        .copied()
        .collect();
    let mut failed: HashMap<i64, OdooError> = HashMap::new();
    if !to_cancel.is_empty()
        && odoo
            .call_button("purchase.order", "button_cancel", &to_cancel)
            .await
            .is_err()
    {
        for id in &to_cancel {
            if let Err(e) = odoo
                .call_button("purchase.order", "button_cancel", &[*id])
                .await
            {
                failed.insert(*id, e);
            }
        }
    }
    let elapsed = started.elapsed().as_millis();
    Ok(docs
        .iter()
        .zip(ids)
        .map(|(doc, id)| {
            if let Some(e) = id.and_then(|id| failed.remove(&id)) {
                return Err(PushError::Odoo(e));
            }
            let mut warnings = Vec::new();
            if let Some(id) = id {
                if !states.contains_key(&id) {
                    warnings.push(format!("Odoo order {id} no longer exists"));
                }
            }
            Ok(PushOutcome {
                odoo_order_id: id,
                odoo_name: None,
                operation: "DELETE",
                version: doc["version"].as_i64(),
                snapshot: json!({"deleted": true}),
                amounts: None,
                duration_ms: elapsed,
                warnings,
                odoo_state: Some("cancel".into()),
                odoo_write_date: None,
            })
        })
        .collect())
}

fn finish(
    results: Vec<Option<Result<PushOutcome, PushError>>>,
) -> Vec<Result<PushOutcome, PushError>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(PushError::Document("order was not processed".into()))))
        .collect()
}

impl Ready {
    /// This order as `load` rows carry it.
    fn load_order(&self) -> LoadOrder<'_> {
        LoadOrder {
            xmlid: &self.xmlid,
            partner: self.writes_vendor.then_some(self.partner),
            origin: &self.origin,
            notes: self.notes.as_ref(),
            date_planned: self.date_planned.as_deref(),
            lines: &self.lines,
        }
    }
}

/// The columns and rows of one `load` of `orders`, all of `shape`.
fn load_rows(orders: &[&Ready], shape: LoadShape) -> (Vec<&'static str>, Vec<Vec<Value>>) {
    let rows = orders
        .iter()
        .flat_map(|o| shape.rows(&o.load_order()))
        .collect();
    (shape.fields(), rows)
}

/// Loads `orders` (all of one [`LoadShape`]), isolating the ones Odoo refuses.
async fn load_isolating(
    odoo: &OdooClient,
    orders: &[&Ready],
    shape: LoadShape,
) -> Vec<Result<i64, PushError>> {
    let mut out: Vec<Option<Result<i64, PushError>>> = orders.iter().map(|_| None).collect();
    let mut groups: Vec<Vec<usize>> = vec![(0..orders.len()).collect()];
    while let Some(group) = groups.pop() {
        if group.is_empty() {
            continue;
        }
        let members: Vec<&Ready> = group.iter().map(|i| orders[*i]).collect();
        let (fields, rows) = load_rows(&members, shape);
        match odoo.load("purchase.order", &fields, &rows).await {
            Ok(res) => match res.ids.clone() {
                Some(ids) if ids.len() == group.len() => {
                    for (i, id) in group.iter().zip(ids) {
                        out[*i] = Some(Ok(id));
                    }
                }
                _ if group.len() == 1 => {
                    let err = match res.clone().into_ids("purchase.order") {
                        Err(e) => e,
                        Ok(ids) => OdooError::Rejected {
                            call: "purchase.order.load".into(),
                            reasons: format!("{} ids returned for one order", ids.len()),
                        },
                    };
                    out[group[0]] = Some(Err(PushError::Odoo(err)));
                }
                _ => {
                    // Odoo's messages name the refused record(s): load those alone.
                    let hinted: HashSet<usize> = res
                        .messages
                        .iter()
                        .filter(|m| m.kind == "error")
                        .filter_map(|m| m.raw.get("record").and_then(Value::as_u64))
                        .filter_map(|r| usize::try_from(r).ok())
                        .filter(|r| *r < group.len())
                        .collect();
                    if hinted.is_empty() || hinted.len() == group.len() {
                        let (a, b) = group.split_at(group.len() / 2);
                        groups.push(b.to_vec());
                        groups.push(a.to_vec());
                    } else {
                        let rest: Vec<usize> = group
                            .iter()
                            .enumerate()
                            .filter(|(k, _)| !hinted.contains(k))
                            .map(|(_, i)| *i)
                            .collect();
                        groups.push(rest);
                        for k in hinted {
                            groups.push(vec![group[k]]);
                        }
                    }
                }
            },
            Err(e) => {
                for i in &group {
                    out[*i] = Some(Err(PushError::Odoo(e.clone())));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(PushError::Document("order was not loaded".into()))))
        .collect()
}

fn amounts_of(rec: &Map<String, Value>) -> Result<Amounts, PushError> {
    let get = |f: &str| rec.get(f).unwrap_or(&Value::Null).clone();
    Ok(Amounts {
        subtotal: money(&get("amount_untaxed"), "amount_untaxed")?,
        sales_tax: money(&get("amount_tax"), "amount_tax")?,
        grand_total: money(&get("amount_total"), "amount_total")?,
    })
}

async fn read_orders(
    odoo: &OdooClient,
    ids: &[i64],
    notes_field: &'static str,
) -> Result<HashMap<i64, Map<String, Value>>, OdooError> {
    // The line ids too: an order with more lines than the chunk wrote has lines to remove.
    let mut fields = READ_BACK.to_vec();
    fields.extend(["order_line", notes_field]);
    Ok(odoo
        .read("purchase.order", ids, &fields)
        .await?
        .into_iter()
        .filter_map(|r| r.get("id").and_then(Value::as_i64).map(|id| (id, r)))
        .collect())
}

/// Writes in full the lines the loads of `chunk` left out as unchanged that Odoo no longer
/// has (see `order_push::push_order`). An order whose lines cannot be checked or written fails.
async fn write_lost_lines(
    odoo: &OdooClient,
    chunk: &[Ready],
    loaded: &mut [Option<Result<i64, PushError>>],
    names: &FieldNames,
) {
    let checked: Vec<usize> = (0..chunk.len())
        .filter(|i| {
            matches!(loaded[*i], Some(Ok(_)))
                && chunk[*i].lines.iter().any(|l| l.write != LineWrite::Full)
        })
        .collect();
    let left_out: Vec<&str> = checked
        .iter()
        .flat_map(|i| chunk[*i].lines.iter())
        .filter(|l| l.write != LineWrite::Full)
        .map(|l| l.xmlid.as_str())
        .collect();
    let existing = match line_ids_by_xmlid(odoo, left_out.into_iter()).await {
        Ok(existing) => existing,
        Err(e) => {
            for i in &checked {
                loaded[*i] = Some(Err(PushError::Odoo(e.clone())));
            }
            return;
        }
    };
    for i in checked {
        let lost = lost_lines(&chunk[i].lines, &existing);
        if lost.is_empty() {
            continue;
        }
        if let Err(e) = load_in_full(odoo, &chunk[i].load_order(), &lost, names).await {
            loaded[i] = Some(Err(PushError::Odoo(e)));
        }
    }
}

/// Writes the prices of the lines of `orders` (each order's index in the chunk, and its lines
/// as `reprice_lines` takes them) in one call. When Odoo refuses it for good, one call per
/// order, so that one order's refusal fails that order alone. Returns the orders that failed.
async fn reprice_isolating(
    odoo: &OdooClient,
    orders: &[(usize, Vec<Repriced<'_>>)],
) -> Vec<(usize, PushError)> {
    let all: Vec<Repriced<'_>> = orders
        .iter()
        .flat_map(|(_, lines)| lines.iter().copied())
        .collect();
    if all.is_empty() {
        return Vec::new();
    }
    let e = match reprice_lines(odoo, &all).await {
        Ok(()) => return Vec::new(),
        Err(e) => e,
    };
    if e.is_transient() || e.is_credentials() {
        return orders
            .iter()
            .map(|(i, _)| (*i, PushError::Odoo(e.clone())))
            .collect();
    }
    // Refused: order by order, each telling a line removed meanwhile from a refusal.
    let mut failed = Vec::new();
    for (i, lines) in orders {
        if let Err(e) = reprice_order_lines(odoo, lines).await {
            failed.push((*i, e));
        }
    }
    failed
}

/// One chunk: one `load` (more only to isolate refused orders), one `read`, and the removals
/// and buttons the chunk needs.
async fn write_chunk(odoo: &OdooClient, chunk: &[Ready]) -> Vec<Result<PushOutcome, PushError>> {
    let started = Instant::now();
    let mut loaded: Vec<Option<Result<i64, PushError>>> = chunk.iter().map(|_| None).collect();
    let names = match odoo.field_names().await {
        Ok(names) => names,
        Err(e) => {
            return chunk
                .iter()
                .map(|_| Err(PushError::Odoo(e.clone())))
                .collect()
        }
    };
    // One load per shape: the orders of the chunk grouped by the columns they need.
    let mut groups: Vec<(LoadShape, Vec<usize>)> = Vec::new();
    for (i, r) in chunk.iter().enumerate() {
        if let (false, Some(id)) = (r.needs_load, r.known_id) {
            loaded[i] = Some(Ok(id));
            continue;
        }
        let shape = LoadShape::of(&r.load_order(), &names);
        match groups.iter_mut().find(|(s, _)| *s == shape) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((shape, vec![i])),
        }
    }
    for (shape, idx) in groups {
        let members: Vec<&Ready> = idx.iter().map(|i| &chunk[*i]).collect();
        for (i, r) in idx.iter().zip(load_isolating(odoo, &members, shape).await) {
            loaded[*i] = Some(r);
        }
    }
    // Orders whose vendor the load wrote: their prices again (see writes_vendor), unless the
    // load surely created them (Odoo prices nothing again on create).
    let reprices = match crate::push::order_push::vendor_write_reprices(odoo).await {
        Ok(r) => r,
        Err(e) => {
            return chunk
                .iter()
                .map(|_| Err(PushError::Odoo(e.clone())))
                .collect()
        }
    };
    write_lost_lines(odoo, chunk, &mut loaded, &names).await;
    // Each loaded order's lines whose price alone changed, or all its lines when the load wrote
    // its vendor and Odoo priced them again.
    let repriced: Vec<(usize, Vec<Repriced<'_>>)> = (0..chunk.len())
        .filter(|i| matches!(loaded[*i], Some(Ok(_))))
        .map(|i| {
            let r = &chunk[i];
            let all = reprices && r.writes_vendor && r.may_exist;
            let lines = r
                .lines
                .iter()
                .filter_map(|l| l.repriced(r.date_planned.as_deref(), all))
                .collect::<Vec<_>>();
            (i, lines)
        })
        .filter(|(_, lines)| !lines.is_empty())
        .collect();
    for (i, e) in reprice_isolating(odoo, &repriced).await {
        loaded[i] = Some(Err(e));
    }
    let mut results: Vec<Result<PushOutcome, PushError>> = Vec::with_capacity(chunk.len());
    let mut ok: Vec<(usize, i64)> = Vec::new();
    for (i, l) in loaded.into_iter().enumerate() {
        match l {
            Some(Ok(id)) => {
                ok.push((i, id));
                results.push(Err(PushError::Document("pending".into())));
            }
            Some(Err(e)) => results.push(Err(e)),
            None => results.push(Err(PushError::Document("order was not loaded".into()))),
        }
    }
    if ok.is_empty() {
        return results;
    }
    let ids: Vec<i64> = ok.iter().map(|(_, id)| *id).collect();
    let fail_all = |results: &mut Vec<Result<PushOutcome, PushError>>, e: &OdooError| {
        for (i, _) in &ok {
            results[*i] = Err(PushError::Odoo(e.clone()));
        }
    };
    let mut records = match read_orders(odoo, &ids, names.order_notes).await {
        Ok(r) => r,
        Err(e) => {
            fail_all(&mut results, &e);
            return results;
        }
    };

    // Lines the documents no longer have: only orders with more Odoo lines than wanted.
    let line_ids = |rec: &Map<String, Value>| -> Vec<i64> {
        rec.get("order_line")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default()
    };
    let extra: Vec<(usize, i64)> = ok
        .iter()
        .filter(|(i, id)| {
            records
                .get(id)
                .is_some_and(|rec| line_ids(rec).len() > chunk[*i].lines.len())
        })
        .copied()
        .collect();
    let mut failed: HashMap<usize, PushError> = HashMap::new();
    if !extra.is_empty() {
        let wanted: Vec<String> = extra
            .iter()
            .flat_map(|(i, _)| chunk[*i].lines.iter().map(|l| l.xmlid.clone()))
            .collect();
        let keep: Result<HashSet<i64>, OdooError> = if wanted.is_empty() {
            Ok(HashSet::new())
        } else {
            odoo.search_read(
                "ir.model.data",
                &Domain::eq("module", XMLID_MODULE)
                    .and(Domain::eq("model", "purchase.order.line"))
                    .and(Domain::is_in("name", wanted)),
                &["res_id"],
                0,
                None,
                None,
            )
            .await
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.get("res_id").and_then(Value::as_i64))
                    .collect()
            })
        };
        let extra_ids: Vec<i64> = extra.iter().map(|(_, id)| *id).collect();
        let goods = match keep {
            Ok(keep) => goods_lines(odoo, &extra_ids).await.map(|g| (keep, g)),
            Err(e) => Err(e),
        };
        match goods {
            Err(e) => {
                for (i, _) in &extra {
                    failed.insert(*i, PushError::Odoo(e.clone()));
                }
            }
            Ok((keep, goods)) => {
                let mut rewritten = Vec::new();
                for (i, id) in &extra {
                    let removed: Vec<Value> = goods
                        .iter()
                        .filter(|(l, order)| order == id && !keep.contains(l))
                        .map(|(l, _)| json!([2, l, 0]))
                        .collect();
                    if removed.is_empty() {
                        continue;
                    }
                    match odoo
                        .write("purchase.order", &[*id], &json!({"order_line": removed}))
                        .await
                    {
                        Ok(()) => rewritten.push(*id),
                        Err(e) => {
                            failed.insert(*i, PushError::Odoo(e));
                        }
                    }
                }
                if !rewritten.is_empty() {
                    match read_orders(odoo, &rewritten, names.order_notes).await {
                        Ok(r) => records.extend(r),
                        Err(e) => {
                            for (i, id) in &extra {
                                if rewritten.contains(id) {
                                    failed.insert(*i, PushError::Odoo(e.clone()));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // Status calls, one per kind of call for the chunk (one per order if that call fails).
    let state_of = |records: &HashMap<i64, Map<String, Value>>, id: &i64| -> String {
        records
            .get(id)
            .and_then(|r| r.get("state"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for action in StatusAction::ALL {
        let targets: Vec<(usize, i64)> = ok
            .iter()
            .filter(|(i, _)| !failed.contains_key(i))
            .filter(|(i, id)| {
                StatusAction::for_status(&chunk[*i].status, &state_of(&records, id)) == Some(action)
            })
            .copied()
            .collect();
        if targets.is_empty() {
            continue;
        }
        let ids: Vec<i64> = targets.iter().map(|t| t.1).collect();
        if action.run(odoo, &ids).await.is_err() {
            for (i, id) in &targets {
                if let Err(e) = action.run(odoo, &[*id]).await {
                    failed.insert(*i, PushError::Odoo(e));
                }
            }
        }
        // The calls moved state and write_date: the base must hold the values after them.
        match read_orders(odoo, &ids, names.order_notes).await {
            Ok(r) => records.extend(r),
            Err(e) => {
                for (i, _) in &targets {
                    failed.insert(*i, PushError::Odoo(e.clone()));
                }
            }
        }
    }

    let elapsed = started.elapsed().as_millis();
    for (i, id) in ok {
        if let Some(e) = failed.remove(&i) {
            results[i] = Err(e);
            continue;
        }
        let r = &chunk[i];
        let Some(rec) = records.get(&id) else {
            results[i] = Err(vanished(id));
            continue;
        };
        let amounts = match amounts_of(rec) {
            Ok(a) => a,
            Err(e) => {
                results[i] = Err(e);
                continue;
            }
        };
        let snapshot = pushed_snapshot(r.partner, &r.lines, rec, r.maps_notes, names.order_notes);
        results[i] = Ok(PushOutcome {
            odoo_order_id: Some(id),
            odoo_name: rec.get("name").and_then(Value::as_str).map(str::to_string),
            operation: if r.known_id.is_some() {
                "UPDATE"
            } else {
                "CREATE"
            },
            version: r.version,
            snapshot,
            amounts: Some(amounts),
            duration_ms: elapsed,
            warnings: Vec::new(),
            odoo_state: rec.get("state").and_then(Value::as_str).map(str::to_string),
            odoo_write_date: rec
                .get("write_date")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_database_ids_are_read_from_odoos_messages() {
        let reasons = "Line 1 (order_line/product_id/.id): No matching record found for database id '7' in field 'Product'; \
                       No matching record found for database id '42' in field 'Vendor'; \
                       No matching record found for external id 'x' in field 'Vendor'";
        assert_eq!(refused_database_ids(reasons), HashSet::from([7, 42]));
        assert!(refused_database_ids("Missing required value for the field 'Vendor'").is_empty());
        assert!(refused_database_ids("database id '").is_empty());
    }
}
