//! Model method calls shared by both transports: argument binding as Python would do it,
//! access rights, the per-call transaction and the call counters.

use super::errors::{ErrorKind, OdooError, OdooResult};
use super::orm::{format_now, Env};
use super::purchase::buttons;
use super::store::Txn;
use super::world::UserAuth;
use super::Sim;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// A method call with its arguments still in wire form.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// Model name.
    pub model: String,
    /// Method name.
    pub method: String,
    /// Record ids (JSON-RPC: first positional argument of record methods; JSON-2: `ids`).
    pub ids: Option<Value>,
    /// Remaining positional arguments.
    pub args: Vec<Value>,
    /// Named arguments (`context` is accepted and ignored).
    pub kwargs: Map<String, Value>,
}

/// What a call returned: `None` is Python's `None` (JSON-RPC then sends neither `result` nor
/// `error`).
#[derive(Debug, Clone)]
pub struct CallResult {
    /// The return value.
    pub value: Option<Value>,
    /// Whether the call changed data (drives `drop_after_commit`).
    pub wrote: bool,
}

const GENERIC: &[&str] = &[
    "create",
    "write",
    "read",
    "search",
    "search_read",
    "search_count",
    "unlink",
    "fields_get",
    "load",
    "check_access_rights",
];

/// `(is a record method, parameter names, required parameters)` of a method.
fn signature(method: &str) -> (bool, &'static [&'static str], usize) {
    match method {
        "create" => (false, &["vals_list"], 1),
        "write" => (true, &["vals"], 1),
        "read" => (true, &["fields", "load"], 0),
        "search" => (false, &["domain", "offset", "limit", "order"], 1),
        "search_read" => (false, &["domain", "fields", "offset", "limit", "order"], 0),
        "search_count" => (false, &["domain", "limit"], 1),
        "unlink" => (true, &[], 0),
        "fields_get" => (false, &["allfields", "attributes"], 0),
        "load" => (false, &["fields", "data"], 2),
        "check_access_rights" => (false, &["operation", "raise_exception"], 1),
        "button_approve" => (true, &["force"], 0),
        _ => (true, &[], 0),
    }
}

/// Whether `method` changes data.
pub fn is_write(method: &str) -> bool {
    matches!(method, "create" | "write" | "unlink" | "load") || method.starts_with("button_")
}

/// The access operation a method needs.
fn operation(method: &str) -> &'static str {
    match method {
        "read" | "search" | "search_read" | "search_count" => "read",
        "create" => "create",
        "unlink" => "unlink",
        _ => "write",
    }
}

/// Binds positional and named arguments to parameter names like Python does.
fn bind(call: &Call) -> OdooResult<Map<String, Value>> {
    let (_, params, required) = signature(&call.method);
    let m = &call.method;
    if call.args.len() > params.len() {
        return Err(OdooError::type_error(format!(
            "{m}() takes {} positional arguments but {} were given",
            params.len() + 1,
            call.args.len() + 1
        )));
    }
    let mut bound = Map::new();
    for (name, v) in params.iter().zip(&call.args) {
        bound.insert((*name).to_string(), v.clone());
    }
    for (k, v) in &call.kwargs {
        if k == "context" {
            continue;
        }
        if !params.contains(&k.as_str()) {
            return Err(OdooError::type_error(format!(
                "{m}() got an unexpected keyword argument '{k}'"
            )));
        }
        if bound.contains_key(k) {
            return Err(OdooError::type_error(format!(
                "{m}() got multiple values for argument '{k}'"
            )));
        }
        bound.insert(k.clone(), v.clone());
    }
    let missing: Vec<&str> = params[..required]
        .iter()
        .copied()
        .filter(|p| !bound.contains_key(*p))
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|p| format!("'{p}'")).collect();
        return Err(OdooError::type_error(format!(
            "{m}() missing {} required positional argument{}: {}",
            missing.len(),
            if missing.len() > 1 { "s" } else { "" },
            names.join(" and ")
        )));
    }
    Ok(bound)
}

fn ids_of(v: &Value) -> OdooResult<Vec<i64>> {
    match v {
        Value::Number(n) => Ok(n.as_i64().into_iter().filter(|i| *i != 0).collect()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_i64()
                    .ok_or_else(|| OdooError::value(format!("Invalid id: {i}")))
            })
            .collect(),
        Value::Null | Value::Bool(false) => Ok(vec![]),
        other => Err(OdooError::value(format!("Invalid ids: {other}"))),
    }
}

