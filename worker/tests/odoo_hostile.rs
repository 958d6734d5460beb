//! A hostile Odoo: a raw TCP server in the test answers malformed JSON, wrong types, missing
//! keys, a 50 MB body, HTML error pages with 200 and 502, and a slow loris. The client must end
//! every call with a classified error (never a panic) within its configured timeout, and call
//! transient what a retry can cure (a server or proxy in trouble) and permanent what it cannot
//! (something that is not Odoo, or a reply that breaks the protocol).
//!
//! odoo_client.rs covers the simpler cases (a login portal, a 502 on connect, 429 with
//! Retry-After, truncated JSON-RPC, a declared 1 GiB body, a body dripping every 50 ms); the
//! cases here are the ones it leaves out.

use odoo_sync_worker::odoo::config::DEFAULT_MAX_BODY_BYTES;
use odoo_sync_worker::odoo::{Domain, OdooClient, OdooConfig, OdooError, Secret, SecretKind};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the server answers one request.
enum Reply {
    /// These bytes, then close.
    Bytes(Vec<u8>),
    /// A 200 JSON head with Content-Length `len`, then `len` bytes of a JSON string, streamed.
    Big { len: usize, chunked: bool },
    /// `head` at once, then one byte of `rest` every `every`, until it is sent or the client
    /// hangs up.
    Drip {
        head: Vec<u8>,
        rest: Vec<u8>,
        every: Duration,
    },
    /// Read the request, answer nothing, keep the connection open for a minute.
    Silent,
    /// Close the connection without a byte.
    Close,
}

/// Starts a server on 127.0.0.1:0 answering each request with `respond(request text)`.
async fn server<F>(respond: F) -> String
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move { serve(socket, respond.as_ref()).await });
        }
    });
    url
}

async fn serve(mut socket: TcpStream, respond: &(dyn Fn(&str) -> Reply + Send + Sync)) {
    let request = read_request(&mut socket).await;
    match respond(&request) {
        Reply::Bytes(bytes) => {
            let _ = socket.write_all(&bytes).await;
        }
        Reply::Big { len, chunked } => {
            let head = if chunked {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
            };
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 1 << 20];
            let mut sent = 0;
            while sent < len {
                let n = chunk.len().min(len - sent);
                let ok = if chunked {
                    let mut framed = format!("{n:x}\r\n").into_bytes();
                    framed.extend_from_slice(&chunk[..n]);
                    framed.extend_from_slice(b"\r\n");
                    socket.write_all(&framed).await.is_ok()
                } else {
                    socket.write_all(&chunk[..n]).await.is_ok()
                };
                if !ok {
                    return;
                }
                sent += n;
            }
            if chunked {
                let _ = socket.write_all(b"0\r\n\r\n").await;
            }
        }
        Reply::Drip { head, rest, every } => {
            if socket.write_all(&head).await.is_err() {
                return;
            }
            for b in rest {
                tokio::time::sleep(every).await;
                if socket.write_all(&[b]).await.is_err() {
                    return;
                }
            }
        }
        Reply::Silent => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Reply::Close => {}
    }
    let _ = socket.shutdown().await;
}

async fn read_request(socket: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
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

fn http(status: &str, content_type: &str, body: &[u8]) -> Reply {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Reply::Bytes(bytes)
}

fn ok_json(body: &str) -> Reply {
    http("200 OK", "application/json", body.as_bytes())
}

/// Odoo 17 for the version and the login, then `call` for every model call (JSON-RPC).
fn odoo17(
    call: impl Fn() -> Reply + Send + Sync + 'static,
) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
    move |req: &str| {
        if req.contains("\"version\"") {
            ok_json(
                r#"{"jsonrpc":"2.0","id":1,"result":{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""]}}"#,
            )
        } else if req.contains("\"authenticate\"") {
            ok_json(r#"{"jsonrpc":"2.0","id":2,"result":2}"#)
        } else {
            call()
        }
    }
}

/// Odoo 19 for the version and the key check, then `call` for every JSON-2 model call.
fn odoo19(
    call: impl Fn() -> Reply + Send + Sync + 'static,
) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
    move |req: &str| {
        if req.starts_with("POST /jsonrpc") {
            ok_json(
                r#"{"jsonrpc":"2.0","id":1,"result":{"server_version":"19.0","server_version_info":[19,0,0,"final",0,""]}}"#,
            )
        } else if req.contains("res.users/search") {
            ok_json("[2]")
        } else {
            call()
        }
    }
}

