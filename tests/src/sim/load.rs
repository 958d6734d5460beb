//! `load(fields, data)`: Odoo's import, an upsert by external id that is all-or-nothing.
//!
//! Columns are field paths (`id`, `partner_id/.id`, `order_line/id`, `order_line/product_id/.id`,
//! ...). A row whose non-one2many columns are all empty continues the previous record with one
//! more one2many line. Records and lines named by an external id that already exists are
//! updated; others are created and, when an external id is given, registered under it.

use super::errors::{OdooError, OdooResult};
use super::orm::Env;
use super::schema::{FType, ModelDef};
use super::value::Val;
use serde_json::{json, Map, Value};

/// How one column reaches a field.
#[derive(Debug, Clone)]
enum Column {
    /// The record's own external id.
    XmlId,
    /// The record's database id.
    DbId,
    /// A plain value (a many2one given by name).
    Plain(String),
    /// A many2one given by database id.
    RefDbId(String),
    /// A many2one given by external id.
    RefXmlId(String),
}

fn split_path(path: &str) -> Vec<String> {
    // Odoo accepts `field.id` / `field:id` as spellings of `field/.id` / `field/id`.
    let fixed = if let Some(stripped) = path.strip_suffix(":id") {
        format!("{stripped}/id")
    } else if path.ends_with(".id") && !path.ends_with("/.id") && path != ".id" {
        format!("{}/.id", &path[..path.len() - 3])
    } else {
        path.to_string()
    };
    fixed.split('/').map(str::to_string).collect()
}

