//! Purchase behaviour: sequence, timestamps, computed amounts, product defaults, the vendor
//! price-list rule, the state machine and its errors, x2many commands, version switches.

mod sim_support;

use odoo_sync_tests::sim::seed::{Seed, SeedUser};
use odoo_sync_tests::sim::SimConfig;
use serde_json::{json, Value};
use sim_support::*;

#[tokio::test]
async fn create_list_gives_ids_sequence_names_and_shared_timestamps() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let ids = o
        .ok(
            "purchase.order",
            "create",
            json!([[{"partner_id": gemini}, {"partner_id": gemini}]]),
            json!({}),
        )
        .await;
    let ids: Vec<i64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let single = o
        .ok(
            "purchase.order",
            "create",
            json!([{"partner_id": gemini}]),
            json!({}),
        )
        .await;
    assert!(single.is_i64(), "one dict gives one id: {single}");
    let rows = o
        .ok(
            "purchase.order",
            "read",
            json!([ids]),
            json!({"fields": ["name", "create_date", "write_date", "date_order"]}),
        )
        .await;
    assert_eq!(rows[0]["name"], "P00001");
    assert_eq!(rows[1]["name"], "P00002");
    assert_eq!(
        o.read1("purchase.order", single.as_i64().unwrap(), &["name"])
            .await["name"],
        "P00003"
    );
    for r in rows.as_array().unwrap() {
        assert_datetime(&r["create_date"]);
        assert_datetime(&r["write_date"]);
        assert_datetime(&r["date_order"]);
    }
    // Rows written by one call share the timestamp.
    assert_eq!(rows[0]["write_date"], rows[1]["write_date"]);
    assert_eq!(rows[0]["create_date"], rows[0]["write_date"]);
    // An explicit name is kept and does not consume the sequence.
    let named = o
        .ok(
            "purchase.order",
            "create",
            json!([{"partner_id": gemini, "name": "MANUAL-1"}]),
            json!({}),
        )
        .await;
    assert_eq!(
        o.read1("purchase.order", named.as_i64().unwrap(), &["name"])
            .await["name"],
        "MANUAL-1"
    );
}

#[tokio::test]
async fn defaults_many2one_pairs_and_false_for_empty() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let po = o.order(gemini, &[]).await;
    let r = o
        .read1(
            "purchase.order",
            po,
            &[
                "partner_id",
                "partner_ref",
                "origin",
                "currency_id",
                "company_id",
                "user_id",
                "state",
                "date_approve",
                "date_planned",
                "note",
                "locked",
                "order_line",
                "amount_total",
            ],
        )
        .await;
    assert_eq!(
        r,
        json!({"id": po, "partner_id": [gemini, "Gemini Furniture"], "partner_ref": false, "origin": false,
               "currency_id": [1, "USD"], "company_id": [1, "YourCompany"], "user_id": [2, "Mitchell Admin"],
               "state": "draft", "date_approve": false, "date_planned": false, "note": false, "locked": false,
               "order_line": [], "amount_total": 0.0})
    );
}