const KEY: &str = "hostile-test-key-31337";

fn client(url: &str, timeout: Duration, max_body: usize) -> OdooClient {
    let mut cfg = OdooConfig::new(url, "odoo", "admin", Secret::new(KEY), SecretKind::ApiKey)
        .expect("valid config");
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.request_timeout = timeout;
    cfg.max_body_bytes = max_body;
    OdooClient::new(cfg).expect("client")
}

/// Awaits `f`, which must end within `bound`; returns its output and how long it took.
async fn timed<T>(bound: Duration, f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(bound, f)
        .await
        .unwrap_or_else(|_| panic!("no answer within {bound:?}"));
    (out, started.elapsed())
}

/// Checks what every error must offer, whatever caused it.
fn well_formed(e: &OdooError) -> String {
    let shown = format!("{e} | {e:?}");
    assert!(!shown.contains(KEY), "the key leaked: {shown}");
    assert!(shown.len() < 10_000, "an error of {} bytes", shown.len());
    let _ = (
        e.kind(),
        e.is_transient(),
        e.http_status(),
        e.outcome_unknown(),
    );
    shown
}

async fn search(c: &OdooClient) -> Result<Vec<i64>, OdooError> {
    c.search("res.partner", &Domain::all(), Some(5), None).await
}

/// Malformed JSON as the reply to a model call, on JSON-RPC (Odoo 17) and JSON-2 (Odoo 19):
/// a permanent protocol error each time. Depth 10,000 hits serde_json's recursion limit, not
/// the stack.
#[tokio::test]
async fn malformed_json_is_a_permanent_protocol_error() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated",
            br#"{"jsonrpc":"2.0","id":3,"result":[1,"#.to_vec(),
        ),
        (
            "trailing garbage",
            br#"{"jsonrpc":"2.0","id":3,"result":[1]} <html>"#.to_vec(),
        ),
        (
            "NaN",
            br#"{"jsonrpc":"2.0","id":3,"result":[NaN]}"#.to_vec(),
        ),
        (
            "number out of range",
            br#"{"jsonrpc":"2.0","id":3,"result":[1e400]}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":[\"\xff\xfe\"]}".to_vec(),
        ),
        (
            "byte order mark",
            b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":[1]}".to_vec(),
        ),
        (
            "single quotes",
            b"{'jsonrpc': '2.0', 'result': [1]}".to_vec(),
        ),
        ("empty", Vec::new()),
        (
            "10,000 deep",
            format!(r#"{{"jsonrpc":"2.0","id":3,"result":{deep}}}"#).into_bytes(),
        ),
        ("NUL bytes", b"\0\0\0\0".to_vec()),
    ];
    for (label, body) in bodies {
        for version in [17, 19] {
            let b = body.clone();
            let reply = move || http("200 OK", "application/json", &b);
            let url = if version == 17 {
                server(odoo17(reply)).await
            } else {
                server(odoo19(reply)).await
            };
            let c = client(&url, Duration::from_secs(5), DEFAULT_MAX_BODY_BYTES);
            let (r, _) = timed(Duration::from_secs(5), search(&c)).await;
            let e = r.expect_err(label);
            let shown = well_formed(&e);
            assert_eq!(e.kind(), "protocol", "{version} {label}: {shown}");
            assert!(e.is_permanent(), "{version} {label}: {shown}");
        }
    }
}

