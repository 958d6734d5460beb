//! JSON-2 (`POST /json/2/<model>/<method>`, Odoo 19+): bearer API key, database header, named
//! arguments, bare results, and errors told by the HTTP status with Odoo's exception as body.

use super::error::{OdooError, OdooResult, ServerError};
use super::http::{http_error, protocol_error, RawReply};
use super::jsonrpc::looks_like_html;
use serde_json::Value;

/// Path of a call. Model and method names are checked so that nothing a caller passes can
/// change the URL beyond `json/2/<model>/<method>`.
pub fn path(model: &str, method: &str) -> OdooResult<String> {
    check_identifier("model", model, true)?;
    check_identifier("method", method, false)?;
    Ok(format!("json/2/{model}/{method}"))
}

/// Accepts `[A-Za-z0-9_]` (and `.` in model names), refuses the rest.
pub(crate) fn check_identifier(what: &str, name: &str, dots: bool) -> OdooResult<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dots && c == '.'));
    if ok {
        Ok(())
    } else {
        Err(OdooError::Unsupported(format!(
            "invalid Odoo {what} name {name:?}"
        )))
    }
}

/// Reads a JSON-2 reply: the bare result on 200 (`None` for JSON `null`), else the error.
/// Never panics, whatever the bytes.
pub fn parse_reply(reply: &RawReply) -> OdooResult<Option<Value>> {
    let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
    if reply.status == 200 {
        return match parsed {
            Some(Value::Null) => Ok(None),
            Some(v) => Ok(Some(v)),
            None if looks_like_html(reply) => Err(protocol_error(
                reply,
                "an HTML page instead of a JSON-2 reply (is ODOO_URL the Odoo server?)",
            )),
            None => Err(protocol_error(reply, "the body is not valid JSON")),
        };
    }
    let server = parsed
        .as_ref()
        .and_then(|v| ServerError::from_data(v, Some(reply.status), None, reply.retry_after));
    match server {
        Some(server) => Err(OdooError::Server(Box::new(server))),
        None => Err(http_error(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, body: &str) -> RawReply {
        RawReply {
            url: "http://odoo/json/2/m/x".into(),
            status,
            content_type: "application/json".into(),
            retry_after: None,
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_and_bodies() {
        assert_eq!(parse_reply(&reply(200, "[15]")).unwrap(), Some(json!([15])));
        assert_eq!(parse_reply(&reply(200, "null")).unwrap(), None);
        let e = parse_reply(&reply(
            422,
            r#"{"name":"odoo.exceptions.ValidationError","message":"Missing","arguments":[],"context":{},"debug":""}"#,
        ))
        .unwrap_err();
        assert_eq!(e.odoo_name(), Some("odoo.exceptions.ValidationError"));
        assert_eq!(e.http_status(), Some(422));
        assert!(e.is_permanent());
        let e = parse_reply(&reply(
            409,
            r#"{"name":"psycopg2.errors.SerializationFailure","message":"x"}"#,
        ))
        .unwrap_err();
        assert!(e.is_transient());
        assert!(parse_reply(&reply(503, "<html>"))
            .unwrap_err()
            .is_transient());
        assert!(parse_reply(&reply(200, "{")).unwrap_err().is_permanent());
    }

    #[test]
    fn path_refuses_injection() {
        assert_eq!(
            path("purchase.order", "search_read").unwrap(),
            "json/2/purchase.order/search_read"
        );
        assert!(path("../web", "x").is_err());
        assert!(path("res.partner", "a/b").is_err());
        assert!(path("res.partner?x=1", "read").is_err());
    }
}