#[tokio::test]
async fn line_is_filled_from_the_product_and_amounts_include_tax() {
    let o = start().await;
    let azure = o.find("res.partner", "ref", "V-AZURE").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let pad = o.find("product.product", "default_code", "FURN_0002").await;
    let po = o
        .order(azure, &[(chair, 2.0, 10.0), (pad, 3.0, 33.35)])
        .await;
    let lines = o
        .ok("purchase.order.line", "search_read", json!([[["order_id", "=", po]]]),
            json!({"fields": ["name", "product_uom_id", "tax_ids", "price_subtotal", "price_tax", "price_total", "date_planned", "state", "partner_id"], "order": "id"}))
        .await;
    let tax15 = o.find("account.tax", "name", "15%").await;
    assert_eq!(lines[0]["name"], "[FURN_7777] Office Chair");
    assert_eq!(lines[0]["product_uom_id"], json!([1, "Units"]));
    assert_eq!(lines[0]["tax_ids"], json!([tax15]));
    assert_eq!(lines[0]["price_subtotal"], 20.0);
    assert_eq!(lines[0]["price_tax"], 3.0);
    assert_eq!(lines[0]["price_total"], 23.0);
    assert_eq!(lines[0]["state"], "draft");
    assert_eq!(lines[0]["partner_id"], json!([azure, "Azure Interior"]));
    assert_datetime(&lines[0]["date_planned"]);
    // 3 × 33.35 = 100.05; 15 % = 15.0075 → 15.01 (half away from zero).
    assert_eq!(lines[1]["price_subtotal"], 100.05);
    assert_eq!(lines[1]["price_tax"], 15.01);
    let r = o
        .read1(
            "purchase.order",
            po,
            &["amount_untaxed", "amount_tax", "amount_total", "order_line"],
        )
        .await;
    assert_eq!(r["amount_untaxed"], 120.05);
    assert_eq!(r["amount_tax"], 18.01);
    assert_eq!(r["amount_total"], 138.06);
    assert_eq!(r["order_line"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn price_unit_defaults_to_vendor_price_or_cost() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let po = o.order(gemini, &[]).await;
    let line = |qty: f64| json!([[po], {"order_line": [[0, 0, {"product_id": chair, "product_qty": qty}]]}]);
    o.ok("purchase.order", "write", line(12.0), json!({})).await;
    o.ok("purchase.order", "write", line(2.0), json!({})).await;
    let prices = o
        .ok(
            "purchase.order.line",
            "search_read",
            json!([[["order_id", "=", po]]]),
            json!({"fields": ["price_unit"], "order": "id"}),
        )
        .await;
    assert_eq!(prices[0]["price_unit"], 50.0, "12 reaches Gemini's min_qty");
    assert_eq!(
        prices[1]["price_unit"], 55.0,
        "2 does not: the product cost"
    );
}

#[tokio::test]
async fn quantity_write_without_price_applies_the_vendor_price_list() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let wood = o.find("res.partner", "ref", "V-WOOD").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let po = o.order(gemini, &[(chair, 3.0, 12.5)]).await;
    let line = o
        .ok(
            "purchase.order",
            "read",
            json!([[po]]),
            json!({"fields": ["order_line"]}),
        )
        .await[0]["order_line"][0]
        .as_i64()
        .unwrap();
    assert_eq!(
        o.read1("purchase.order.line", line, &["price_unit"]).await["price_unit"],
        12.5
    );
    // Seen on 19.0: qty 3 → 9 turned 12.5 into 55.0, the cost (min_qty 12 not reached).
    o.ok(
        "purchase.order.line",
        "write",
        json!([[line], {"product_qty": 9}]),
        json!({}),
    )
    .await;
    assert_eq!(
        o.read1("purchase.order.line", line, &["price_unit"]).await["price_unit"],
        55.0
    );
    o.ok(
        "purchase.order.line",
        "write",
        json!([[line], {"product_qty": 12}]),
        json!({}),
    )
    .await;
    assert_eq!(
        o.read1("purchase.order.line", line, &["price_unit"]).await["price_unit"],
        50.0
    );
    // Sending the price with the quantity keeps it.
    o.ok(
        "purchase.order.line",
        "write",
        json!([[line], {"product_qty": 13, "price_unit": 12.5}]),
        json!({}),
    )
    .await;
    assert_eq!(
        o.read1(
            "purchase.order.line",
            line,
            &["price_unit", "price_subtotal"]
        )
        .await,
        json!({"id": line, "price_unit": 12.5, "price_subtotal": 162.5})
    );
    // A vendor without an entry for the product keeps the manual price.
    let other = o.order(wood, &[(chair, 3.0, 12.5)]).await;
    let l2 = o.read1("purchase.order", other, &["order_line"]).await["order_line"][0]
        .as_i64()
        .unwrap();
    o.ok(
        "purchase.order.line",
        "write",
        json!([[l2], {"product_qty": 9}]),
        json!({}),
    )
    .await;
    assert_eq!(
        o.read1("purchase.order.line", l2, &["price_unit"]).await["price_unit"],
        12.5
    );
}

/// Of the vendor's price-list entries a quantity reaches, Odoo's _select_seller takes the
/// cheapest: by price after the entry's discount from 17 (then sequence, id), by price on 16.
/// Not the entry of the highest minimum quantity.
#[tokio::test]
async fn the_cheapest_price_list_entry_the_quantity_reaches_applies() {
    for (version, price, discount) in [(16, 20.0, None), (17, 21.0, Some(10.0))] {
        let o = start_version(version).await;
        let wood = o.find("res.partner", "ref", "V-WOOD").await;
        let chair = o.find("product.product", "default_code", "FURN_7777").await;
        let tmpl = o
            .read1("product.product", chair, &["product_tmpl_id"])
            .await["product_tmpl_id"][0]
            .as_i64()
            .unwrap();
        let entry = |min: f64, price: f64, discount: f64| {
            let mut vals = json!({"partner_id": wood, "product_tmpl_id": tmpl,
                                  "min_qty": min, "price": price});
            if version >= 17 {
                vals["discount"] = json!(discount);
            }
            vals
        };
        // A dearer tier from 10 up, and (17+) a discounted one from 5 up.
        o.ok(
            "product.supplierinfo",
            "create",
            json!([[
                entry(1.0, 20.0, 0.0),
                entry(10.0, 22.0, 0.0),
                entry(5.0, 21.0, 10.0)
            ]]),
            json!({}),
        )
        .await;
        let po = o.order(wood, &[(chair, 1.0, 99.0)]).await;
        let line = o.first_line_id(po).await;
        o.ok(
            "purchase.order.line",
            "write",
            json!([[line], {"product_qty": 12}]),
            json!({}),
        )
        .await;
        let fields: &[&str] = if version >= 17 {
            &["price_unit", "discount"]
        } else {
            &["price_unit"]
        };
        let r = o.read1("purchase.order.line", line, fields).await;
        assert_eq!(r["price_unit"], json!(price), "{version}: {r}");
        if let Some(d) = discount {
            assert_eq!(r["discount"], json!(d), "{version}: {r}");
        }
    }
}

/// From 18.0 the lines' prices are computed from the order's vendor too, and `write` marks
/// what depends on every field it is given, changed or not (read in Odoo's source: 18.0 adds
/// `order_id.partner_id` to the depends of `_compute_price_unit_and_date_planned_and_name`;
/// `BaseModel.write` calls `modified(vals)` for all of `vals`). Writing the vendor, even the
/// same one, prices every line again from the price list at the end of the call, over a price
/// written in the same call; a price alone is kept. 17 has no such dependency.
#[tokio::test]
async fn writing_the_vendor_prices_the_lines_again_from_18() {
    for (version, expected) in [(17, 410.0), (18, 480.0), (19, 480.0)] {
        let o = start_version(version).await;
        let wood = o.find("res.partner", "ref", "V-WOOD").await;
        let desk = o.find("product.product", "default_code", "FURN_8220").await;
        let po = o.order(wood, &[(desk, 2.0, 400.0)]).await;
        let line = o.read1("purchase.order", po, &["order_line"]).await["order_line"][0]
            .as_i64()
            .unwrap();
        assert_eq!(
            o.read1("purchase.order.line", line, &["price_unit"]).await["price_unit"],
            400.0,
            "a price given at create is kept ({version})"
        );
        o.ok(
            "purchase.order",
            "write",
            json!([[po], {"partner_id": wood, "order_line": [[1, line, {"price_unit": 410}]]}]),
            json!({}),
        )
        .await;
        assert_eq!(
            o.read1("purchase.order.line", line, &["price_unit"]).await["price_unit"],
            expected,
            "the same vendor written again ({version})"
        );
        o.ok(
            "purchase.order",
            "write",
            json!([[po], {"order_line": [[1, line, {"price_unit": 420}]]}]),
            json!({}),
        )
        .await;
        assert_eq!(
            o.read1("purchase.order", po, &["amount_untaxed"]).await["amount_untaxed"],
            840.0,
            "a price alone is kept ({version})"
        );
    }
}

#[tokio::test]
async fn a_lines_discount_comes_from_the_vendor_price_list_with_its_price_from_17() {
    for version in [17u8, 18, 19] {
        let o = start_version(version).await;
        let wood = o.find("res.partner", "ref", "V-WOOD").await;
        let desk = o.find("product.product", "default_code", "FURN_8220").await;
        let entries = o
            .ok(
                "product.supplierinfo",
                "search",
                json!([[["partner_id", "=", wood]]]),
                json!({}),
            )
            .await;
        o.ok(
            "product.supplierinfo",
            "write",
            json!([entries, {"discount": 10}]),
            json!({}),
        )
        .await;
        let discount = |line: i64| {
            let o = &o;
            async move {
                o.read1("purchase.order.line", line, &["discount"]).await["discount"]
                    .as_f64()
                    .unwrap()
            }
        };
        // At create the entry's discount applies, even with a price given; a discount given
        // with the line is kept.
        let po = o.order(wood, &[(desk, 2.0, 400.0)]).await;
        let line = o.read1("purchase.order", po, &["order_line"]).await["order_line"][0]
            .as_i64()
            .unwrap();
        assert_eq!(discount(line).await, 10.0, "create ({version})");
        assert_eq!(
            o.read1("purchase.order", po, &["amount_untaxed"]).await["amount_untaxed"],
            720.0,
            "the subtotal is discounted ({version})"
        );
        o.ok(
            "purchase.order",
            "write",
            json!([[po], {"order_line": [[0, 0, {"product_id": desk, "product_qty": 1,
                                                  "price_unit": 400, "discount": 0}]]}]),
            json!({}),
        )
        .await;
        let lines = o.read1("purchase.order", po, &["order_line"]).await["order_line"].clone();
        assert_eq!(
            discount(lines[1].as_i64().unwrap()).await,
            0.0,
            "given ({version})"
        );

        // A purchaser's discount stays until the quantity changes without one: (write,
        // discount after it).
        for (vals, after) in [
            (json!({"discount": 3}), 3.0),
            (json!({"price_unit": 390}), 3.0),
            (
                json!({"product_qty": 3, "price_unit": 390, "discount": 3}),
                3.0,
            ),
            (json!({"product_qty": 4, "price_unit": 390}), 10.0),
            (json!({"discount": 3}), 3.0),
        ] {
            o.ok(
                "purchase.order.line",
                "write",
                json!([[line], vals]),
                json!({}),
            )
            .await;
            assert_eq!(discount(line).await, after, "{vals} ({version})");
        }

        // From 18 writing the vendor applies the entry's discount over one written with it.
        o.ok(
            "purchase.order",
            "write",
            json!([[po], {"partner_id": wood, "order_line": [[1, line, {"discount": 5}]]}]),
            json!({}),
        )
        .await;
        let expected = if version >= 18 { 10.0 } else { 5.0 };
        assert_eq!(discount(line).await, expected, "vendor written ({version})");
    }
}

#[tokio::test]
async fn writing_a_line_moves_the_order_write_date() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let po = o.order(gemini, &[(chair, 1.0, 5.0)]).await;
    let before = o
        .read1("purchase.order", po, &["write_date", "order_line"])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let line = before["order_line"][0].as_i64().unwrap();
    o.ok(
        "purchase.order.line",
        "write",
        json!([[line], {"price_unit": 6.0}]),
        json!({}),
    )
    .await;
    let after = o
        .read1("purchase.order", po, &["write_date", "amount_untaxed"])
        .await;
    let line_wd = o.read1("purchase.order.line", line, &["write_date"]).await["write_date"].clone();
    assert!(after["write_date"].as_str() > before["write_date"].as_str());
    assert_eq!(after["write_date"], line_wd, "same transaction, same stamp");
    assert_eq!(after["amount_untaxed"], 6.0);
}

