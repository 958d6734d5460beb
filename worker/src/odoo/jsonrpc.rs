//! JSON-RPC (`POST /jsonrpc`): the envelope, and the reading of replies.
//!
//! Odoo answers HTTP 200 for every call, success or exception; a method returning `None`
//! (`button_cancel`) gives a reply with neither `result` nor `error`. Anything that is not
//! such an envelope is a protocol error (see [`super::error`] for its classification).

use super::error::{OdooError, OdooResult, ServerError};
use super::http::{http_error, protocol_error, RawReply};
use serde_json::{json, Map, Value};

/// The request envelope of `service.method(*args)`.
pub fn request(id: u64, service: &str, method: &str, args: Vec<Value>) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "call",
        "id": id,
        "params": {"service": service, "method": method, "args": args},
    })
}

/// The `args` of `object.execute_kw`.
pub fn execute_kw_args(
    db: &str,
    uid: i64,
    secret: &str,
    model: &str,
    method: &str,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Vec<Value> {
    vec![
        Value::from(db),
        Value::from(uid),
        Value::from(secret),
        Value::from(model),
        Value::from(method),
        Value::Array(args),
        Value::Object(kwargs),
    ]
}

/// Reads a JSON-RPC reply: `Ok(Some(result))`, `Ok(None)` for a `None` result, or the error.
/// Never panics, whatever the bytes.
pub fn parse_reply(reply: &RawReply) -> OdooResult<Option<Value>> {
    let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
    if reply.status != 200 {
        // Odoo itself always answers 200; another status comes from a proxy or a server in
        // trouble. Keep an Odoo exception if the body happens to hold one.
        if let Some(err) = parsed.as_ref().and_then(|v| envelope_error(reply, v)) {
            return Err(err);
        }
        return Err(http_error(reply));
    }
    let Some(value) = parsed else {
        let what = if looks_like_html(reply) {
            "an HTML page instead of a JSON-RPC reply (is ODOO_URL the Odoo server?)"
        } else {
            "the body is not valid JSON"
        };
        return Err(protocol_error(reply, what));
    };
    let Some(obj) = value.as_object() else {
        return Err(protocol_error(reply, "the reply is not a JSON object"));
    };
    if obj.contains_key("error") {
        return Err(envelope_error(reply, &value).unwrap_or_else(|| {
            protocol_error(reply, "`error` is not an Odoo exception (no `data.name`)")
        }));
    }
    match obj.get("result") {
        Some(Value::Null) => Ok(None),
        Some(result) => Ok(Some(result.clone())),
        None if obj.contains_key("jsonrpc") || obj.contains_key("id") => Ok(None),
        None => Err(protocol_error(
            reply,
            "a JSON object without `jsonrpc`, `result` or `error`",
        )),
    }
}

/// The Odoo exception inside `{"error": {"code", "message", "data": {...}}}`, if any.
fn envelope_error(reply: &RawReply, value: &Value) -> Option<OdooError> {
    let error = value.get("error")?;
    let code = error.get("code").and_then(Value::as_i64);
    let status = (reply.status != 200).then_some(reply.status);
    let server = ServerError::from_data(error.get("data")?, status, code, reply.retry_after)?;
    Some(OdooError::Server(Box::new(server)))
}

/// Whether the body is an HTML page (proxy error, login portal), to say so in the error.
pub(crate) fn looks_like_html(reply: &RawReply) -> bool {
    if reply
        .content_type
        .to_ascii_lowercase()
        .contains("text/html")
    {
        return true;
    }
    let start: Vec<u8> = reply
        .body
        .iter()
        .copied()
        .skip_while(u8::is_ascii_whitespace)
        .take(15)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    start.starts_with(b"<!doctype") || start.starts_with(b"<html")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> RawReply {
        RawReply {
            url: "http://odoo/jsonrpc".into(),
            status,
            content_type: "application/json".into(),
            retry_after: None,
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn results_none_and_errors() {
        assert_eq!(
            parse_reply(&reply(200, r#"{"jsonrpc":"2.0","id":1,"result":[1,2]}"#)).unwrap(),
            Some(json!([1, 2]))
        );
        assert_eq!(
            parse_reply(&reply(200, r#"{"jsonrpc":"2.0","id":1}"#)).unwrap(),
            None
        );
        let e = parse_reply(&reply(
            200,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":0,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.UserError","message":"cancel it first","arguments":[],"context":{},"debug":"Traceback"}}}"#,
        ))
        .unwrap_err();
        assert_eq!(e.odoo_name(), Some("odoo.exceptions.UserError"));
        assert!(e.is_permanent());
        assert!(e.to_string().contains("cancel it first"), "{e}");
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        for body in [
            "",
            "nope",
            "[1]",
            r#"{"a":1}"#,
            r#"{"error":"x"}"#,
            "<html>",
        ] {
            let e = parse_reply(&reply(200, body)).unwrap_err();
            assert_eq!(e.kind(), "protocol", "{body}: {e}");
            assert!(e.is_permanent());
        }
        let e = parse_reply(&reply(502, "<html>Bad Gateway</html>")).unwrap_err();
        assert_eq!(e.http_status(), Some(502));
        assert!(e.is_transient());
    }
}
