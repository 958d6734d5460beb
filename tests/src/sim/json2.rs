//! `POST /json/2/<model>/<method>` (Odoo 19): bearer API key, named arguments, bare results and
//! HTTP statuses that say what went wrong.

use super::dispatch::Call;
use super::errors::{ErrorKind, OdooError};
use super::jsonrpc::Reply;
use super::Sim;
use serde_json::{Map, Value};

fn error(err: OdooError) -> Reply {
    Reply {
        status: err.json2_status(),
        body: err.to_data(),
        wrote: false,
    }
}

/// Handles one JSON-2 call. `authorization` and `database` are the request headers.
pub fn handle(
    sim: &Sim,
    model: &str,
    method: &str,
    authorization: Option<&str>,
    database: Option<&str>,
    body: &[u8],
) -> Reply {
    let key = authorization.and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    });
    let user = {
        let world = sim.world.lock().unwrap_or_else(|p| p.into_inner());
        key.and_then(|k| world.by_api_key(&k).cloned())
    };
    let Some(user) = user else {
        return error(OdooError::new(ErrorKind::Unauthorized, "Invalid apikey"));
    };
    if let Some(db) = database {
        if db != sim.config.db {
            return error(OdooError::new(
                ErrorKind::NotFound,
                format!("database {db:?} not found"),
            ));
        }
    }
    let mut kwargs: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => return error(OdooError::new(ErrorKind::BadRequest, "Invalid JSON data")),
        }
    };
    if sim.schema.model(model).is_none() {
        return error(OdooError::new(
            ErrorKind::NotFound,
            format!("the model {model:?} does not exist"),
        ));
    }
    if !sim.has_method(model, method) {
        let e = sim.method_error(model, method);
        let kind = if e.kind == ErrorKind::Access {
            ErrorKind::Access
        } else {
            ErrorKind::NotFound
        };
        return error(OdooError::new(kind, e.message));
    }
    let ids = kwargs.remove("ids");
    let call = Call {
        model: model.to_string(),
        method: method.to_string(),
        ids,
        args: vec![],
        kwargs,
    };
    match sim.execute(&user, &call) {
        Ok(r) => Reply {
            status: 200,
            // JSON-2 answers a recordset with its ids: `create` given one dict (a recordset of
            // one, which JSON-RPC answers with its id) is a list too.
            body: match (method, r.value) {
                ("create", Some(Value::Number(id))) => Value::Array(vec![Value::Number(id)]),
                (_, value) => value.unwrap_or(Value::Null),
            },
            wrote: r.wrote,
        },
        Err(e) => error(e),
    }
}