#[tokio::test]
async fn state_machine_and_its_user_errors() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let pad = o.find("product.product", "default_code", "FURN_0002").await;
    let po = o.order(gemini, &[(chair, 1.0, 5.0)]).await;
    // Drafts cannot be deleted either.
    let env = o
        .err("purchase.order", "unlink", json!([[po]]), json!({}))
        .await;
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.UserError",
        "In order to delete a purchase order, you must cancel it first.",
    );
    assert_eq!(
        o.ok("purchase.order", "button_confirm", json!([[po]]), json!({}))
            .await,
        json!(true)
    );
    let r = o
        .read1(
            "purchase.order",
            po,
            &["state", "date_approve", "order_line"],
        )
        .await;
    assert_eq!(r["state"], "purchase");
    assert_datetime(&r["date_approve"]);
    let line = r["order_line"][0].as_i64().unwrap();
    // Adding a line to a confirmed order is accepted; deleting one is not.
    o.ok("purchase.order", "write", json!([[po], {"order_line": [[0, 0, {"product_id": pad, "product_qty": 1, "price_unit": 2}]]}]), json!({})).await;
    let msg =
        "Cannot delete a purchase order line which is in state \u{201c}Purchase Order\u{201d}.";
    let env = o
        .err("purchase.order.line", "unlink", json!([[line]]), json!({}))
        .await;
    assert_rpc_error(&env, 0, "odoo.exceptions.UserError", msg);
    let env = o
        .err(
            "purchase.order",
            "write",
            json!([[po], {"order_line": [[2, line, 0]]}]),
            json!({}),
        )
        .await;
    assert_rpc_error(&env, 0, "odoo.exceptions.UserError", msg);
    let env = o
        .err("purchase.order", "unlink", json!([[po]]), json!({}))
        .await;
    assert_eq!(env["error"]["data"]["name"], "odoo.exceptions.UserError");
    // A failed call leaves no trace: the line is still there.
    assert_eq!(
        o.read1("purchase.order", po, &["order_line"]).await["order_line"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        o.call("purchase.order", "button_cancel", json!([[po]]), json!({}))
            .await,
        json!({"jsonrpc": "2.0", "id": 1})
    );
    assert_eq!(
        o.read1("purchase.order", po, &["state"]).await["state"],
        "cancel"
    );
    assert_eq!(
        o.read1("purchase.order.line", line, &["state"]).await["state"],
        "cancel"
    );
    assert_eq!(
        o.ok("purchase.order", "button_draft", json!([[po]]), json!({}))
            .await,
        json!({})
    );
    assert_eq!(
        o.read1("purchase.order", po, &["state"]).await["state"],
        "draft"
    );
    o.call("purchase.order", "button_cancel", json!([[po]]), json!({}))
        .await;
    assert_eq!(
        o.ok("purchase.order", "unlink", json!([[po]]), json!({}))
            .await,
        json!(true)
    );
    assert_eq!(
        o.ok("purchase.order", "read", json!([[po]]), json!({}))
            .await,
        json!([])
    );
    assert_eq!(
        o.ok("purchase.order.line", "read", json!([[line]]), json!({}))
            .await,
        json!([])
    );
}

