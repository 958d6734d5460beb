//! `check_access_rights(operation, raise_exception=True)` on the simulator, as Odoo answers it:
//! a boolean with `raise_exception=False`, the operation's `AccessError` (or `True` / `None`)
//! without it, on both transports, and never refused itself.

mod sim_support;

use serde_json::json;
use sim_support::*;

#[tokio::test]
async fn check_access_rights_answers_for_each_user() {
    let o = start().await;
    for (uid, secret, model, want) in [
        (UID, PASSWORD, "purchase.order", true),
        (UID, PASSWORD, "purchase.order.line", true),
        (3, "viewer", "purchase.order", false),
        (3, "viewer", "purchase.order.line", false),
        (3, "viewer", "res.partner", true),
        (3, "viewer-api-key", "product.product", true),
    ] {
        for operation in ["read", "write", "create", "unlink"] {
            let env =
                o.c.execute_kw(
                    DB,
                    uid,
                    secret,
                    model,
                    "check_access_rights",
                    json!([operation]),
                    json!({"raise_exception": false}),
                )
                .await
                .unwrap();
            assert_eq!(env["result"], json!(want), "{model} {operation}: {env}");
        }
    }
}

#[tokio::test]
async fn check_access_rights_raises_by_default() {
    let o = start().await;
    let env =
        o.c.execute_kw(
            DB,
            3,
            "viewer",
            "purchase.order",
            "check_access_rights",
            json!(["write"]),
            json!({}),
        )
        .await
        .unwrap();
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.AccessError",
        "You are not allowed to modify 'Purchase Order' (purchase.order) records.\n\nThis operation is allowed for the following groups:\n\t- Purchase/User\n\nContact your administrator to request access if necessary.",
    );
    // Allowed: Odoo 18+ return check_access()'s None (no `result`), 16-17 `True`.
    let env =
        o.c.execute_kw(
            DB,
            UID,
            PASSWORD,
            "purchase.order",
            "check_access_rights",
            json!(["read"]),
            json!({}),
        )
        .await
        .unwrap();
    assert!(
        env.get("result").is_none() && env.get("error").is_none(),
        "{env}"
    );
    let o17 = start_version(17).await;
    let env = o17
        .c
        .execute_kw(
            DB,
            UID,
            PASSWORD,
            "purchase.order",
            "check_access_rights",
            json!(["read"]),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(env["result"], json!(true), "{env}");
}

#[tokio::test]
async fn check_access_rights_refuses_unknown_modes() {
    let o = start().await;
    let env =
        o.c.execute_kw(
            DB,
            UID,
            PASSWORD,
            "res.partner",
            "check_access_rights",
            json!(["delete"]),
            json!({"raise_exception": false}),
        )
        .await
        .unwrap();
    assert_eq!(
        env["error"]["data"]["name"], "builtins.AssertionError",
        "{env}"
    );
    assert_eq!(env["error"]["data"]["message"], "Invalid access mode");
}

#[tokio::test]
async fn check_access_rights_on_json2() {
    let o = start().await;
    let reply =
        o.c.json2(
            "viewer-api-key",
            DB,
            "purchase.order",
            "check_access_rights",
            &json!({"operation": "create", "raise_exception": false}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body(), json!(false));
    let reply =
        o.c.json2(
            KEY,
            DB,
            "purchase.order.line",
            "check_access_rights",
            &json!({"operation": "unlink", "raise_exception": false}),
        )
        .await
        .unwrap();
    assert_eq!(reply.body(), json!(true));
    let reply =
        o.c.json2(
            "viewer-api-key",
            DB,
            "purchase.order",
            "check_access_rights",
            &json!({"operation": "read"}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(reply.body()["name"], "odoo.exceptions.AccessError");
}
