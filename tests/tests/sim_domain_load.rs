//! Domains, ordering and paging; `load` (external-id upsert, all-or-nothing); `ir.model.data`
//! uniqueness; `fields_get`.

mod sim_support;

use serde_json::{json, Value};
use sim_support::*;

async fn names(o: &Odoo, domain: Value) -> Vec<String> {
    let rows = o
        .ok(
            "res.partner",
            "search_read",
            json!([domain]),
            json!({"fields": ["name"], "order": "name asc"}),
        )
        .await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn comparison_and_pattern_operators() {
    let o = start().await;
    assert_eq!(
        names(&o, json!([["ref", "=", "V-WOOD"]])).await,
        ["Wood Corner"]
    );
    assert_eq!(
        names(&o, json!([["ref", "in", ["V-WOOD", "V-DECO"]]])).await,
        ["Deco Addict", "Wood Corner"]
    );
    assert_eq!(
        names(&o, json!([["name", "ilike", "corner"]])).await,
        ["Wood Corner"]
    );
    assert_eq!(
        names(&o, json!([["name", "like", "corner"]])).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(&o, json!([["name", "=like", "W%"]])).await,
        ["Wood Corner"]
    );
    assert_eq!(
        names(&o, json!([["name", "=ilike", "w%"]])).await,
        ["Wood Corner"]
    );
    assert_eq!(
        names(&o, json!([["ref", "=like", "V-_EAD_"]])).await,
        ["Ready Mat"]
    );
    let vendors = names(&o, json!([["supplier_rank", ">", 0]])).await;
    assert_eq!(vendors.len(), 5);
    assert_eq!(
        names(
            &o,
            json!([
                ["supplier_rank", ">=", 1],
                ["ref", "not in", ["V-WOOD"]],
                ["ref", "!=", "V-DECO"]
            ])
        )
        .await
        .len(),
        3
    );
    assert_eq!(
        names(&o, json!([["supplier_rank", "<", 1]])).await,
        ["Mitchell Admin", "YourCompany"]
    );
    assert_eq!(
        names(&o, json!([["supplier_rank", "<=", 0], ["ref", "=", false]]))
            .await
            .len(),
        2
    );
    assert_eq!(names(&o, json!([["ref", "!=", false]])).await.len(), 5);
    let cheap = o
        .ok(
            "product.product",
            "search_count",
            json!([[["standard_price", "<", 20.5]]]),
            json!({}),
        )
        .await;
    assert_eq!(cheap, 3);
}

/// Odoo's searches leave archived records out unless the domain names `active` or the
/// context sets `active_test` to false; reading one by id still works.
#[tokio::test]
async fn searches_leave_archived_records_out() {
    let o = start().await;
    let wood = o.find("res.partner", "ref", "V-WOOD").await;
    o.ok(
        "res.partner",
        "write",
        json!([[wood], {"active": false}]),
        json!({}),
    )
    .await;
    let by_ref = json!([[["ref", "=", "V-WOOD"]]]);
    assert_eq!(
        o.ok("res.partner", "search", by_ref.clone(), json!({}))
            .await,
        json!([])
    );
    assert_eq!(
        o.ok(
            "res.partner",
            "search",
            by_ref,
            json!({"context": {"active_test": false}})
        )
        .await,
        json!([wood])
    );
    assert_eq!(
        o.ok(
            "res.partner",
            "search",
            json!([[["ref", "=", "V-WOOD"], ["active", "=", false]]]),
            json!({})
        )
        .await,
        json!([wood])
    );
    assert_eq!(
        o.read1("res.partner", wood, &["active"]).await["active"],
        json!(false)
    );
}

#[tokio::test]
async fn prefix_operators() {
    let o = start().await;
    assert_eq!(
        names(
            &o,
            json!(["|", ["ref", "=", "V-WOOD"], ["ref", "=", "V-DECO"]])
        )
        .await,
        ["Deco Addict", "Wood Corner"]
    );
    assert_eq!(
        names(
            &o,
            json!(["&", ["supplier_rank", ">", 0], "!", ["name", "ilike", "o"]])
        )
        .await,
        ["Gemini Furniture", "Ready Mat"]
    );
    assert_eq!(
        names(
            &o,
            json!([
                "|",
                "&",
                ["ref", "=", "V-WOOD"],
                ["name", "=", "Wood Corner"],
                "!",
                ["supplier_rank", ">", 0]
            ])
        )
        .await,
        ["Mitchell Admin", "Wood Corner", "YourCompany"]
    );
    // Relations: by id, by name, through a dotted path.
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let po = o.order(gemini, &[(chair, 1.0, 1.0)]).await;
    for domain in [
        json!([["partner_id", "=", gemini]]),
        json!([["partner_id", "in", [gemini, 999]]]),
        json!([["partner_id", "ilike", "gemini"]]),
        json!([["partner_id.ref", "=", "V-GEMINI"]]),
        json!([["order_line.product_id.default_code", "=", "FURN_7777"]]),
        json!([["order_line", "!=", false]]),
    ] {
        assert_eq!(
            o.ok(
                "purchase.order",
                "search",
                json!([domain.clone()]),
                json!({})
            )
            .await,
            json!([po]),
            "{domain}"
        );
    }
}

#[tokio::test]
async fn invalid_domains_raise_value_errors() {
    let o = start().await;
    let env = o
        .err(
            "purchase.order",
            "search",
            json!([[["nope", "=", 1]]]),
            json!({}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "builtins.ValueError",
        "Invalid field purchase.order.nope in leaf ('nope', '=', 1)",
    );
    let env = o
        .err(
            "purchase.order",
            "search",
            json!([[["name", "~", "x"]]]),
            json!({}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "builtins.ValueError",
        "Invalid leaf ('name', '~', 'x')",
    );
    let env = o
        .err(
            "purchase.order",
            "search",
            json!([["|", ["name", "=", "x"]]]),
            json!({}),
        )
        .await;
    assert_eq!(env["error"]["data"]["name"], "builtins.ValueError");
    let env = o
        .err(
            "purchase.order",
            "search",
            json!([[]]),
            json!({"order": "nope desc"}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "builtins.ValueError",
        "Invalid field 'nope' on model 'purchase.order'",
    );
}

#[tokio::test]
async fn order_offset_limit_and_count() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(o.order(gemini, &[]).await);
    }
    // Default order of purchase.order is newest first.
    assert_eq!(
        o.ok("purchase.order", "search", json!([[]]), json!({}))
            .await,
        json!([ids[4], ids[3], ids[2], ids[1], ids[0]])
    );
    let page = o
        .ok(
            "purchase.order",
            "search_read",
            json!([[], ["name"]]),
            json!({"order": "write_date asc, id asc", "offset": 1, "limit": 2}),
        )
        .await;
    assert_eq!(
        page,
        json!([{"id": ids[1], "name": "P00002"}, {"id": ids[2], "name": "P00003"}])
    );
    assert_eq!(
        o.ok(
            "purchase.order",
            "search",
            json!([[], 3]),
            json!({"order": "name desc"})
        )
        .await,
        json!([ids[1], ids[0]])
    );
    assert_eq!(
        o.ok(
            "purchase.order",
            "search_count",
            json!([[["name", ">=", "P00003"]]]),
            json!({})
        )
        .await,
        3
    );
    let wd = o.read1("purchase.order", ids[0], &["write_date"]).await["write_date"].clone();
    assert_eq!(
        o.ok(
            "purchase.order",
            "search_count",
            json!([[["write_date", ">=", wd]]]),
            json!({})
        )
        .await,
        5
    );
}

fn load_fields() -> Value {
    json!([
        "id",
        "partner_id/.id",
        "origin",
        "order_line/id",
        "order_line/product_id/.id",
        "order_line/product_qty",
        "order_line/price_unit"
    ])
}

/// `load` of `rows` (in the columns of `load_fields`) on purchase.order.
async fn load_orders(o: &Odoo, rows: &Value) -> Value {
    o.ok(
        "purchase.order",
        "load",
        json!([load_fields(), rows]),
        json!({}),
    )
    .await
}

#[tokio::test]
async fn load_upserts_by_external_id() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await.to_string();
    let wood = o.find("res.partner", "ref", "V-WOOD").await.to_string();
    let chair = o
        .find("product.product", "default_code", "FURN_7777")
        .await
        .to_string();
    let pad = o
        .find("product.product", "default_code", "FURN_0002")
        .await
        .to_string();
    let rows = json!([
        [
            "odoo_sync.po_a",
            gemini,
            "ORD-A",
            "odoo_sync.pol_a1",
            chair,
            "2",
            "10.5"
        ],
        ["", "", "", "odoo_sync.pol_a2", pad, "1", "3"],
        [
            "odoo_sync.po_b",
            wood,
            "ORD-B",
            "odoo_sync.pol_b1",
            pad,
            "4",
            "2"
        ]
    ]);
    let first = o
        .ok(
            "purchase.order",
            "load",
            json!([load_fields(), rows.clone()]),
            json!({}),
        )
        .await;
    let ids = first["ids"].clone();
    assert_eq!(first, json!({"ids": ids, "messages": [], "nextrow": 0}));
    assert_eq!(ids.as_array().unwrap().len(), 2);
    let a = ids[0].as_i64().unwrap();
    let r = o
        .read1(
            "purchase.order",
            a,
            &["origin", "order_line", "amount_untaxed", "name"],
        )
        .await;
    assert_eq!(r["origin"], "ORD-A");
    assert_eq!(r["order_line"].as_array().unwrap().len(), 2);
    assert_eq!(r["amount_untaxed"], 24.0);
    // Same call again: same ids, nothing new.
    let again = load_orders(&o, &rows).await;
    assert_eq!(again["ids"], ids);
    assert_eq!(
        o.ok("purchase.order", "search_count", json!([[]]), json!({}))
            .await,
        2
    );
    assert_eq!(
        o.ok(
            "purchase.order.line",
            "search_count",
            json!([[]]),
            json!({})
        )
        .await,
        3
    );
    // A changed value updates the existing line.
    let changed = json!([[
        "odoo_sync.po_a",
        gemini,
        "ORD-A",
        "odoo_sync.pol_a1",
        chair,
        "2",
        "11"
    ]]);
    load_orders(&o, &changed).await;
    assert_eq!(
        o.ok(
            "purchase.order.line",
            "search_count",
            json!([[]]),
            json!({})
        )
        .await,
        3
    );
    // The rows carry the vendor, so (from 18) the chair is priced again from Gemini's price
    // list: its entry needs 12 units, so at 2 the price is the product's cost, 55, not the 11
    // of the row (see writing_the_vendor_prices_the_lines_again_from_18): 2 x 55 + 3.
    assert_eq!(
        o.read1("purchase.order", a, &["amount_untaxed"]).await["amount_untaxed"],
        113.0
    );
    // Lines without an external id are created again on every call.
    let anonymous = json!([["odoo_sync.po_a", gemini, "ORD-A", "", pad, "1", "1"]]);
    o.ok(
        "purchase.order",
        "load",
        json!([load_fields(), anonymous.clone()]),
        json!({}),
    )
    .await;
    load_orders(&o, &anonymous).await;
    assert_eq!(
        o.read1("purchase.order", a, &["order_line"]).await["order_line"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // The external ids are ordinary ir.model.data rows.
    let x = o
        .ok(
            "ir.model.data",
            "search_read",
            json!([[["module", "=", "odoo_sync"], ["name", "=", "po_a"]]]),
            json!({"fields": ["model", "res_id", "complete_name"]}),
        )
        .await;
    assert_eq!(x[0]["model"], "purchase.order");
    assert_eq!(x[0]["res_id"], a);
    assert_eq!(x[0]["complete_name"], "odoo_sync.po_a");
}

/// ir.model.data refuses names with a space (its `name_nospaces` constraint): `load` reports
/// PostgreSQL's message for the record and writes nothing.
#[tokio::test]
async fn load_refuses_an_external_id_with_a_space() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await.to_string();
    let chair = o
        .find("product.product", "default_code", "FURN_7777")
        .await
        .to_string();
    for (order, line) in [
        ("odoo_sync.po_a b", "odoo_sync.pol_ok"),
        ("odoo_sync.po_ok", "odoo_sync.pol_a b"),
    ] {
        let rows = json!([[order, gemini, "ORD-1", line, chair, "1", "1"]]);
        let res = load_orders(&o, &rows).await;
        assert_eq!(res["ids"], false, "{order} {line}");
        assert_eq!(res["messages"][0]["record"], 0);
        assert!(
            res["messages"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("violates check constraint \"ir_model_data_name_nospaces\""),
            "{res}"
        );
    }
    let count = o
        .ok("purchase.order", "search_count", json!([[]]), json!({}))
        .await;
    assert_eq!(count, 0, "nothing was written");
}

/// Odoo names every refused record, up to 10 errors when there is at least one per 10 records,
/// then stops with a warning.
#[tokio::test]
async fn load_stops_naming_refused_records_after_ten() {
    let o = start().await;
    let chair = o
        .find("product.product", "default_code", "FURN_7777")
        .await
        .to_string();
    let rows: Vec<Value> = (0..12)
        .map(|n| {
            json!([
                format!("odoo_sync.po_bad_{n}"),
                "999999",
                format!("ORD-{n}"),
                format!("odoo_sync.pol_bad_{n}"),
                chair,
                "1",
                "1"
            ])
        })
        .collect();
    let res = load_orders(&o, &json!(rows)).await;
    assert_eq!(res["ids"], false);
    let msgs = res["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 11, "{msgs:?}");
    assert!(msgs[..10].iter().all(|m| m["type"] == "error"));
    assert_eq!(msgs[10]["type"], "warning");
    assert_eq!(
        msgs[10]["message"],
        "Found more than 10 errors and more than one error per 10 records, interrupted to avoid showing too many errors."
    );
}

/// Up to 17 `db_id_for` finds a database id with `search`, which leaves archived records out,
/// so `load` refuses an archived vendor or product given by id; from 18 it asks
/// `browse(id).exists()` and takes them.
#[tokio::test]
async fn load_by_database_id_takes_archived_records_from_18() {
    for version in [16u8, 17, 18, 19] {
        let o = start_version(version).await;
        let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
        let chair = o
            .find("product.product", "default_code", "FURN_7777")
            .await
            .to_string();
        o.ok(
            "res.partner",
            "write",
            json!([[gemini], {"active": false}]),
            json!({}),
        )
        .await;
        let rows = json!([[
            "odoo_sync.po_archived",
            gemini.to_string(),
            "ORD-A",
            "odoo_sync.pol_archived",
            chair,
            "1",
            "1"
        ]]);
        let res = load_orders(&o, &rows).await;
        if version <= 17 {
            assert_eq!(res["ids"], false, "{version}: {res}");
            assert_eq!(
                res["messages"][0]["message"],
                format!("No matching record found for database id '{gemini}' in field 'Vendor'"),
                "{version}"
            );
        } else {
            assert_eq!(
                res["ids"].as_array().map(Vec::len),
                Some(1),
                "{version}: {res}"
            );
        }
    }
}

#[tokio::test]
async fn load_is_all_or_nothing() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await.to_string();
    let chair = o
        .find("product.product", "default_code", "FURN_7777")
        .await
        .to_string();
    let rows = json!([
        [
            "odoo_sync.po_ok",
            gemini,
            "ORD-1",
            "odoo_sync.pol_ok",
            chair,
            "1",
            "1"
        ],
        [
            "odoo_sync.po_bad",
            "999999",
            "ORD-2",
            "odoo_sync.pol_bad",
            chair,
            "1",
            "1"
        ],
        [
            "odoo_sync.po_bad2",
            "999998",
            "ORD-3",
            "odoo_sync.pol_bad2",
            chair,
            "1",
            "1"
        ]
    ]);
    let res = load_orders(&o, &rows).await;
    assert_eq!(res["ids"], false);
    assert_eq!(res["nextrow"], 0);
    // Every refused record is named, not only the first.
    let msgs = res["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0]["type"], "error");
    assert_eq!(
        msgs[0]["message"],
        "No matching record found for database id '999999' in field 'Vendor'"
    );
    assert_eq!(msgs[0]["record"], 1);
    assert_eq!(msgs[0]["rows"], json!({"from": 1, "to": 1}));
    assert_eq!(msgs[1]["record"], 2);
    // Nothing of that call was written, not even the valid first order or its external id.
    assert_eq!(
        o.ok("purchase.order", "search_count", json!([[]]), json!({}))
            .await,
        0
    );
    assert_eq!(
        o.ok(
            "ir.model.data",
            "search_count",
            json!([[["module", "=", "odoo_sync"]]]),
            json!({})
        )
        .await,
        0
    );
    // A bad column is reported the same way.
    let res = o
        .ok(
            "purchase.order",
            "load",
            json!([["id", "nope"], [["x.y", "1"]]]),
            json!({}),
        )
        .await;
    assert_eq!(res["ids"], false);
    assert_eq!(res["messages"][0]["type"], "error");
}

#[tokio::test]
async fn duplicate_external_id_is_a_validation_error() {
    let o = start().await;
    let vals =
        json!({"module": "odoo_sync", "name": "po_1", "model": "purchase.order", "res_id": 1});
    o.ok("ir.model.data", "create", json!([vals.clone()]), json!({}))
        .await;
    let env = o
        .err("ir.model.data", "create", json!([vals]), json!({}))
        .await;
    assert_eq!(
        env["error"]["data"]["name"],
        "odoo.exceptions.ValidationError"
    );
    assert!(env["error"]["data"]["message"]
        .as_str()
        .unwrap()
        .contains("ir_model_data_module_name_uniq_index"));
}

#[tokio::test]
async fn fields_get_describes_fields() {
    let o = start().await;
    let f = o
        .ok(
            "purchase.order",
            "fields_get",
            json!([]),
            json!({"attributes": ["type", "string", "required", "relation"]}),
        )
        .await;
    assert_eq!(
        f["partner_id"],
        json!({"type": "many2one", "string": "Vendor", "required": true, "relation": "res.partner"})
    );
    assert_eq!(
        f["order_line"],
        json!({"type": "one2many", "string": "Order Lines", "required": false, "relation": "purchase.order.line"})
    );
    assert_eq!(f["amount_total"]["type"], "monetary");
    assert_eq!(f["write_date"]["type"], "datetime");
    assert!(
        f.get("receipt_status").is_none(),
        "purchase_stock is not installed"
    );
    assert!(f.get("note").is_some() && f.get("notes").is_none());
    let one = o
        .ok(
            "purchase.order",
            "fields_get",
            json!([["state"]]),
            json!({}),
        )
        .await;
    assert_eq!(one.as_object().unwrap().len(), 1);
    assert!(one["state"]["selection"].is_array());
}
