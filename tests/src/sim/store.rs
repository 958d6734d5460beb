//! In-memory tables and the transaction journal that makes each call all-or-nothing.
//!
//! Odoo runs every RPC call in one database transaction. The simulator gets the same effect by
//! recording the before-image of each row a call touches; an error replays the journal backwards.

use super::value::{Record, Val};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// `ir.model.data` ids by (module, name): external-id lookups are on the path of every `load`,
/// and a scan of the whole table per lookup made the simulator the bottleneck of benchmarks.
type XmlidIndex = BTreeMap<(String, String), BTreeSet<i64>>;

fn xmlid_key(r: &Record) -> Option<(String, String)> {
    Some((
        r.get("module").and_then(Val::str)?.to_string(),
        r.get("name").and_then(Val::str)?.to_string(),
    ))
}

/// One model's rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Table {
    /// Rows by id.
    pub rows: BTreeMap<i64, Record>,
    /// The id the next created row gets.
    pub next_id: i64,
}

/// Every table plus the sequences (`P00001`...). This is what `--state` snapshots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Store {
    /// Tables by model name.
    pub tables: BTreeMap<String, Table>,
    /// Last number handed out per sequence code.
    pub sequences: BTreeMap<String, i64>,
    /// Built on first use from the table, then kept up to date by every change.
    #[serde(skip)]
    xmlids: OnceLock<XmlidIndex>,
}

impl Store {
    /// The row `model(id)`, if it exists.
    pub fn get(&self, model: &str, id: i64) -> Option<&Record> {
        self.tables.get(model).and_then(|t| t.rows.get(&id))
    }
    /// Whether `model(id)` exists.
    pub fn exists(&self, model: &str, id: i64) -> bool {
        self.get(model, id).is_some()
    }
    /// A field of `model(id)`, `Val::False` when unset or missing.
    pub fn val(&self, model: &str, id: i64, field: &str) -> Val {
        self.get(model, id)
            .and_then(|r| r.get(field))
            .cloned()
            .unwrap_or(Val::False)
    }
    /// All ids of `model`, ascending.
    pub fn ids(&self, model: &str) -> Vec<i64> {
        self.tables
            .get(model)
            .map(|t| t.rows.keys().copied().collect())
            .unwrap_or_default()
    }
    /// Number of rows of `model`.
    pub fn count(&self, model: &str) -> usize {
        self.tables.get(model).map(|t| t.rows.len()).unwrap_or(0)
    }
    /// Ids of the `ir.model.data` rows named `module.name`, ascending.
    pub fn xmlid_ids(&self, module: &str, name: &str) -> Vec<i64> {
        let index = self.xmlids.get_or_init(|| {
            let mut index = XmlidIndex::new();
            if let Some(t) = self.tables.get("ir.model.data") {
                for (id, r) in &t.rows {
                    if let Some(k) = xmlid_key(r) {
                        index.entry(k).or_default().insert(*id);
                    }
                }
            }
            index
        });
        index
            .get(&(module.to_string(), name.to_string()))
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }
    /// Keeps the external-id index in step after `model(id)` changed from `before`.
    fn reindex(&mut self, model: &str, id: i64, before: Option<&Record>) {
        if model != "ir.model.data" {
            return;
        }
        let after = self.get(model, id).and_then(xmlid_key);
        if let Some(index) = self.xmlids.get_mut() {
            if let Some(k) = before.and_then(xmlid_key) {
                if let Some(ids) = index.get_mut(&k) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        index.remove(&k);
                    }
                }
            }
            if let Some(k) = after {
                index.entry(k).or_default().insert(id);
            }
        }
    }
}

enum Undo {
    Row {
        model: String,
        id: i64,
        before: Option<Record>,
    },
    NextId {
        model: String,
        before: i64,
    },
    Sequence {
        code: String,
        before: Option<i64>,
    },
}

/// A transaction over the store: every change is journaled so that `rollback` restores the
/// exact previous state.
pub struct Txn<'a> {
    store: &'a mut Store,
    journal: Vec<Undo>,
    /// Number of rows created, written or deleted so far (drives `drop_after_commit`).
    pub writes: usize,
}

