//! `POST /jsonrpc`: services `common` (version, login, authenticate) and `object`
//! (execute_kw, execute). Always HTTP 200; errors travel in the `error` member.

use super::dispatch::Call;
use super::errors::{ErrorKind, OdooError};
use super::Sim;
use serde_json::{json, Map, Value};

/// A protocol-level answer: status, JSON body and whether data was written.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
    /// A write was committed (for `drop_after_commit`).
    pub wrote: bool,
}

/// The JSON-RPC error envelope of an Odoo exception (`code` 200 before 19, 0 on 19).
pub fn error_envelope(sim: &Sim, id: &Value, err: &OdooError) -> Value {
    let code = if sim.schema.version >= 19 { 0 } else { 200 };
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": "Odoo Server Error", "data": err.to_data()}})
}

/// `common.version`'s answer for the simulated version.
pub fn version_info(sim: &Sim) -> Value {
    let v = sim.schema.version;
    json!({
        "server_version": format!("{v}.0"),
        "server_version_info": [v, 0, 0, "final", 0, ""],
        "server_serie": format!("{v}.0"),
        "protocol_version": 1,
    })
}

fn db_error(db: &str) -> OdooError {
    OdooError::new(
        ErrorKind::Operational,
        format!("connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  database \"{db}\" does not exist\n"),
    )
}

/// Handles one JSON-RPC request body.
pub fn handle(sim: &Sim, body: &[u8]) -> Reply {
    let ok = |id: &Value, result: Option<Value>, wrote: bool| {
        let mut m = Map::new();
        m.insert("jsonrpc".into(), json!("2.0"));
        m.insert("id".into(), id.clone());
        // A Python `None` result leaves both `result` and `error` out (seen on 19.0).
        if let Some(r) = result {
            m.insert("result".into(), r);
        }
        Reply {
            status: 200,
            body: Value::Object(m),
            wrote,
        }
    };
    let fail = |id: &Value, err: OdooError| Reply {
        status: 200,
        body: error_envelope(sim, id, &err),
        wrote: false,
    };
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return fail(
                &Value::Null,
                OdooError::new(ErrorKind::BadRequest, "Invalid JSON data"),
            );
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let service = params.get("service").and_then(Value::as_str).unwrap_or("");
    let method = params.get("method").and_then(Value::as_str).unwrap_or("");
    let args: Vec<Value> = params
        .get("args")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let str_arg = |i: usize| {
        args.get(i)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match (service, method) {
        ("common", "version") => ok(&id, Some(version_info(sim)), false),
        ("common", "login" | "authenticate") => {
            if args.len() < 3 {
                return fail(
                    &id,
                    OdooError::type_error(format!(
                        "exp_{method}() missing required positional arguments"
                    )),
                );
            }
            if str_arg(0) != sim.config.db {
                return fail(&id, db_error(&str_arg(0)));
            }
            let world = sim.world.lock().unwrap_or_else(|p| p.into_inner());
            // Bad credentials give `false`, not an error (seen on 19.0).
            let uid = world
                .login(&str_arg(1), &str_arg(2))
                .map(|u| json!(u.id))
                .unwrap_or(json!(false));
            ok(&id, Some(uid), false)
        }
        ("common", "about") => ok(&id, Some(json!("See http://openerp.com")), false),
        ("db", "list") => ok(&id, Some(json!([sim.config.db])), false),
        ("db", "server_version") => ok(
            &id,
            Some(version_info(sim)["server_version"].clone()),
            false,
        ),
        ("object", "execute_kw" | "execute") => {
            if args.len() < 5 {
                return fail(
                    &id,
                    OdooError::type_error(format!(
                        "{method}() missing required positional arguments"
                    )),
                );
            }
            if str_arg(0) != sim.config.db {
                return fail(&id, db_error(&str_arg(0)));
            }
            let user = {
                let world = sim.world.lock().unwrap_or_else(|p| p.into_inner());
                let uid = args[1].as_i64().unwrap_or(0);
                world.check(uid, &str_arg(2)).cloned()
            };
            let Some(user) = user else {
                return fail(&id, OdooError::access_denied());
            };
            let model = str_arg(3);
            let method_name = str_arg(4);
            let (positional, kwargs) = if method == "execute_kw" {
                let positional = match args.get(5) {
                    Some(Value::Array(a)) => a.clone(),
                    None | Some(Value::Null) => vec![],
                    Some(other) => vec![other.clone()],
                };
                (
                    positional,
                    args.get(6)
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                )
            } else {
                (args[5..].to_vec(), Map::new())
            };
            let mut call = Call {
                model,
                method: method_name,
                ids: None,
                args: positional,
                kwargs,
            };
            let record_method = sim.has_method(&call.model, &call.method)
                && !matches!(
                    call.method.as_str(),
                    "create"
                        | "search"
                        | "search_read"
                        | "search_count"
                        | "fields_get"
                        | "load"
                        | "check_access_rights"
                );
            if record_method && sim.schema.model(&call.model).is_some() {
                if call.args.is_empty() {
                    return fail(
                        &id,
                        OdooError::new(ErrorKind::Index, "list index out of range"),
                    );
                }
                call.ids = Some(call.args.remove(0));
            }
            match sim.execute(&user, &call) {
                Ok(r) => ok(&id, r.value, r.wrote),
                Err(e) => fail(&id, e),
            }
        }
        ("common" | "object" | "db", _) => fail(
            &id,
            OdooError::new(ErrorKind::Name, format!("Method not available {method}")),
        ),
        _ => fail(
            &id,
            OdooError::new(ErrorKind::Name, format!("Service not available {service}")),
        ),
    }
}
