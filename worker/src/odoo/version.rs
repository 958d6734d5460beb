//! What differs between Odoo 16–19 for the purchase models: the server version, and the field
//! names that were renamed in 19 (`notes` → `note`, `product_uom` → `product_uom_id`,
//! `taxes_id` → `tax_ids`).

use serde_json::{Map, Value};
use std::fmt;

/// The server's version, from `common.version` or `GET /web/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdooVersion {
    /// Major version (16, 17, 18, 19, ...).
    pub major: u32,
    /// Minor version (`saas~18.2` → 2).
    pub minor: u32,
    /// The text the server sent, e.g. `19.0` or `saas~18.2+e`.
    pub text: String,
}

impl fmt::Display for OdooVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl OdooVersion {
    /// Reads `{"server_version_info": [19, 0, ...], "server_version": "19.0"}` (JSON-RPC) or
    /// `{"version_info": [...], "version": "19.0"}` (`/web/version`). `None` when neither
    /// gives a major version.
    pub fn from_value(value: &Value) -> Option<OdooVersion> {
        let text = value
            .get("server_version")
            .or_else(|| value.get("version"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let info = value
            .get("server_version_info")
            .or_else(|| value.get("version_info"))
            .and_then(Value::as_array);
        let num = |i: usize| {
            info.and_then(|a| a.get(i))
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .and_then(|n| u32::try_from(n).ok())
        };
        let (major, minor) = match (num(0), num(1)) {
            (Some(major), minor) => (major, minor.unwrap_or(0)),
            (None, _) => Self::parse_text(&text)?,
        };
        let text = if text.is_empty() {
            format!("{major}.{minor}")
        } else {
            text
        };
        Some(OdooVersion { major, minor, text })
    }

    /// `19.0`, `saas~18.2`, `17.0+e` → (major, minor).
    fn parse_text(text: &str) -> Option<(u32, u32)> {
        let start = text.find(|c: char| c.is_ascii_digit())?;
        let mut parts = text[start..]
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some((major, minor))
    }

    /// Whether the server offers JSON-2 (`/json/2/...`).
    pub fn has_json2(&self) -> bool {
        self.major >= 19
    }
}

/// Names of the purchase fields that differ between versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldNames {
    /// Order notes: `notes` (16–18) or `note` (19).
    pub order_notes: &'static str,
    /// Line unit of measure: `product_uom` (16–18) or `product_uom_id` (19).
    pub line_uom: &'static str,
    /// Line taxes: `taxes_id` (16–18) or `tax_ids` (19).
    pub line_taxes: &'static str,
    /// Whether lines have `discount` (17+).
    pub line_discount: bool,
    /// Whether orders have `locked` (19; older versions lock with state `done`).
    pub order_locked: bool,
}

impl FieldNames {
    /// The names Odoo `version` uses.
    pub fn for_version(version: &OdooVersion) -> FieldNames {
        let v19 = version.major >= 19;
        FieldNames {
            order_notes: if v19 { "note" } else { "notes" },
            line_uom: if v19 { "product_uom_id" } else { "product_uom" },
            line_taxes: if v19 { "tax_ids" } else { "taxes_id" },
            line_discount: version.major >= 17,
            order_locked: v19,
        }
    }

    /// The names that exist in `fields_get` of `purchase.order` and `purchase.order.line`:
    /// what the server really has wins over what its version suggests (a customised database,
    /// a saas release that renamed early). Falls back to `version` for a name in neither form.
    pub fn from_fields(
        version: &OdooVersion,
        order_fields: &Map<String, Value>,
        line_fields: &Map<String, Value>,
    ) -> FieldNames {
        let guess = FieldNames::for_version(version);
        let pick = |fields: &Map<String, Value>, new: &'static str, old: &'static str, d| {
            if fields.contains_key(new) {
                new
            } else if fields.contains_key(old) {
                old
            } else {
                d
            }
        };
        FieldNames {
            order_notes: pick(order_fields, "note", "notes", guess.order_notes),
            line_uom: pick(line_fields, "product_uom_id", "product_uom", guess.line_uom),
            line_taxes: pick(line_fields, "tax_ids", "taxes_id", guess.line_taxes),
            line_discount: line_fields.contains_key("discount"),
            order_locked: order_fields.contains_key("locked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions() {
        let v = OdooVersion::from_value(&json!({"server_version": "19.0",
            "server_version_info": [19, 0, 0, "final", 0, ""]}))
        .unwrap();
        assert_eq!((v.major, v.minor, v.text.as_str()), (19, 0, "19.0"));
        let v = OdooVersion::from_value(&json!({"server_version": "saas~18.2+e"})).unwrap();
        assert_eq!((v.major, v.minor), (18, 2));
        let v =
            OdooVersion::from_value(&json!({"version_info": [17, 0], "version": "17.0"})).unwrap();
        assert_eq!(v.major, 17);
        assert!(OdooVersion::from_value(&json!({"x": 1})).is_none());
        assert!(OdooVersion::from_value(&json!("19.0")).is_none());
    }

    #[test]
    fn field_names() {
        let v17 = OdooVersion::from_value(&json!({"server_version": "17.0"})).unwrap();
        let f = FieldNames::for_version(&v17);
        assert_eq!(
            (f.order_notes, f.line_uom, f.line_taxes),
            ("notes", "product_uom", "taxes_id")
        );
        let order = json!({"note": {}, "locked": {}});
        let line = json!({"product_uom_id": {}, "tax_ids": {}});
        let f =
            FieldNames::from_fields(&v17, order.as_object().unwrap(), line.as_object().unwrap());
        assert_eq!(
            (f.order_notes, f.line_uom, f.line_taxes),
            ("note", "product_uom_id", "tax_ids")
        );
        assert!(f.order_locked && !f.line_discount);
    }
}
