//! Odoo search domains (prefix notation with `&`, `|`, `!`) and `order` specifications.

use super::errors::{OdooError, OdooResult};
use super::schema::{FType, ModelDef, Schema};
use super::store::Store;
use super::value::{json_to_dec, py_repr, Val};
use rust_decimal::Decimal;
use serde_json::Value;
use std::cmp::Ordering;

/// Comparison operators of a domain leaf.
const OPERATORS: &[&str] = &[
    "=",
    "!=",
    "<>",
    ">",
    ">=",
    "<",
    "<=",
    "in",
    "not in",
    "like",
    "ilike",
    "not like",
    "not ilike",
    "=like",
    "=ilike",
];

/// A parsed domain.
#[derive(Debug, Clone)]
pub enum Domain {
    /// Always true (the empty domain, or the `(1, '=', 1)` leaf).
    True,
    /// Always false (`(0, '=', 1)`).
    False,
    /// Both must hold.
    And(Box<Domain>, Box<Domain>),
    /// Either may hold.
    Or(Box<Domain>, Box<Domain>),
    /// Negation.
    Not(Box<Domain>),
    /// `(path, operator, value)`, path split on dots.
    Leaf {
        /// Field path (`partner_id.ref` → `["partner_id", "ref"]`).
        path: Vec<String>,
        /// Operator, `<>` normalized to `!=`.
        op: String,
        /// Right-hand value as sent.
        value: Value,
    },
}

fn leaf_repr(items: &[Value]) -> String {
    let inner: Vec<String> = items.iter().map(py_repr).collect();
    format!("({})", inner.join(", "))
}

/// Parses `domain` against `model`, checking fields and operators as Odoo does.
pub fn parse(schema: &Schema, model: &ModelDef, domain: &Value) -> OdooResult<Domain> {
    let items = match domain {
        Value::Null | Value::Bool(false) => return Ok(Domain::True),
        Value::Array(items) => items,
        other => {
            return Err(OdooError::value(format!(
                "Invalid domain: {}",
                py_repr(other)
            )));
        }
    };
    let mut stack: Vec<Domain> = Vec::new();
    let bad = || {
        OdooError::value(format!(
            "Domain {} is syntactically not correct.",
            py_repr(domain)
        ))
    };
    for item in items.iter().rev() {
        match item {
            Value::String(op) if op == "&" || op == "|" => {
                let a = stack.pop().ok_or_else(bad)?;
                let b = stack.pop().ok_or_else(bad)?;
                stack.push(if op == "&" {
                    Domain::And(Box::new(a), Box::new(b))
                } else {
                    Domain::Or(Box::new(a), Box::new(b))
                });
            }
            Value::String(op) if op == "!" => {
                let a = stack.pop().ok_or_else(bad)?;
                stack.push(Domain::Not(Box::new(a)));
            }
            Value::Array(leaf) => stack.push(parse_leaf(schema, model, leaf)?),
            other => {
                return Err(OdooError::value(format!("Invalid leaf {}", py_repr(other))));
            }
        }
    }
    // Terms left side by side are implicitly AND-ed.
    let mut result = Domain::True;
    while let Some(d) = stack.pop() {
        result = match result {
            Domain::True => d,
            prev => Domain::And(Box::new(prev), Box::new(d)),
        };
    }
    Ok(result)
}

