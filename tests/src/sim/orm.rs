//! The generic ORM: create, write, read, search, unlink and fields_get over the store, with
//! Odoo's field conversions, x2many commands and error messages. Purchase rules hook in from
//! `purchase.rs`.

use super::domain::{self, Evaluator};
use super::errors::{ErrorKind, OdooError, OdooResult};
use super::schema::{FType, FieldDef, ModelDef, Schema};
use super::store::Txn;
use super::value::{dec_to_json, json_to_dec, py_repr, round_money, Record, Val};
use super::world::Settings;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// One call's view of the database: a transaction, the caller and the call's timestamp.
pub struct Env<'a> {
    /// The journaled transaction.
    pub txn: Txn<'a>,
    /// Models of the simulated version.
    pub schema: &'a Schema,
    /// Company settings (approval, locking).
    pub settings: &'a Settings,
    /// The calling user.
    pub uid: i64,
    /// Whether the caller is a purchase manager (may approve any amount).
    pub purchase_manager: bool,
    /// The call's timestamp: every row written by one call shares it, like Odoo's
    /// transaction start time.
    pub now: String,
    /// Orders whose lines changed: amounts and `write_date` are refreshed before commit.
    pub touched_orders: BTreeSet<i64>,
    /// Orders whose `date_planned` the call wrote: it is kept, not computed from the lines.
    pub planned_kept: BTreeSet<i64>,
    /// Orders whose `partner_id` the call wrote (18+: their lines are priced again at the end).
    pub vendor_written: BTreeSet<i64>,
    /// The time zone `load` reads datetimes in (the context's, else the user's; UTC without).
    pub input_tz: Option<String>,
    /// Searches leave archived records out (`active` false) unless the domain names `active`
    /// or the context sets `active_test` to false.
    pub active_test: bool,
}

/// Formats a timestamp the way Odoo stores datetimes (UTC, second precision).
pub fn format_now(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%d %H:%M:%S").to_string()
}