fn column(def: &ModelDef, parts: &[String], full: &str) -> OdooResult<Column> {
    let unknown = || OdooError::value(format!("Invalid field '{full}' on model '{}'", def.name));
    match parts {
        [p] if p == "id" => Ok(Column::XmlId),
        [p] if p == ".id" => Ok(Column::DbId),
        [f] => def
            .field(f)
            .map(|_| Column::Plain(f.clone()))
            .ok_or_else(unknown),
        [f, s] if s == ".id" => def
            .field(f)
            .map(|_| Column::RefDbId(f.clone()))
            .ok_or_else(unknown),
        [f, s] if s == "id" => def
            .field(f)
            .map(|_| Column::RefXmlId(f.clone()))
            .ok_or_else(unknown),
        _ => Err(unknown()),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn split_xmlid(xmlid: &str) -> (String, String) {
    match xmlid.split_once('.') {
        Some((m, n)) => (m.to_string(), n.to_string()),
        None => ("__import__".to_string(), xmlid.to_string()),
    }
}

impl<'a> Env<'a> {
    /// The record an external id points to, if it (still) exists.
    pub fn xmlid_lookup(&self, xmlid: &str, model: Option<&str>) -> Option<(String, i64)> {
        let (module, name) = split_xmlid(xmlid);
        let store = self.txn.store();
        store.xmlid_ids(&module, &name).into_iter().find_map(|k| {
            let r = store.get("ir.model.data", k)?;
            let m = r.get("model").and_then(Val::str)?.to_string();
            let id = match r.get("res_id") {
                Some(Val::Int(i)) => *i,
                _ => return None,
            };
            if model.is_some_and(|want| want != m) || !store.exists(&m, id) {
                return None;
            }
            Some((m, id))
        })
    }

    fn register_xmlid(&mut self, xmlid: &str, model: &str, id: i64) -> OdooResult<()> {
        let (module, name) = split_xmlid(xmlid);
        // A stale external id (its record was deleted) is repointed rather than duplicated.
        let stale = self.txn.store().xmlid_ids(&module, &name).first().copied();
        let mut vals = Map::new();
        vals.insert("model".into(), json!(model));
        vals.insert("res_id".into(), json!(id));
        match stale {
            Some(k) => self.write("ir.model.data", &[k], &vals),
            None => {
                vals.insert("module".into(), json!(module));
                vals.insert("name".into(), json!(name));
                vals.insert("noupdate".into(), json!(false));
                self.create_one("ir.model.data", &vals).map(|_| ())
            }
        }
    }

    /// The time zone `load` reads datetimes in: the context's, else the user's, else UTC
    /// (a zone the simulator does not know is skipped, as Odoo skips one pytz does not know).
    pub fn input_tz(&self, context_tz: Option<&str>) -> Option<String> {
        let user_tz = self.get("res.users", self.uid, "tz");
        let found = [context_tz, user_tz.str()]
            .into_iter()
            .flatten()
            .find(|z| utc_offset_minutes(z).is_some())
            .map(str::to_string);
        found
    }

    /// A datetime cell as Odoo's `load` reads it ("2012-12-31 23:59:59", or a prefix of it
    /// down to the date), in the input time zone, stored as UTC.
    fn load_datetime(&self, text: &str, field: &str) -> OdooResult<String> {
        const FORMATS: [&str; 4] = [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H",
            "%Y-%m-%d",
        ];
        let t = text.trim();
        let parsed = FORMATS.iter().find_map(|f| {
            chrono::NaiveDateTime::parse_from_str(t, f)
                .ok()
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(t, f)
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
        });
        let Some(local) = parsed else {
            return Err(OdooError::value(format!(
                "'{text}' does not seem to be a valid datetime for field '{field}'"
            )));
        };
        let offset = self
            .input_tz
            .as_deref()
            .and_then(utc_offset_minutes)
            .unwrap_or(0);
        Ok((local - chrono::Duration::minutes(offset))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string())
    }

    /// Converts one cell into a value for `write`/`create`.
    fn load_cell(
        &self,
        def: &ModelDef,
        col: &Column,
        cell: &Value,
    ) -> OdooResult<Option<(String, Value)>> {
        let (fname, how) = match col {
            Column::XmlId | Column::DbId => return Ok(None),
            Column::Plain(f) => (f, 0),
            Column::RefDbId(f) => (f, 1),
            Column::RefXmlId(f) => (f, 2),
        };
        let Some(field) = def.field(fname) else {
            return Ok(None);
        };
        if is_empty(cell) {
            return Ok(Some((fname.clone(), Value::Bool(false))));
        }
        let text = match cell {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let value = match (&field.ftype, how) {
            (FType::Many2one(target), 1) => {
                let id: i64 = text.trim().parse().unwrap_or(0);
                // Up to 17 `db_id_for` looks the id up with `search`, which leaves archived
                // records out; from 18 it asks `browse(id).exists()`, which finds them.
                let archived = self.schema.version <= 17
                    && self
                        .txn
                        .store()
                        .get(target, id)
                        .and_then(|r| r.get("active"))
                        == Some(&Val::Bool(false));
                if !self.txn.store().exists(target, id) || archived {
                    return Err(OdooError::value(format!(
                        "No matching record found for database id '{text}' in field '{}'",
                        field.string
                    )));
                }
                json!(id)
            }
            (FType::Many2one(target), 2) => match self.xmlid_lookup(&text, Some(target)) {
                Some((_, id)) => json!(id),
                None => {
                    return Err(OdooError::value(format!(
                        "No matching record found for external id '{text}' in field '{}'",
                        field.string
                    )))
                }
            },
            (FType::Many2one(target), _) => {
                let ev = self.ev();
                let found = self.txn.store().ids(target).into_iter().find(|id| {
                    ev.display_name(target, *id) == text
                        || self.get(target, *id, "name").str() == Some(text.as_str())
                });
                match found {
                    Some(id) => json!(id),
                    None => {
                        return Err(OdooError::value(format!(
                            "No matching record found for name '{text}' in field '{}'",
                            field.string
                        )))
                    }
                }
            }
            (FType::Integer | FType::Float | FType::Monetary, _) => match cell {
                Value::Number(_) => cell.clone(),
                _ => {
                    let n: f64 = text.trim().parse().map_err(|_| {
                        OdooError::value(format!(
                            "'{text}' does not seem to be a number for field '{}'",
                            field.string
                        ))
                    })?;
                    json!(n)
                }
            },
            (FType::Datetime, _) => json!(self.load_datetime(&text, field.string)?),
            (FType::Boolean, _) => {
                json!(matches!(text.to_lowercase().as_str(), "1" | "true" | "yes"))
            }
            (FType::Selection(options), _) => {
                match options
                    .iter()
                    .find(|(k, l)| *k == text || l.eq_ignore_ascii_case(&text))
                {
                    Some((k, _)) => json!(k),
                    None => {
                        return Err(OdooError::value(format!(
                            "Value '{text}' not found in selection field '{}'",
                            field.string
                        )))
                    }
                }
            }
            _ => json!(text),
        };
        Ok(Some((fname.clone(), value)))
    }

    /// Runs `load`. Returns Odoo's answer and whether the call must be rolled back.
    pub fn load(
        &mut self,
        model: &str,
        fields: &[String],
        data: &[Vec<Value>],
    ) -> OdooResult<(Value, bool)> {
        let def = self.model_def(model)?;
        // Split columns into the record's own and those of one one2many field.
        let mut main: Vec<(usize, Column)> = Vec::new();
        let mut sub: Vec<(usize, Column)> = Vec::new();
        let mut sub_field: Option<(&'static str, &'static str, &'static str)> = None;
        let mut messages = Vec::new();
        for (i, path) in fields.iter().enumerate() {
            let parts = split_path(path);
            let o2m = def.field(&parts[0]).and_then(|f| match f.ftype {
                FType::One2many(child, inverse) => Some((f.name, child, inverse)),
                _ => None,
            });
            let result = match o2m {
                Some((fname, child, inverse)) if parts.len() > 1 => {
                    if sub_field.is_some_and(|(f, _, _)| f != fname) {
                        Err(OdooError::value(format!(
                            "Only one one2many field per load is supported ('{path}')"
                        )))
                    } else {
                        sub_field = Some((fname, child, inverse));
                        let child_def = self.model_def(child)?;
                        column(child_def, &parts[1..], path).map(|c| sub.push((i, c)))
                    }
                }
                _ => column(def, &parts, path).map(|c| main.push((i, c))),
            };
            if let Err(e) = result {
                messages.push(json!({"type": "error", "message": e.message, "record": 0, "rows": {"from": 0, "to": 0}, "field": path}));
            }
        }
        if !messages.is_empty() {
            return Ok((
                json!({"ids": false, "messages": messages, "nextrow": 0}),
                true,
            ));
        }
        // Group rows into records.
        let mut records: Vec<(usize, usize)> = Vec::new();
        for (r, row) in data.iter().enumerate() {
            let starts = r == 0
                || main
                    .iter()
                    .any(|(i, _)| row.get(*i).is_some_and(|v| !is_empty(v)));
            if starts {
                records.push((r, r));
            } else if let Some(last) = records.last_mut() {
                last.1 = r;
            }
        }
        let mut ids = Vec::new();
        let mut errors = 0usize;
        for (rec_index, (from, to)) in records.iter().enumerate() {
            match self.load_record(def, &main, &sub, sub_field, &data[*from..=*to]) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    // Odoo loads each record again in a savepoint of its own to name every
                    // failing one, and stops once there are 10 errors and at least one per 10
                    // records so far. (The simulator has no savepoints: the whole call is
                    // undone.)
                    messages.push(
                        json!({"type": "error", "message": e.message, "record": rec_index,
                                         "rows": {"from": from, "to": to}}),
                    );
                    errors += 1;
                    if errors >= 10 && errors * 10 > rec_index {
                        messages.push(json!({"type": "warning", "message":
                            "Found more than 10 errors and more than one error per 10 records, \
                             interrupted to avoid showing too many errors."}));
                        break;
                    }
                }
            }
        }
        if messages.is_empty() {
            Ok((json!({"ids": ids, "messages": [], "nextrow": 0}), false))
        } else {
            Ok((
                json!({"ids": false, "messages": messages, "nextrow": 0}),
                true,
            ))
        }
    }

    fn load_record(
        &mut self,
        def: &ModelDef,
        main: &[(usize, Column)],
        sub: &[(usize, Column)],
        sub_field: Option<(&'static str, &'static str, &'static str)>,
        rows: &[Vec<Value>],
    ) -> OdooResult<i64> {
        let model = def.name;
        let first = &rows[0];
        let cell = |row: &Vec<Value>, i: usize| row.get(i).cloned().unwrap_or(Value::Null);
        let mut vals = Map::new();
        let mut xmlid = None;
        let mut db_id = None;
        for (i, col) in main {
            let v = cell(first, *i);
            match col {
                Column::XmlId if !is_empty(&v) => xmlid = v.as_str().map(str::to_string),
                Column::DbId if !is_empty(&v) => {
                    db_id = Some(
                        v.as_i64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                            .unwrap_or(0),
                    )
                }
                _ => {
                    if let Some((k, val)) = self.load_cell(def, col, &v)? {
                        vals.insert(k, val);
                    }
                }
            }
        }
        let existing = match (db_id, &xmlid) {
            (Some(id), _) => {
                self.ensure_exist(model, &[id])?;
                Some(id)
            }
            (None, Some(x)) => self.xmlid_lookup(x, Some(model)).map(|(_, id)| id),
            _ => None,
        };
        let id = match existing {
            Some(id) => {
                if !vals.is_empty() {
                    self.write(model, &[id], &vals)?;
                }
                id
            }
            None => {
                let id = self.create_one(model, &vals)?;
                if let Some(x) = &xmlid {
                    self.register_xmlid(x, model, id)?;
                }
                id
            }
        };
        let Some((_, child, inverse)) = sub_field else {
            return Ok(id);
        };
        let child_def = self.model_def(child)?;
        for row in rows {
            if sub.iter().all(|(i, _)| is_empty(&cell(row, *i))) {
                continue;
            }
            let mut lvals = Map::new();
            let mut line_xmlid = None;
            for (i, col) in sub {
                let v = cell(row, *i);
                match col {
                    Column::XmlId => {
                        line_xmlid = v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
                    }
                    Column::DbId => {}
                    _ => {
                        if let Some((k, val)) = self.load_cell(child_def, col, &v)? {
                            lvals.insert(k, val);
                        }
                    }
                }
            }
            let found = line_xmlid
                .as_ref()
                .and_then(|x| self.xmlid_lookup(x, Some(child)));
            match found {
                Some((_, line)) => self.write(child, &[line], &lvals)?,
                None => {
                    lvals.insert(inverse.to_string(), json!(id));
                    let line = self.create_one(child, &lvals)?;
                    if let Some(x) = &line_xmlid {
                        self.register_xmlid(x, child, line)?;
                    }
                }
            }
        }
        Ok(id)
    }
}

/// Offset from UTC, in minutes, of the time zones the simulator knows (without daylight
/// saving time, so the offset is fixed); None for any other.
pub fn utc_offset_minutes(zone: &str) -> Option<i64> {
    match zone {
        "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "Universal" | "Zulu" => Some(0),
        "Asia/Kolkata" | "Asia/Calcutta" => Some(330),
        "Asia/Tokyo" => Some(540),
        _ => None,
    }
}
