//! JSON-RPC conformance: `common` and `object` services, credentials, error envelopes and the
//! version switches of the error `code`.

mod sim_support;

use odoo_sync_tests::sim::SimConfig;
use serde_json::{json, Value};
use sim_support::*;

#[tokio::test]
async fn version_answers_like_odoo_19() {
    let o = start().await;
    let env = o.c.jsonrpc("common", "version", json!([])).await.unwrap();
    assert_eq!(
        env,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"server_version": "19.0",
            "server_version_info": [19, 0, 0, "final", 0, ""], "server_serie": "19.0", "protocol_version": 1}})
    );
    let web = o.c.get("/web/version").await.unwrap();
    assert_eq!(web.status, 200);
    assert_eq!(
        web.body(),
        json!({"version_info": [19, 0, 0, "final", 0, ""], "version": "19.0"})
    );
}

#[tokio::test]
async fn version_follows_the_configured_release() {
    let o = start_version(17).await;
    let env = o.c.jsonrpc("common", "version", json!([])).await.unwrap();
    assert_eq!(env["result"]["server_version"], "17.0");
    assert_eq!(
        env["result"]["server_version_info"],
        json!([17, 0, 0, "final", 0, ""])
    );
}

#[tokio::test]
async fn login_and_authenticate_return_uid_or_false() {
    let o = start().await;
    let ok =
        o.c.jsonrpc("common", "login", json!([DB, "admin", PASSWORD]))
            .await
            .unwrap();
    assert_eq!(ok, json!({"jsonrpc": "2.0", "id": 1, "result": 2}));
    let with_key =
        o.c.jsonrpc("common", "authenticate", json!([DB, "admin", KEY, {}]))
            .await
            .unwrap();
    assert_eq!(with_key["result"], 2);
    // Bad credentials: `false`, and no error member at all.
    let bad =
        o.c.jsonrpc("common", "login", json!([DB, "admin", "wrong"]))
            .await
            .unwrap();
    assert_eq!(bad, json!({"jsonrpc": "2.0", "id": 1, "result": false}));
    let unknown =
        o.c.jsonrpc("common", "authenticate", json!([DB, "nobody", "x", {}]))
            .await
            .unwrap();
    assert_eq!(unknown["result"], false);
}

#[tokio::test]
async fn execute_kw_accepts_password_and_api_key() {
    let o = start().await;
    for secret in [PASSWORD, KEY] {
        let env =
            o.c.execute_kw(
                DB,
                UID,
                secret,
                "res.partner",
                "search_count",
                json!([[["ref", "=", "V-GEMINI"]]]),
                json!({}),
            )
            .await
            .unwrap();
        assert_eq!(env, json!({"jsonrpc": "2.0", "id": 1, "result": 1}));
    }
}

#[tokio::test]
async fn bad_credentials_raise_access_denied() {
    let o = start().await;
    let env =
        o.c.execute_kw(
            DB,
            UID,
            "nope",
            "res.partner",
            "search",
            json!([[]]),
            json!({}),
        )
        .await
        .unwrap();
    assert_rpc_error(&env, 0, "odoo.exceptions.AccessDenied", "Access Denied");
    // Odoo hides the traceback of AccessDenied.
    assert_eq!(env["error"]["data"]["debug"], "");
    // The right password with another uid is refused too.
    let env =
        o.c.execute_kw(
            DB,
            99,
            PASSWORD,
            "res.partner",
            "search",
            json!([[]]),
            json!({}),
        )
        .await
        .unwrap();
    assert_rpc_error(&env, 0, "odoo.exceptions.AccessDenied", "Access Denied");
}

#[tokio::test]
async fn error_code_is_200_before_19() {
    for version in [16, 17, 18] {
        let o = start_version(version).await;
        let env = o
            .err("purchase.orderx", "read", json!([[1]]), json!({}))
            .await;
        assert_rpc_error(
            &env,
            200,
            "odoo.exceptions.UserError",
            "Object purchase.orderx doesn't exist",
        );
    }
}

#[tokio::test]
async fn unknown_model_is_a_user_error() {
    let o = start().await;
    let env = o
        .err("purchase.orderx", "search_read", json!([[]]), json!({}))
        .await;
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.UserError",
        "Object purchase.orderx doesn't exist",
    );
}

#[tokio::test]
async fn unknown_method_is_an_attribute_error() {
    let o = start().await;
    let env = o
        .err("purchase.order", "frobnicate", json!([[1]]), json!({}))
        .await;
    assert_rpc_error(
        &env,
        0,
        "builtins.AttributeError",
        "The method 'purchase.order.frobnicate' does not exist",
    );
    let env = o
        .err("purchase.order", "_compute_amount", json!([[1]]), json!({}))
        .await;
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.AccessError",
        "Private methods (such as 'purchase.order._compute_amount') cannot be called remotely.",
    );
    let o17 = start_version(17).await;
    let env = o17
        .err("purchase.order", "frobnicate", json!([[1]]), json!({}))
        .await;
    assert_rpc_error(
        &env,
        200,
        "builtins.AttributeError",
        "The method 'frobnicate' does not exist on the model 'purchase.order'",
    );
}

