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