/// The price-list entries of vendor `partner`, oldest first.
async fn vendor_entries(o: &Odoo, partner: i64) -> Vec<Value> {
    o.ok(
        "product.supplierinfo",
        "search_read",
        json!([[["partner_id", "=", partner]]]),
        json!({"fields": ["product_tmpl_id", "price", "min_qty", "sequence", "delay"], "order": "id"}),
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
}

/// `button_confirm` lists the order's vendor on each product it did not list yet
/// (`_add_supplier_to_product`): at the line's price for a quantity of 1, after the product's
/// other entries; a later line of that vendor and product without a price takes it.
#[tokio::test]
async fn confirming_an_order_adds_its_vendor_to_the_products_price_lists() {
    for version in [16u8, 18, 19] {
        let o = start_version(version).await;
        let wood = o.find("res.partner", "ref", "V-WOOD").await;
        let chair = o.find("product.product", "default_code", "FURN_0269").await;
        let desk = o.find("product.product", "default_code", "FURN_8220").await;
        assert_eq!(
            vendor_entries(&o, wood).await.len(),
            2,
            "the seed's ({version})"
        );
        let po = o
            .order(wood, &[(chair, 2.0, 130.0), (desk, 1.0, 470.0)])
            .await;
        o.ok("purchase.order", "button_confirm", json!([[po]]), json!({}))
            .await;
        let after = vendor_entries(&o, wood).await;
        assert_eq!(
            after.len(),
            3,
            "one for the chair only ({version}): {after:?}"
        );
        let chair_tmpl = o
            .read1("product.product", chair, &["product_tmpl_id"])
            .await["product_tmpl_id"][0]
            .clone();
        assert_eq!(after[2]["product_tmpl_id"][0], chair_tmpl, "({version})");
        assert_eq!(after[2]["price"], 130.0, "({version})");
        assert_eq!(after[2]["min_qty"], 1.0, "({version})");
        assert_eq!(after[2]["delay"], 0, "({version})");

        // Listed now: a new line of the chair from this vendor takes that price, and a second
        // confirmation at another price adds nothing.
        let po2 = o
            .ok(
                "purchase.order",
                "create",
                json!([{"partner_id": wood, "order_line": [[0, 0, {"product_id": chair, "product_qty": 3}]]}]),
                json!({}),
            )
            .await;
        let line = o
            .read1("purchase.order", po2.as_i64().unwrap(), &["order_line"])
            .await["order_line"][0]
            .as_i64()
            .unwrap();
        let price =
            o.read1("purchase.order.line", line, &["price_unit"]).await["price_unit"].clone();
        assert_eq!(price, 130.0, "({version})");
        o.ok(
            "purchase.order.line",
            "write",
            json!([[line], {"price_unit": 99}]),
            json!({}),
        )
        .await;
        o.ok(
            "purchase.order",
            "button_confirm",
            json!([[po2]]),
            json!({}),
        )
        .await;
        assert_eq!(vendor_entries(&o, wood).await.len(), 3, "({version})");
    }
}

#[tokio::test]
async fn two_step_approval_needs_a_manager() {
    let mut seed = Seed::default_data();
    seed.company.po_double_validation = "two_step".into();
    seed.company.po_double_validation_amount = 100.into();
    seed.users.push(SeedUser {
        login: "buyer".into(),
        password: "buyer".into(),
        api_key: None,
        name: Some("Buyer".into()),
        purchase_manager: false,
        denied_models: vec![],
    });
    let o = start_with(SimConfig {
        seed,
        ..SimConfig::default()
    })
    .await;
    let buyer =
        o.c.jsonrpc("common", "login", json!([DB, "buyer", "buyer"]))
            .await
            .unwrap()["result"]
            .as_i64()
            .unwrap();
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let desk = o.find("product.product", "default_code", "FURN_8220").await;
    let po = o.order(gemini, &[(desk, 1.0, 500.0)]).await;
    let as_buyer = |method: &'static str| {
        let c = o.c.clone();
        async move {
            c.execute_kw(
                DB,
                buyer,
                "buyer",
                "purchase.order",
                method,
                json!([[po]]),
                json!({}),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(as_buyer("button_confirm").await["result"], true);
    assert_eq!(
        o.read1("purchase.order", po, &["state"]).await["state"],
        "to approve"
    );
    assert_eq!(as_buyer("button_approve").await["result"], json!({}));
    assert_eq!(
        o.read1("purchase.order", po, &["state"]).await["state"],
        "to approve"
    );
    o.ok("purchase.order", "button_approve", json!([[po]]), json!({}))
        .await;
    assert_eq!(
        o.read1("purchase.order", po, &["state"]).await["state"],
        "purchase"
    );
    // Small orders need no manager.
    let small = o.order(gemini, &[(desk, 1.0, 10.0)]).await;
    o.c.execute_kw(
        DB,
        buyer,
        "buyer",
        "purchase.order",
        "button_confirm",
        json!([[small]]),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        o.read1("purchase.order", small, &["state"]).await["state"],
        "purchase"
    );
}

#[tokio::test]
async fn missing_required_fields_are_validation_errors() {
    let o = start().await;
    let env = o
        .err(
            "purchase.order",
            "create",
            json!([{"origin": "x"}]),
            json!({}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.ValidationError",
        "Missing required value for the field 'Vendor' (partner_id)",
    );
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let env = o
        .err(
            "purchase.order",
            "create",
            json!([{"partner_id": gemini, "order_line": [[0, 0, {"product_qty": 1}]]}]),
            json!({}),
        )
        .await;
    assert_eq!(
        env["error"]["data"]["name"],
        "odoo.exceptions.ValidationError"
    );
    // Nothing of the failed call was kept (no order, no sequence number used).
    assert_eq!(
        o.ok("purchase.order", "search_count", json!([[]]), json!({}))
            .await,
        0
    );
    let po = o.order(gemini, &[]).await;
    assert_eq!(
        o.read1("purchase.order", po, &["name"]).await["name"],
        "P00001"
    );
    let env = o
        .err(
            "purchase.order",
            "create",
            json!([{"partner_id": 424242}]),
            json!({}),
        )
        .await;
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.MissingError",
        "Record does not exist or has been deleted.\n(Record: res.partner(424242,), User: 2)",
    );
    let o17 = start_version(17).await;
    let env = o17
        .err(
            "purchase.order",
            "create",
            json!([{"origin": "x"}]),
            json!({}),
        )
        .await;
    let msg = env["error"]["data"]["message"].as_str().unwrap();
    assert_eq!(
        env["error"]["data"]["name"],
        "odoo.exceptions.ValidationError"
    );
    assert!(
        msg.contains("a mandatory field is not set") && msg.contains("Field: Vendor (partner_id)"),
        "{msg}"
    );
}

#[tokio::test]
async fn one2many_commands_zero_to_six() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let pad = o.find("product.product", "default_code", "FURN_0002").await;
    let po = o.order(gemini, &[(chair, 1.0, 1.0), (pad, 1.0, 2.0)]).await;
    let other = o.order(gemini, &[(pad, 1.0, 9.0)]).await;
    let lines = |id: i64| {
        let o = &o;
        async move {
            let v = o.read1("purchase.order", id, &["order_line"]).await["order_line"].clone();
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect::<Vec<i64>>()
        }
    };
    let l = lines(po).await;
    let w = |cmds: Value| {
        o.ok(
            "purchase.order",
            "write",
            json!([[po], {"order_line": cmds}]),
            json!({}),
        )
    };
    w(json!([[1, l[0], {"product_qty": 4}]])).await;
    assert_eq!(
        o.read1("purchase.order.line", l[0], &["product_qty"]).await["product_qty"],
        4.0
    );
    w(json!([[2, l[1], 0]])).await;
    assert_eq!(lines(po).await, vec![l[0]]);
    let moved = lines(other).await[0];
    w(json!([[4, moved, 0]])).await;
    assert_eq!(lines(po).await, vec![l[0], moved]);
    assert_eq!(lines(other).await, Vec::<i64>::new());
    w(json!([[3, moved, 0]])).await;
    assert_eq!(lines(po).await, vec![l[0]]);
    w(json!([[0, 0, {"product_id": pad, "product_qty": 2, "price_unit": 3}], [0, 0, {"product_id": pad, "product_qty": 1, "price_unit": 1}]])).await;
    let now = lines(po).await;
    assert_eq!(now.len(), 3);
    w(json!([[6, 0, [now[1]]]])).await;
    assert_eq!(lines(po).await, vec![now[1]]);
    assert_eq!(
        o.read1("purchase.order", po, &["amount_untaxed"]).await["amount_untaxed"],
        6.0
    );
    w(json!([[5, 0, 0]])).await;
    assert_eq!(lines(po).await, Vec::<i64>::new());
    assert_eq!(
        o.read1("purchase.order", po, &["amount_total"]).await["amount_total"],
        0.0
    );
}

#[tokio::test]
async fn deleting_purchase_records_already_deleted_is_a_missing_error() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let pad = o.find("product.product", "default_code", "FURN_0002").await;
    let po = o.order(gemini, &[(chair, 1.0, 1.0), (pad, 1.0, 2.0)]).await;
    let gone = o.first_line_id(po).await;
    o.ok("purchase.order.line", "unlink", json!([[gone]]), json!({}))
        .await;
    let missing = format!(
        "Record does not exist or has been deleted.\n(Record: purchase.order.line({gone},), User: 2)"
    );
    // The line's `ondelete` check reads its order: a deleted line cannot be read.
    let env = o
        .err("purchase.order.line", "unlink", json!([[gone]]), json!({}))
        .await;
    assert_rpc_error(&env, 0, "odoo.exceptions.MissingError", &missing);
    // The same through the order's lines, and nothing of the call is kept.
    let kept = o.first_line_id(po).await;
    let env = o
        .err(
            "purchase.order",
            "write",
            json!([[po], {"order_line": [[1, kept, {"product_qty": 5}], [2, gone, 0]]}]),
            json!({}),
        )
        .await;
    assert_rpc_error(&env, 0, "odoo.exceptions.MissingError", &missing);
    // `[3, id]` on a one2many whose inverse is required deletes the line too.
    let env = o
        .err(
            "purchase.order",
            "write",
            json!([[po], {"order_line": [[1, kept, {"product_qty": 5}], [3, gone, 0]]}]),
            json!({}),
        )
        .await;
    assert_rpc_error(&env, 0, "odoo.exceptions.MissingError", &missing);
    assert_eq!(
        o.read1("purchase.order.line", kept, &["product_qty"]).await["product_qty"],
        1.0
    );
    // An order already deleted: its `ondelete` check reads its state.
    o.ok("purchase.order", "button_cancel", json!([[po]]), json!({}))
        .await;
    o.ok("purchase.order", "unlink", json!([[po]]), json!({}))
        .await;
    let env = o
        .err("purchase.order", "unlink", json!([[po]]), json!({}))
        .await;
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.MissingError",
        &format!(
            "Record does not exist or has been deleted.\n(Record: purchase.order({po},), User: 2)"
        ),
    );
    // Models without such a check pass over deleted ids, as Odoo's generic `unlink` does.
    let partner = o
        .ok(
            "res.partner",
            "create",
            json!([{"name": "Short-lived"}]),
            json!({}),
        )
        .await;
    for _ in 0..2 {
        assert_eq!(
            o.ok("res.partner", "unlink", json!([[partner]]), json!({}))
                .await,
            true
        );
    }
}