#[tokio::test]
async fn unknown_field_is_a_value_error() {
    let o = start().await;
    let env = o
        .err(
            "purchase.order",
            "search_read",
            json!([[]]),
            json!({"fields": ["receipt_status"]}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "builtins.ValueError",
        "Invalid field 'receipt_status' on 'purchase.order'",
    );
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let env = o
        .err(
            "purchase.order",
            "create",
            json!([{"partner_id": gemini, "bogus": 1}]),
            json!({}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "builtins.ValueError",
        "Invalid field 'bogus' in 'purchase.order'",
    );
    let o17 = start_version(17).await;
    let env = o17
        .err(
            "purchase.order",
            "read",
            json!([[1]]),
            json!({"fields": ["receipt_status"]}),
        )
        .await;
    assert_rpc_error(
        &env,
        200,
        "builtins.ValueError",
        "Invalid field 'receipt_status' on model 'purchase.order'",
    );
}

#[tokio::test]
async fn none_result_has_neither_result_nor_error() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let po = o.order(gemini, &[]).await;
    let env = o
        .call("purchase.order", "button_cancel", json!([[po]]), json!({}))
        .await;
    assert_eq!(env, json!({"jsonrpc": "2.0", "id": 1}));
}

#[tokio::test]
async fn read_of_a_missing_id_is_empty() {
    let o = start().await;
    assert_eq!(
        o.ok(
            "purchase.order",
            "read",
            json!([[424242]]),
            json!({"fields": ["name"]})
        )
        .await,
        json!([])
    );
}

#[tokio::test]
async fn wrong_database_is_an_operational_error() {
    let o = start().await;
    let env =
        o.c.execute_kw(
            "nodb",
            UID,
            PASSWORD,
            "res.partner",
            "search",
            json!([[]]),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(env["error"]["data"]["name"], "psycopg2.OperationalError");
    assert!(env["error"]["data"]["message"]
        .as_str()
        .unwrap()
        .contains("database \"nodb\" does not exist"));
}

#[tokio::test]
async fn envelope_echoes_the_request_id_and_ignores_method() {
    let o = start().await;
    let body = json!({"jsonrpc": "2.0", "method": "whatever", "id": "abc-7",
                      "params": {"service": "common", "method": "login", "args": [DB, "admin", PASSWORD]}});
    let reply = o.c.post("/jsonrpc", &body).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body(),
        json!({"jsonrpc": "2.0", "id": "abc-7", "result": 2})
    );
}

#[tokio::test]
async fn malformed_json_rpc_body_is_a_bad_request_error() {
    let o = start().await;
    let reply =
        o.c.request_raw("POST", "/jsonrpc", &[], b"{not json".to_vec())
            .await
            .unwrap();
    assert_eq!(reply.status, 200);
    assert_rpc_error(
        &reply.body(),
        0,
        "werkzeug.exceptions.BadRequest",
        "Invalid JSON data",
    );
}

#[tokio::test]
async fn arguments_are_bound_like_python() {
    let o = start().await;
    let env = o
        .err(
            "res.partner",
            "search_read",
            json!([[]]),
            json!({"fieldz": ["name"]}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "builtins.TypeError",
        "search_read() got an unexpected keyword argument 'fieldz'",
    );
    let env = o
        .err(
            "res.partner",
            "search",
            json!([[], 0]),
            json!({"offset": 1}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "builtins.TypeError",
        "search() got multiple values for argument 'offset'",
    );
    let env = o.err("res.partner", "write", json!([]), json!({})).await;
    assert_rpc_error(&env, 0, "builtins.IndexError", "list index out of range");
    // `context` is accepted everywhere.
    let n = o
        .ok(
            "res.partner",
            "search_count",
            json!([[]]),
            json!({"context": {"lang": "en_US"}}),
        )
        .await;
    assert!(n.as_i64().unwrap() >= 5);
}

#[tokio::test]
async fn refused_model_raises_access_error() {
    let o = start().await;
    let uid =
        o.c.jsonrpc("common", "login", json!([DB, "viewer", "viewer"]))
            .await
            .unwrap()["result"]
            .clone();
    assert_eq!(uid, 3);
    let env =
        o.c.execute_kw(
            DB,
            3,
            "viewer",
            "purchase.order",
            "search_read",
            json!([[]]),
            json!({"fields": ["name"]}),
        )
        .await
        .unwrap();
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.AccessError",
        "You are not allowed to access 'Purchase Order' (purchase.order) records.\n\nThis operation is allowed for the following groups:\n\t- Purchase/User\n\nContact your administrator to request access if necessary.",
    );
    let env =
        o.c.execute_kw(
            DB,
            3,
            "viewer-api-key",
            "purchase.order",
            "create",
            json!([{"partner_id": 3}]),
            json!({}),
        )
        .await
        .unwrap();
    assert!(env["error"]["data"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You are not allowed to create 'Purchase Order'"));
    // Other models stay readable for that user.
    let env =
        o.c.execute_kw(
            DB,
            3,
            "viewer",
            "res.partner",
            "search_count",
            json!([[]]),
            json!({}),
        )
        .await
        .unwrap();
    assert!(env["result"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn custom_credentials_from_config() {
    let o = start_with(SimConfig {
        db: "prod".into(),
        user: "bot".into(),
        password: "s3cret".into(),
        api_key: "k-123".into(),
        ..SimConfig::default()
    })
    .await;
    let env =
        o.c.jsonrpc("common", "login", json!(["prod", "bot", "k-123"]))
            .await
            .unwrap();
    assert_eq!(env["result"], 2);
    let env =
        o.c.jsonrpc("common", "login", json!(["prod", "admin", "admin"]))
            .await
            .unwrap();
    assert_eq!(env["result"], Value::Bool(false));
}
