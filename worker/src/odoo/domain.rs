//! Odoo search domains built from typed parts, so values (order numbers, vendor names typed by
//! users) travel as JSON values and operators come from a closed list: nothing a user types can
//! change the shape of a domain.
//!
//! A [`Domain`] always holds exactly one expression in Odoo's prefix (Polish) notation, or none
//! (which matches every record), so [`Domain::and`], [`Domain::or`] and [`Domain::not`] compose
//! without surprises.

use serde_json::{json, Value};

/// Comparison operators Odoo accepts in a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `in` (value is a list)
    In,
    /// `not in` (value is a list)
    NotIn,
    /// `like` (SQL LIKE with `%` around the value)
    Like,
    /// `ilike` (case-insensitive `like`)
    Ilike,
    /// `not like`
    NotLike,
    /// `not ilike`
    NotIlike,
    /// `=like` (the value is the pattern itself)
    EqLike,
    /// `=ilike`
    EqIlike,
}

impl Op {
    /// The operator as Odoo spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::In => "in",
            Op::NotIn => "not in",
            Op::Like => "like",
            Op::Ilike => "ilike",
            Op::NotLike => "not like",
            Op::NotIlike => "not ilike",
            Op::EqLike => "=like",
            Op::EqIlike => "=ilike",
        }
    }
}

/// A search domain.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Domain {
    terms: Vec<Value>,
}

impl Domain {
    /// Matches every record (`[]`).
    pub fn all() -> Self {
        Domain::default()
    }

    /// Matches no record.
    pub fn none() -> Self {
        Domain::leaf("id", Op::In, Vec::<i64>::new())
    }

    /// `[field, op, value]`. `field` is a field name or dotted path chosen by the program;
    /// `value` is sent as a JSON value and never interpreted as domain syntax.
    pub fn leaf(field: &str, op: Op, value: impl Into<Value>) -> Self {
        Domain {
            terms: vec![json!([field, op.as_str(), value.into()])],
        }
    }

    /// `field = value`.
    pub fn eq(field: &str, value: impl Into<Value>) -> Self {
        Domain::leaf(field, Op::Eq, value)
    }

    /// `field in values`.
    pub fn is_in<T: Into<Value>>(field: &str, values: impl IntoIterator<Item = T>) -> Self {
        let list: Vec<Value> = values.into_iter().map(Into::into).collect();
        Domain::leaf(field, Op::In, list)
    }

    /// `id in ids`.
    pub fn ids(ids: &[i64]) -> Self {
        Domain::is_in("id", ids.iter().copied())
    }

    /// Both must hold.
    pub fn and(self, other: Domain) -> Self {
        Self::combine("&", self, other)
    }

    /// Either may hold.
    pub fn or(self, other: Domain) -> Self {
        if self.terms.is_empty() || other.terms.is_empty() {
            // "everything or X" is everything.
            return Domain::all();
        }
        Self::combine("|", self, other)
    }

    /// The negation.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        if self.terms.is_empty() {
            return Domain::none();
        }
        let mut terms = vec![Value::from("!")];
        terms.extend(self.terms);
        Domain { terms }
    }

    fn combine(op: &str, a: Domain, b: Domain) -> Self {
        if a.terms.is_empty() {
            return b;
        }
        if b.terms.is_empty() {
            return a;
        }
        let mut terms = Vec::with_capacity(a.terms.len() + b.terms.len() + 1);
        terms.push(Value::from(op));
        terms.extend(a.terms);
        terms.extend(b.terms);
        Domain { terms }
    }

    /// Whether this domain matches every record.
    pub fn is_all(&self) -> bool {
        self.terms.is_empty()
    }

    /// The JSON list Odoo expects.
    pub fn to_value(&self) -> Value {
        Value::Array(self.terms.clone())
    }
}

impl From<Domain> for Value {
    fn from(d: Domain) -> Value {
        Value::Array(d.terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composition_is_prefix_notation() {
        let d = Domain::eq("state", "draft")
            .and(Domain::leaf("write_date", Op::Ge, "2026-01-01 00:00:00"))
            .or(Domain::ids(&[1, 2]).not());
        assert_eq!(
            d.to_value(),
            json!([
                "|",
                "&",
                ["state", "=", "draft"],
                ["write_date", ">=", "2026-01-01 00:00:00"],
                "!",
                ["id", "in", [1, 2]]
            ])
        );
        assert_eq!(Domain::all().and(Domain::eq("a", 1)), Domain::eq("a", 1));
        assert!(Domain::all().or(Domain::eq("a", 1)).is_all());
        assert_eq!(Domain::all().not(), Domain::none());
    }

    #[test]
    fn user_text_stays_a_value() {
        let evil = r#"x"], "|", ["id", "!=", 0"#;
        let d = Domain::eq("origin", evil);
        assert_eq!(d.to_value()[0][2], Value::from(evil));
        assert_eq!(d.to_value().as_array().map(Vec::len), Some(1));
    }
}