fn opt_usize(v: Option<&Value>) -> Option<usize> {
    v.and_then(Value::as_u64).map(|n| n as usize)
}

impl Sim {
    /// Whether `model` has a method called `method` in this version.
    pub fn has_method(&self, model: &str, method: &str) -> bool {
        GENERIC.contains(&method)
            || (model == "purchase.order" && buttons(self.schema.version).contains(&method))
    }

    /// The error Odoo raises for a method that cannot be called.
    pub fn method_error(&self, model: &str, method: &str) -> OdooError {
        let v19 = self.schema.version >= 19;
        if method.starts_with('_') {
            let what = if v19 {
                format!("'{model}.{method}'")
            } else {
                method.to_string()
            };
            return OdooError::new(
                ErrorKind::Access,
                format!("Private methods (such as {what}) cannot be called remotely."),
            );
        }
        if v19 {
            OdooError::new(
                ErrorKind::Attribute,
                format!("The method '{model}.{method}' does not exist"),
            )
        } else {
            OdooError::new(
                ErrorKind::Attribute,
                format!("The method '{method}' does not exist on the model '{model}'"),
            )
        }
    }

    /// Runs one model method for `user` in its own transaction and counts it.
    pub fn execute(&self, user: &UserAuth, call: &Call) -> OdooResult<CallResult> {
        if let Some(action) = self.take_hook(&call.model, &call.method) {
            action(self);
        }
        self.count(&call.model, &call.method);
        let def = self
            .schema
            .model(&call.model)
            .ok_or_else(|| OdooError::user(format!("Object {} doesn't exist", call.model)))?;
        if !self.has_method(&call.model, &call.method) {
            return Err(self.method_error(&call.model, &call.method));
        }
        let (record_method, _, _) = signature(&call.method);
        let ids = if record_method {
            ids_of(call.ids.as_ref().unwrap_or(&json!([])))?
        } else {
            vec![]
        };
        let mut params = bind(call)?;
        let mut world = self.world.lock().unwrap_or_else(|p| p.into_inner());
        let world = &mut *world;
        let mut env = Env {
            txn: Txn::new(&mut world.store),
            schema: &self.schema,
            settings: &world.settings,
            uid: user.id,
            purchase_manager: user.purchase_manager,
            now: format_now(chrono::Utc::now()),
            touched_orders: BTreeSet::new(),
            planned_kept: BTreeSet::new(),
            vendor_written: BTreeSet::new(),
            input_tz: None,
            active_test: call
                .kwargs
                .get("context")
                .and_then(|c| c.get("active_test"))
                .is_none_or(crate::sim::value::json_truthy),
        };
        let context_tz = call
            .kwargs
            .get("context")
            .and_then(|c| c.get("tz"))
            .and_then(Value::as_str);
        env.input_tz = env.input_tz(context_tz);
        let denied = user.denied_models.iter().any(|m| m == &call.model);
        if call.method == "check_access_rights" {
            // Answers about the rights instead of exercising them, so it is never refused itself.
            return check_access_rights(&env, def, !denied, &params).map(|value| CallResult {
                value,
                wrote: false,
            });
        }
        if denied && call.method != "fields_get" {
            return Err(env.access_error(def, operation(&call.method)));
        }
        if let Some(hidden) = user.hidden.get(&call.model).filter(|h| !h.is_empty()) {
            if ids.iter().any(|id| hidden.contains(id)) {
                return Err(env.record_rule_error(def, &ids, hidden));
            }
            if matches!(
                call.method.as_str(),
                "search" | "search_read" | "search_count"
            ) {
                // Record rules add their domain to every search.
                let mut domain = vec![json!(["id", "not in", hidden])];
                if let Some(Value::Array(terms)) = params.get("domain") {
                    domain.extend(terms.iter().cloned());
                }
                params.insert("domain".into(), Value::Array(domain));
            }
        }
        match run(&mut env, call, &ids, &params) {
            Ok((value, rollback)) => {
                if rollback {
                    env.txn.rollback();
                    return Ok(CallResult {
                        value,
                        wrote: false,
                    });
                }
                env.finish();
                let wrote = env.txn.writes > 0 && is_write(&call.method);
                Ok(CallResult { value, wrote })
            }
            Err(e) => {
                env.txn.rollback();
                Err(e)
            }
        }
    }

