//! Shared helpers of the simulator tests: start a simulator in-process on a free port and talk
//! to it over real HTTP, the way a client would.
#![allow(dead_code)]

use odoo_sync_tests::sim::client::{Client, HttpReply};
use odoo_sync_tests::sim::{self, SimConfig, SimHandle};
use serde_json::{json, Value};

/// Admin uid, password and API key of the default configuration.
pub const UID: i64 = 2;
pub const PASSWORD: &str = "admin";
pub const KEY: &str = sim::DEFAULT_API_KEY;
pub const DB: &str = "odoo";

/// A running simulator and a client for it.
pub struct Odoo {
    pub handle: SimHandle,
    pub c: Client,
}

/// Default simulator (Odoo 19, default seed).
pub async fn start() -> Odoo {
    start_with(SimConfig::default()).await
}

/// Simulator of another Odoo version.
pub async fn start_version(version: u8) -> Odoo {
    start_with(SimConfig {
        version,
        ..SimConfig::default()
    })
    .await
}

/// Simulator with a custom configuration.
pub async fn start_with(config: SimConfig) -> Odoo {
    let handle = sim::spawn(config).await.expect("simulator starts");
    let c = Client::new(&handle.url());
    Odoo { handle, c }
}

impl Odoo {
    /// `execute_kw` as admin with the password; the whole envelope.
    pub async fn call(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
        self.c
            .execute_kw(DB, UID, PASSWORD, model, method, args, kwargs)
            .await
            .expect("HTTP works")
    }

    /// `execute_kw` that must succeed; its `result`.
    pub async fn ok(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
        let env = self.call(model, method, args, kwargs).await;
        assert!(env.get("error").is_none(), "unexpected error: {env}");
        env.get("result").cloned().unwrap_or(Value::Null)
    }

    /// `execute_kw` that must fail; the envelope.
    pub async fn err(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
        let env = self.call(model, method, args, kwargs).await;
        assert!(env.get("error").is_some(), "expected an error: {env}");
        env
    }

    /// A JSON-2 call with the admin key.
    pub async fn j2(&self, model: &str, method: &str, body: Value) -> HttpReply {
        self.c
            .json2(KEY, DB, model, method, &body)
            .await
            .expect("HTTP works")
    }

    /// Creates a draft order for `partner` with `lines` of (product, qty, price).
    pub async fn order(&self, partner: i64, lines: &[(i64, f64, f64)]) -> i64 {
        let cmds: Vec<Value> = lines
            .iter()
            .map(|(p, q, u)| json!([0, 0, {"product_id": p, "product_qty": q, "price_unit": u}]))
            .collect();
        let id = self
            .ok(
                "purchase.order",
                "create",
                json!([{"partner_id": partner, "order_line": cmds}]),
                json!({}),
            )
            .await;
        id.as_i64().expect("create returns an id")
    }

    /// Id of the first line of order `po`.
    pub async fn first_line_id(&self, po: i64) -> i64 {
        self.read1("purchase.order", po, &["order_line"]).await["order_line"][0]
            .as_i64()
            .expect("the order has a line")
    }

    /// Id of the record of `model` whose `field` equals `value`.
    pub async fn find(&self, model: &str, field: &str, value: &str) -> i64 {
        let ids = self
            .ok(model, "search", json!([[[field, "=", value]]]), json!({}))
            .await;
        ids[0]
            .as_i64()
            .unwrap_or_else(|| panic!("no {model} with {field} = {value}"))
    }

    /// Reads one record's fields.
    pub async fn read1(&self, model: &str, id: i64, fields: &[&str]) -> Value {
        let rows = self
            .ok(model, "read", json!([[id]]), json!({"fields": fields}))
            .await;
        rows[0].clone()
    }
}

/// Checks a JSON-RPC error envelope completely: keys, code, and the serialized exception.
pub fn assert_rpc_error(env: &Value, code: i64, name: &str, message: &str) {
    let obj = env.as_object().expect("envelope is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["error", "id", "jsonrpc"], "{env}");
    assert_eq!(env["jsonrpc"], "2.0");
    let error = &env["error"];
    assert_eq!(error["code"], code, "{env}");
    assert_eq!(error["message"], "Odoo Server Error");
    assert_exception(&error["data"], name, message);
}

/// Checks a serialized exception `{name, message, arguments, context, debug}`.
pub fn assert_exception(data: &Value, name: &str, message: &str) {
    let obj = data
        .as_object()
        .unwrap_or_else(|| panic!("exception is an object: {data}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["arguments", "context", "debug", "message", "name"],
        "{data}"
    );
    assert_eq!(data["name"], name, "{data}");
    assert_eq!(data["message"], message, "{data}");
    assert_eq!(data["arguments"], json!([message]));
    assert_eq!(data["context"], json!({}));
    assert!(data["debug"].is_string());
}

/// Checks a JSON-2 error reply: status, JSON body of the exception.
pub fn assert_json2_error(reply: &HttpReply, status: u16, name: &str, message: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert!(
        reply.content_type.starts_with("application/json"),
        "{}",
        reply.content_type
    );
    assert_exception(&reply.body(), name, message);
}

/// Checks the `YYYY-MM-DD HH:MM:SS` shape of Odoo datetimes.
pub fn assert_datetime(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("datetime is a string: {v}"));
    assert!(
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok() && s.len() == 19,
        "{s}"
    );
}