/// Replies that are valid JSON of the wrong shape, for each typed call: a permanent protocol
/// error that says what was expected.
#[tokio::test]
async fn wrong_types_and_missing_keys_are_protocol_errors() {
    type Call =
        fn(OdooClient) -> std::pin::Pin<Box<dyn Future<Output = Result<(), OdooError>> + Send>>;
    let search_call: Call = |c| Box::pin(async move { search(&c).await.map(|_| ()) });
    let read_call: Call =
        |c| Box::pin(async move { c.read("res.partner", &[1], &["name"]).await.map(|_| ()) });
    let search_read_call: Call = |c| {
        Box::pin(async move {
            c.search_read("res.partner", &Domain::all(), &["name"], 0, None, None)
                .await
                .map(|_| ())
        })
    };
    let load_call: Call = |c| {
        Box::pin(async move {
            c.load("purchase.order", &["id"], &[vec![json!("x")]])
                .await
                .map(|_| ())
        })
    };
    let create_call: Call =
        |c| Box::pin(async move { c.create("res.partner", &[json!({})]).await.map(|_| ()) });
    let fields_call: Call =
        |c| Box::pin(async move { c.fields_get("res.partner", &[]).await.map(|_| ()) });
    let cases: Vec<(&str, Value, Call)> = vec![
        ("search: an object", json!({"ids": [1]}), search_call),
        ("search: floats", json!([1.5, 2.0]), search_call),
        ("search: booleans", json!([true]), search_call),
        (
            "search: beyond i64",
            json!([9_223_372_036_854_775_808u64]),
            search_call,
        ),
        ("search: null", Value::Null, search_call),
        ("read: numbers", json!([1, 2]), read_call),
        (
            "read: an object of records",
            json!({"0": {"id": 1}}),
            read_call,
        ),
        (
            "search_read: one string among records",
            json!([{"id": 1}, "x"]),
            search_read_call,
        ),
        (
            "search_read: a string",
            json!("[{\"id\": 1}]"),
            search_read_call,
        ),
        ("load: no ids", json!({"messages": []}), load_call),
        (
            "load: ids a string",
            json!({"ids": "18", "messages": []}),
            load_call,
        ),
        (
            "load: messages an object",
            json!({"ids": [18], "messages": {"type": "error"}}),
            load_call,
        ),
        ("load: a list", json!([18]), load_call),
        ("create: a string id", json!("5"), create_call),
        ("create: nested list", json!([[5]]), create_call),
        ("fields_get: a list", json!(["name"]), fields_call),
        ("fields_get: null", Value::Null, fields_call),
    ];
    for (label, result, call) in cases {
        let envelope = json!({"jsonrpc": "2.0", "id": 3, "result": result}).to_string();
        let url = server(odoo17(move || ok_json(&envelope))).await;
        let c = client(&url, Duration::from_secs(5), DEFAULT_MAX_BODY_BYTES);
        let (r, _) = timed(Duration::from_secs(5), call(c)).await;
        let e = r.expect_err(label);
        let shown = well_formed(&e);
        assert_eq!(e.kind(), "protocol", "{label}: {shown}");
        assert!(e.is_permanent(), "{label}: {shown}");
        assert!(
            shown.contains("): expected "),
            "{label} does not say what was expected: {shown}"
        );
    }

    // The handshake itself: a version without a number, a login answering true or an object,
    // an error envelope without Odoo's exception in it.
    let handshakes: Vec<(&str, &'static str, &'static str)> = vec![
        (
            "version without numbers",
            r#"{"jsonrpc":"2.0","id":1,"result":{"server_version":"saas~","server_version_info":"nineteen"}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":2}"#,
        ),
        (
            "version missing",
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":2}"#,
        ),
        (
            "login true",
            r#"{"jsonrpc":"2.0","id":1,"result":{"server_version_info":[17,0]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":true}"#,
        ),
        (
            "login an object",
            r#"{"jsonrpc":"2.0","id":1,"result":{"server_version_info":[17,0]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"uid":2}}"#,
        ),
        (
            "login a huge uid",
            r#"{"jsonrpc":"2.0","id":1,"result":{"server_version_info":[17,0]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":18446744073709551615}"#,
        ),
        (
            "error without data",
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":0,"message":"Odoo Server Error"}}"#,
            "",
        ),
        (
            "error whose name is a number",
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":0,"message":"x","data":{"name":42,"message":"y"}}}"#,
            "",
        ),
    ];
    for (label, version, login) in handshakes {
        let url = server(move |req: &str| {
            if req.contains("\"authenticate\"") {
                ok_json(login)
            } else {
                ok_json(version)
            }
        })
        .await;
        let c = client(&url, Duration::from_secs(5), DEFAULT_MAX_BODY_BYTES);
        let (r, _) = timed(Duration::from_secs(5), c.connect()).await;
        let e = r.map(|_| ()).expect_err(label);
        let shown = well_formed(&e);
        assert_eq!(e.kind(), "protocol", "{label}: {shown}");
        assert!(e.is_permanent(), "{label}: {shown}");
    }

    // An Odoo exception whose message is not a string keeps its name, so it is still
    // classified by it.
    let url = server(odoo17(|| {
        ok_json(r#"{"jsonrpc":"2.0","id":3,"error":{"code":200,"message":"x","data":{"name":"odoo.exceptions.UserError","message":{"html":"<b>no</b>"},"arguments":["the reason"]}}}"#)
    }))
    .await;
    let c = client(&url, Duration::from_secs(5), DEFAULT_MAX_BODY_BYTES);
    let e = search(&c).await.unwrap_err();
    well_formed(&e);
    assert_eq!(e.odoo_name(), Some("odoo.exceptions.UserError"));
    assert_eq!(e.odoo_message(), Some("the reason"));
    assert!(e.is_permanent());
}

/// A 50 MB reply with the default 32 MiB bound: refused whether it declares its length or is
/// chunked, without reading it all into memory; a 10 MB reply of records is read and parsed.
#[tokio::test]
async fn a_50_mb_reply_is_refused_and_a_10_mb_one_is_read() {
    assert_eq!(DEFAULT_MAX_BODY_BYTES, 32 * 1024 * 1024);
    for chunked in [false, true] {
        let url = server(move |_| Reply::Big {
            len: 50 * 1024 * 1024,
            chunked,
        })
        .await;
        let c = client(&url, Duration::from_secs(20), DEFAULT_MAX_BODY_BYTES);
        let (r, took) = timed(Duration::from_secs(20), c.connect()).await;
        let e = r.map(|_| ()).expect_err("50 MB");
        let shown = well_formed(&e);
        assert!(
            matches!(e, OdooError::ResponseTooLarge { limit, .. } if limit == DEFAULT_MAX_BODY_BYTES),
            "chunked {chunked}: {shown}"
        );
        assert!(e.is_permanent());
        println!("50 MB reply (chunked {chunked}): refused after {took:?}: {e}");
    }

    let records: Vec<Value> = (0..20_000)
        .map(|i| json!({"id": i, "name": format!("{i:0>490}")}))
        .collect();
    let body = json!({"jsonrpc": "2.0", "id": 3, "result": records}).to_string();
    assert!(body.len() > 10_000_000, "{}", body.len());
    let body = Arc::new(body);
    let url = server(odoo17(move || ok_json(&body))).await;
    let c = client(&url, Duration::from_secs(20), DEFAULT_MAX_BODY_BYTES);
    let (rows, took) = timed(
        Duration::from_secs(20),
        c.search_read("res.partner", &Domain::all(), &["name"], 0, None, None),
    )
    .await;
    let rows = rows.expect("a 10 MB reply under the bound is fine");
    assert_eq!(rows.len(), 20_000);
    assert_eq!(rows[19_999]["id"], 19_999);
    println!("10 MB reply of 20,000 records read in {took:?}");
}

/// HTML where JSON belongs: with 200 it is not Odoo (permanent); with 502/503/504 a proxy
/// stands in for an Odoo in trouble (transient). On both protocols, for a model call after a
/// good login. A 503 carrying a real Odoo exception is classified by the exception.
#[tokio::test]
async fn html_error_pages_are_classified_by_status() {
    let page = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
    for version in [17, 19] {
        for (status, transient) in [
            ("200 OK", false),
            ("502 Bad Gateway", true),
            ("503 Service Unavailable", true),
            ("504 Gateway Timeout", true),
            ("403 Forbidden", false),
        ] {
            let reply = move || http(status, "text/html; charset=utf-8", page);
            let url = if version == 17 {
                server(odoo17(reply)).await
            } else {
                server(odoo19(reply)).await
            };
            let c = client(&url, Duration::from_secs(5), DEFAULT_MAX_BODY_BYTES);
            let (r, _) = timed(Duration::from_secs(5), search(&c)).await;
            let e = r.expect_err(status);
            let shown = well_formed(&e);
            assert_eq!(e.is_transient(), transient, "{version} {status}: {shown}");
            let code: u16 = status[..3].parse().unwrap();
            assert_eq!(e.http_status(), Some(code), "{version} {status}: {shown}");
            assert!(shown.contains("Bad Gateway"), "the page is quoted: {shown}");
            if code == 200 {
                assert!(shown.contains("HTML page"), "{shown}");
            }
        }
    }
    let url = server(odoo17(|| {
        http(
            "503 Service Unavailable",
            "application/json",
            br#"{"jsonrpc":"2.0","id":3,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.ValidationError","message":"bad vendor"}}}"#,
        )
    }))
    .await;
    let c = client(&url, Duration::from_secs(5), DEFAULT_MAX_BODY_BYTES);
    let e = search(&c).await.unwrap_err();
    well_formed(&e);
    assert_eq!(e.odoo_name(), Some("odoo.exceptions.ValidationError"));
    assert!(e.is_permanent(), "the exception decides, not the 503");
}

/// A slow loris (headers then one byte a second), a server that sends its headers one byte a
/// second, one that never answers, and one that hangs up: every call ends within the
/// configured 2 s (plus scheduling slack), as a transient error whose outcome is unknown
/// where the request may have reached Odoo. Run side by side, so the test takes ~2 s.
#[tokio::test]
async fn slow_and_silent_servers_end_within_the_configured_timeout() {
    let timeout = Duration::from_secs(2);
    let body = br#"{"jsonrpc":"2.0","id":3,"result":[1]}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let loris_head = head.clone();
    let loris = server(odoo17(move || Reply::Drip {
        head: loris_head.clone().into_bytes(),
        rest: body.to_vec(),
        every: Duration::from_secs(1),
    }))
    .await;
    let slow_head_bytes = head.clone();
    let slow_headers = server(odoo17(move || Reply::Drip {
        head: Vec::new(),
        rest: slow_head_bytes.clone().into_bytes(),
        every: Duration::from_secs(1),
    }))
    .await;
    let silent = server(odoo17(|| Reply::Silent)).await;
    let json2_loris_head = head.clone();
    let json2_loris = server(odoo19(move || Reply::Drip {
        head: json2_loris_head.clone().into_bytes(),
        rest: body.to_vec(),
        every: Duration::from_secs(1),
    }))
    .await;
    let hang_up = server(odoo17(|| Reply::Close)).await;

    let run = |url: String| async move {
        let c = client(&url, timeout, DEFAULT_MAX_BODY_BYTES);
        c.connect()
            .await
            .expect("the handshake is answered normally");
        timed(Duration::from_secs(10), search(&c)).await
    };
    let (a, b, c, d, e) = tokio::join!(
        run(loris),
        run(slow_headers),
        run(silent),
        run(json2_loris),
        run(hang_up)
    );
    for (label, (r, took)) in [
        ("slow loris body", a),
        ("slow headers", b),
        ("silent", c),
        ("JSON-2 slow loris", d),
    ] {
        let e = r.expect_err(label);
        let shown = well_formed(&e);
        assert!(matches!(e, OdooError::Timeout { .. }), "{label}: {shown}");
        assert!(e.is_transient() && e.outcome_unknown(), "{label}: {shown}");
        assert!(
            took >= timeout - Duration::from_millis(50)
                && took < timeout + Duration::from_millis(1500),
            "{label} ended after {took:?}, the timeout is {timeout:?}"
        );
        println!("{label}: {took:?}: {e}");
    }
    let (r, took) = e;
    let e = r.expect_err("hang up");
    let shown = well_formed(&e);
    assert!(e.is_transient(), "{shown}");
    assert!(
        took < timeout,
        "a hang-up is reported at once, not after {took:?}"
    );
    println!("hang-up: {took:?}: {e}");
}

/// Odoo's amounts are read with `money()` after every push: a hostile reply with text where a
/// number belongs is a protocol error, even when the text is multi-byte at the point where
/// the error message cuts it (this used to panic).
#[test]
fn money_that_is_not_a_number_is_an_error_not_a_panic() {
    use odoo_sync_worker::odoo::money;
    for value in [
        json!("€".repeat(40)),
        json!({"amount": "ééééééééééééééééééééééééééééééééééééééééééé"}),
        json!([1.5, "☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃☃"]),
        json!(true),
    ] {
        for r in [
            money::money(&value, "amount_total"),
            money::quantity(&value, "product_qty"),
        ] {
            let e = r.expect_err("not a number");
            assert_eq!(e.kind(), "protocol");
            assert!(e.is_permanent());
            assert!(e.to_string().contains("should be a number"), "{e}");
        }
    }
}
