//! The `/__sim/` control API (reset, state, stats) and the `odoo-sim` binary: first stdout
//! line, `--seed`, `--state` snapshot on SIGTERM.

mod sim_support;

use odoo_sync_tests::sim::client::Client;
use serde_json::json;
use sim_support::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

#[tokio::test]
async fn stats_count_every_model_call() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    o.order(gemini, &[]).await;
    o.order(gemini, &[]).await;
    o.j2(
        "purchase.order",
        "search_read",
        json!({"domain": [], "fields": ["name"]}),
    )
    .await;
    o.call("nope.model", "read", json!([[1]]), json!({})).await;
    o.c.jsonrpc("common", "login", json!([DB, "admin", PASSWORD]))
        .await
        .unwrap();
    let stats = o.c.get("/__sim/stats").await.unwrap();
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.body(),
        json!({"total": 5, "calls": {"res.partner.search": 1, "purchase.order.create": 2,
               "purchase.order.search_read": 1, "nope.model.read": 1}})
    );
    let zero = o.c.delete("/__sim/stats").await.unwrap();
    assert_eq!(zero.body(), json!({"total": 0, "calls": {}}));
}

#[tokio::test]
async fn reset_returns_to_the_seed() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    o.order(gemini, &[]).await;
    o.ok(
        "res.partner",
        "write",
        json!([[gemini], {"name": "Renamed"}]),
        json!({}),
    )
    .await;
    let r = o.c.post("/__sim/reset", &json!({})).await.unwrap();
    assert_eq!((r.status, r.body()), (200, json!({"reset": true})));
    assert_eq!(
        o.ok("purchase.order", "search_count", json!([[]]), json!({}))
            .await,
        0
    );
    assert_eq!(
        o.read1("res.partner", gemini, &["name"]).await["name"],
        "Gemini Furniture"
    );
    let po = o.order(gemini, &[]).await;
    assert_eq!(
        o.read1("purchase.order", po, &["name"]).await["name"],
        "P00001"
    );
    assert_eq!(
        o.c.get("/__sim/stats").await.unwrap().body()["calls"]["purchase.order.create"],
        1
    );
}

#[tokio::test]
async fn state_dumps_all_records() {
    let o = start().await;
    let gemini = o.find("res.partner", "ref", "V-GEMINI").await;
    let chair = o.find("product.product", "default_code", "FURN_7777").await;
    let po = o.order(gemini, &[(chair, 2.0, 3.0)]).await;
    let dump = o.c.get("/__sim/state").await.unwrap();
    assert_eq!(dump.status, 200);
    let body = dump.body();
    assert_eq!(body["version"], 19);
    assert_eq!(body["sequences"], json!({"purchase.order": 1}));
    let orders = body["models"]["purchase.order"].as_array().unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["id"], po);
    assert_eq!(orders[0]["amount_total"], 6.9);
    assert_eq!(
        body["models"]["purchase.order.line"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(body["models"]["res.partner"].as_array().unwrap().len() >= 5);
    let unknown = o.c.get("/__sim/nothing").await.unwrap();
    assert_eq!(unknown.status, 404);
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on a free port and returns it with its URL (read from the first line).
fn start_binary(extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_odoo-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("odoo-sim starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (Proc(child), url)
}

fn terminate(p: &mut Proc) {
    let status = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = p.0.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}

#[tokio::test]
async fn binary_snapshots_state_on_sigterm_and_reloads_it() {
    let dir = std::env::temp_dir().join(format!("odoo-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);
    let state_arg = state.to_str().unwrap();
    let (mut p, url) = start_binary(&[
        "--state",
        state_arg,
        "--odoo-version",
        "18",
        "--db",
        "demo",
        "--api-key",
        "k1",
    ]);
    let c = Client::new(&url);
    let env = c
        .execute_kw(
            "demo",
            2,
            "k1",
            "purchase.order",
            "create",
            json!([{"partner_id": 3, "origin": "KEEP"}]),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(env["result"], 1);
    terminate(&mut p);
    assert!(state.exists(), "snapshot written");
    let (mut p2, url2) =
        start_binary(&["--state", state_arg, "--odoo-version", "18", "--db", "demo"]);
    let c2 = Client::new(&url2);
    let env = c2
        .execute_kw(
            "demo",
            2,
            "admin",
            "purchase.order",
            "search_read",
            json!([[["origin", "=", "KEEP"]]]),
            json!({"fields": ["name"]}),
        )
        .await
        .unwrap();
    assert_eq!(env["result"], json!([{"id": 1, "name": "P00001"}]));
    // The sequence continues after the restored orders.
    let env = c2
        .execute_kw(
            "demo",
            2,
            "admin",
            "purchase.order",
            "create",
            json!([{"partner_id": 3}]),
            json!({}),
        )
        .await
        .unwrap();
    let id = env["result"].as_i64().unwrap();
    let env = c2
        .execute_kw(
            "demo",
            2,
            "admin",
            "purchase.order",
            "read",
            json!([[id]]),
            json!({"fields": ["name"]}),
        )
        .await
        .unwrap();
    assert_eq!(env["result"][0]["name"], "P00002");
    terminate(&mut p2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn binary_loads_a_seed_file() {
    let dir = std::env::temp_dir().join(format!("odoo-sim-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    std::fs::write(
        &seed,
        serde_json::to_string(&json!({
            "taxes": [{"name": "10%", "amount": 10, "default_purchase": true}],
            "partners": [{"name": "Only Vendor", "ref": "V-ONLY"}],
            "products": [{"name": "Widget", "default_code": "W-1", "standard_price": 4.5}],
            "supplierinfo": [{"vendor": "V-ONLY", "product": "W-1", "min_qty": 1, "price": 4}]
        }))
        .unwrap(),
    )
    .unwrap();
    let (mut p, url) = start_binary(&["--seed", seed.to_str().unwrap()]);
    let c = Client::new(&url);
    let env = c
        .execute_kw(
            DB,
            2,
            PASSWORD,
            "res.partner",
            "search_read",
            json!([[["supplier_rank", ">", 0]]]),
            json!({"fields": ["name", "ref"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        env["result"],
        json!([{"id": 3, "name": "Only Vendor", "ref": "V-ONLY"}])
    );
    let env = c
        .execute_kw(
            DB,
            2,
            PASSWORD,
            "purchase.order",
            "create",
            json!([{"partner_id": 3, "order_line": [[0, 0, {"product_id": 1, "product_qty": 2}]]}]),
            json!({}),
        )
        .await
        .unwrap();
    let po = env["result"].as_i64().unwrap();
    let env = c
        .execute_kw(
            DB,
            2,
            PASSWORD,
            "purchase.order",
            "read",
            json!([[po]]),
            json!({"fields": ["amount_untaxed", "amount_tax"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        env["result"],
        json!([{"id": po, "amount_untaxed": 8.0, "amount_tax": 0.8}])
    );
    // No `viewer` user in this seed.
    let env = c
        .jsonrpc("common", "login", json!([DB, "viewer", "viewer"]))
        .await
        .unwrap();
    assert_eq!(env["result"], false);
    terminate(&mut p);
    let _ = std::fs::remove_dir_all(&dir);
}