fn parse_leaf(schema: &Schema, model: &ModelDef, leaf: &[Value]) -> OdooResult<Domain> {
    if leaf.len() != 3 {
        return Err(OdooError::value(format!(
            "Invalid leaf {}",
            leaf_repr(leaf)
        )));
    }
    let op = match &leaf[1] {
        Value::String(op) => op.to_lowercase(),
        _ => {
            return Err(OdooError::value(format!(
                "Invalid leaf {}",
                leaf_repr(leaf)
            )))
        }
    };
    if let (Value::Number(a), "=", Value::Number(b)) = (&leaf[0], op.as_str(), &leaf[2]) {
        // Odoo's TRUE_LEAF (1, '=', 1) and FALSE_LEAF (0, '=', 1).
        return Ok(if a == b { Domain::True } else { Domain::False });
    }
    if !OPERATORS.contains(&op.as_str()) {
        return Err(OdooError::value(format!(
            "Invalid leaf {}",
            leaf_repr(leaf)
        )));
    }
    let path_text = match &leaf[0] {
        Value::String(s) => s.clone(),
        _ => {
            return Err(OdooError::value(format!(
                "Invalid leaf {}",
                leaf_repr(leaf)
            )))
        }
    };
    let path: Vec<String> = path_text.split('.').map(str::to_string).collect();
    // Every segment must be a field; all but the last must be relational.
    let mut current = model;
    for (i, name) in path.iter().enumerate() {
        let field = current.field(name).ok_or_else(|| {
            OdooError::value(format!(
                "Invalid field {}.{} in leaf {}",
                current.name,
                name,
                leaf_repr(leaf)
            ))
        })?;
        if i + 1 < path.len() {
            match field.ftype.relation().and_then(|m| schema.model(m)) {
                Some(next) => current = next,
                None => {
                    return Err(OdooError::value(format!(
                        "Invalid field {}.{} in leaf {}",
                        current.name,
                        path[i + 1],
                        leaf_repr(leaf)
                    )))
                }
            }
        }
    }
    let op = if op == "<>" { "!=".to_string() } else { op };
    if (op == "in" || op == "not in") && !leaf[2].is_array() {
        // Odoo accepts a scalar for `in` and treats it as a one-element list.
        return Ok(Domain::Leaf {
            path,
            op,
            value: Value::Array(vec![leaf[2].clone()]),
        });
    }
    Ok(Domain::Leaf {
        path,
        op,
        value: leaf[2].clone(),
    })
}

/// Evaluates domains and orders against the store.
pub struct Evaluator<'a> {
    /// Data.
    pub store: &'a Store,
    /// Field definitions.
    pub schema: &'a Schema,
}

/// A comparable scalar.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Num(Decimal),
    Str(String),
}

fn cmp_scalar(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Num(x), Scalar::Num(y)) => Some(x.cmp(y)),
        (Scalar::Str(x), Scalar::Str(y)) => Some(x.cmp(y)),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
        (Scalar::Num(x), Scalar::Str(y)) => y.parse::<Decimal>().ok().map(|y| x.cmp(&y)),
        (Scalar::Str(x), Scalar::Num(y)) => x.parse::<Decimal>().ok().map(|x| x.cmp(y)),
        _ => None,
    }
}

fn to_scalar(v: &Value, boolean: bool) -> Scalar {
    match v {
        Value::Bool(b) if boolean => Scalar::Bool(*b),
        Value::Bool(false) | Value::Null => Scalar::Null,
        Value::Bool(true) => Scalar::Bool(true),
        Value::Number(_) => json_to_dec(v).map(Scalar::Num).unwrap_or(Scalar::Null),
        Value::String(s) => Scalar::Str(s.clone()),
        other => Scalar::Str(other.to_string()),
    }
}

/// SQL `LIKE` matching with `%` and `_` wildcards and `\` escapes.
pub fn like(text: &str, pattern: &str, insensitive: bool) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = if insensitive {
        (
            text.to_lowercase().chars().collect(),
            pattern.to_lowercase().chars().collect(),
        )
    } else {
        (text.chars().collect(), pattern.chars().collect())
    };
    // Tokens: Some(c) literal, None('%') any run, Some('\0')-free: use enum instead.
    enum Tok {
        Lit(char),
        One,
        Any,
    }
    let mut toks = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => {
                toks.push(Tok::Lit(p[i + 1]));
                i += 1;
            }
            '%' => toks.push(Tok::Any),
            '_' => toks.push(Tok::One),
            c => toks.push(Tok::Lit(c)),
        }
        i += 1;
    }
    // dp[j] = pattern prefix of length j matches the text prefix processed so far.
    let mut dp = vec![false; toks.len() + 1];
    dp[0] = true;
    for j in 0..toks.len() {
        if matches!(toks[j], Tok::Any) && dp[j] {
            dp[j + 1] = true;
        }
    }
    for c in &t {
        let mut next = vec![false; toks.len() + 1];
        for j in 0..toks.len() {
            match toks[j] {
                Tok::Any => next[j + 1] = next[j] || dp[j + 1] || dp[j],
                Tok::One => next[j + 1] = dp[j],
                Tok::Lit(l) => next[j + 1] = dp[j] && l == *c,
            }
        }
        dp = next;
        for j in 0..toks.len() {
            if matches!(toks[j], Tok::Any) && dp[j] {
                dp[j + 1] = true;
            }
        }
    }
    dp[toks.len()]
}