impl<'a> Env<'a> {
    /// An evaluator over the current state.
    pub fn ev(&self) -> Evaluator<'_> {
        Evaluator {
            store: self.txn.store(),
            schema: self.schema,
        }
    }

    /// The model `name` or Odoo's error for an unknown model.
    pub fn model_def(&self, name: &str) -> OdooResult<&'a ModelDef> {
        self.schema
            .model(name)
            .ok_or_else(|| OdooError::user(format!("Object {name} doesn't exist")))
    }

    /// A stored field of `model(id)`.
    pub fn get(&self, model: &str, id: i64, field: &str) -> Val {
        self.txn.store().val(model, id, field)
    }

    fn invalid_field_error(&self, field: &str, model: &str) -> OdooError {
        if self.schema.version >= 19 {
            OdooError::value(format!("Invalid field '{field}' in '{model}'"))
        } else {
            OdooError::value(format!("Invalid field '{field}' on model '{model}'"))
        }
    }

    /// Checks that every id exists, raising `MissingError` for the missing ones.
    pub fn ensure_exist(&self, model: &str, ids: &[i64]) -> OdooResult<()> {
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !self.txn.store().exists(model, *id))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(OdooError::missing(model, &missing, self.uid))
        }
    }

    /// Converts a client value for a non-x2many field into its stored form.
    pub fn convert(&self, model: &str, f: &FieldDef, v: &Value) -> OdooResult<Val> {
        let wrong = || {
            OdooError::value(format!(
                "Wrong value for {model}.{}: {}",
                f.name,
                py_repr(v)
            ))
        };
        let empty = matches!(v, Value::Bool(false) | Value::Null);
        Ok(match &f.ftype {
            FType::Html => match v {
                _ if empty => Val::False,
                Value::String(s) => Val::Str(sanitize_html(s)),
                Value::Number(n) => Val::Str(sanitize_html(&n.to_string())),
                Value::Bool(true) => Val::Str(sanitize_html("True")),
                _ => return Err(wrong()),
            },
            FType::Char | FType::Text => match v {
                _ if empty => Val::False,
                Value::String(s) => Val::Str(s.clone()),
                Value::Number(n) => Val::Str(n.to_string()),
                Value::Bool(true) => Val::Str("True".into()),
                _ => return Err(wrong()),
            },
            FType::Integer => match v {
                _ if empty => Val::Int(0),
                Value::Number(n) => Val::Int(
                    n.as_i64()
                        .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
                ),
                Value::Bool(true) => Val::Int(1),
                Value::String(s) => Val::Int(s.trim().parse().map_err(|_| {
                    OdooError::value(format!("invalid literal for int() with base 10: '{s}'"))
                })?),
                _ => return Err(wrong()),
            },
            FType::Float | FType::Monetary => {
                let n = match v {
                    _ if empty => rust_decimal::Decimal::ZERO,
                    Value::Number(_) => json_to_dec(v).ok_or_else(wrong)?,
                    Value::String(s) => s.trim().parse().map_err(|_| {
                        OdooError::value(format!("could not convert string to float: '{s}'"))
                    })?,
                    _ => return Err(wrong()),
                };
                // float_round, half away from zero, to the field's decimal precision.
                Val::Num(match f.digits {
                    Some(d) => n.round_dp_with_strategy(
                        self.settings.precision.of(d),
                        rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                    ),
                    None => n,
                })
            }
            FType::Boolean => Val::Bool(super::value::json_truthy(v)),
            FType::Selection(options) => match v {
                _ if empty => Val::False,
                Value::String(s) if options.iter().any(|(k, _)| k == s) => Val::Str(s.clone()),
                _ => return Err(wrong()),
            },
            FType::Date => match v {
                _ if empty => Val::False,
                Value::String(s) => {
                    let day = s.get(..10).unwrap_or(s);
                    NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| {
                        OdooError::value(format!(
                            "time data '{s}' does not match format '%Y-%m-%d'"
                        ))
                    })?;
                    Val::Str(day.to_string())
                }
                _ => return Err(wrong()),
            },
            FType::Datetime => match v {
                _ if empty => Val::False,
                Value::String(s) => Val::Str(parse_datetime(s)?),
                _ => return Err(wrong()),
            },
            FType::Many2one(target) => {
                let id = match v {
                    _ if empty => return Ok(Val::False),
                    Value::Number(n) => n.as_i64().ok_or_else(wrong)?,
                    // Odoo also accepts the (id, name) pair it sends on read.
                    Value::Array(pair) => pair.first().and_then(Value::as_i64).ok_or_else(wrong)?,
                    _ => return Err(wrong()),
                };
                if id == 0 {
                    return Ok(Val::False);
                }
                self.ensure_exist(target, &[id])?;
                Val::Ref(id)
            }
            FType::One2many(_, _) | FType::Many2many(_) => return Err(wrong()),
        })
    }

    /// The default values of a new `model` record, before client values.
    fn defaults(&self, model: &str) -> Record {
        let mut rec = Record::new();
        let def = self.schema.model(model);
        for f in def.map(|d| d.fields.as_slice()).unwrap_or_default() {
            let v = match (&f.ftype, f.name) {
                (_, "active") => Val::Bool(true),
                (_, "purchase_ok") => Val::Bool(true),
                (FType::Integer, _) => Val::Int(0),
                (FType::Float | FType::Monetary, _) => Val::Num(rust_decimal::Decimal::ZERO),
                (FType::Boolean, _) => Val::Bool(false),
                (FType::One2many(_, _) | FType::Many2many(_), _) => Val::Ids(vec![]),
                _ => continue,
            };
            rec.insert(f.name.to_string(), v);
        }
        rec
    }

    fn check_fields(&self, def: &ModelDef, vals: &Map<String, Value>) -> OdooResult<()> {
        for key in vals.keys() {
            if def.field(key).is_none() {
                return Err(self.invalid_field_error(key, def.name));
            }
        }
        Ok(())
    }

    /// `create(vals_list)`: one id per dict, in order.
    pub fn create(
        &mut self,
        model: &str,
        vals_list: &[Map<String, Value>],
    ) -> OdooResult<Vec<i64>> {
        let mut ids = Vec::with_capacity(vals_list.len());
        for vals in vals_list {
            ids.push(self.create_one(model, vals)?);
        }
        Ok(ids)
    }

    /// Creates one record.
    pub fn create_one(&mut self, model: &str, vals: &Map<String, Value>) -> OdooResult<i64> {
        let def = self.model_def(model)?;
        self.check_fields(def, vals)?;
        let mut rec = self.defaults(model);
        let mut x2many = Vec::new();
        for (key, v) in vals {
            let Some(f) = def.field(key) else { continue };
            if f.computed || f.name == "id" {
                continue;
            }
            if f.ftype.is_x2many() {
                x2many.push((f, v));
                continue;
            }
            let val = self.convert(model, f, v)?;
            rec.insert(key.clone(), val);
        }
        self.before_create(model, &mut rec, vals)?;
        // Required fields are checked after defaults, like Odoo's constraint check.
        for f in &def.fields {
            if f.required && !rec.get(f.name).is_some_and(Val::truthy) {
                let empty_number =
                    matches!(f.ftype, FType::Float | FType::Integer | FType::Monetary);
                if empty_number && rec.contains_key(f.name) {
                    continue;
                }
                return Err(self.missing_required(def, f));
            }
        }
        let id = self.txn.next_id(model);
        rec.insert("create_uid".into(), Val::Ref(self.uid));
        rec.insert("write_uid".into(), Val::Ref(self.uid));
        rec.insert("create_date".into(), Val::Str(self.now.clone()));
        rec.insert("write_date".into(), Val::Str(self.now.clone()));
        self.after_compute(model, &mut rec);
        self.txn.put(model, id, rec.clone());
        self.link_inverse(model, id, None, &rec);
        for (f, v) in x2many {
            self.apply_x2many(model, id, f, v)?;
        }
        self.after_create(model, id)?;
        Ok(id)
    }

    /// The `ValidationError` for a missing required field, worded per version.
    pub fn missing_required(&self, def: &ModelDef, f: &FieldDef) -> OdooError {
        if self.schema.version >= 18 {
            OdooError::validation(format!(
                "Missing required value for the field '{}' ({})",
                f.string, f.name
            ))
        } else {
            OdooError::validation(format!(
                "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {} ({})\nField: {} ({})\n",
                def.description, def.name, f.string, f.name
            ))
        }
    }

    /// `write(ids, vals)`.
    pub fn write(&mut self, model: &str, ids: &[i64], vals: &Map<String, Value>) -> OdooResult<()> {
        let def = self.model_def(model)?;
        self.check_fields(def, vals)?;
        self.ensure_exist(model, ids)?;
        self.before_write(model, ids, vals)?;
        for &id in ids {
            let Some(before) = self.txn.store().get(model, id).cloned() else {
                continue;
            };
            let mut rec = before.clone();
            let mut x2many = Vec::new();
            for (key, v) in vals {
                let Some(f) = def.field(key) else { continue };
                if f.computed || f.name == "id" {
                    continue;
                }
                if f.ftype.is_x2many() {
                    x2many.push((f, v));
                    continue;
                }
                let val = self.convert(model, f, v)?;
                if f.required && !val.truthy() && !matches!(val, Val::Int(_) | Val::Num(_)) {
                    return Err(self.missing_required(def, f));
                }
                rec.insert(key.clone(), val);
            }
            self.on_write_record(model, &mut rec, vals)?;
            rec.insert("write_uid".into(), Val::Ref(self.uid));
            rec.insert("write_date".into(), Val::Str(self.now.clone()));
            self.after_compute(model, &mut rec);
            self.txn.put(model, id, rec.clone());
            self.link_inverse(model, id, Some(&before), &rec);
            for (f, v) in x2many {
                self.apply_x2many(model, id, f, v)?;
            }
            self.after_write(model, id, vals)?;
        }
        Ok(())
    }

    /// Keeps the one2many id lists on parents in step with the many2one on the child.
    fn link_inverse(&mut self, model: &str, id: i64, before: Option<&Record>, after: &Record) {
        let schema = self.schema;
        for parent in schema.model_names() {
            let Some(pdef) = schema.model(parent) else {
                continue;
            };
            for pf in &pdef.fields {
                let FType::One2many(child, inverse) = &pf.ftype else {
                    continue;
                };
                if *child != model {
                    continue;
                }
                let old = before.and_then(|r| r.get(*inverse)).and_then(Val::ref_id);
                let new = after.get(*inverse).and_then(Val::ref_id);
                if old == new && before.is_some() {
                    continue;
                }
                if let Some(o) = old {
                    let mut ids = self.get(parent, o, pf.name).ids().to_vec();
                    ids.retain(|x| *x != id);
                    self.txn.set(parent, o, pf.name, Val::Ids(ids));
                }
                if let Some(n) = new {
                    let mut ids = self.get(parent, n, pf.name).ids().to_vec();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                    self.txn.set(parent, n, pf.name, Val::Ids(ids));
                }
            }
        }
    }

    /// Applies x2many commands (`[0,0,vals]` ... `[6,0,ids]`) or a plain id list to `field`.
    fn apply_x2many(
        &mut self,
        model: &str,
        id: i64,
        f: &FieldDef,
        value: &Value,
    ) -> OdooResult<()> {
        let bad = || {
            OdooError::value(format!(
                "Wrong value for {model}.{}: {}",
                f.name,
                py_repr(value)
            ))
        };
        let commands: Vec<Value> = match value {
            Value::Bool(false) | Value::Null => vec![json!([5, 0, 0])],
            Value::Array(items) if items.iter().all(Value::is_number) => {
                vec![json!([6, 0, items])]
            }
            Value::Array(items) => items.clone(),
            _ => return Err(bad()),
        };
        for cmd in &commands {
            let parts = cmd.as_array().ok_or_else(bad)?;
            let code = parts.first().and_then(Value::as_i64).ok_or_else(bad)?;
            let target_id = parts.get(1).and_then(Value::as_i64).unwrap_or(0);
            let payload = parts.get(2).cloned().unwrap_or(Value::Null);
            match &f.ftype {
                FType::One2many(child, inverse) => {
                    self.o2m_command(id, child, inverse, f, code, target_id, &payload, &bad)?
                }
                FType::Many2many(target) => {
                    self.m2m_command(model, id, target, f, code, target_id, &payload, &bad)?
                }
                _ => return Err(bad()),
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn o2m_command(
        &mut self,
        id: i64,
        child: &str,
        inverse: &str,
        f: &FieldDef,
        code: i64,
        target_id: i64,
        payload: &Value,
        bad: &dyn Fn() -> OdooError,
    ) -> OdooResult<()> {
        let current = |env: &Self| -> Vec<i64> {
            let parent = env.schema.model_names().find(|m| {
                env.schema
                    .model(m)
                    .and_then(|d| d.field(f.name))
                    .is_some_and(|pf| pf.ftype == f.ftype)
            });
            parent
                .map(|p| env.get(p, id, f.name).ids().to_vec())
                .unwrap_or_default()
        };
        match code {
            0 => {
                let mut vals = payload.as_object().cloned().ok_or_else(bad)?;
                vals.insert(inverse.to_string(), json!(id));
                self.create_one(child, &vals)?;
            }
            1 => {
                let vals = payload.as_object().cloned().ok_or_else(bad)?;
                self.write(child, &[target_id], &vals)?;
            }
            // The inverse many2one is required: unlinking a line from its order deletes it.
            2 | 3 => self.unlink(child, &[target_id])?,
            4 => {
                let mut vals = Map::new();
                vals.insert(inverse.to_string(), json!(id));
                self.write(child, &[target_id], &vals)?;
            }
            5 => {
                let ids = current(self);
                self.unlink(child, &ids)?;
            }
            6 => {
                let wanted: Vec<i64> = payload
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default();
                let drop: Vec<i64> = current(self)
                    .into_iter()
                    .filter(|c| !wanted.contains(c))
                    .collect();
                self.unlink(child, &drop)?;
                let mut vals = Map::new();
                vals.insert(inverse.to_string(), json!(id));
                self.write(child, &wanted, &vals)?;
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn m2m_command(
        &mut self,
        model: &str,
        id: i64,
        target: &str,
        f: &FieldDef,
        code: i64,
        target_id: i64,
        payload: &Value,
        bad: &dyn Fn() -> OdooError,
    ) -> OdooResult<()> {
        let mut ids = self.get(model, id, f.name).ids().to_vec();
        match code {
            0 => {
                let vals = payload.as_object().cloned().ok_or_else(bad)?;
                ids.push(self.create_one(target, &vals)?);
            }
            1 => {
                let vals = payload.as_object().cloned().ok_or_else(bad)?;
                self.write(target, &[target_id], &vals)?;
                if !ids.contains(&target_id) {
                    ids.push(target_id);
                }
            }
            2 => {
                self.unlink(target, &[target_id])?;
                ids.retain(|x| *x != target_id);
            }
            3 => ids.retain(|x| *x != target_id),
            4 => {
                self.ensure_exist(target, &[target_id])?;
                if !ids.contains(&target_id) {
                    ids.push(target_id);
                }
            }
            5 => ids.clear(),
            6 => {
                let wanted: Vec<i64> = payload
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default();
                self.ensure_exist(target, &wanted)?;
                ids = wanted;
            }
            _ => return Err(bad()),
        }
        self.txn.set(model, id, f.name, Val::Ids(ids));
        // Computed fields depending on the set (line taxes) must follow it.
        if let Some(mut rec) = self.txn.store().get(model, id).cloned() {
            self.after_compute(model, &mut rec);
            self.txn.put(model, id, rec);
        }
        let vals = Map::new();
        self.after_write(model, id, &vals)?;
        Ok(())
    }

    /// `unlink()`: deletes the records. Odoo's `unlink` passes over ids already deleted, but the
    /// `ondelete` checks of a model run first and may read them (see `before_unlink`).
    pub fn unlink(&mut self, model: &str, ids: &[i64]) -> OdooResult<()> {
        self.model_def(model)?;
        self.before_unlink(model, ids)?;
        let ids: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|i| self.txn.store().exists(model, *i))
            .collect();
        for &id in &ids {
            let Some(before) = self.txn.store().get(model, id).cloned() else {
                continue;
            };
            self.cascade_unlink(model, id)?;
            self.txn.delete(model, id);
            self.link_inverse(model, id, Some(&before), &Record::new());
            self.after_unlink(model, &before);
        }
        // Odoo removes the external ids of deleted records.
        if model != "ir.model.data" && !ids.is_empty() {
            let xmlids: Vec<i64> = self
                .txn
                .store()
                .tables
                .get("ir.model.data")
                .map(|t| {
                    t.rows
                        .iter()
                        .filter(|(_, r)| {
                            r.get("model").and_then(Val::str) == Some(model)
                                && matches!(r.get("res_id"), Some(Val::Int(i)) if ids.contains(i))
                        })
                        .map(|(k, _)| *k)
                        .collect()
                })
                .unwrap_or_default();
            for x in xmlids {
                self.txn.delete("ir.model.data", x);
            }
        }
        Ok(())
    }

    /// Deletes children whose required many2one points at the record (ondelete cascade).
    fn cascade_unlink(&mut self, model: &str, id: i64) -> OdooResult<()> {
        let Some(def) = self.schema.model(model) else {
            return Ok(());
        };
        for f in &def.fields {
            if let FType::One2many(child, _) = f.ftype {
                let children = self.get(model, id, f.name).ids().to_vec();
                self.unlink(child, &children)?;
            }
        }
        Ok(())
    }

    /// `search(domain, offset, limit, order)` → ids.
    pub fn search(
        &self,
        model: &str,
        domain: &Value,
        offset: usize,
        limit: Option<usize>,
        order: Option<&str>,
    ) -> OdooResult<Vec<i64>> {
        let def = self.model_def(model)?;
        let dom = domain::parse(self.schema, def, domain)?;
        let order_spec = match order {
            Some(o) if !o.trim().is_empty() => domain::parse_order(def, o, false)?,
            _ => domain::parse_order(def, def.default_order, true)?,
        };
        let ev = self.ev();
        // Odoo's _search: archived records only when the domain names `active` itself (a leaf of
        // its top level) or the context turns active_test off.
        let hide_archived = self.active_test
            && def.field("active").is_some()
            && !domain
                .as_array()
                .is_some_and(|leaves| leaves.iter().any(|l| l.get(0) == Some(&json!("active"))));
        let mut ids: Vec<i64> = self
            .txn
            .store()
            .ids(model)
            .into_iter()
            .filter(|id| !hide_archived || self.get(model, *id, "active").truthy())
            .filter(|id| ev.matches(model, *id, &dom))
            .collect();
        if order_spec.is_empty() {
            ids.sort_unstable();
        } else {
            ev.sort(model, &mut ids, &order_spec);
        }
        let ids = ids.into_iter().skip(offset);
        Ok(match limit {
            Some(l) => ids.take(l).collect(),
            None => ids.collect(),
        })
    }

    /// `search_count(domain)`.
    pub fn search_count(
        &self,
        model: &str,
        domain: &Value,
        limit: Option<usize>,
    ) -> OdooResult<usize> {
        Ok(self.search(model, domain, 0, limit, Some("id"))?.len())
    }

    /// Resolves the `fields` argument of read: all fields when empty, else checked names.
    pub fn read_fields(&self, model: &str, fields: &Value) -> OdooResult<Vec<&'a FieldDef>> {
        let def = self.model_def(model)?;
        let names: Vec<String> = match fields {
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => return Ok(def.fields.iter().collect()),
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match def.field(&name) {
                Some(f) => out.push(f),
                None if self.schema.version >= 19 => {
                    return Err(OdooError::value(format!(
                        "Invalid field '{name}' on '{model}'"
                    )))
                }
                None => {
                    return Err(OdooError::value(format!(
                        "Invalid field '{name}' on model '{model}'"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// `read(ids, fields)`: missing ids are silently left out.
    pub fn read(&self, model: &str, ids: &[i64], fields: &[&FieldDef]) -> Vec<Value> {
        ids.iter()
            .filter(|id| self.txn.store().exists(model, **id))
            .map(|id| self.render(model, *id, fields))
            .collect()
    }

    /// One record as Odoo sends it: many2one as `[id, name]`, empty as `false`.
    pub fn render(&self, model: &str, id: i64, fields: &[&FieldDef]) -> Value {
        let ev = self.ev();
        let mut out = Map::with_capacity(fields.len() + 1);
        out.insert("id".into(), json!(id));
        for f in fields {
            if f.name == "id" {
                continue;
            }
            let v = ev.field_value(model, id, f.name);
            let j = match (&f.ftype, v) {
                (FType::Many2one(target), Val::Ref(r)) => json!([r, ev.display_name(target, r)]),
                (FType::Integer, Val::False) => json!(0),
                (FType::Float, Val::False) => json!(0.0),
                (FType::Monetary, Val::False) => json!(0.0),
                (FType::One2many(..) | FType::Many2many(_), Val::False) => json!([]),
                (_, Val::False) => Value::Bool(false),
                (FType::Monetary, Val::Num(d)) => dec_to_json(round_money(d)),
                (_, Val::Num(d)) => dec_to_json(d),
                (_, Val::Int(i)) => json!(i),
                (_, Val::Bool(b)) => json!(b),
                (_, Val::Str(s)) => json!(s),
                (_, Val::Ref(r)) => json!(r),
                (_, Val::Ids(ids)) => json!(ids),
            };
            out.insert(f.name.to_string(), j);
        }
        Value::Object(out)
    }

    /// `fields_get(allfields, attributes)`.
    pub fn fields_get(
        &self,
        model: &str,
        allfields: &Value,
        attributes: &Value,
    ) -> OdooResult<Value> {
        let def = self.model_def(model)?;
        let wanted: Option<Vec<&str>> = allfields
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().filter_map(Value::as_str).collect());
        let attrs: Option<Vec<&str>> = attributes
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().filter_map(Value::as_str).collect());
        let mut out = Map::new();
        for f in &def.fields {
            if wanted.as_ref().is_some_and(|w| !w.contains(&f.name)) {
                continue;
            }
            let mut d = Map::new();
            d.insert("type".into(), json!(f.ftype.name()));
            d.insert("string".into(), json!(f.string));
            d.insert("required".into(), json!(f.required));
            d.insert("readonly".into(), json!(f.readonly));
            d.insert("store".into(), json!(f.name != "display_name"));
            d.insert("searchable".into(), json!(true));
            d.insert(
                "sortable".into(),
                json!(f.name != "display_name" && !f.ftype.is_x2many()),
            );
            d.insert("name".into(), json!(f.name));
            if let Some(rel) = f.ftype.relation() {
                d.insert("relation".into(), json!(rel));
            }
            if let FType::One2many(_, inverse) = &f.ftype {
                d.insert("relation_field".into(), json!(inverse));
            }
            if let FType::Selection(options) = &f.ftype {
                let opts: Vec<Value> = options.iter().map(|(k, l)| json!([k, l])).collect();
                d.insert("selection".into(), Value::Array(opts));
            }
            if let Some(attrs) = &attrs {
                d.retain(|k, _| attrs.contains(&k.as_str()));
            }
            out.insert(f.name.to_string(), Value::Object(d));
        }
        Ok(Value::Object(out))
    }

    /// The `AccessError` of a call on records that record rules hide from the user (see
    /// `world::UserAuth::hidden`).
    pub fn record_rule_error(
        &self,
        def: &ModelDef,
        ids: &[i64],
        hidden: &std::collections::BTreeSet<i64>,
    ) -> OdooError {
        let records: Vec<String> = ids
            .iter()
            .filter(|id| hidden.contains(id))
            .map(|id| format!("id={id}"))
            .collect();
        OdooError::new(
            ErrorKind::Access,
            format!(
                "Due to security restrictions, you are not allowed to access '{}' ({}) records.\n\nRecords: {}\n\nNote: this might be a multi-company issue. Switching company may help.",
                def.description,
                def.name,
                records.join(", ")
            ),
        )
    }

    /// The `AccessError` of a call on a model the user may not touch (see
    /// `world::UserAuth::denied_models`).
    pub fn access_error(&self, def: &ModelDef, operation: &str) -> OdooError {
        let verb = match operation {
            "read" => "access",
            "write" => "modify",
            "create" => "create",
            _ => "delete",
        };
        OdooError::new(
            ErrorKind::Access,
            format!(
                "You are not allowed to {verb} '{}' ({}) records.\n\nThis operation is allowed for the following groups:\n\t- Purchase/User\n\nContact your administrator to request access if necessary.",
                def.description, def.name
            ),
        )
    }
}

/// What Odoo's `html_sanitize` makes of a value written to an HTML field, for the values
/// odoo_sync and the tests write: markup is kept as it is (the simulator does not strip unsafe
/// tags), plain text becomes one paragraph (`"yop"` → `"<p>yop</p>"`, Odoo's own test case)
/// with `&`, `<` and `>` escaped, as lxml serializes text.
pub fn sanitize_html(value: &str) -> String {
    let trimmed = value.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('<') {
        return value.to_string();
    }
    let escaped = value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("<p>{escaped}</p>")
}

/// Parses a datetime as Odoo accepts it (date only, `T` separator, fractions) and returns the
/// stored `YYYY-MM-DD HH:MM:SS`.
pub fn parse_datetime(s: &str) -> OdooResult<String> {
    let err = || {
        OdooError::value(format!(
            "time data '{s}' does not match format '%Y-%m-%d %H:%M:%S'"
        ))
    };
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| err())?;
        return Ok(format!("{} 00:00:00", d.format("%Y-%m-%d")));
    }
    let head: String = s.chars().take(19).collect::<String>().replace('T', " ");
    let dt = NaiveDateTime::parse_from_str(&head, "%Y-%m-%d %H:%M:%S").map_err(|_| err())?;
    Ok(dt.format("%Y-%m-%d %H:%M:%S").to_string())
}