#[tokio::test]
async fn many2many_commands_on_taxes() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let t15 = o.find("account.tax", "name", "15%").await;
    let t5 = o.find("account.tax", "name", "5%").await;
    let po = o.order(gemini, &[(chair, 1.0, 100.0)]).await;
    let line = o.read1("purchase.order", po, &["order_line"]).await["order_line"][0]
        .as_i64()
        .unwrap();
    let set = |v: Value| {
        o.ok(
            "purchase.order.line",
            "write",
            json!([[line], {"tax_ids": v}]),
            json!({}),
        )
    };
    let taxes = || async {
        o.read1("purchase.order.line", line, &["tax_ids", "price_tax"])
            .await
    };
    set(json!([[4, t5, 0]])).await;
    assert_eq!(
        taxes().await,
        json!({"id": line, "tax_ids": [t15, t5], "price_tax": 20.0})
    );
    set(json!([[3, t15, 0]])).await;
    assert_eq!(taxes().await["tax_ids"], json!([t5]));
    set(json!([[5, 0, 0]])).await;
    assert_eq!(
        taxes().await,
        json!({"id": line, "tax_ids": [], "price_tax": 0.0})
    );
    set(json!([[6, 0, [t15]]])).await;
    assert_eq!(taxes().await["price_tax"], 15.0);
    set(json!([t5])).await;
    assert_eq!(taxes().await["tax_ids"], json!([t5]));
    assert_eq!(
        o.read1("purchase.order", po, &["amount_tax"]).await["amount_tax"],
        5.0
    );
}