impl<'a> Evaluator<'a> {
    /// Whether record `model(id)` satisfies `domain`.
    pub fn matches(&self, model: &str, id: i64, domain: &Domain) -> bool {
        match domain {
            Domain::True => true,
            Domain::False => false,
            Domain::And(a, b) => self.matches(model, id, a) && self.matches(model, id, b),
            Domain::Or(a, b) => self.matches(model, id, a) || self.matches(model, id, b),
            Domain::Not(a) => !self.matches(model, id, a),
            Domain::Leaf { path, op, value } => self.leaf(model, Some(id), path, op, value),
        }
    }

    fn leaf(&self, model: &str, id: Option<i64>, path: &[String], op: &str, value: &Value) -> bool {
        let Some(def) = self.schema.model(model) else {
            return false;
        };
        let Some(field) = def.field(&path[0]) else {
            return false;
        };
        let stored = match id {
            Some(id) => self.field_value(model, id, &path[0]),
            None => Val::False,
        };
        if path.len() > 1 {
            let Some(target) = field.ftype.relation() else {
                return false;
            };
            let ids: Vec<i64> = match &stored {
                Val::Ref(r) => vec![*r],
                Val::Ids(ids) => ids.clone(),
                _ => vec![],
            };
            if ids.is_empty() {
                // Odoo turns a path through an empty relation into a test on "no record".
                return self.leaf(target, None, &path[1..], op, value);
            }
            return ids
                .iter()
                .any(|t| self.leaf(target, Some(*t), &path[1..], op, value));
        }
        match &field.ftype {
            FType::Many2one(target) => {
                self.rel_leaf(target, stored.ref_id().into_iter().collect(), op, value)
            }
            FType::One2many(target, _) | FType::Many2many(target) => {
                self.rel_leaf(target, stored.ids().to_vec(), op, value)
            }
            ftype => {
                let boolean = *ftype == FType::Boolean;
                let left = match &stored {
                    Val::False if boolean => Scalar::Bool(false),
                    Val::False => Scalar::Null,
                    Val::Bool(b) => Scalar::Bool(*b),
                    Val::Int(i) => Scalar::Num(Decimal::from(*i)),
                    Val::Num(d) => Scalar::Num(*d),
                    Val::Str(s) => Scalar::Str(s.clone()),
                    Val::Ref(r) => Scalar::Num(Decimal::from(*r)),
                    Val::Ids(_) => Scalar::Null,
                };
                scalar_leaf(&left, op, value, boolean)
            }
        }
    }

    fn rel_leaf(&self, target: &str, ids: Vec<i64>, op: &str, value: &Value) -> bool {
        let names =
            || -> Vec<String> { ids.iter().map(|i| self.display_name(target, *i)).collect() };
        match (op, value) {
            ("=", Value::Bool(false) | Value::Null) => ids.is_empty(),
            ("!=", Value::Bool(false) | Value::Null) => !ids.is_empty(),
            ("=", Value::Number(n)) => n.as_i64().is_some_and(|n| ids.contains(&n)),
            ("!=", Value::Number(n)) => !n.as_i64().is_some_and(|n| ids.contains(&n)),
            ("in" | "not in", Value::Array(list)) => {
                let hit = list.iter().any(|v| match v {
                    Value::Number(n) => n.as_i64().is_some_and(|n| ids.contains(&n)),
                    Value::Bool(false) | Value::Null => ids.is_empty(),
                    Value::String(s) => names().iter().any(|name| name == s),
                    _ => false,
                });
                (op == "in") == hit
            }
            (_, Value::String(_)) => {
                // A name given for a relation is compared with the display names (name_search).
                let op = if op == "=" { "=ilike" } else { op };
                let negative = op.starts_with("not") || op == "!=";
                let positive_op = op.trim_start_matches("not ").trim_start_matches('!');
                let positive_op = if positive_op == "=" {
                    "=ilike"
                } else {
                    positive_op
                };
                let any = names()
                    .iter()
                    .any(|name| scalar_leaf(&Scalar::Str(name.clone()), positive_op, value, false));
                if negative {
                    !any
                } else {
                    any
                }
            }
            _ => false,
        }
    }

