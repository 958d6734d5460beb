//! Stored field values and their conversion to and from Odoo's JSON.
//!
//! Numbers are kept as `Decimal` so that money is never computed in binary floating point; they
//! become JSON floats only when a reply is rendered.

use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;

/// One stored field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum Val {
    /// Odoo's empty value, read back as `false`.
    False,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float or monetary value, exact.
    Num(Decimal),
    /// Char, text, html, selection, date or datetime.
    Str(String),
    /// A many2one: the target id.
    Ref(i64),
    /// A one2many or many2many: the target ids in order.
    Ids(Vec<i64>),
}

/// A stored record: field name → value (fields never set are absent and read as empty).
pub type Record = BTreeMap<String, Val>;

impl Val {
    /// The number held, or zero (Odoo reads an unset float as 0.0).
    pub fn num(&self) -> Decimal {
        match self {
            Val::Num(d) => *d,
            Val::Int(i) => Decimal::from(*i),
            _ => Decimal::ZERO,
        }
    }
    /// The many2one id held, if any.
    pub fn ref_id(&self) -> Option<i64> {
        match self {
            Val::Ref(id) => Some(*id),
            _ => None,
        }
    }
    /// The text held, if any.
    pub fn str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The x2many ids held (empty when unset).
    pub fn ids(&self) -> &[i64] {
        match self {
            Val::Ids(ids) => ids,
            _ => &[],
        }
    }
    /// Python truthiness, which Odoo applies to domain values and conditions.
    pub fn truthy(&self) -> bool {
        match self {
            Val::False => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Num(d) => !d.is_zero(),
            Val::Str(s) => !s.is_empty(),
            Val::Ref(_) => true,
            Val::Ids(ids) => !ids.is_empty(),
        }
    }
}

/// Rounds a monetary amount to the currency's 0.01, half away from zero (Odoo's `float_round`).
pub fn round_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Converts an exact decimal to the JSON float Odoo would send.
pub fn dec_to_json(d: Decimal) -> Value {
    let f = d.to_f64().unwrap_or(0.0);
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Reads a JSON number as an exact decimal (through its shortest text form, not its binary value).
pub fn json_to_dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => {
            let text = n.to_string();
            Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .ok()
                .or_else(|| n.as_f64().and_then(Decimal::from_f64))
        }
        Value::Bool(false) | Value::Null => Some(Decimal::ZERO),
        _ => None,
    }
}

/// Python-like `repr` of a JSON value, used in error messages that quote user input.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// Python's truth of a JSON value: false, null, 0, "", [] and {} are false.
pub fn json_truthy(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_rounds_half_away_from_zero() {
        assert_eq!(round_money(Decimal::new(1005, 3)), Decimal::new(101, 2));
        assert_eq!(round_money(Decimal::new(-1005, 3)), Decimal::new(-101, 2));
    }

    #[test]
    fn json_numbers_become_exact_decimals() {
        assert_eq!(
            json_to_dec(&serde_json::json!(0.1)),
            Some(Decimal::new(1, 1))
        );
        assert_eq!(json_to_dec(&serde_json::json!(12)), Some(Decimal::from(12)));
    }
}