#[tokio::test]
async fn version_16_names_and_done_state() {
    let mut seed = Seed::default_data();
    seed.company.lock_confirmed_po = true;
    let o = start_with(SimConfig {
        version: 16,
        seed,
        ..SimConfig::default()
    })
    .await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let po = o.order(gemini, &[(chair, 1.0, 5.0)]).await;
    let line = o
        .read1("purchase.order", po, &["order_line", "notes"])
        .await;
    assert_eq!(line["notes"], false);
    let l = line["order_line"][0].as_i64().unwrap();
    let r = o
        .read1("purchase.order.line", l, &["product_uom", "taxes_id"])
        .await;
    assert_eq!(r["product_uom"], json!([1, "Units"]));
    assert_eq!(r["taxes_id"].as_array().unwrap().len(), 1);
    for (model, field) in [
        ("purchase.order", "note"),
        ("purchase.order", "locked"),
        ("purchase.order.line", "product_uom_id"),
        ("purchase.order.line", "tax_ids"),
        ("purchase.order.line", "discount"),
    ] {
        let env = o
            .err(
                model,
                "search_read",
                json!([[]]),
                json!({"fields": [field]}),
            )
            .await;
        assert_rpc_error(
            &env,
            200,
            "builtins.ValueError",
            &format!("Invalid field '{field}' on model '{model}'"),
        );
    }
    o.ok("purchase.order", "button_confirm", json!([[po]]), json!({}))
        .await;
    assert_eq!(
        o.read1("purchase.order", po, &["state"]).await["state"],
        "done"
    );
    o.call("purchase.order", "button_unlock", json!([[po]]), json!({}))
        .await;
    assert_eq!(
        o.read1("purchase.order", po, &["state"]).await["state"],
        "purchase"
    );
    // Before 19, button_cancel checks only for vendor bills: a locked order is cancelled too.
    o.call("purchase.order", "button_done", json!([[po]]), json!({}))
        .await;
    o.call("purchase.order", "button_cancel", json!([[po]]), json!({}))
        .await;
    assert_eq!(
        o.read1("purchase.order", po, &["state"]).await["state"],
        "cancel"
    );
    let states = o
        .ok(
            "purchase.order",
            "fields_get",
            json!([["state"]]),
            json!({"attributes": ["selection"]}),
        )
        .await;
    assert!(states["state"]["selection"]
        .as_array()
        .unwrap()
        .contains(&json!(["done", "Locked"])));
}