impl<'a> Txn<'a> {
    /// Opens a transaction on `store`.
    pub fn new(store: &'a mut Store) -> Self {
        Txn {
            store,
            journal: Vec::new(),
            writes: 0,
        }
    }
    /// Read access to the store as the transaction sees it.
    pub fn store(&self) -> &Store {
        self.store
    }
    /// Allocates the next id of `model`.
    pub fn next_id(&mut self, model: &str) -> i64 {
        let table = self.store.tables.entry(model.to_string()).or_default();
        self.journal.push(Undo::NextId {
            model: model.to_string(),
            before: table.next_id,
        });
        if table.next_id < 1 {
            table.next_id = 1;
        }
        let id = table.next_id;
        table.next_id += 1;
        id
    }
    /// Next number of sequence `code`.
    pub fn next_sequence(&mut self, code: &str) -> i64 {
        let before = self.store.sequences.get(code).copied();
        self.journal.push(Undo::Sequence {
            code: code.to_string(),
            before,
        });
        let next = before.unwrap_or(0) + 1;
        self.store.sequences.insert(code.to_string(), next);
        next
    }
    fn remember(&mut self, model: &str, id: i64) {
        let before = self.store.get(model, id).cloned();
        self.journal.push(Undo::Row {
            model: model.to_string(),
            id,
            before,
        });
    }
    /// Inserts or replaces `model(id)`.
    pub fn put(&mut self, model: &str, id: i64, record: Record) {
        self.remember(model, id);
        self.writes += 1;
        let before = self
            .store
            .tables
            .entry(model.to_string())
            .or_default()
            .rows
            .insert(id, record);
        self.store.reindex(model, id, before.as_ref());
    }
    /// Sets one field of an existing row (no-op when the row is gone).
    pub fn set(&mut self, model: &str, id: i64, field: &str, value: Val) {
        if !self.store.exists(model, id) {
            return;
        }
        self.remember(model, id);
        self.writes += 1;
        let before = self.store.get(model, id).cloned();
        if let Some(row) = self
            .store
            .tables
            .get_mut(model)
            .and_then(|t| t.rows.get_mut(&id))
        {
            row.insert(field.to_string(), value);
        }
        self.store.reindex(model, id, before.as_ref());
    }
    /// Deletes `model(id)`.
    pub fn delete(&mut self, model: &str, id: i64) {
        if !self.store.exists(model, id) {
            return;
        }
        self.remember(model, id);
        self.writes += 1;
        let before = self
            .store
            .tables
            .get_mut(model)
            .and_then(|t| t.rows.remove(&id));
        self.store.reindex(model, id, before.as_ref());
    }
    /// Undoes everything done in this transaction.
    pub fn rollback(mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Row { model, id, before } => {
                    let table = self.store.tables.entry(model.clone()).or_default();
                    let current = match before {
                        Some(r) => table.rows.insert(id, r),
                        None => table.rows.remove(&id),
                    };
                    self.store.reindex(&model, id, current.as_ref());
                }
                Undo::NextId { model, before } => {
                    self.store.tables.entry(model).or_default().next_id = before;
                }
                Undo::Sequence { code, before } => match before {
                    Some(n) => {
                        self.store.sequences.insert(code, n);
                    }
                    None => {
                        self.store.sequences.remove(&code);
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_rows_ids_and_sequences() {
        let mut store = Store::default();
        {
            let mut txn = Txn::new(&mut store);
            let id = txn.next_id("m");
            txn.put("m", id, Record::from([("a".to_string(), Val::Int(1))]));
        }
        let before = serde_json::to_string(&store).unwrap();
        let mut txn = Txn::new(&mut store);
        let id = txn.next_id("m");
        txn.put("m", id, Record::new());
        txn.set("m", 1, "a", Val::Int(2));
        txn.next_sequence("purchase.order");
        txn.delete("m", 1);
        txn.rollback();
        assert_eq!(serde_json::to_string(&store).unwrap(), before);
    }

    #[test]
    fn external_id_index_follows_writes_deletes_and_rollbacks() {
        let xmlid = |module: &str, name: &str| {
            Record::from([
                ("module".to_string(), Val::Str(module.into())),
                ("name".to_string(), Val::Str(name.into())),
            ])
        };
        let mut store = Store::default();
        assert!(store.xmlid_ids("m", "a").is_empty());
        let mut txn = Txn::new(&mut store);
        txn.put("ir.model.data", 1, xmlid("m", "a"));
        txn.put("ir.model.data", 2, xmlid("m", "b"));
        assert_eq!(txn.store().xmlid_ids("m", "a"), vec![1]);
        txn.set("ir.model.data", 2, "name", Val::Str("c".into()));
        assert!(txn.store().xmlid_ids("m", "b").is_empty());
        assert_eq!(txn.store().xmlid_ids("m", "c"), vec![2]);
        txn.delete("ir.model.data", 1);
        assert!(txn.store().xmlid_ids("m", "a").is_empty());
        txn.rollback();
        assert!(
            store.xmlid_ids("m", "a").is_empty(),
            "the rows were never committed"
        );
        assert!(store.xmlid_ids("m", "c").is_empty());
    }
}
