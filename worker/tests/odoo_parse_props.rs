//! Property tests of reply parsing: whatever bytes, status and content type a server sends,
//! the parsers return a value or a classified error, never panic.

use odoo_sync_worker::odoo::http::RawReply;
use odoo_sync_worker::odoo::{json2, jsonrpc, OdooError};
use proptest::prelude::*;

fn reply(status: u16, content_type: String, body: Vec<u8>) -> RawReply {
    RawReply {
        url: "http://odoo.test/x".into(),
        status,
        content_type,
        retry_after: None,
        location: None,
        body,
    }
}

fn check(result: Result<Option<serde_json::Value>, OdooError>) {
    if let Err(e) = result {
        // Formatting and classification must work for every error.
        let _ = (e.to_string(), format!("{e:?}"), e.is_transient(), e.kind());
    }
}

/// JSON-ish fragments, so the generator often produces almost-valid envelopes.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"jsonrpc\"",
        "\"2.0\"",
        "\"result\"",
        "\"error\"",
        "\"data\"",
        "\"name\"",
        "\"message\"",
        "\"id\"",
        "null",
        "false",
        "true",
        "1",
        "-0.5e3",
        "\"odoo.exceptions.UserError\"",
        "\"\\u0000\"",
        "<html>",
        "\u{fffd}",
        " ",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|parts| parts.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(
        status in 100u16..600,
        ct in prop::sample::select(vec!["application/json", "text/html", "", "x/\u{0}"]),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        check(jsonrpc::parse_reply(&reply(status, ct.to_string(), body.clone())));
        check(json2::parse_reply(&reply(status, ct.to_string(), body)));
    }

    #[test]
    fn jsonish_bodies_never_panic(
        status in prop::sample::select(vec![200u16, 400, 401, 404, 409, 422, 429, 500, 502]),
        body in jsonish(),
    ) {
        check(jsonrpc::parse_reply(&reply(status, "application/json".into(), body.clone())));
        check(json2::parse_reply(&reply(status, "application/json".into(), body)));
    }

    #[test]
    fn non_200_jsonrpc_is_never_a_success(status in 201u16..600, body in jsonish()) {
        let r = jsonrpc::parse_reply(&reply(status, "application/json".into(), body));
        prop_assert!(r.is_err());
    }

    #[test]
    fn money_never_panics(x in any::<f64>()) {
        let _ = odoo_sync_worker::odoo::money::money(&serde_json::json!(x), "x");
        let _ = odoo_sync_worker::odoo::money::decimal_from_f64(x, 2);
    }
}

/// Arbitrary JSON, with object keys drawn mostly from the names the parsers look for, so the
/// generator reaches their branches (a `name` that is a number, `server_version_info` that is
/// a string, an `error` without `data`, ...).
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "odoo.exceptions.UserError",
            "psycopg2.errors.SerializationFailure",
            "psycopg2.OperationalError",
            "19.0",
            "saas~18.2+e",
            "database \"x\" does not exist",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let key = prop_oneof![
            prop::sample::select(vec![
                "jsonrpc",
                "id",
                "result",
                "error",
                "data",
                "name",
                "message",
                "arguments",
                "debug",
                "code",
                "server_version",
                "server_version_info",
                "version",
                "version_info",
                "ids",
                "messages",
            ])
            .prop_map(str::to_string),
            "[a-z_]{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Any JSON as the body, on any status: a value or a classified error.
    #[test]
    fn arbitrary_json_bodies_never_panic(
        status in prop::sample::select(vec![200u16, 401, 404, 409, 422, 429, 500, 502, 503]),
        value in json_value(),
    ) {
        let body = serde_json::to_vec(&value).unwrap();
        check(jsonrpc::parse_reply(&reply(status, "application/json".into(), body.clone())));
        check(json2::parse_reply(&reply(status, "application/json".into(), body)));
    }

    /// A well-formed JSON-RPC success envelope gives back its result, whatever it is.
    #[test]
    fn a_jsonrpc_success_returns_its_result(result in json_value()) {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": result.clone()});
        let got = jsonrpc::parse_reply(&reply(200, "application/json".into(), body.to_string().into_bytes()));
        // What serde_json reads back from the text (it may differ from `result` in the last
        // bit of a float), which is all a client can return.
        let reread: serde_json::Value = serde_json::from_str(&result.to_string()).unwrap();
        let want = if reread.is_null() { None } else { Some(reread) };
        prop_assert_eq!(got.ok(), Some(want));
    }

    /// Any JSON as Odoo's `data`: an exception only when `name` is a string, and then it
    /// classifies and formats; the message is always a string.
    #[test]
    fn server_errors_from_any_data(
        data in json_value(),
        status in prop::option::of(100u16..600),
        code in prop::option::of(any::<i64>()),
    ) {
        use odoo_sync_worker::odoo::ServerError;
        let parsed = ServerError::from_data(&data, status, code, None);
        prop_assert_eq!(parsed.is_some(), data.get("name").is_some_and(|n| n.is_string()));
        if let Some(e) = parsed {
            let _ = (e.is_transient(), e.to_string());
            prop_assert!(e.debug.chars().count() <= 4000);
        }
    }

    /// Any JSON as a version reply: a version or None, never a panic.
    #[test]
    fn versions_from_any_json(value in json_value()) {
        if let Some(v) = odoo_sync_worker::odoo::OdooVersion::from_value(&value) {
            let _ = (v.has_json2(), v.to_string());
        }
    }

    /// Money and quantities from any JSON: a decimal or a protocol error.
    #[test]
    fn money_from_any_json(value in json_value()) {
        use odoo_sync_worker::odoo::money;
        for r in [money::money(&value, "amount"), money::quantity(&value, "qty")] {
            if let Err(e) = r {
                prop_assert_eq!(e.kind(), "protocol");
            }
        }
    }

    /// Retry-After in any form, far-future dates included: a duration or None.
    #[test]
    fn retry_after_never_panics(
        text in prop_oneof![
            "\\PC{0,40}",
            "[0-9]{1,25}",
            (0u32..10_000, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!(
                "Fri, {d:02} {} {y:04} 23:59:59 GMT",
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(m - 1) as usize]
            )),
        ],
    ) {
        let _ = odoo_sync_worker::odoo::http::parse_retry_after(&text);
    }

    /// Excerpts are bounded and printable, whatever the bytes.
    #[test]
    fn excerpts_are_bounded_and_printable(
        body in prop::collection::vec(any::<u8>(), 0..4096),
        max in 0usize..400,
    ) {
        let e = odoo_sync_worker::odoo::error::excerpt(&body, max);
        prop_assert!(e.chars().count() <= max + 1, "{} chars for max {}", e.chars().count(), max);
        prop_assert!(!e.chars().any(char::is_control));
    }
}