#[tokio::test]
async fn version_19_locks_with_a_flag() {
    let mut seed = Seed::default_data();
    seed.company.lock_confirmed_po = true;
    let o = start_with(SimConfig {
        seed,
        ..SimConfig::default()
    })
    .await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let po = o.order(gemini, &[]).await;
    o.ok("purchase.order", "button_confirm", json!([[po]]), json!({}))
        .await;
    assert_eq!(
        o.read1("purchase.order", po, &["state", "locked"]).await,
        json!({"id": po, "state": "purchase", "locked": true})
    );
    // 19 refuses to cancel a locked order.
    let env = o
        .err("purchase.order", "button_cancel", json!([[po]]), json!({}))
        .await;
    assert_rpc_error(
        &env,
        0,
        "odoo.exceptions.UserError",
        "Unable to cancel purchase order(s): P00001. You must first unlock them.",
    );
    let states = o
        .ok(
            "purchase.order",
            "fields_get",
            json!([["state"]]),
            json!({"attributes": ["selection"]}),
        )
        .await;
    assert!(!states["state"]["selection"]
        .as_array()
        .unwrap()
        .contains(&json!(["done", "Locked"])));
    o.call("purchase.order", "button_unlock", json!([[po]]), json!({}))
        .await;
    assert_eq!(
        o.read1("purchase.order", po, &["locked"]).await["locked"],
        false
    );
}

#[tokio::test]
async fn discount_reduces_the_subtotal_from_17() {
    let o = start_version(17).await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let po = o.ok("purchase.order", "create", json!([{"partner_id": gemini, "order_line": [[0, 0, {"product_id": chair, "product_qty": 2, "price_unit": 10, "discount": 10}]]}]), json!({})).await;
    let r = o
        .read1(
            "purchase.order",
            po.as_i64().unwrap(),
            &["amount_untaxed", "amount_tax", "amount_total"],
        )
        .await;
    assert_eq!(
        (
            r["amount_untaxed"].clone(),
            r["amount_tax"].clone(),
            r["amount_total"].clone()
        ),
        (json!(18.0), json!(2.7), json!(20.7))
    );
}

/// The first line of order `po`: quantity, price, discount and subtotal.
async fn first_line(o: &Odoo, po: i64) -> Value {
    o.read1(
        "purchase.order.line",
        o.first_line_id(po).await,
        &["product_qty", "price_unit", "discount", "price_subtotal"],
    )
    .await
}

/// Odoo rounds a float field to its decimal precision when it is written (half away from
/// zero); a database set to more digits keeps them.
#[tokio::test]
async fn floats_are_rounded_to_their_decimal_precision() {
    let o = start_version(19).await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let vals = json!([{"partner_id": gemini, "order_line": [[0, 0, {"product_id": chair,
                      "product_qty": 1.005, "price_unit": 12.345, "discount": 10.555}]]}]);
    let po = o
        .ok("purchase.order", "create", vals.clone(), json!({}))
        .await;
    let r = first_line(&o, po.as_i64().unwrap()).await;
    assert_eq!(
        (&r["product_qty"], &r["price_unit"], &r["discount"]),
        (&json!(1.01), &json!(12.35), &json!(10.56)),
        "{r}"
    );
    // 1.01 x 12.35 less 10.56 % = 11.1563: the subtotal comes from the rounded values.
    assert_eq!(r["price_subtotal"], json!(11.16), "{r}");

    let mut seed = Seed::default_data();
    seed.company.precision.product_price = 3;
    let o = start_with(SimConfig {
        seed,
        ..SimConfig::default()
    })
    .await;
    let po = o.ok("purchase.order", "create", vals, json!({})).await;
    assert_eq!(
        first_line(&o, po.as_i64().unwrap()).await["price_unit"],
        json!(12.345)
    );
}

#[tokio::test]
async fn seed_has_vendors_products_and_price_lists() {
    let o = start().await;
    let vendors = o
        .ok(
            "res.partner",
            "search_read",
            json!([[["supplier_rank", ">", 0]]]),
            json!({"fields": ["name", "ref"]}),
        )
        .await;
    assert!(vendors.as_array().unwrap().len() >= 5);
    assert!(vendors
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["ref"].is_string()));
    let products = o
        .ok("product.product", "search_read", json!([[["purchase_ok", "=", true]]]), json!({"fields": ["default_code", "standard_price", "display_name", "uom_id", "product_tmpl_id"]}))
        .await;
    assert!(products.as_array().unwrap().len() >= 5);
    let chair = products
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["default_code"] == "FURN_7777")
        .unwrap();
    assert_eq!(chair["standard_price"], 55.0);
    assert_eq!(chair["display_name"], "[FURN_7777] Office Chair");
    assert_eq!(chair["uom_id"], json!([1, "Units"]));
    let tmpl = chair["product_tmpl_id"][0].clone();
    let info = o
        .ok(
            "product.supplierinfo",
            "search_read",
            json!([[["product_tmpl_id", "=", tmpl]]]),
            json!({"fields": ["partner_id", "min_qty", "price"]}),
        )
        .await;
    assert_eq!(info[0]["partner_id"][1], "Gemini Furniture");
    assert_eq!(info[0]["min_qty"], 12.0);
}

