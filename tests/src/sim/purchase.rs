//! Purchase behaviour: the order sequence, defaults taken from the product, the vendor
//! price-list rule, line and order amounts, the state machine and its `UserError`s.

use super::errors::{OdooError, OdooResult};
use super::orm::Env;
use super::schema::po_states;
use super::value::{dec_to_json, round_money, Record, Val};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

impl<'a> Env<'a> {
    /// Model-specific defaults and checks before a record is inserted.
    pub(crate) fn before_create(
        &mut self,
        model: &str,
        rec: &mut Record,
        vals: &Map<String, Value>,
    ) -> OdooResult<()> {
        match model {
            "purchase.order" => {
                let named = rec
                    .get("name")
                    .and_then(Val::str)
                    .is_some_and(|n| n != "New");
                if !named {
                    let n = self.txn.next_sequence("purchase.order");
                    rec.insert("name".into(), Val::Str(format!("P{n:05}")));
                }
                let defaults = [
                    ("date_order", Val::Str(self.now.clone())),
                    ("currency_id", Val::Ref(self.settings.currency_id)),
                    ("company_id", Val::Ref(self.settings.company_id)),
                    ("user_id", Val::Ref(self.uid)),
                    ("state", Val::Str("draft".into())),
                    ("priority", Val::Str("0".into())),
                ];
                for (k, v) in defaults {
                    if !rec.get(k).is_some_and(Val::truthy) && !vals.contains_key(k) {
                        rec.insert(k.into(), v);
                    }
                }
                if self.schema.version >= 19 && !rec.contains_key("locked") {
                    rec.insert("locked".into(), Val::Bool(false));
                }
            }
            "purchase.order.line" => self.prepare_line(rec, vals)?,
            "product.product" => {
                if !rec.get("uom_id").is_some_and(Val::truthy) {
                    rec.insert("uom_id".into(), Val::Ref(self.settings.default_uom_id));
                }
                if !vals.contains_key("supplier_taxes_id") {
                    rec.insert(
                        "supplier_taxes_id".into(),
                        Val::Ids(self.settings.default_purchase_tax_ids.clone()),
                    );
                }
                if !rec.get("product_tmpl_id").is_some_and(Val::truthy) {
                    // Odoo creates the template of a new variant; name, code and cost are shared.
                    let mut tvals = Map::new();
                    for k in [
                        "name",
                        "default_code",
                        "standard_price",
                        "list_price",
                        "purchase_ok",
                    ] {
                        if let Some(v) = vals.get(k) {
                            tvals.insert(k.into(), v.clone());
                        }
                    }
                    tvals.insert(
                        "uom_id".into(),
                        json!(rec.get("uom_id").and_then(Val::ref_id)),
                    );
                    let taxes = rec
                        .get("supplier_taxes_id")
                        .map(|v| v.ids().to_vec())
                        .unwrap_or_default();
                    tvals.insert("supplier_taxes_id".into(), json!([[6, 0, taxes]]));
                    let tmpl = self.create_one("product.template", &tvals)?;
                    rec.insert("product_tmpl_id".into(), Val::Ref(tmpl));
                }
            }
            "product.template" => {
                if !rec.get("uom_id").is_some_and(Val::truthy) {
                    rec.insert("uom_id".into(), Val::Ref(self.settings.default_uom_id));
                }
                if !vals.contains_key("supplier_taxes_id") {
                    rec.insert(
                        "supplier_taxes_id".into(),
                        Val::Ids(self.settings.default_purchase_tax_ids.clone()),
                    );
                }
            }
            "product.supplierinfo" => {
                if !rec.get("product_tmpl_id").is_some_and(Val::truthy) {
                    if let Some(p) = rec.get("product_id").and_then(Val::ref_id) {
                        let tmpl = self.get("product.product", p, "product_tmpl_id");
                        rec.insert("product_tmpl_id".into(), tmpl);
                    }
                }
                if !rec.contains_key("currency_id") {
                    rec.insert("currency_id".into(), Val::Ref(self.settings.currency_id));
                }
                if !vals.contains_key("min_qty") {
                    rec.insert("min_qty".into(), Val::Num(Decimal::ZERO));
                }
            }
            "ir.model.data" => self.check_xmlid_unique(rec, None)?,
            "res.partner" | "res.users" | "res.currency" => {
                rec.entry("active".into()).or_insert(Val::Bool(true));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_xmlid_unique(&self, rec: &Record, own_id: Option<i64>) -> OdooResult<()> {
        let module = rec.get("module").and_then(Val::str).unwrap_or("");
        let name = rec.get("name").and_then(Val::str).unwrap_or("");
        if name.contains(' ') {
            // ir.model.data's `name_nospaces` CHECK constraint ("External IDs cannot contain
            // spaces"); inside `load` the record's message is PostgreSQL's text of it.
            return Err(OdooError::validation(
                "new row for relation \"ir_model_data\" violates check constraint \"ir_model_data_name_nospaces\"",
            ));
        }
        let taken = self
            .txn
            .store()
            .xmlid_ids(module, name)
            .into_iter()
            .any(|id| Some(id) != own_id);
        if taken {
            return Err(OdooError::validation(format!(
                "The operation cannot be completed: duplicate key value violates unique constraint \"ir_model_data_module_name_uniq_index\"\nDETAIL:  Key (module, name)=({module}, {name}) already exists.\n"
            )));
        }
        Ok(())
    }

    /// Fills a new line from its product: description, unit, taxes, price and date.
    fn prepare_line(&mut self, rec: &mut Record, vals: &Map<String, Value>) -> OdooResult<()> {
        let uom_field = self.schema.line_uom_field();
        let tax_field = self.schema.line_taxes_field();
        if !vals.contains_key("product_qty") {
            rec.insert("product_qty".into(), Val::Num(Decimal::ONE));
        }
        let is_display = rec.get("display_type").is_some_and(Val::truthy);
        if let Some(product) = rec.get("product_id").and_then(Val::ref_id) {
            if !rec.get("name").is_some_and(Val::truthy) {
                let name = self.ev().display_name("product.product", product);
                rec.insert("name".into(), Val::Str(name));
            }
            if !rec.get(uom_field).is_some_and(Val::truthy) {
                rec.insert(
                    uom_field.into(),
                    self.get("product.product", product, "uom_id"),
                );
            }
            if !vals.contains_key(tax_field) {
                let taxes = self
                    .get("product.product", product, "supplier_taxes_id")
                    .ids()
                    .to_vec();
                rec.insert(tax_field.into(), Val::Ids(taxes));
            }
            if !vals.contains_key("price_unit") {
                self.apply_price_rule(rec, true);
            }
            if !vals.contains_key("discount") {
                self.apply_discount_rule(rec);
            }
        }
        if !is_display && !rec.get("date_planned").is_some_and(Val::truthy) {
            // The order's date plus the vendor's lead time (none without a price-list entry).
            let delay = match self.select_seller(rec) {
                Some((_, Seller::Chosen { delay, .. })) => delay,
                _ => Decimal::ZERO,
            };
            let date = self
                .planned_from_order(rec, delay)
                .unwrap_or_else(|| self.now.clone());
            rec.insert("date_planned".into(), Val::Str(date));
        }
        let accountable_ok = is_display
            || (rec.get("product_id").is_some_and(Val::truthy)
                && rec.get(uom_field).is_some_and(Val::truthy)
                && rec.get("date_planned").is_some_and(Val::truthy));
        if !accountable_ok && rec.get("order_id").is_some_and(Val::truthy) {
            return Err(OdooError::validation(
                "The operation cannot be completed: Missing required fields on accountable purchase order line.",
            ));
        }
        Ok(())
    }

    /// The vendor price-list rule (odoo-api.md): with an entry of the order's vendor for the
    /// product, the entry's price once the quantity reaches `min_qty`, else the product cost;
    /// without any entry of that vendor, a price already set is kept (`at_create` means no
    /// price was given, so the cost is used).
    pub(crate) fn apply_price_rule(&self, rec: &mut Record, at_create: bool) {
        let Some((product, seller)) = self.select_seller(rec) else {
            return;
        };
        let cost = self.get("product.product", product, "standard_price").num();
        let price = match seller {
            Seller::None => {
                let has_price = rec.get("price_unit").is_some_and(Val::truthy);
                if at_create || !has_price {
                    rec.insert("price_unit".into(), Val::Num(cost));
                }
                return;
            }
            Seller::Chosen { price, .. } => price,
            Seller::NotReached => cost,
        };
        rec.insert("price_unit".into(), Val::Num(price));
    }

    /// The vendor price-list rule for `discount` (17+, the same compute as the price): the
    /// applying entry's discount, else 0, whether or not a price was given with the line.
    pub(crate) fn apply_discount_rule(&self, rec: &mut Record) {
        if self.schema.version < 17 {
            return;
        }
        let Some((_, seller)) = self.select_seller(rec) else {
            return;
        };
        let discount = match seller {
            Seller::Chosen { discount, .. } => discount,
            Seller::None | Seller::NotReached => Decimal::ZERO,
        };
        rec.insert("discount".into(), Val::Num(discount));
    }

    /// Odoo's `_select_seller` for a line: None without product or order; else the product and
    /// what the order's vendor's price list gives for the line's quantity.
    fn select_seller(&self, rec: &Record) -> Option<(i64, Seller)> {
        let product = rec.get("product_id").and_then(Val::ref_id)?;
        let order = rec.get("order_id").and_then(Val::ref_id)?;
        let vendor = self.get("purchase.order", order, "partner_id").ref_id();
        let tmpl = self
            .get("product.product", product, "product_tmpl_id")
            .ref_id();
        let qty = rec.get("product_qty").map(Val::num).unwrap_or_default();
        let store = self.txn.store();
        let entries: Vec<(i64, &Record)> = store
            .tables
            .get("product.supplierinfo")
            .map(|t| {
                t.rows
                    .iter()
                    .map(|(id, r)| (*id, r))
                    .filter(|(_, r)| {
                        r.get("partner_id").and_then(Val::ref_id) == vendor
                            && vendor.is_some()
                            && (r.get("product_id").and_then(Val::ref_id) == Some(product)
                                || (r.get("product_id").and_then(Val::ref_id).is_none()
                                    && r.get("product_tmpl_id").and_then(Val::ref_id) == tmpl))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if entries.is_empty() {
            return Some((product, Seller::None));
        }
        // Odoo's _select_seller: of the entries the quantity reaches, the cheapest, then by
        // sequence and id. From 17 "cheapest" is the price after the entry's discount
        // (`price_discounted`); 16 sorts by price alone.
        let num = |r: &Record, f: &str| r.get(f).map(Val::num).unwrap_or_default();
        let v17 = self.schema.version >= 17;
        let cost = |r: &Record| {
            let price = num(r, "price");
            if v17 {
                price * (Decimal::ONE_HUNDRED - num(r, "discount")) / Decimal::ONE_HUNDRED
            } else {
                price
            }
        };
        // 16's sort by price is stable over _prepare_sellers' order (sequence, min_qty
        // descending, price, id): equal prices go by sequence, then the higher min_qty.
        let chosen = entries
            .iter()
            .filter(|(_, r)| num(r, "min_qty") <= qty)
            .min_by(|(a_id, a), (b_id, b)| {
                let tie = if v17 {
                    std::cmp::Ordering::Equal
                } else {
                    num(b, "min_qty").cmp(&num(a, "min_qty"))
                };
                cost(a)
                    .cmp(&cost(b))
                    .then(num(a, "sequence").cmp(&num(b, "sequence")))
                    .then(tie)
                    .then(a_id.cmp(b_id))
            })
            .map(|(_, r)| *r);
        Some((
            product,
            match chosen {
                Some(r) => Seller::Chosen {
                    price: r.get("price").map(Val::num).unwrap_or_default(),
                    discount: r.get("discount").map(Val::num).unwrap_or_default(),
                    delay: r.get("delay").map(Val::num).unwrap_or_default(),
                },
                None => Seller::NotReached,
            },
        ))
    }

    /// Odoo's `_get_date_planned`: the order's `date_order` plus the vendor's lead time (days).
    fn planned_from_order(&self, rec: &Record, delay: Decimal) -> Option<String> {
        let order = rec.get("order_id").and_then(Val::ref_id)?;
        let date_order = self.get("purchase.order", order, "date_order");
        let start =
            chrono::NaiveDateTime::parse_from_str(date_order.str()?, "%Y-%m-%d %H:%M:%S").ok()?;
        let days = delay.trunc().to_i64().unwrap_or(0);
        Some(
            (start + chrono::Duration::days(days))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
        )
    }

    /// A quantity (or product) written without `date_planned` moves the line's date to the
    /// vendor's lead time when one of its price-list entries applies; otherwise it is kept.
    fn recompute_date_planned(&self, rec: &mut Record) {
        if let Some((_, Seller::Chosen { delay, .. })) = self.select_seller(rec) {
            if let Some(date) = self.planned_from_order(rec, delay) {
                rec.insert("date_planned".into(), Val::Str(date));
            }
        }
    }

    /// Computed fields derived from the record itself and its parent.
    pub(crate) fn after_compute(&self, model: &str, rec: &mut Record) {
        match model {
            "purchase.order.line" => {
                let qty = rec.get("product_qty").map(Val::num).unwrap_or_default();
                let price = rec.get("price_unit").map(Val::num).unwrap_or_default();
                let discount = rec.get("discount").map(Val::num).unwrap_or_default();
                let factor = Decimal::ONE - discount / Decimal::ONE_HUNDRED;
                let subtotal = round_money(qty * price * factor);
                let mut tax = Decimal::ZERO;
                let tax_ids = rec
                    .get(self.schema.line_taxes_field())
                    .map(|v| v.ids().to_vec())
                    .unwrap_or_default();
                for t in tax_ids {
                    let amount = self.get("account.tax", t, "amount").num();
                    let kind = self.get("account.tax", t, "amount_type");
                    tax += if kind.str() == Some("fixed") {
                        round_money(amount * qty)
                    } else {
                        round_money(subtotal * amount / Decimal::ONE_HUNDRED)
                    };
                }
                rec.insert("price_subtotal".into(), Val::Num(subtotal));
                rec.insert("price_tax".into(), Val::Num(tax));
                rec.insert("price_total".into(), Val::Num(subtotal + tax));
                if let Some(order) = rec.get("order_id").and_then(Val::ref_id) {
                    for (line_field, order_field) in [
                        ("state", "state"),
                        ("partner_id", "partner_id"),
                        ("currency_id", "currency_id"),
                        ("company_id", "company_id"),
                    ] {
                        rec.insert(
                            line_field.into(),
                            self.get("purchase.order", order, order_field),
                        );
                    }
                }
            }
            "ir.model.data" => {
                let module = rec
                    .get("module")
                    .and_then(Val::str)
                    .unwrap_or("")
                    .to_string();
                let name = rec.get("name").and_then(Val::str).unwrap_or("").to_string();
                rec.insert("complete_name".into(), Val::Str(format!("{module}.{name}")));
            }
            _ => {}
        }
    }

    pub(crate) fn after_create(&mut self, model: &str, id: i64) -> OdooResult<()> {
        match model {
            "purchase.order" => {
                self.touched_orders.insert(id);
            }
            "purchase.order.line" => {
                if let Some(order) = self.get(model, id, "order_id").ref_id() {
                    self.touched_orders.insert(order);
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn before_write(
        &mut self,
        model: &str,
        ids: &[i64],
        vals: &Map<String, Value>,
    ) -> OdooResult<()> {
        if model == "ir.model.data" && (vals.contains_key("module") || vals.contains_key("name")) {
            for &id in ids {
                let mut rec = self.txn.store().get(model, id).cloned().unwrap_or_default();
                for k in ["module", "name"] {
                    if let Some(Value::String(s)) = vals.get(k) {
                        rec.insert(k.into(), Val::Str(s.clone()));
                    }
                }
                self.check_xmlid_unique(&rec, Some(id))?;
            }
        }
        Ok(())
    }

    /// Per-record effects of a write, before it is stored.
    pub(crate) fn on_write_record(
        &mut self,
        model: &str,
        rec: &mut Record,
        vals: &Map<String, Value>,
    ) -> OdooResult<()> {
        if model == "purchase.order.line" {
            if vals.contains_key("product_id") && !vals.contains_key("name") {
                if let Some(p) = rec.get("product_id").and_then(Val::ref_id) {
                    let name = self.ev().display_name("product.product", p);
                    rec.insert("name".into(), Val::Str(name));
                }
            }
            let qty_changed = vals.contains_key("product_qty") || vals.contains_key("product_id");
            if qty_changed && !vals.contains_key("price_unit") {
                self.apply_price_rule(rec, false);
            }
            if qty_changed && !vals.contains_key("date_planned") {
                self.recompute_date_planned(rec);
            }
            if qty_changed && !vals.contains_key("discount") {
                self.apply_discount_rule(rec);
            }
        }
        Ok(())
    }

    pub(crate) fn after_write(
        &mut self,
        model: &str,
        id: i64,
        vals: &Map<String, Value>,
    ) -> OdooResult<()> {
        match model {
            "purchase.order" => {
                self.touched_orders.insert(id);
                if vals.contains_key("partner_id") && self.schema.version >= 18 {
                    self.vendor_written.insert(id);
                }
                if vals.contains_key("date_planned") {
                    // Stored as written: only the form's onchange copies it to the lines, and
                    // the order keeps it until a line's date changes (the compute's dependency).
                    self.planned_kept.insert(id);
                }
            }
            "purchase.order.line" => {
                if let Some(order) = self.get(model, id, "order_id").ref_id() {
                    self.touched_orders.insert(order);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The `ondelete` checks of `unlink`, record by record in the order given. Purchase orders
    /// (`_unlink_if_cancelled`) and their lines (`_unlink_except_purchase_or_done`) read each
    /// record's fields, so an id already deleted raises `MissingError` there, where Odoo's
    /// generic `unlink` would pass over it.
    pub(crate) fn before_unlink(&mut self, model: &str, ids: &[i64]) -> OdooResult<()> {
        if matches!(model, "purchase.order" | "purchase.order.line") {
            if let Some(&gone) = ids.iter().find(|&&id| !self.txn.store().exists(model, id)) {
                // Only the records before it have been checked when the read fails.
                let checked: Vec<i64> = ids.iter().copied().take_while(|&id| id != gone).collect();
                self.ondelete_checks(model, &checked)?;
                return Err(OdooError::missing(model, &[gone], self.uid));
            }
        }
        self.ondelete_checks(model, ids)
    }

    fn ondelete_checks(&mut self, model: &str, ids: &[i64]) -> OdooResult<()> {
        match model {
            "purchase.order" => {
                for &id in ids {
                    if self.get(model, id, "state").str() != Some("cancel") {
                        return Err(OdooError::user(
                            "In order to delete a purchase order, you must cancel it first.",
                        ));
                    }
                }
            }
            "purchase.order.line" => {
                for &id in ids {
                    if self.get(model, id, "display_type").truthy() {
                        continue;
                    }
                    let order = self.get(model, id, "order_id").ref_id().unwrap_or(0);
                    let state = self.get("purchase.order", order, "state");
                    let state = state.str().unwrap_or("");
                    if state == "purchase" || state == "done" {
                        let label = po_states(self.schema.version)
                            .into_iter()
                            .find(|(k, _)| *k == state)
                            .map(|(_, l)| l)
                            .unwrap_or(state);
                        return Err(OdooError::user(format!(
                            "Cannot delete a purchase order line which is in state \u{201c}{label}\u{201d}."
                        )));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn after_unlink(&mut self, model: &str, before: &Record) {
        if model == "purchase.order.line" {
            if let Some(order) = before.get("order_id").and_then(Val::ref_id) {
                self.touched_orders.insert(order);
            }
        }
    }

    /// Recomputes the amounts of every order touched by the call and moves its `write_date`
    /// (a line write moves the parent order's `write_date`, seen on 19.0).
    pub fn finish(&mut self) {
        // From 18.0 a line's price, expected date and description are computed from the
        // order's vendor too (`_compute_price_unit_and_date_planned_and_name` depends on
        // `order_id.partner_id`), and `write` marks what depends on every field it is given,
        // changed or not: writing the vendor, even the same one, prices every line again from
        // the vendor's price list at the end of the call, over prices written in the same call.
        for order in std::mem::take(&mut self.vendor_written) {
            let lines = self
                .get("purchase.order", order, "order_line")
                .ids()
                .to_vec();
            for l in lines {
                let Some(mut rec) = self.txn.store().get("purchase.order.line", l).cloned() else {
                    continue;
                };
                if rec.get("display_type").is_some_and(Val::truthy) {
                    continue;
                }
                self.apply_price_rule(&mut rec, false);
                self.apply_discount_rule(&mut rec);
                self.recompute_date_planned(&mut rec);
                self.after_compute("purchase.order.line", &mut rec);
                self.txn.put("purchase.order.line", l, rec);
            }
        }
        let orders: Vec<i64> = std::mem::take(&mut self.touched_orders)
            .into_iter()
            .collect();
        for order in orders {
            let Some(mut rec) = self.txn.store().get("purchase.order", order).cloned() else {
                continue;
            };
            let lines = rec
                .get("order_line")
                .map(|v| v.ids().to_vec())
                .unwrap_or_default();
            let (mut untaxed, mut tax) = (Decimal::ZERO, Decimal::ZERO);
            let mut planned: Option<String> = None;
            for l in &lines {
                untaxed += self.get("purchase.order.line", *l, "price_subtotal").num();
                tax += self.get("purchase.order.line", *l, "price_tax").num();
                if let Val::Str(d) = self.get("purchase.order.line", *l, "date_planned") {
                    if planned.as_ref().is_none_or(|p| d < *p) {
                        planned = Some(d);
                    }
                }
            }
            rec.insert("amount_untaxed".into(), Val::Num(untaxed));
            rec.insert("amount_tax".into(), Val::Num(tax));
            rec.insert("amount_total".into(), Val::Num(untaxed + tax));
            if !self.planned_kept.contains(&order) {
                rec.insert(
                    "date_planned".into(),
                    planned.map(Val::Str).unwrap_or(Val::False),
                );
            }
            rec.insert("write_date".into(), Val::Str(self.now.clone()));
            rec.insert("write_uid".into(), Val::Ref(self.uid));
            let state = rec.get("state").cloned().unwrap_or(Val::False);
            self.txn.put("purchase.order", order, rec);
            // Related fields on lines follow the order's state.
            for l in lines {
                if self.get("purchase.order.line", l, "state") != state {
                    self.txn
                        .set("purchase.order.line", l, "state", state.clone());
                }
            }
        }
    }

    fn set_order(&mut self, id: i64, field: &str, value: Val) {
        self.txn.set("purchase.order", id, field, value);
        self.txn.set(
            "purchase.order",
            id,
            "write_date",
            Val::Str(self.now.clone()),
        );
        self.touched_orders.insert(id);
    }

    fn approval_allowed(&self, id: i64) -> bool {
        let total = self.get("purchase.order", id, "amount_total").num();
        self.settings.po_double_validation == "one_step"
            || total < self.settings.po_double_validation_amount
            || self.purchase_manager
    }

    /// Runs a purchase button; `Ok(None)` is Python's `None`.
    pub fn button(&mut self, method: &str, ids: &[i64]) -> OdooResult<Option<Value>> {
        self.ensure_exist("purchase.order", ids)?;
        // Amounts must be current before approval compares them with the threshold.
        self.finish();
        let v19 = self.schema.version >= 19;
        match method {
            "button_confirm" => {
                for &id in ids {
                    let state = self.get("purchase.order", id, "state");
                    if !matches!(state.str(), Some("draft" | "sent")) {
                        continue;
                    }
                    self.add_supplier_to_product(id)?;
                    if self.approval_allowed(id) {
                        self.approve(id);
                    } else {
                        self.set_order(id, "state", Val::Str("to approve".into()));
                    }
                }
                Ok(Some(json!(true)))
            }
            "button_approve" => {
                for &id in ids {
                    if self.approval_allowed(id) {
                        self.approve(id);
                    }
                }
                Ok(Some(json!({})))
            }
            "button_cancel" => {
                // 19 refuses locked orders. 16 to 18 check only for vendor bills (none here):
                // their button_cancel cancels a locked (`done`) order like any other.
                let locked: Vec<String> = ids
                    .iter()
                    .filter(|id| v19 && self.get("purchase.order", **id, "locked").truthy())
                    .map(|id| {
                        self.get("purchase.order", *id, "name")
                            .str()
                            .unwrap_or("")
                            .to_string()
                    })
                    .collect();
                if !locked.is_empty() {
                    return Err(OdooError::user(format!(
                        "Unable to cancel purchase order(s): {}. You must first unlock them.",
                        locked.join(", ")
                    )));
                }
                for &id in ids {
                    self.set_order(id, "state", Val::Str("cancel".into()));
                }
                Ok(None)
            }
            "button_draft" => {
                for &id in ids {
                    self.set_order(id, "state", Val::Str("draft".into()));
                }
                Ok(Some(json!({})))
            }
            "button_lock" | "button_done" => {
                for &id in ids {
                    if v19 {
                        self.set_order(id, "locked", Val::Bool(true));
                    } else {
                        self.set_order(id, "state", Val::Str("done".into()));
                    }
                }
                Ok(None)
            }
            "button_unlock" => {
                for &id in ids {
                    if v19 {
                        self.set_order(id, "locked", Val::Bool(false));
                    } else {
                        self.set_order(id, "state", Val::Str("purchase".into()));
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Odoo's `_add_supplier_to_product`, which `button_confirm` runs before approval (also for
    /// an order left `to approve`): the order's vendor (its company, for a contact) becomes a
    /// vendor of each line's product that does not list it yet and lists at most 10 vendors,
    /// at the line's price (and, from 17, its discount) for a quantity of 1, behind the
    /// product's other vendors. Later lines of that vendor and product take their price from
    /// it. Created whatever the user's rights (`sudo`).
    fn add_supplier_to_product(&mut self, order: i64) -> OdooResult<()> {
        let Some(partner) = self.get("purchase.order", order, "partner_id").ref_id() else {
            return Ok(());
        };
        let company = self
            .get("res.partner", partner, "parent_id")
            .ref_id()
            .unwrap_or(partner);
        // 16 looks for the company alone among the vendors; later versions for either.
        let vendors: Vec<i64> = if self.schema.version >= 17 {
            vec![company, partner]
        } else {
            vec![company]
        };
        let currency = self.get("purchase.order", order, "currency_id");
        let lines = self
            .get("purchase.order", order, "order_line")
            .ids()
            .to_vec();
        for line in lines {
            let Some(product) = self.get("purchase.order.line", line, "product_id").ref_id() else {
                continue;
            };
            let tmpl = self.get("product.product", product, "product_tmpl_id");
            let sellers: Vec<(i64, Option<i64>)> = self
                .txn
                .store()
                .tables
                .get("product.supplierinfo")
                .map(|t| {
                    t.rows
                        .values()
                        .filter(|r| r.get("product_tmpl_id") == Some(&tmpl))
                        .map(|r| {
                            (
                                r.get("sequence")
                                    .map(Val::num)
                                    .unwrap_or_default()
                                    .to_i64()
                                    .unwrap_or(0),
                                r.get("partner_id").and_then(Val::ref_id),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let listed = sellers
                .iter()
                .any(|(_, p)| p.is_some_and(|p| vendors.contains(&p)));
            if listed || sellers.len() > 10 {
                continue;
            }
            let sequence = sellers.iter().map(|(s, _)| *s).max().map_or(1, |m| m + 1);
            let mut vals = serde_json::Map::new();
            vals.insert("partner_id".into(), json!(company));
            vals.insert("product_tmpl_id".into(), json!(tmpl.ref_id()));
            vals.insert("sequence".into(), json!(sequence));
            vals.insert("min_qty".into(), json!(1.0));
            vals.insert(
                "price".into(),
                dec_to_json(self.get("purchase.order.line", line, "price_unit").num()),
            );
            vals.insert("currency_id".into(), json!(currency.ref_id()));
            vals.insert("delay".into(), json!(0));
            if self.schema.version >= 17 {
                vals.insert(
                    "discount".into(),
                    dec_to_json(self.get("purchase.order.line", line, "discount").num()),
                );
            }
            self.create_one("product.supplierinfo", &vals)?;
        }
        Ok(())
    }

    fn approve(&mut self, id: i64) {
        self.set_order(id, "state", Val::Str("purchase".into()));
        self.set_order(id, "date_approve", Val::Str(self.now.clone()));
        if self.settings.lock_confirmed_po {
            if self.schema.version >= 19 {
                self.set_order(id, "locked", Val::Bool(true));
            } else {
                self.set_order(id, "state", Val::Str("done".into()));
            }
        }
    }
}

/// Button methods of `purchase.order` in `version`.
pub fn buttons(version: u8) -> &'static [&'static str] {
    if version >= 19 {
        &[
            "button_confirm",
            "button_approve",
            "button_cancel",
            "button_draft",
            "button_lock",
            "button_unlock",
        ]
    } else {
        &[
            "button_confirm",
            "button_approve",
            "button_cancel",
            "button_draft",
            "button_done",
            "button_unlock",
        ]
    }
}

/// What a vendor's price list gives for a line (Odoo's `_select_seller`).
enum Seller {
    /// The vendor has no entry for the product.
    None,
    /// The vendor has entries, none of which the quantity reaches.
    NotReached,
    /// The entry that applies: its price, discount (%) and lead time (days).
    Chosen {
        price: Decimal,
        discount: Decimal,
        delay: Decimal,
    },
}
