//! Money at the edge: Odoo sends monetary values as JSON floats already rounded to the
//! currency; we turn them into [`Decimal`] once, here, and compute only with decimals after.

use super::error::{OdooError, OdooResult};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use std::str::FromStr;

/// Decimal places of the currencies we deal with (USD, EUR: `rounding` 0.01).
pub const MONEY_SCALE: u32 = 2;

/// A float from Odoo as a decimal rounded to `scale` places, half away from zero like Odoo.
/// Goes through the float's shortest decimal text (what Odoo's JSON carried), so `0.1` is
/// exactly `0.1`, not `0.1000000000000000055…`. `None` for NaN and infinities.
pub fn decimal_from_f64(value: f64, scale: u32) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    let exact = Decimal::from_str(&value.to_string())
        .ok()
        .or_else(|| Decimal::from_f64_retain(value))?;
    Some(exact.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero))
}

/// A monetary value from Odoo's JSON, rounded to 2 places. Odoo sends `false` for an empty
/// monetary field, read as zero; any other type is a protocol error naming `what`.
pub fn money(value: &Value, what: &str) -> OdooResult<Decimal> {
    match value {
        Value::Bool(false) | Value::Null => Ok(Decimal::ZERO),
        Value::Number(n) => n
            .as_f64()
            .and_then(|f| decimal_from_f64(f, MONEY_SCALE))
            .ok_or_else(|| unexpected(what, value)),
        _ => Err(unexpected(what, value)),
    }
}

/// A quantity from Odoo's JSON (UoM precision is not currency precision: kept at up to 6
/// places, Odoo's default "Product Unit" precision is lower).
pub fn quantity(value: &Value, what: &str) -> OdooResult<Decimal> {
    match value {
        Value::Bool(false) | Value::Null => Ok(Decimal::ZERO),
        Value::Number(n) => n
            .as_f64()
            .and_then(|f| decimal_from_f64(f, 6))
            .map(|d| d.normalize())
            .ok_or_else(|| unexpected(what, value)),
        _ => Err(unexpected(what, value)),
    }
}

/// Odoo's `value` as a local numeric column of `scale` decimals stores it (PostgreSQL rounds
/// halves away from zero); as it is without a scale. A local value equal to this is Odoo's
/// value, only rounded by the local column.
pub fn as_stored(value: Decimal, scale: Option<u32>) -> Decimal {
    match scale {
        Some(s) => {
            value.round_dp_with_strategy(s, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        }
        None => value,
    }
}

/// A decimal as the JSON number Odoo expects (Odoo's ORM takes floats for monetary fields).
pub fn to_json(value: Decimal) -> Value {
    use rust_decimal::prelude::ToPrimitive;
    value
        .to_f64()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn unexpected(what: &str, value: &Value) -> OdooError {
    // By characters: the value comes from the network, and String::truncate panics when
    // byte 80 falls inside a multi-byte character.
    let shown: String = value.to_string().chars().take(80).collect();
    OdooError::Protocol {
        url: what.to_string(),
        status: 200,
        detail: format!("{what} should be a number, got {shown}"),
        excerpt: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn floats_become_exact_decimals() {
        assert_eq!(money(&json!(0.1), "x").unwrap(), d("0.10"));
        assert_eq!(money(&json!(1149.995), "x").unwrap(), d("1150.00"));
        assert_eq!(money(&json!(-2.675), "x").unwrap(), d("-2.68"));
        assert_eq!(money(&json!(12), "x").unwrap(), d("12"));
        assert_eq!(money(&json!(false), "x").unwrap(), Decimal::ZERO);
        assert!(money(&json!("12.5"), "amount_total").is_err());
        assert_eq!(quantity(&json!(2.5), "q").unwrap(), d("2.5"));
        assert_eq!(decimal_from_f64(f64::NAN, 2), None);
        assert_eq!(to_json(d("12.50")), json!(12.5));
    }
}