#[tokio::test]
async fn expected_arrival_follows_the_vendor_lead_time_and_is_not_an_inverse() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let po = o.order(gemini, &[(chair, 3.0, 12.5)]).await;
    let order = o
        .read1("purchase.order", po, &["date_order", "order_line"])
        .await;
    let line = order["order_line"][0].as_i64().unwrap();
    let date_order = order["date_order"].as_str().unwrap().to_string();
    let planned = |v: Value| v["date_planned"].as_str().unwrap_or_default().to_string();
    // Created without a date, below Gemini's min_qty 12: the order's date, no lead time.
    assert_eq!(
        planned(
            o.read1("purchase.order.line", line, &["date_planned"])
                .await
        ),
        date_order
    );
    // A quantity that reaches the entry moves the date to date_order + its delay (1 day).
    o.ok(
        "purchase.order.line",
        "write",
        json!([[line], {"product_qty": 12, "price_unit": 12.5}]),
        json!({}),
    )
    .await;
    let next_day = chrono::NaiveDateTime::parse_from_str(&date_order, "%Y-%m-%d %H:%M:%S").unwrap()
        + chrono::Duration::days(1);
    assert_eq!(
        planned(
            o.read1("purchase.order.line", line, &["date_planned"])
                .await
        ),
        next_day.format("%Y-%m-%d %H:%M:%S").to_string()
    );
    // Sent with the quantity, the date is kept.
    o.ok(
        "purchase.order.line",
        "write",
        json!([[line], {"product_qty": 13, "price_unit": 12.5, "date_planned": "2027-01-01 10:00:00"}]),
        json!({}),
    )
    .await;
    assert_eq!(
        planned(
            o.read1("purchase.order.line", line, &["date_planned"])
                .await
        ),
        "2027-01-01 10:00:00"
    );
    assert_eq!(
        planned(o.read1("purchase.order", po, &["date_planned"]).await),
        "2027-01-01 10:00:00",
        "the order's is the earliest of its lines"
    );
    // The order's own date is stored as written; only the form copies it to the lines.
    o.ok(
        "purchase.order",
        "write",
        json!([[po], {"date_planned": "2027-02-01 00:00:00"}]),
        json!({}),
    )
    .await;
    assert_eq!(
        planned(o.read1("purchase.order", po, &["date_planned"]).await),
        "2027-02-01 00:00:00"
    );
    assert_eq!(
        planned(
            o.read1("purchase.order.line", line, &["date_planned"])
                .await
        ),
        "2027-01-01 10:00:00"
    );
    // Until a line's date changes: then it is computed again.
    o.ok(
        "purchase.order.line",
        "write",
        json!([[line], {"date_planned": "2027-01-03 10:00:00"}]),
        json!({}),
    )
    .await;
    assert_eq!(
        planned(o.read1("purchase.order", po, &["date_planned"]).await),
        "2027-01-03 10:00:00"
    );
}

#[tokio::test]
async fn load_reads_datetimes_in_the_context_or_user_time_zone() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await.to_string();
    let pad = o
        .find("product.product", "default_code", "FURN_0002")
        .await
        .to_string();
    let fields = json!([
        "id",
        "partner_id/.id",
        "order_line/id",
        "order_line/product_id/.id",
        "order_line/product_qty",
        "order_line/price_unit",
        "order_line/date_planned"
    ]);
    let load = |name: &str, date: &str, context: Value| {
        let rows = json!([[
            format!("odoo_sync.po_{name}"),
            gemini,
            format!("odoo_sync.pol_{name}"),
            pad,
            "1",
            "2",
            date
        ]]);
        let mut kwargs = json!({});
        if !context.is_null() {
            kwargs["context"] = context;
        }
        (json!([fields.clone(), rows]), kwargs)
    };
    let mut cases = Vec::new();
    for (name, context, stored) in [
        // The admin's zone, Asia/Kolkata (+05:30), without a zone in the context.
        ("user", Value::Null, "2026-12-15 06:30:00"),
        ("utc", json!({"tz": "UTC"}), "2026-12-15 12:00:00"),
        ("tokyo", json!({"tz": "Asia/Tokyo"}), "2026-12-15 03:00:00"),
        // A zone that does not exist is skipped: the user's applies.
        (
            "unknown",
            json!({"tz": "Mars/Olympus"}),
            "2026-12-15 06:30:00",
        ),
    ] {
        let (args, kwargs) = load(name, "2026-12-15 12:00:00", context);
        let res = o.ok("purchase.order", "load", args, kwargs).await;
        assert_eq!(res["messages"], json!([]), "{name}: {res}");
        cases.push((name, res["ids"][0].as_i64().unwrap(), stored));
    }
    for (name, po, stored) in cases {
        let line = o.read1("purchase.order", po, &["order_line"]).await["order_line"][0]
            .as_i64()
            .unwrap();
        assert_eq!(
            o.read1("purchase.order.line", line, &["date_planned"])
                .await["date_planned"],
            stored,
            "{name}"
        );
    }
    let (args, kwargs) = load("bad", "15/12/2026", json!({"tz": "UTC"}));
    let res = o.ok("purchase.order", "load", args, kwargs).await;
    assert_eq!(res["ids"], false, "{res}");
    let message = res["messages"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("'15/12/2026' does not seem to be a valid datetime"),
        "{res}"
    );
}
