//! The models the simulator knows and their fields, per Odoo version.
//!
//! Version switches (odoo-api.md): `notes` (16–18) / `note` (19); `product_uom` / `taxes_id`
//! (16–18) vs `product_uom_id` / `tax_ids` (19); state `done` (16–18) vs the `locked` flag (19);
//! line `discount` from 17 on.

use std::collections::BTreeMap;

/// The decimal precision (`decimal.precision`) a float field is rounded to when written:
/// Odoo's `Float.convert_to_cache` rounds every value to it, so what is read back is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digits {
    /// `Product Price`: unit and price-list prices.
    ProductPrice,
    /// `Discount`.
    Discount,
    /// `Product Unit of Measure`: quantities.
    ProductUom,
}

/// A field's type, with the target model of relational fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FType {
    /// Single-line text.
    Char,
    /// Multi-line text.
    Text,
    /// Rich text.
    Html,
    /// Integer.
    Integer,
    /// Float.
    Float,
    /// Money in the record's currency.
    Monetary,
    /// Boolean.
    Boolean,
    /// One of fixed `(value, label)` pairs.
    Selection(Vec<(&'static str, &'static str)>),
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD HH:MM:SS` in UTC.
    Datetime,
    /// Reference to one record of the model.
    Many2one(&'static str),
    /// Records of the model whose given many2one points here.
    One2many(&'static str, &'static str),
    /// Set of records of the model.
    Many2many(&'static str),
}

impl FType {
    /// The type name `fields_get` reports.
    pub fn name(&self) -> &'static str {
        match self {
            FType::Char => "char",
            FType::Text => "text",
            FType::Html => "html",
            FType::Integer => "integer",
            FType::Float => "float",
            FType::Monetary => "monetary",
            FType::Boolean => "boolean",
            FType::Selection(_) => "selection",
            FType::Date => "date",
            FType::Datetime => "datetime",
            FType::Many2one(_) => "many2one",
            FType::One2many(_, _) => "one2many",
            FType::Many2many(_) => "many2many",
        }
    }
    /// The comodel of a relational field.
    pub fn relation(&self) -> Option<&'static str> {
        match self {
            FType::Many2one(m) | FType::One2many(m, _) | FType::Many2many(m) => Some(m),
            _ => None,
        }
    }
    /// Whether values are lists of ids written with x2many commands.
    pub fn is_x2many(&self) -> bool {
        matches!(self, FType::One2many(_, _) | FType::Many2many(_))
    }
}

/// One field of a model.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// Technical name.
    pub name: &'static str,
    /// Label, used in error messages ("Missing required value for the field 'Vendor' ...").
    pub string: &'static str,
    /// Type.
    pub ftype: FType,
    /// Must be set on create.
    pub required: bool,
    /// Shown read-only in the UI (reported by `fields_get`).
    pub readonly: bool,
    /// Computed by the simulator: values sent by clients are ignored.
    pub computed: bool,
    /// The precision a float is rounded to when written (None: stored as sent).
    pub digits: Option<Digits>,
}

/// One model: its fields and how it sorts.
#[derive(Debug, Clone)]
pub struct ModelDef {
    /// Technical name (`purchase.order`).
    pub name: &'static str,
    /// Human name used in access errors (`Purchase Order`).
    pub description: &'static str,
    /// `_order` used when a search gives no order.
    pub default_order: &'static str,
    /// Fields by name, in declaration order.
    pub fields: Vec<FieldDef>,
}

impl ModelDef {
    /// The field called `name`, if the model has it.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// All models of one simulated Odoo version.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Odoo major version (16–19).
    pub version: u8,
    models: BTreeMap<&'static str, ModelDef>,
}

struct Builder {
    fields: Vec<FieldDef>,
}

impl Builder {
    fn new() -> Self {
        Builder { fields: vec![] }
    }
    fn add(mut self, name: &'static str, string: &'static str, ftype: FType) -> Self {
        self.fields.push(FieldDef {
            name,
            string,
            ftype,
            required: false,
            readonly: false,
            computed: false,
            digits: None,
        });
        self
    }
    fn digits(mut self, digits: Digits) -> Self {
        if let Some(f) = self.fields.last_mut() {
            f.digits = Some(digits);
        }
        self
    }
    fn required(mut self) -> Self {
        if let Some(f) = self.fields.last_mut() {
            f.required = true;
        }
        self
    }
    fn readonly(mut self) -> Self {
        if let Some(f) = self.fields.last_mut() {
            f.readonly = true;
        }
        self
    }
    fn computed(mut self) -> Self {
        if let Some(f) = self.fields.last_mut() {
            f.readonly = true;
            f.computed = true;
        }
        self
    }
    fn when(self, cond: bool, f: impl FnOnce(Self) -> Self) -> Self {
        if cond {
            f(self)
        } else {
            self
        }
    }
    fn model(
        self,
        name: &'static str,
        description: &'static str,
        default_order: &'static str,
    ) -> ModelDef {
        // Every Odoo model has these "magic" fields.
        let b = self
            .add("id", "ID", FType::Integer)
            .readonly()
            .add("display_name", "Display Name", FType::Char)
            .computed()
            .add("create_uid", "Created by", FType::Many2one("res.users"))
            .computed()
            .add("create_date", "Created on", FType::Datetime)
            .computed()
            .add("write_uid", "Last Updated by", FType::Many2one("res.users"))
            .computed()
            .add("write_date", "Last Updated on", FType::Datetime)
            .computed();
        ModelDef {
            name,
            description,
            default_order,
            fields: b.fields,
        }
    }
}

/// Order states, with the version's labels.
pub fn po_states(version: u8) -> Vec<(&'static str, &'static str)> {
    let mut states = vec![
        ("draft", "RFQ"),
        ("sent", "RFQ Sent"),
        ("to approve", "To Approve"),
        ("purchase", "Purchase Order"),
    ];
    if version < 19 {
        states.push(("done", "Locked"));
    }
    states.push(("cancel", "Cancelled"));
    states
}

impl Schema {
    /// The models of Odoo `version` with the `purchase` module installed (no `purchase_stock`).
    pub fn new(version: u8) -> Self {
        use FType::*;
        let v19 = version >= 19;
        let mut models = BTreeMap::new();
        let mut put = |m: ModelDef| {
            models.insert(m.name, m);
        };
        put(Builder::new()
            .add("name", "Name", Char)
            .add("ref", "Reference", Char)
            .add("email", "Email", Char)
            .add("phone", "Phone", Char)
            .add("is_company", "Is a Company", Boolean)
            .add("supplier_rank", "Supplier Rank", Integer)
            .add("active", "Active", Boolean)
            .model("res.partner", "Contact", "complete_name ASC, id DESC"));
        put(Builder::new()
            .add("name", "Name", Char)
            .required()
            .add("login", "Login", Char)
            .required()
            .add("active", "Active", Boolean)
            .add("tz", "Timezone", Char)
            .model("res.users", "User", "name, login"));
        put(Builder::new()
            .add("name", "Company Name", Char)
            .required()
            .add("currency_id", "Currency", Many2one("res.currency"))
            .required()
            .model("res.company", "Companies", "sequence, name"));
        put(Builder::new()
            .add("name", "Currency", Char)
            .required()
            .add("symbol", "Symbol", Char)
            .add("rounding", "Rounding Factor", Float)
            .add("active", "Active", Boolean)
            .model("res.currency", "Currency", "active desc, name"));
        put(Builder::new()
            .add("name", "Unit Name", Char)
            .required()
            .model("uom.uom", "Product Unit of Measure", "sequence, id"));
        put(Builder::new()
            .add("name", "Tax Name", Char)
            .required()
            .add("amount", "Amount", Float)
            .add(
                "amount_type",
                "Tax Computation",
                Selection(vec![("percent", "Percentage of Price"), ("fixed", "Fixed")]),
            )
            .add(
                "type_tax_use",
                "Tax Type",
                Selection(vec![
                    ("sale", "Sales"),
                    ("purchase", "Purchases"),
                    ("none", "None"),
                ]),
            )
            .model("account.tax", "Tax", "sequence, id"));
        put(Builder::new()
            .add("name", "Name", Char)
            .required()
            .add("default_code", "Internal Reference", Char)
            .add("list_price", "Sales Price", Float)
            .digits(Digits::ProductPrice)
            .add("standard_price", "Cost", Float)
            .digits(Digits::ProductPrice)
            .add("uom_id", "Unit", Many2one("uom.uom"))
            .add("purchase_ok", "Purchase", Boolean)
            .add(
                "supplier_taxes_id",
                "Purchase Taxes",
                Many2many("account.tax"),
            )
            .add("active", "Active", Boolean)
            .model("product.template", "Product", "is_favorite desc, name, id"));
        put(Builder::new()
            .add("name", "Name", Char)
            .required()
            .add("default_code", "Internal Reference", Char)
            .add("list_price", "Sales Price", Float)
            .digits(Digits::ProductPrice)
            .add("standard_price", "Cost", Float)
            .digits(Digits::ProductPrice)
            .add("uom_id", "Unit", Many2one("uom.uom"))
            .add("purchase_ok", "Purchase", Boolean)
            .add(
                "supplier_taxes_id",
                "Purchase Taxes",
                Many2many("account.tax"),
            )
            .add(
                "product_tmpl_id",
                "Product Template",
                Many2one("product.template"),
            )
            .add("active", "Active", Boolean)
            .model(
                "product.product",
                "Product Variant",
                "default_code, name, id",
            ));
        put(Builder::new()
            .add("partner_id", "Vendor", Many2one("res.partner"))
            .required()
            .add(
                "product_tmpl_id",
                "Product Template",
                Many2one("product.template"),
            )
            .add("product_id", "Product Variant", Many2one("product.product"))
            .add("min_qty", "Quantity", Float)
            .digits(Digits::ProductUom)
            .add("price", "Unit Price", Float)
            .digits(Digits::ProductPrice)
            .when(version >= 17, |b| {
                b.add("discount", "Discount (%)", Float)
                    .digits(Digits::Discount)
            })
            .add("delay", "Delivery Lead Time", Integer)
            .add("sequence", "Sequence", Integer)
            .add("currency_id", "Currency", Many2one("res.currency"))
            .model(
                "product.supplierinfo",
                "Supplier Pricelist",
                "sequence, min_qty DESC, price, id",
            ));
        put(Builder::new()
            .add("name", "Order Reference", Char)
            .required()
            .add("partner_id", "Vendor", Many2one("res.partner"))
            .required()
            .add("partner_ref", "Vendor Reference", Char)
            .add("origin", "Source", Char)
            .add("date_order", "Order Deadline", Datetime)
            .required()
            .add("date_planned", "Expected Arrival", Datetime)
            .add("date_approve", "Confirmation Date", Datetime)
            .readonly()
            .add("currency_id", "Currency", Many2one("res.currency"))
            .required()
            .add("company_id", "Company", Many2one("res.company"))
            .required()
            .add("user_id", "Buyer", Many2one("res.users"))
            .add("state", "Status", Selection(po_states(version)))
            .readonly()
            .add(
                "order_line",
                "Order Lines",
                One2many("purchase.order.line", "order_id"),
            )
            .add("amount_untaxed", "Untaxed Amount", Monetary)
            .computed()
            .add("amount_tax", "Taxes", Monetary)
            .computed()
            .add("amount_total", "Total", Monetary)
            .computed()
            .add(
                if v19 { "note" } else { "notes" },
                "Terms and Conditions",
                Html,
            )
            .when(v19, |b| b.add("locked", "Locked", Boolean))
            .add(
                "priority",
                "Priority",
                Selection(vec![("0", "Normal"), ("1", "Urgent")]),
            )
            .model("purchase.order", "Purchase Order", "priority desc, id desc"));
        put(Builder::new()
            .add("order_id", "Order Reference", Many2one("purchase.order"))
            .required()
            .add("sequence", "Sequence", Integer)
            .add("product_id", "Product", Many2one("product.product"))
            .add("name", "Description", Text)
            .required()
            .add("product_qty", "Quantity", Float)
            .required()
            .digits(Digits::ProductUom)
            .add("price_unit", "Unit Price", Float)
            .required()
            .digits(Digits::ProductPrice)
            .when(version >= 17, |b| {
                b.add("discount", "Discount (%)", Float)
                    .digits(Digits::Discount)
            })
            .add(
                if v19 { "product_uom_id" } else { "product_uom" },
                "Unit",
                Many2one("uom.uom"),
            )
            .add(
                if v19 { "tax_ids" } else { "taxes_id" },
                "Taxes",
                Many2many("account.tax"),
            )
            .add("date_planned", "Expected Arrival", Datetime)
            .add("price_subtotal", "Subtotal", Monetary)
            .computed()
            .add("price_tax", "Tax", Float)
            .computed()
            .add("price_total", "Total", Monetary)
            .computed()
            .add("qty_received", "Received Qty", Float)
            .digits(Digits::ProductUom)
            .add("qty_invoiced", "Billed Qty", Float)
            .digits(Digits::ProductUom)
            .computed()
            .add(
                "display_type",
                "Display Type",
                Selection(vec![("line_section", "Section"), ("line_note", "Note")]),
            )
            .add("state", "Status", Selection(po_states(version)))
            .computed()
            .add("partner_id", "Partner", Many2one("res.partner"))
            .computed()
            .add("currency_id", "Currency", Many2one("res.currency"))
            .computed()
            .add("company_id", "Company", Many2one("res.company"))
            .computed()
            .model(
                "purchase.order.line",
                "Purchase Order Line",
                "order_id, sequence, id",
            ));
        put(Builder::new()
            .add("name", "External Identifier", Char)
            .required()
            .add("complete_name", "Complete ID", Char)
            .computed()
            .add("module", "Module", Char)
            .required()
            .add("model", "Model Name", Char)
            .required()
            .add("res_id", "Record ID", Integer)
            .add("noupdate", "Non Updatable", Boolean)
            .model("ir.model.data", "Model Data", "module, model, name"));
        Schema { version, models }
    }

    /// The model called `name`.
    pub fn model(&self, name: &str) -> Option<&ModelDef> {
        self.models.get(name)
    }

    /// Names of all models, sorted.
    pub fn model_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.models.keys().copied()
    }

    /// The line field holding the unit (`product_uom` or `product_uom_id`).
    pub fn line_uom_field(&self) -> &'static str {
        if self.version >= 19 {
            "product_uom_id"
        } else {
            "product_uom"
        }
    }

    /// The line field holding the taxes (`taxes_id` or `tax_ids`).
    pub fn line_taxes_field(&self) -> &'static str {
        if self.version >= 19 {
            "tax_ids"
        } else {
            "taxes_id"
        }
    }
}
