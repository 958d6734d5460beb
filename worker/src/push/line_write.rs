//! What a push by external id writes of each line: only what changed since the last sync.
//!
//! Writing a line's quantity or product is not neutral in Odoo, even with the value the line
//! already holds: the write marks everything that depends on the field, and from 17
//! `_compute_price_unit_and_date_planned_and_name` then plans the line's expected arrival again
//! from the vendor's lead time (and prices and discounts it, which a push writes itself). A
//! push of a notes edit, writing every line, moved the arrival dates a purchaser had set in
//! Odoo. So each line of an order Odoo already has is compared with the base, what Odoo held at
//! the last sync (what the last push wrote, or what the last pull merged; every push first
//! merges an Odoo order whose write_date moved since, see `run::changed_in_odoo`):
//! - a line new to Odoo, or whose product or quantity changed, is written in full, and so is
//!   every line when the order's requested day changed: the date then reaches all lines in the
//!   order's one `load`, never some lines of it (a push failing between two calls would leave
//!   Odoo an expected arrival that is neither the old day nor the new one, which the next merge
//!   would take for an Odoo edit);
//! - one whose price alone changed gets the price and discount, a write that plans and prices
//!   nothing again (`order_push::reprice_lines`);
//! - one as the base has it is not written at all.
//!
//! An order Odoo may not have yet (no Odoo id: a noted attempt may or may not have landed) is
//! written in full. The linked push (`linked_push`) compares with Odoo's lines as read, by the
//! same rules.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use super::order_push::text;
use crate::odoo::money::as_stored;

/// What a push writes of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineWrite {
    /// Every column: product, quantity, price, discount and date.
    Full,
    /// The price and the discount only.
    Price,
    /// Nothing: the line is as the last sync left it.
    Skip,
}

/// One line as the document has it now, with what a push would write.
pub struct LineNow<'a> {
    /// The local item's key (the key of the line in the base's `lines`).
    pub item_key: &'a str,
    /// Odoo `product.product` id.
    pub product: i64,
    /// Quantity.
    pub qty: Decimal,
    /// Unit price.
    pub price: Decimal,
}

/// What a push of `doc` writes of `line`, when it dates every line with `date` (see the module
/// documentation). A value a local column rounded from Odoo's (`item_scales`) counts as
/// unchanged: the column could not hold Odoo's, and writing it back would replace Odoo's.
pub fn line_write(doc: &Value, line: &LineNow<'_>, date: Option<&str>) -> LineWrite {
    if doc["odoo_id"].as_i64().is_none() {
        return LineWrite::Full;
    }
    let base = &doc["base_snapshot"];
    let held = &base["lines"][line.item_key];
    let (qty_scale, price_scale) = super::order_push::item_scales(doc);
    let same = |v: &Value, now: Decimal, scale: Option<u32>| {
        text(v)
            .and_then(|s| Decimal::from_str(s.trim()).ok())
            .is_some_and(|b| as_stored(b, scale) == now)
    };
    // The base keeps Odoo's expected arrival as the merge compares it: its day.
    let same_date =
        date.is_none_or(|d| text(&base["delivery_date"]).is_some_and(|b| day(&b) == day(d)));
    let same_product = text(&held["product_id"]) == Some(line.product.to_string());
    if !same_product || !same(&held["quantity"], line.qty, qty_scale) || !same_date {
        LineWrite::Full
    } else if same(&held["unit_price"], line.price, price_scale) {
        LineWrite::Skip
    } else {
        LineWrite::Price
    }
}

/// The day of an Odoo datetime (`YYYY-MM-DD HH:MM:SS`), as the merge compares delivery dates.
pub fn day(datetime: &str) -> &str {
    datetime.get(..10).unwrap_or(datetime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(odoo_id: Value, scales: Value) -> Value {
        json!({
            "odoo_id": odoo_id,
            "item_scales": scales,
            "base_snapshot": {
                "delivery_date": "2026-12-15",
                "lines": {"a": {"product_id": "7", "quantity": 2, "unit_price": "10.5", "discount": 0}}
            }
        })
    }

    fn now<'a>(item_key: &'a str, product: i64, qty: &str, price: &str) -> LineNow<'a> {
        LineNow {
            item_key,
            product,
            qty: Decimal::from_str(qty).expect("qty"),
            price: Decimal::from_str(price).expect("price"),
        }
    }

    #[test]
    fn only_what_changed_since_the_base_is_written() {
        let d = doc(json!(5), json!({}));
        assert_eq!(
            line_write(&d, &now("a", 7, "2", "10.50"), None),
            LineWrite::Skip
        );
        assert_eq!(
            line_write(&d, &now("a", 7, "2", "11"), None),
            LineWrite::Price
        );
        // A new price on a day Odoo already has: the date stays as Odoo has it.
        assert_eq!(
            line_write(&d, &now("a", 7, "2", "11"), Some("2026-12-15 12:00:00")),
            LineWrite::Price
        );
        assert_eq!(
            line_write(&d, &now("a", 7, "3", "10.5"), None),
            LineWrite::Full
        );
        assert_eq!(
            line_write(&d, &now("a", 8, "2", "10.5"), None),
            LineWrite::Full
        );
        // A line the base does not have is new to Odoo.
        assert_eq!(
            line_write(&d, &now("b", 7, "2", "10.5"), None),
            LineWrite::Full
        );
    }

    #[test]
    fn a_requested_date_is_written_only_when_its_day_differs_from_odoos() {
        let d = doc(json!(5), json!({}));
        let line = now("a", 7, "2", "10.5");
        assert_eq!(
            line_write(&d, &line, Some("2026-12-15 12:00:00")),
            LineWrite::Skip
        );
        assert_eq!(
            line_write(&d, &line, Some("2026-12-16 12:00:00")),
            LineWrite::Full
        );
        let undated = json!({"odoo_id": 5, "base_snapshot": {
            "lines": {"a": {"product_id": "7", "quantity": 2, "unit_price": 10.5}}}});
        assert_eq!(
            line_write(&undated, &line, Some("2026-12-15 12:00:00")),
            LineWrite::Full
        );
        assert_eq!(line_write(&undated, &line, None), LineWrite::Skip);
        assert_eq!(day("2026-03-01 08:00:00"), "2026-03-01");
    }

    #[test]
    fn an_order_odoo_may_not_have_is_written_in_full() {
        for id in [json!(null), json!(false)] {
            let d = doc(id, json!({}));
            assert_eq!(
                line_write(&d, &now("a", 7, "2", "10.5"), None),
                LineWrite::Full
            );
        }
        let no_base = json!({"odoo_id": 5, "base_snapshot": null});
        assert_eq!(
            line_write(&no_base, &now("a", 7, "2", "10.5"), None),
            LineWrite::Full
        );
    }

    #[test]
    fn a_value_the_local_column_rounded_counts_as_unchanged() {
        let mut d = doc(json!(5), json!({"quantity": 0, "unit_price": 0}));
        d["base_snapshot"]["lines"]["a"]["quantity"] = json!("2.4");
        assert_eq!(
            line_write(&d, &now("a", 7, "2", "11"), None),
            LineWrite::Skip
        );
        assert_eq!(
            line_write(&d, &now("a", 7, "3", "11"), None),
            LineWrite::Full
        );
    }
}
