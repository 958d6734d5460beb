//! JSON-2 conformance (Odoo 19): bearer key, named arguments, bare results, HTTP statuses.

mod sim_support;

use serde_json::{json, Value};
use sim_support::*;

#[tokio::test]
async fn create_write_read_with_named_arguments() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let created = o
        .j2(
            "purchase.order",
            "create",
            json!({"vals_list": [{"partner_id": gemini, "origin": "SO-1"}]}),
        )
        .await;
    assert_eq!(created.status, 200);
    assert!(created.content_type.starts_with("application/json"));
    let ids = created.body();
    assert!(
        ids.is_array() && ids.as_array().unwrap().len() == 1 && ids[0].is_i64(),
        "{ids}"
    );
    let id = ids[0].as_i64().unwrap();
    // One dict instead of a list: still a recordset, answered with its ids.
    let one = o
        .j2(
            "purchase.order",
            "create",
            json!({"vals_list": {"partner_id": gemini}}),
        )
        .await
        .body();
    assert!(
        one.as_array()
            .is_some_and(|a| a.len() == 1 && a[0].is_i64()),
        "{one}"
    );
    let written = o
        .j2(
            "purchase.order",
            "write",
            json!({"ids": [id], "vals": {"partner_ref": "REF-9"}}),
        )
        .await;
    assert_eq!((written.status, written.body()), (200, json!(true)));
    let rows = o
        .j2("purchase.order", "search_read", json!({"domain": [["origin", "=", "SO-1"]], "fields": ["name", "partner_ref", "partner_id"], "limit": 5, "order": "id asc"}))
        .await;
    assert_eq!(rows.status, 200);
    assert_eq!(
        rows.body(),
        json!([{"id": id, "name": "P00001", "partner_ref": "REF-9", "partner_id": [gemini, "Gemini Furniture"]}])
    );
    let read = o
        .j2(
            "purchase.order",
            "read",
            json!({"ids": [id], "fields": ["state"], "context": {"lang": "en_US"}}),
        )
        .await;
    assert_eq!(read.body(), json!([{"id": id, "state": "draft"}]));
}

#[tokio::test]
async fn buttons_take_ids_and_none_is_null() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let po = o.order(gemini, &[]).await;
    let confirm = o
        .j2("purchase.order", "button_confirm", json!({"ids": [po]}))
        .await;
    assert_eq!((confirm.status, confirm.body()), (200, json!(true)));
    let cancel = o
        .j2("purchase.order", "button_cancel", json!({"ids": [po]}))
        .await;
    assert_eq!(cancel.status, 200);
    assert_eq!(cancel.text, "null");
    let draft = o
        .j2("purchase.order", "button_draft", json!({"ids": [po]}))
        .await;
    assert_eq!((draft.status, draft.body()), (200, json!({})));
}