    /// Stored value of a field, or the computed display name.
    pub fn field_value(&self, model: &str, id: i64, field: &str) -> Val {
        match field {
            "id" => Val::Int(id),
            "display_name" => Val::Str(self.display_name(model, id)),
            _ => self.store.val(model, id, field),
        }
    }

    /// The display name Odoo shows for `model(id)` (and puts in many2one pairs).
    pub fn display_name(&self, model: &str, id: i64) -> String {
        let s = |f: &str| self.store.val(model, id, f).str().unwrap_or("").to_string();
        match model {
            "product.product" | "product.template" => {
                let code = s("default_code");
                if code.is_empty() {
                    s("name")
                } else {
                    format!("[{code}] {}", s("name"))
                }
            }
            "product.supplierinfo" => {
                let partner = self.store.val(model, id, "partner_id").ref_id();
                partner
                    .map(|p| self.display_name("res.partner", p))
                    .unwrap_or_default()
            }
            "purchase.order.line" => {
                let order = self.store.val(model, id, "order_id").ref_id();
                let order_name = order
                    .map(|o| self.display_name("purchase.order", o))
                    .unwrap_or_default();
                let product = self.store.val(model, id, "product_id").ref_id();
                let label = match product {
                    Some(p) => s_of(self.store, "product.product", p, "name"),
                    None => s("name"),
                };
                format!("{order_name} - {label}")
            }
            "ir.model.data" => format!("{}.{}", s("module"), s("name")),
            _ => s("name"),
        }
    }