    fn count(&self, model: &str, method: &str) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.total += 1;
        *stats.calls.entry(format!("{model}.{method}")).or_insert(0) += 1;
    }
}

/// `check_access_rights(operation, raise_exception=True)`, an `@api.model` method of every
/// model: whether the user's groups grant `operation` on the model (ir.model.access; record
/// rules are not consulted). Odoo 16–17 delegate to `ir.model.access.check` and return `True`;
/// 18+ keep it as a deprecated wrapper of `check_access` (returns `None`) / `has_access` (returns
/// a boolean). Refused with `raise_exception` true: the `AccessError` of the operation; with it
/// false: `false`. An operation other than read/write/create/unlink fails Odoo's
/// `assert mode in (...), 'Invalid access mode'`.
fn check_access_rights(
    env: &Env,
    def: &super::schema::ModelDef,
    allowed: bool,
    p: &Map<String, Value>,
) -> OdooResult<Option<Value>> {
    let operation = p.get("operation").and_then(Value::as_str).unwrap_or("");
    if !matches!(operation, "read" | "write" | "create" | "unlink") {
        return Err(OdooError::new(ErrorKind::Assertion, "Invalid access mode"));
    }
    // Python truthiness of the argument; absent means the default, True.
    let raise = match p.get("raise_exception") {
        None => true,
        Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    };
    match (allowed, raise) {
        (true, true) if env.schema.version >= 18 => Ok(None),
        (true, _) => Ok(Some(json!(true))),
        (false, true) => Err(env.access_error(def, operation)),
        (false, false) => Ok(Some(json!(false))),
    }
}

/// The method bodies. Returns the value and whether to roll back without raising (`load`).
fn run(
    env: &mut Env,
    call: &Call,
    ids: &[i64],
    p: &Map<String, Value>,
) -> OdooResult<(Option<Value>, bool)> {
    let model = call.model.as_str();
    let null = Value::Null;
    let arg = |k: &str| p.get(k).unwrap_or(&null);
    let some = |v: Value| Ok((Some(v), false));
    match call.method.as_str() {
        "create" => match arg("vals_list") {
            Value::Object(vals) => some(json!(env.create_one(model, vals)?)),
            Value::Array(list) => {
                let vals: Vec<Map<String, Value>> = list
                    .iter()
                    .map(|v| {
                        v.as_object()
                            .cloned()
                            .ok_or_else(|| OdooError::value(format!("Invalid values: {v}")))
                    })
                    .collect::<OdooResult<_>>()?;
                some(json!(env.create(model, &vals)?))
            }
            other => Err(OdooError::value(format!("Invalid values: {other}"))),
        },
        "write" => {
            let vals = arg("vals").as_object().cloned().unwrap_or_default();
            env.write(model, ids, &vals)?;
            some(json!(true))
        }
        "read" => {
            let fields = env.read_fields(model, arg("fields"))?;
            some(Value::Array(env.read(model, ids, &fields)))
        }
        "search" => {
            let found = env.search(
                model,
                arg("domain"),
                opt_usize(p.get("offset")).unwrap_or(0),
                opt_usize(p.get("limit")),
                p.get("order").and_then(Value::as_str),
            )?;
            some(json!(found))
        }
        "search_read" => {
            let fields = env.read_fields(model, arg("fields"))?;
            let found = env.search(
                model,
                arg("domain"),
                opt_usize(p.get("offset")).unwrap_or(0),
                opt_usize(p.get("limit")),
                p.get("order").and_then(Value::as_str),
            )?;
            some(Value::Array(env.read(model, &found, &fields)))
        }
        "search_count" => some(json!(env.search_count(
            model,
            arg("domain"),
            opt_usize(p.get("limit"))
        )?)),
        "unlink" => {
            env.unlink(model, ids)?;
            some(json!(true))
        }
        "fields_get" => some(env.fields_get(model, arg("allfields"), arg("attributes"))?),
        "load" => {
            let fields: Vec<String> = arg("fields")
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let data: Vec<Vec<Value>> = arg("data")
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.as_array().cloned().unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default();
            let (value, rollback) = env.load(model, &fields, &data)?;
            Ok((Some(value), rollback))
        }
        method => Ok((env.button(method, ids)?, false)),
    }
}