#[tokio::test]
async fn bad_key_is_401() {
    let o = start().await;
    let reply =
        o.c.json2("wrong", DB, "res.partner", "search", &json!({"domain": []}))
            .await
            .unwrap();
    assert_json2_error(
        &reply,
        401,
        "werkzeug.exceptions.Unauthorized",
        "Invalid apikey",
    );
    // The password is not an API key.
    let reply =
        o.c.json2(
            PASSWORD,
            DB,
            "res.partner",
            "search",
            &json!({"domain": []}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 401);
    let reply =
        o.c.request("POST", "/json/2/res.partner/search", &[], Some(&json!({})))
            .await
            .unwrap();
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn refused_model_is_403() {
    let o = start().await;
    let reply =
        o.c.json2(
            "viewer-api-key",
            DB,
            "purchase.order",
            "search_read",
            &json!({"domain": []}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body()["name"], "odoo.exceptions.AccessError");
}

#[tokio::test]
async fn unknown_model_and_method_are_404() {
    let o = start().await;
    let reply = o
        .j2("purchase.orderx", "search", json!({"domain": []}))
        .await;
    assert_json2_error(
        &reply,
        404,
        "werkzeug.exceptions.NotFound",
        "the model \"purchase.orderx\" does not exist",
    );
    let reply = o
        .j2("purchase.order", "frobnicate", json!({"ids": [1]}))
        .await;
    assert_json2_error(
        &reply,
        404,
        "werkzeug.exceptions.NotFound",
        "The method 'purchase.order.frobnicate' does not exist",
    );
}

#[tokio::test]
async fn missing_record_is_404() {
    let o = start().await;
    let reply = o
        .j2("purchase.order", "button_confirm", json!({"ids": [999]}))
        .await;
    assert_json2_error(
        &reply,
        404,
        "odoo.exceptions.MissingError",
        "Record does not exist or has been deleted.\n(Record: purchase.order(999,), User: 2)",
    );
    let reply = o
        .j2(
            "purchase.order",
            "write",
            json!({"ids": [999], "vals": {"origin": "x"}}),
        )
        .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn user_and_validation_errors_are_422() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let po = o.order(gemini, &[]).await;
    let reply = o.j2("purchase.order", "unlink", json!({"ids": [po]})).await;
    assert_json2_error(
        &reply,
        422,
        "odoo.exceptions.UserError",
        "In order to delete a purchase order, you must cancel it first.",
    );
    let reply = o
        .j2(
            "purchase.order",
            "create",
            json!({"vals_list": [{"origin": "no vendor"}]}),
        )
        .await;
    assert_json2_error(
        &reply,
        422,
        "odoo.exceptions.ValidationError",
        "Missing required value for the field 'Vendor' (partner_id)",
    );
}

#[tokio::test]
async fn malformed_json_is_400_and_value_error_is_500() {
    let o = start().await;
    let auth = format!("bearer {KEY}");
    let reply =
        o.c.request_raw(
            "POST",
            "/json/2/res.partner/search",
            &[("authorization", &auth)],
            b"[1,".to_vec(),
        )
        .await
        .unwrap();
    assert_json2_error(
        &reply,
        400,
        "werkzeug.exceptions.BadRequest",
        "Invalid JSON data",
    );
    let reply = o
        .j2(
            "purchase.order",
            "search_read",
            json!({"domain": [], "fields": ["receipt_status"]}),
        )
        .await;
    assert_json2_error(
        &reply,
        500,
        "builtins.ValueError",
        "Invalid field 'receipt_status' on 'purchase.order'",
    );
}

#[tokio::test]
async fn wrong_database_header_is_404() {
    let o = start().await;
    let reply =
        o.c.json2(
            KEY,
            "otherdb",
            "res.partner",
            "search",
            &json!({"domain": []}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body()["name"], "werkzeug.exceptions.NotFound");
}

#[tokio::test]
async fn json2_exists_only_on_19() {
    let o = start_version(18).await;
    let reply =
        o.c.json2(KEY, DB, "res.partner", "search", &json!({"domain": []}))
            .await
            .unwrap();
    assert_eq!(reply.status, 404);
    assert!(reply.content_type.starts_with("text/html"));
    // JSON-RPC still works there.
    let env =
        o.c.jsonrpc("common", "login", json!([DB, "admin", PASSWORD]))
            .await
            .unwrap();
    assert_eq!(env["result"], 2);
}

#[tokio::test]
async fn load_and_counts_over_json2() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let body = json!({"fields": ["id", "partner_id/.id", "order_line/id", "order_line/product_id/.id", "order_line/product_qty", "order_line/price_unit"],
                      "data": [["odoo_sync.po_j2", gemini.to_string(), "odoo_sync.pol_j2", chair.to_string(), "2", "10"]]});
    let reply = o.j2("purchase.order", "load", body).await;
    assert_eq!(reply.status, 200);
    let ids = reply.body()["ids"].clone();
    assert_eq!(
        reply.body(),
        json!({"ids": ids, "messages": [], "nextrow": 0})
    );
    let count = o
        .j2(
            "purchase.order",
            "search_count",
            json!({"domain": [["id", "in", ids]]}),
        )
        .await;
    assert_eq!(count.body(), json!(1));
    let unknown_arg = o.j2("res.partner", "search", json!({"domian": []})).await;
    assert_eq!(unknown_arg.status, 422);
    assert_eq!(unknown_arg.body()["name"], "builtins.TypeError");
    let fields = o
        .j2(
            "purchase.order.line",
            "fields_get",
            json!({"attributes": ["type"]}),
        )
        .await;
    assert_eq!(fields.body()["product_uom_id"], json!({"type": "many2one"}));
    assert!(fields.body().get("product_uom").is_none());
    let _: Value = fields.body();
}