    /// Sorts `ids` by the order specification (already validated).
    pub fn sort(&self, model: &str, ids: &mut [i64], order: &[(String, bool)]) {
        let def = self.schema.model(model);
        ids.sort_by(|a, b| {
            for (field, desc) in order {
                let ftype = def.and_then(|d| d.field(field)).map(|f| f.ftype.clone());
                let key = |id: i64| -> Scalar {
                    let v = self.field_value(model, id, field);
                    match (&v, &ftype) {
                        (Val::Ref(r), Some(FType::Many2one(target))) => {
                            Scalar::Str(self.display_name(target, *r))
                        }
                        (Val::False, Some(FType::Boolean)) => Scalar::Bool(false),
                        (Val::False, _) => Scalar::Null,
                        (Val::Bool(b), _) => Scalar::Bool(*b),
                        (Val::Int(i), _) => Scalar::Num(Decimal::from(*i)),
                        (Val::Num(d), _) => Scalar::Num(*d),
                        (Val::Str(s), _) => Scalar::Str(s.clone()),
                        _ => Scalar::Null,
                    }
                };
                let (ka, kb) = (key(*a), key(*b));
                // PostgreSQL: NULLS LAST when ascending, NULLS FIRST when descending.
                let ord = match (&ka, &kb) {
                    (Scalar::Null, Scalar::Null) => Ordering::Equal,
                    (Scalar::Null, _) => Ordering::Greater,
                    (_, Scalar::Null) => Ordering::Less,
                    _ => cmp_scalar(&ka, &kb).unwrap_or(Ordering::Equal),
                };
                let ord = if *desc { ord.reverse() } else { ord };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            a.cmp(b)
        });
    }
}

fn s_of(store: &Store, model: &str, id: i64, field: &str) -> String {
    store.val(model, id, field).str().unwrap_or("").to_string()
}

fn scalar_leaf(left: &Scalar, op: &str, value: &Value, boolean: bool) -> bool {
    // `in` compares with each element; the list as one value would be its JSON text, written
    // out anew for every record searched.
    let right = if matches!(op, "in" | "not in") {
        Scalar::Null
    } else {
        to_scalar(value, boolean)
    };
    let text = |s: &Scalar| -> Option<String> {
        match s {
            Scalar::Str(s) => Some(s.clone()),
            Scalar::Num(n) => Some(n.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Null => None,
        }
    };
    let equal = |l: &Scalar, r: &Scalar| -> bool {
        match (l, r) {
            (Scalar::Null, Scalar::Null) => true,
            (Scalar::Bool(false), Scalar::Null) | (Scalar::Null, Scalar::Bool(false)) => true,
            _ => cmp_scalar(l, r) == Some(Ordering::Equal),
        }
    };
    match op {
        "=" => equal(left, &right),
        "!=" => !equal(left, &right),
        ">" | ">=" | "<" | "<=" => match cmp_scalar(left, &right) {
            Some(ord) => match op {
                ">" => ord == Ordering::Greater,
                ">=" => ord != Ordering::Less,
                "<" => ord == Ordering::Less,
                _ => ord != Ordering::Greater,
            },
            None => false,
        },
        "in" | "not in" => {
            // Every record is tested against the whole list: integers and strings, what ids
            // and codes are, are compared as they are, without a conversion per element.
            let left_int = match left {
                Scalar::Num(x) if x.fract().is_zero() => i64::try_from(*x).ok(),
                _ => None,
            };
            let member = |v: &Value| match (left, v) {
                (Scalar::Num(_), Value::Number(n)) if left_int.is_some() && n.is_i64() => {
                    n.as_i64() == left_int
                }
                (Scalar::Str(x), Value::String(y)) => x == y,
                _ => equal(left, &to_scalar(v, boolean)),
            };
            let hit = value.as_array().is_some_and(|list| list.iter().any(member));
            (op == "in") == hit
        }
        "like" | "ilike" | "not like" | "not ilike" | "=like" | "=ilike" => {
            let Some(pattern) = text(&right) else {
                // `like False` is Odoo's "is not set" test.
                return op.starts_with("not") != matches!(left, Scalar::Null);
            };
            let pattern = if op.starts_with('=') {
                pattern
            } else {
                format!("%{pattern}%")
            };
            let insensitive = op.ends_with("ilike");
            let hit = text(left).is_some_and(|t| like(&t, &pattern, insensitive));
            if op.starts_with("not") {
                // NULL values satisfy the negative operators in Odoo.
                !hit
            } else {
                hit
            }
        }
        _ => false,
    }
}

/// Parses an `order` string (`"write_date asc, id desc"`); unknown fields raise `ValueError`
/// unless `lenient` (used for the models' built-in `_order`, which may name fields the
/// simulator does not model).
pub fn parse_order(
    model: &ModelDef,
    order: &str,
    lenient: bool,
) -> OdooResult<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for part in order.split(',') {
        let words: Vec<&str> = part.split_whitespace().collect();
        if words.is_empty() {
            if lenient {
                continue;
            }
            return Err(OdooError::value(format!(
                "Invalid \"order\" specified ({order})."
            )));
        }
        let field = words[0];
        let desc = match words.get(1).map(|w| w.to_lowercase()) {
            None => false,
            Some(w) if w == "asc" => false,
            Some(w) if w == "desc" => true,
            Some(_) => {
                return Err(OdooError::value(format!(
                    "Invalid \"order\" specified ({order}). A valid \"order\" specification is a comma-separated list of valid field names (optionally followed by asc/desc for the direction)"
                )))
            }
        };
        if model.field(field).is_none() {
            if lenient {
                continue;
            }
            return Err(OdooError::value(format!(
                "Invalid field '{field}' on model '{}'",
                model.name
            )));
        }
        out.push((field.to_string(), desc));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{like, scalar_leaf, Scalar};
    use rust_decimal::Decimal;
    use serde_json::json;

    #[test]
    fn in_compares_each_element_as_equality_does() {
        let three = Scalar::Num(Decimal::from(3));
        assert!(scalar_leaf(&three, "in", &json!([1, 3]), false));
        assert!(scalar_leaf(&three, "in", &json!([3.0]), false));
        assert!(scalar_leaf(&three, "in", &json!(["3"]), false));
        assert!(!scalar_leaf(&three, "in", &json!([4, "x", null]), false));
        assert!(scalar_leaf(&three, "not in", &json!([4]), false));
        let half = Scalar::Num(Decimal::new(25, 1));
        assert!(scalar_leaf(&half, "in", &json!([2.5]), false));
        assert!(!scalar_leaf(&half, "in", &json!([2, 3]), false));
        let code = Scalar::Str("PO-1".into());
        assert!(scalar_leaf(&code, "in", &json!(["PO-2", "PO-1"]), false));
        assert!(!scalar_leaf(&Scalar::Null, "in", &json!([1]), false));
        assert!(scalar_leaf(&Scalar::Null, "in", &json!([false]), false));
    }

    #[test]
    fn like_patterns() {
        assert!(like("Office Chair", "%chair%", true));
        assert!(!like("Office Chair", "%chair%", false));
        assert!(like("P00012", "P000__", false));
        assert!(like("a%b", "a\\%b", false));
        assert!(!like("axb", "a\\%b", false));
        assert!(like("", "%", false));
    }
}
