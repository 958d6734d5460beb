//! The Odoo client against the real simulator over real HTTP (Odoo 17 and 19 modes), against
//! injected faults, and against a tiny server that answers garbage. Each test starts its own
//! simulator on a free port, so tests are independent and can run in any order, twice.

use odoo_sync_tests::sim::{self, SimConfig, SimHandle};
use odoo_sync_worker::odoo::money;
use odoo_sync_worker::odoo::{
    Domain, OdooClient, OdooConfig, OdooError, Op, Protocol, ProtocolChoice, Secret, SecretKind,
};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DB: &str = "odoo";

async fn start(version: u8) -> SimHandle {
    sim::spawn(SimConfig {
        version,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn config(url: &str, login: &str, secret: &str, kind: SecretKind) -> OdooConfig {
    let mut c = OdooConfig::new(url, DB, login, Secret::new(secret), kind).expect("valid config");
    c.request_timeout = Duration::from_secs(10);
    c.connect_timeout = Duration::from_secs(2);
    c
}

/// The admin with the API key and automatic protocol: what production uses.
fn admin(h: &SimHandle) -> OdooClient {
    OdooClient::new(config(
        &h.url(),
        "admin",
        sim::DEFAULT_API_KEY,
        SecretKind::ApiKey,
    ))
    .expect("client")
}

async fn set_faults(h: &SimHandle, spec: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/__sim/faults", h.url()))
        .json(&spec)
        .send()
        .await
        .expect("control API answers");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
}

async fn clear_faults(h: &SimHandle) {
    let r = reqwest::Client::new()
        .delete(format!("{}/__sim/faults", h.url()))
        .send()
        .await
        .expect("control API answers");
    assert_eq!(r.status().as_u16(), 200);
}

async fn partner(c: &OdooClient, reference: &str) -> i64 {
    let ids = c
        .search("res.partner", &Domain::eq("ref", reference), Some(1), None)
        .await
        .expect("search partners");
    ids[0]
}

async fn product(c: &OdooClient, code: &str) -> i64 {
    let ids = c
        .search(
            "product.product",
            &Domain::eq("default_code", code),
            Some(1),
            None,
        )
        .await
        .expect("search products");
    ids[0]
}

fn order_vals(partner: i64, origin: &str, lines: &[(i64, f64, f64)]) -> Value {
    let cmds: Vec<Value> = lines
        .iter()
        .map(|(p, q, u)| json!([0, 0, {"product_id": p, "product_qty": q, "price_unit": u}]))
        .collect();
    json!({"partner_id": partner, "origin": origin, "order_line": cmds})
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

// ---------------------------------------------------------------------------------------------
// Protocol selection and login

#[tokio::test]
async fn auto_protocol_follows_version_and_credential_kind() {
    let v17 = start(17).await;
    let c = admin(&v17);
    assert_eq!(c.protocol().await.unwrap(), Protocol::JsonRpc);
    assert_eq!(c.version().await.unwrap().major, 17);
    assert_eq!(c.uid().await.unwrap(), 2);

    let v19 = start(19).await;
    let c = admin(&v19);
    assert_eq!(c.protocol().await.unwrap(), Protocol::Json2);
    assert_eq!(c.version().await.unwrap().major, 19);
    assert_eq!(c.uid().await.unwrap(), 2);

    // A password cannot be a JSON-2 bearer token: auto falls back to JSON-RPC.
    let c = OdooClient::new(config(&v19.url(), "admin", "admin", SecretKind::Password)).unwrap();
    assert_eq!(c.protocol().await.unwrap(), Protocol::JsonRpc);

    // Forced choices.
    let mut cfg = config(
        &v19.url(),
        "admin",
        sim::DEFAULT_API_KEY,
        SecretKind::ApiKey,
    );
    cfg.protocol = ProtocolChoice::JsonRpc;
    assert_eq!(
        OdooClient::new(cfg).unwrap().protocol().await.unwrap(),
        Protocol::JsonRpc
    );
    let mut cfg = config(
        &v17.url(),
        "admin",
        sim::DEFAULT_API_KEY,
        SecretKind::ApiKey,
    );
    cfg.protocol = ProtocolChoice::Json2;
    let e = OdooClient::new(cfg).unwrap().connect().await.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(e.to_string().contains("JSON-2 needs Odoo 19"), "{e}");
    let mut cfg = config(&v19.url(), "admin", "admin", SecretKind::Password);
    cfg.protocol = ProtocolChoice::Json2;
    assert!(matches!(OdooClient::new(cfg), Err(OdooError::Config(_))));
}

#[tokio::test]
async fn field_names_adapt_to_the_server() {
    for (version, notes, uom, taxes) in [
        (17, "notes", "product_uom", "taxes_id"),
        (19, "note", "product_uom_id", "tax_ids"),
    ] {
        let h = start(version).await;
        let names = admin(&h).field_names().await.unwrap();
        assert_eq!(names.order_notes, notes);
        assert_eq!(names.line_uom, uom);
        assert_eq!(names.line_taxes, taxes);
        assert_eq!(names.order_locked, version >= 19);
        assert!(names.line_discount);
    }
}

#[tokio::test]
async fn bad_credentials_are_a_clear_permanent_error_without_the_secret() {
    let secret = "wrong-secret-4f1c9e";
    for (version, kind) in [
        (17, SecretKind::ApiKey),
        (17, SecretKind::Password),
        (19, SecretKind::ApiKey),
        (19, SecretKind::Password),
    ] {
        let h = start(version).await;
        let c = OdooClient::new(config(&h.url(), "admin", secret, kind)).unwrap();
        let e = c
            .search_read("res.partner", &Domain::all(), &["name"], 0, Some(1), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, OdooError::AuthenticationFailed { .. }),
            "{version} {kind:?}: {e:?}"
        );
        assert!(e.is_permanent());
        let shown = format!("{e} | {e:?} | {c:?}");
        assert!(!shown.contains(secret), "secret leaked: {shown}");
        assert!(
            shown.contains("\"admin\"") && shown.contains("ODOO_API_KEY"),
            "{shown}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Typed calls on both protocols

async fn crud_roundtrip(version: u8) {
    let h = start(version).await;
    let c = admin(&h);
    let gemini = partner(&c, "V-GEMINI").await;
    let wood = partner(&c, "V-WOOD").await;
    let chair = product(&c, "FURN_7777").await;
    let pad = product(&c, "FURN_0002").await;

    // Three orders in one call: a list in, a list of ids out, in order.
    let ids = c
        .create(
            "purchase.order",
            &[
                order_vals(gemini, "ORD-1", &[(chair, 2.0, 12.5), (pad, 1.0, 3.0)]),
                order_vals(wood, "ORD-2", &[(pad, 4.0, 2.0)]),
                order_vals(gemini, "ORD-3", &[(chair, 1.0, 0.1)]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2]);

    let rows = c
        .read(
            "purchase.order",
            &ids,
            &[
                "name",
                "partner_id",
                "origin",
                "state",
                "amount_untaxed",
                "amount_total",
            ],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["partner_id"][0], gemini);
    assert_eq!(rows[1]["origin"], "ORD-2");
    assert_eq!(rows[0]["state"], "draft");
    assert!(rows[0]["name"].as_str().unwrap().starts_with('P'));
    // 2 × 12.5 + 3 = 28.00 untaxed, 15 % tax.
    assert_eq!(
        money::money(&rows[0]["amount_untaxed"], "amount_untaxed").unwrap(),
        dec("28.00")
    );
    assert_eq!(
        money::money(&rows[0]["amount_total"], "amount_total").unwrap(),
        dec("32.20")
    );
    assert_eq!(
        money::money(&rows[2]["amount_untaxed"], "amount_untaxed").unwrap(),
        dec("0.10")
    );

    // Version-dependent line fields, named from what the server has.
    let names = c.field_names().await.unwrap();
    let lines = c
        .search_read(
            "purchase.order.line",
            &Domain::eq("order_id", ids[0]),
            &["product_id", "product_qty", "price_unit", names.line_uom],
            0,
            None,
            Some("id asc"),
        )
        .await
        .unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["product_id"][0], chair);
    assert!(lines[0][names.line_uom].is_array(), "{:?}", lines[0]);

    // search_read with a composed domain, order, offset and limit.
    let domain = Domain::is_in("origin", ["ORD-1", "ORD-2", "ORD-3"]).and(Domain::leaf(
        "partner_id",
        Op::Eq,
        gemini,
    ));
    let found = c
        .search_read(
            "purchase.order",
            &domain,
            &["origin"],
            0,
            Some(10),
            Some("id desc"),
        )
        .await
        .unwrap();
    let origins: Vec<&str> = found
        .iter()
        .map(|r| r["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins, ["ORD-3", "ORD-1"]);
    let page = c
        .search_read(
            "purchase.order",
            &domain,
            &["origin"],
            1,
            Some(1),
            Some("id desc"),
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["origin"], "ORD-1");

    // write, then read back; user text stays a value in domains.
    c.write(
        "purchase.order",
        &ids[1..2],
        &json!({"origin": "ORD-2 \"x\"], ["}),
    )
    .await
    .unwrap();
    let again = c
        .search_read(
            "purchase.order",
            &Domain::eq("origin", "ORD-2 \"x\"], ["),
            &["id"],
            0,
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["id"], ids[1]);

    // Buttons: confirm returns true, cancel returns None, draft back.
    let confirmed = c
        .call_button("purchase.order", "button_confirm", &ids[0..1])
        .await
        .unwrap();
    assert_eq!(confirmed, Some(json!(true)));
    let state = &c
        .read("purchase.order", &ids[0..1], &["state"])
        .await
        .unwrap()[0];
    assert_eq!(state["state"], "purchase");
    let cancelled = c
        .call_button("purchase.order", "button_cancel", &ids[0..2])
        .await
        .unwrap();
    assert_eq!(cancelled, None);
    c.call_button("purchase.order", "button_draft", &ids[1..2])
        .await
        .unwrap();
    let states = c
        .read("purchase.order", &ids[0..2], &["state"])
        .await
        .unwrap();
    assert_eq!(states[0]["state"], "cancel");
    assert_eq!(states[1]["state"], "draft");

    // unlink a cancelled order; reading it afterwards gives nothing, not an error.
    c.unlink("purchase.order", &ids[0..1]).await.unwrap();
    assert!(c
        .read("purchase.order", &ids[0..1], &["name"])
        .await
        .unwrap()
        .is_empty());

    // fields_get with attributes.
    let fields = c
        .fields_get("purchase.order", &["type", "string"])
        .await
        .unwrap();
    assert_eq!(fields["partner_id"]["type"], "many2one");
    assert!(fields.contains_key(names.order_notes));

    // generic execute: a record method with ids and a model method with named arguments.
    let count = c
        .execute(
            "purchase.order",
            "search_count",
            vec![],
            Map::from_iter([("domain".to_string(), Domain::ids(&ids).to_value())]),
        )
        .await
        .unwrap();
    assert_eq!(count, Some(json!(2)));
    let read = c
        .execute(
            "purchase.order",
            "read",
            vec![json!([ids[2]])],
            Map::from_iter([("fields".to_string(), json!(["origin"]))]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read[0]["origin"], "ORD-3");

    // Empty inputs make no call.
    assert!(c.create("purchase.order", &[]).await.unwrap().is_empty());
    assert!(c.read("purchase.order", &[], &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn crud_on_odoo_17_over_jsonrpc() {
    crud_roundtrip(17).await;
}

#[tokio::test]
async fn crud_on_odoo_19_over_json2() {
    crud_roundtrip(19).await;
}

async fn load_twice(version: u8) {
    let h = start(version).await;
    let c = admin(&h);
    let gemini = partner(&c, "V-GEMINI").await.to_string();
    let wood = partner(&c, "V-WOOD").await.to_string();
    let chair = product(&c, "FURN_7777").await.to_string();
    let pad = product(&c, "FURN_0002").await.to_string();
    let fields = [
        "id",
        "partner_id/.id",
        "origin",
        "order_line/id",
        "order_line/product_id/.id",
        "order_line/product_qty",
        "order_line/price_unit",
    ];
    let key = format!("t{version}");
    let rows: Vec<Vec<Value>> = vec![
        vec![
            json!(format!("odoo_sync.po_{key}a")),
            json!(gemini),
            json!("ORD-A"),
            json!(format!("odoo_sync.pol_{key}a1")),
            json!(chair),
            json!("2"),
            json!("10.5"),
        ],
        vec![
            json!(""),
            json!(""),
            json!(""),
            json!(format!("odoo_sync.pol_{key}a2")),
            json!(pad),
            json!("1"),
            json!("3"),
        ],
        vec![
            json!(format!("odoo_sync.po_{key}b")),
            json!(wood),
            json!("ORD-B"),
            json!(format!("odoo_sync.pol_{key}b1")),
            json!(pad),
            json!("4"),
            json!("2"),
        ],
    ];
    let first = c.load("purchase.order", &fields, &rows).await.unwrap();
    assert!(first.messages.is_empty(), "{:?}", first.messages);
    let ids = first.ids.clone().unwrap();
    assert_eq!(ids.len(), 2);
    let second = c.load("purchase.order", &fields, &rows).await.unwrap();
    assert_eq!(second.ids, Some(ids.clone()), "same call, same ids");
    let lines = c
        .search(
            "purchase.order.line",
            &Domain::is_in("order_id", ids.iter().copied()),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(lines.len(), 3, "no duplicate lines");

    // A refused import: ids None, messages say why, into_ids is a permanent error.
    let bad = vec![vec![
        json!(format!("odoo_sync.po_{key}c")),
        json!(""),
        json!("ORD-C"),
        json!(format!("odoo_sync.pol_{key}c1")),
        json!(pad),
        json!("1"),
        json!("1"),
    ]];
    let refused = c.load("purchase.order", &fields, &bad).await.unwrap();
    assert_eq!(refused.ids, None);
    assert!(!refused.messages.is_empty());
    let e = refused.into_ids("purchase.order").unwrap_err();
    assert!(e.is_permanent(), "{e}");
}

#[tokio::test]
async fn load_is_idempotent_on_odoo_17() {
    load_twice(17).await;
}

#[tokio::test]
async fn load_is_idempotent_on_odoo_19() {
    load_twice(19).await;
}

// ---------------------------------------------------------------------------------------------
// Odoo's errors, classified

async fn odoo_errors(version: u8) {
    let h = start(version).await;
    let c = admin(&h);
    let gemini = partner(&c, "V-GEMINI").await;
    let chair = product(&c, "FURN_7777").await;
    let ids = c
        .create(
            "purchase.order",
            &[order_vals(gemini, "E-1", &[(chair, 1.0, 5.0)])],
        )
        .await
        .unwrap();

    // UserError: a draft order cannot be deleted.
    let e = c.unlink("purchase.order", &ids).await.unwrap_err();
    assert_eq!(e.odoo_name(), Some("odoo.exceptions.UserError"), "{e:?}");
    assert!(e.is_permanent());
    assert_eq!(
        e.odoo_message(),
        Some("In order to delete a purchase order, you must cancel it first.")
    );
    assert!(e.to_string().contains("purchase.order.unlink"), "{e}");
    if version >= 19 {
        assert_eq!(e.http_status(), Some(422));
    }

    // ValidationError: partner_id is required; nothing created.
    let e = c
        .create("purchase.order", &[json!({"origin": "no vendor"})])
        .await
        .unwrap_err();
    assert_eq!(
        e.odoo_name(),
        Some("odoo.exceptions.ValidationError"),
        "{e:?}"
    );
    assert!(e.is_permanent());
    assert!(e.to_string().contains("partner_id"), "{e}");

    // ValueError: a field that does not exist without purchase_stock.
    let e = c
        .read("purchase.order", &ids, &["receipt_status"])
        .await
        .unwrap_err();
    assert_eq!(e.odoo_name(), Some("builtins.ValueError"), "{e:?}");
    assert!(e.is_permanent());

    // Unknown model: permanent on both protocols.
    let e = c
        .search_read("purchase.orderx", &Domain::all(), &[], 0, None, None)
        .await
        .unwrap_err();
    assert!(e.is_permanent(), "{e:?}");
    assert!(e.to_string().contains("purchase.orderx"), "{e}");

    // AccessError: the viewer may not read purchase orders.
    let viewer = OdooClient::new(config(
        &h.url(),
        "viewer",
        "viewer-api-key",
        SecretKind::ApiKey,
    ))
    .unwrap();
    assert_ne!(viewer.uid().await.unwrap(), 2);
    let e = viewer
        .search_read("purchase.order", &Domain::all(), &["name"], 0, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.odoo_name(), Some("odoo.exceptions.AccessError"), "{e:?}");
    assert!(e.is_permanent());
    if version >= 19 {
        assert_eq!(e.http_status(), Some(403));
    }
    // The viewer may still read partners.
    assert!(!viewer
        .search("res.partner", &Domain::all(), Some(1), None)
        .await
        .unwrap()
        .is_empty());

    // Invalid names never reach the wire.
    let e = c
        .search_read("res.partner/../x", &Domain::all(), &[], 0, None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, OdooError::Unsupported(_)), "{e:?}");
}

#[tokio::test]
async fn odoo_errors_are_classified_on_odoo_17() {
    odoo_errors(17).await;
}

#[tokio::test]
async fn odoo_errors_are_classified_on_odoo_19() {
    odoo_errors(19).await;
}

// ---------------------------------------------------------------------------------------------
// Injected faults: transient, never a panic, and the client recovers once they are gone

async fn call_once(c: &OdooClient) -> Result<Vec<i64>, OdooError> {
    c.search("res.partner", &Domain::all(), Some(1), None).await
}

async fn faults_are_transient(version: u8) {
    let h = start(version).await;
    let mut cfg = config(&h.url(), "admin", sim::DEFAULT_API_KEY, SecretKind::ApiKey);
    cfg.request_timeout = Duration::from_millis(700);
    let c = OdooClient::new(cfg).unwrap();
    c.connect().await.unwrap();

    for kind in ["502", "503", "reset", "timeout", "serialization"] {
        set_faults(
            &h,
            json!({"error_rate": 1.0, "error_kind": kind, "timeout_ms": 5000}),
        )
        .await;
        let started = Instant::now();
        let e = call_once(&c).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(e.is_transient(), "{version} {kind}: {e:?}");
        assert!(elapsed < Duration::from_secs(3), "{kind} took {elapsed:?}");
        match kind {
            "502" | "503" => assert_eq!(e.http_status(), Some(kind.parse().unwrap()), "{e:?}"),
            "reset" => assert!(
                matches!(e, OdooError::Transport { .. } | OdooError::Connect { .. }),
                "{e:?}"
            ),
            "timeout" => {
                assert!(matches!(e, OdooError::Timeout { .. }), "{e:?}");
                assert!(e.outcome_unknown());
            }
            _ => assert_eq!(
                e.odoo_name(),
                Some("psycopg2.errors.SerializationFailure"),
                "{e:?}"
            ),
        }
        clear_faults(&h).await;
        assert!(call_once(&c).await.is_ok(), "recovers after {kind}");
    }

    // An outage: every request 503 until it ends, then calls work again.
    set_faults(&h, json!({"outage_seconds": 1.0})).await;
    let e = call_once(&c).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(e.http_status(), Some(503));
    // A fresh client cannot even connect during the outage; that is transient too.
    let fresh = admin(&h);
    assert!(fresh.connect().await.unwrap_err().is_transient());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(call_once(&c).await.is_ok());
    assert!(fresh.connect().await.is_ok(), "a failed connect is retried");

    // Commit then drop: the outcome is unknown, so it is transient and says so.
    set_faults(&h, json!({"drop_after_commit": 1})).await;
    let gemini = partner(&c, "V-GEMINI").await;
    let e = c
        .create("purchase.order", &[json!({"partner_id": gemini})])
        .await
        .unwrap_err();
    assert!(e.is_transient() && e.outcome_unknown(), "{e:?}");
}

#[tokio::test]
async fn faults_are_transient_on_odoo_17() {
    faults_are_transient(17).await;
}

#[tokio::test]
async fn faults_are_transient_on_odoo_19() {
    faults_are_transient(19).await;
}

#[tokio::test]
async fn unreachable_server_is_a_transient_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let c = OdooClient::new(config(&url, "admin", "k", SecretKind::ApiKey)).unwrap();
    let e = c.connect().await.unwrap_err();
    assert!(matches!(e, OdooError::Connect { .. }), "{e:?}");
    assert!(e.is_transient());
}

// ---------------------------------------------------------------------------------------------
// A server that answers garbage: clean errors, within the time bound

/// Serves every connection with `respond(request)` and closes it.
async fn fake_server<F>(respond: F) -> String
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let request = read_request(&mut socket).await;
                match respond(&request) {
                    Reply::Bytes(bytes) => {
                        let _ = socket.write_all(&bytes).await;
                    }
                    Reply::Drip(head) => {
                        let _ = socket.write_all(&head).await;
                        for _ in 0..200 {
                            if socket.write_all(b" ").await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Reply::Endless(head) => {
                        let _ = socket.write_all(&head).await;
                        let chunk = vec![b'x'; 64 * 1024];
                        for _ in 0..2000 {
                            if socket.write_all(&chunk).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    url
}

enum Reply {
    Bytes(Vec<u8>),
    /// Headers, then one byte every 50 ms.
    Drip(Vec<u8>),
    /// Headers, then up to 128 MiB as fast as the client reads.
    Endless(Vec<u8>),
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = socket.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn http(status: &str, content_type: &str, body: &str) -> Reply {
    Reply::Bytes(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn json_reply(body: &str) -> Reply {
    http("200 OK", "application/json", body)
}

/// Answers version and login like Odoo 17, then `call` for `execute_kw`.
fn odoo_then(call: &'static str) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
    move |req: &str| {
        if req.contains("\"version\"") {
            json_reply(
                r#"{"jsonrpc":"2.0","id":1,"result":{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""]}}"#,
            )
        } else if req.contains("\"authenticate\"") {
            json_reply(r#"{"jsonrpc":"2.0","id":2,"result":2}"#)
        } else {
            json_reply(call)
        }
    }
}

fn quick(url: &str) -> OdooClient {
    let mut cfg = config(url, "admin", "s3cr3t-key", SecretKind::ApiKey);
    cfg.request_timeout = Duration::from_secs(1);
    cfg.max_body_bytes = 1024 * 1024;
    OdooClient::new(cfg).unwrap()
}

async fn within_bound<T>(f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = f.await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    out
}

#[tokio::test]
async fn html_and_garbage_bodies_are_protocol_errors() {
    let html = fake_server(|_| {
        http(
            "200 OK",
            "text/html",
            "<!DOCTYPE html><html><body>Login</body></html>",
        )
    })
    .await;
    let e = within_bound(quick(&html).connect()).await.unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e:?}");
    assert!(e.is_permanent());
    assert!(e.to_string().contains("HTML page"), "{e}");

    let proxy = fake_server(|_| http("502 Bad Gateway", "text/html", "<html>nginx</html>")).await;
    let e = within_bound(quick(&proxy).connect()).await.unwrap_err();
    assert_eq!(e.http_status(), Some(502));
    assert!(e.is_transient(), "{e:?}");

    let busy = fake_server(|_| {
        Reply::Bytes(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let e = within_bound(quick(&busy).connect()).await.unwrap_err();
    assert!(e.is_transient());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));

    for body in [
        r#"{"jsonrpc":"2.0","id":1,"result":"#,
        "\u{0}\u{1}garbage",
        "[]",
        r#"{"error":{"code":200}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"server_version":true}}"#,
    ] {
        let url = fake_server(move |_| json_reply(body)).await;
        let e = within_bound(quick(&url).connect()).await.unwrap_err();
        assert_eq!(e.kind(), "protocol", "{body}: {e:?}");
        assert!(e.is_permanent());
    }

    let redirect = fake_server(|_| {
        Reply::Bytes(
            b"HTTP/1.1 301 Moved\r\nLocation: https://odoo.example.com/jsonrpc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let e = within_bound(quick(&redirect).connect()).await.unwrap_err();
    assert!(e.is_permanent());
    assert!(e.to_string().contains("https://odoo.example.com"), "{e}");
}

#[tokio::test]
async fn wrong_types_in_results_are_protocol_errors() {
    let url = fake_server(|req: &str| {
        if req.contains("\"authenticate\"") {
            json_reply(r#"{"jsonrpc":"2.0","id":2,"result":"admin"}"#)
        } else {
            odoo_then("")(req)
        }
    })
    .await;
    let e = within_bound(quick(&url).connect()).await.unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e:?}");

    let c = quick(&fake_server(odoo_then(r#"{"jsonrpc":"2.0","id":3,"result":"oops"}"#)).await);
    let e = within_bound(c.create("res.partner", &[json!({"name": "x"})]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e:?}");
    let e = within_bound(c.read("res.partner", &[1], &["name"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e:?}");
    let e = within_bound(c.fields_get("res.partner", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e:?}");
    let e = within_bound(c.load("res.partner", &["name"], &[vec![json!("x")]]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e:?}");

    let c = quick(&fake_server(odoo_then(r#"{"jsonrpc":"2.0","id":3,"result":[1,"2"]}"#)).await);
    let e = within_bound(c.search("res.partner", &Domain::all(), None, None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e:?}");
    // A mismatch between records sent and ids returned is caught too.
    let c = quick(&fake_server(odoo_then(r#"{"jsonrpc":"2.0","id":3,"result":[7]}"#)).await);
    let e = within_bound(c.create("res.partner", &[json!({}), json!({})]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "protocol", "{e:?}");
    // A None result is fine for a button.
    let c = quick(&fake_server(odoo_then(r#"{"jsonrpc":"2.0","id":3}"#)).await);
    assert_eq!(
        within_bound(c.call_button("purchase.order", "button_cancel", &[1]))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn huge_and_endless_bodies_are_bounded() {
    // Declared too large: refused before reading.
    let declared = fake_server(|_| {
        Reply::Bytes(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n[".to_vec(),
        )
    })
    .await;
    let e = within_bound(quick(&declared).connect()).await.unwrap_err();
    assert!(matches!(e, OdooError::ResponseTooLarge { .. }), "{e:?}");
    assert!(e.is_permanent());

    // Undeclared (chunked-less, close-delimited) and too large: cut at the bound.
    let endless = fake_server(|_| {
        Reply::Endless(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let e = within_bound(quick(&endless).connect()).await.unwrap_err();
    assert!(matches!(e, OdooError::ResponseTooLarge { .. }), "{e:?}");

    // A body that drips forever: the total time bound ends it.
    let drip = fake_server(|_| {
        Reply::Drip(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let e = within_bound(quick(&drip).connect()).await.unwrap_err();
    assert!(matches!(e, OdooError::Timeout { .. }), "{e:?}");
    assert!(e.is_transient());

    // Headers promise more than the body holds: a broken connection, transient.
    let short = fake_server(|_| {
        Reply::Bytes(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"jsonrpc\"".to_vec(),
        )
    })
    .await;
    let e = within_bound(quick(&short).connect()).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
}

#[tokio::test]
async fn json2_error_bodies_from_a_proxy_are_classified_by_status() {
    // Odoo 19 for the version, then JSON-2 calls answered by a proxy.
    let url = fake_server(|req: &str| {
        if req.starts_with("POST /jsonrpc") {
            json_reply(r#"{"jsonrpc":"2.0","id":1,"result":{"server_version":"19.0","server_version_info":[19,0,0,"final",0,""]}}"#)
        } else if req.contains("res.users/search") {
            json_reply("[2]")
        } else if req.contains("/button_cancel") {
            json_reply("null")
        } else if req.contains("/write") {
            http("504 Gateway Timeout", "text/html", "<html>504</html>")
        } else {
            http("404 Not Found", "text/html", "<html>404</html>")
        }
    })
    .await;
    let c = quick(&url);
    assert_eq!(within_bound(c.protocol()).await.unwrap(), Protocol::Json2);
    assert_eq!(
        c.call_button("purchase.order", "button_cancel", &[1])
            .await
            .unwrap(),
        None
    );
    let e = c
        .write("purchase.order", &[1], &json!({"origin": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), Some(504));
    assert!(e.is_transient());
    let e = c.unlink("purchase.order", &[1]).await.unwrap_err();
    assert_eq!(e.http_status(), Some(404));
    assert!(e.is_permanent());
    assert!(!format!("{e} {e:?}").contains("s3cr3t-key"));
}

#[tokio::test]
async fn odoo_without_jsonrpc_gets_its_version_from_web_version() {
    // An Odoo without /jsonrpc (as planned for Odoo 22): the version comes from /web/version.
    let url = fake_server(|req: &str| {
        if req.starts_with("GET /web/version") {
            json_reply(r#"{"version_info":[22,0,0,"final",0,""],"version":"22.0"}"#)
        } else if req.starts_with("POST /json/2/res.users/search") {
            json_reply("[2]")
        } else {
            http("404 Not Found", "text/html", "<html>404</html>")
        }
    })
    .await;
    let c = quick(&url);
    assert_eq!(within_bound(c.protocol()).await.unwrap(), Protocol::Json2);
    assert_eq!(c.version().await.unwrap().major, 22);
}

#[tokio::test]
async fn clones_share_one_login_and_run_concurrently() {
    for version in [17, 19] {
        let h = start(version).await;
        let c = admin(&h);
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { call_once(&c).await })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().is_ok());
        }
        let stats: Value = reqwest::get(format!("{}/__sim/stats", h.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // 20 searches; JSON-2 proves its key once with one res.users search, JSON-RPC's
        // login is not a model call.
        assert_eq!(stats["calls"]["res.partner.search"], 20, "{stats}");
        let logins = stats["calls"]["res.users.search"].as_u64().unwrap_or(0);
        assert_eq!(logins, u64::from(version >= 19), "{stats}");
    }
}

#[tokio::test]
async fn a_key_revoked_after_login_is_an_authentication_failure() {
    for version in [17, 19] {
        let h = start(version).await;
        let c = admin(&h);
        call_once(&c).await.unwrap();
        // Rotate the admin's key behind the client's back, as an Odoo admin would.
        {
            let mut world = h.sim.world.lock().unwrap();
            for user in world.users.iter_mut().filter(|u| u.id == 2) {
                user.api_key = Some("rotated-key".into());
            }
        }
        let e = call_once(&c).await.unwrap_err();
        assert!(
            matches!(e, OdooError::AuthenticationFailed { .. }),
            "{version}: {e:?}"
        );
        assert!(e.is_permanent());
        assert!(!format!("{e:?}").contains(sim::DEFAULT_API_KEY));
    }
}

#[tokio::test]
async fn an_unusable_ca_file_is_a_config_error() {
    let dir = std::env::temp_dir().join(format!("odoo-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    for path in [garbage.clone(), dir.join("missing.pem")] {
        let mut cfg = config("https://odoo.test", "admin", "k", SecretKind::ApiKey);
        cfg.ca_file = Some(path.clone());
        let e = OdooClient::new(cfg).unwrap_err();
        assert!(matches!(e, OdooError::Config(_)), "{e:?}");
        assert!(e.to_string().contains("ODOO_CA_FILE"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tls_is_verified_against_a_plain_http_server() {
    // https:// to a server that does not speak TLS: the handshake fails, nothing is sent
    // in clear, and the error is a transient connect error.
    let h = start(19).await;
    let url = h.url().replace("http://", "https://");
    let c = OdooClient::new(config(&url, "admin", "k", SecretKind::ApiKey)).unwrap();
    let e = within_bound(c.connect()).await.unwrap_err();
    assert!(
        matches!(e, OdooError::Connect { .. } | OdooError::Transport { .. }),
        "{e:?}"
    );
}

/// A client fenced for a batch whose leases may have run out sends no call that can write
/// (nothing reaches Odoo), while reads go on; an extension of the leases lets writes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_client_sends_no_write_after_its_deadline() {
    use odoo_sync_worker::odoo::WriteFence;
    use std::sync::Arc;
    let h = start(17).await;
    let c = admin(&h);
    let vendor = partner(&c, "V-WOOD").await;
    let lease = Duration::from_secs(3);
    // Asked 5 s ago for 3 s: past the deadline.
    let fence = Arc::new(WriteFence::new(
        Instant::now() - Duration::from_secs(5),
        lease,
    ));
    let fenced = c.fenced(fence.clone());
    let ids = fenced
        .search("res.partner", &Domain::eq("id", vendor), None, None)
        .await
        .expect("reads go on");
    assert_eq!(ids, vec![vendor]);
    let stats_url = format!("{}/__sim/stats", h.url());
    let writes = || async {
        let stats: Value = reqwest::get(&stats_url)
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        stats["calls"]["res.partner.write"].as_u64().unwrap_or(0)
    };
    let before = writes().await;
    let err = fenced
        .write("res.partner", &[vendor], &json!({"phone": "late"}))
        .await
        .expect_err("no write after the deadline");
    assert!(matches!(err, OdooError::LeaseExpiring { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(writes().await, before, "nothing was sent");
    // The unfenced client, and the fenced one once the leases are extended, write.
    fence.extended(Instant::now(), lease);
    fenced
        .write("res.partner", &[vendor], &json!({"phone": "in time"}))
        .await
        .expect("write within the lease");
    assert_eq!(writes().await, before + 1);
    h.stop().await.expect("stop");
}
