//! In-memory tables and the transaction journal that makes each call all-or-nothing.
//!
//! Odoo runs every RPC call in one database transaction. The simulator gets the same effect by
//! recording the before-image of each row a call touches; an error replays the journal backwards.

use super::value::{Record, Val};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
        self.store
            .tables
            .entry(model.to_string())
            .or_default()
            .rows
            .insert(id, record);
    }
    /// Sets one field of an existing row (no-op when the row is gone).
    pub fn set(&mut self, model: &str, id: i64, field: &str, value: Val) {
        if !self.store.exists(model, id) {
            return;
        }
        self.remember(model, id);
        self.writes += 1;
        if let Some(row) = self
            .store
            .tables
            .get_mut(model)
            .and_then(|t| t.rows.get_mut(&id))
        {
            row.insert(field.to_string(), value);
        }
    }
    /// Deletes `model(id)`.
    pub fn delete(&mut self, model: &str, id: i64) {
        if !self.store.exists(model, id) {
            return;
        }
        self.remember(model, id);
        self.writes += 1;
        if let Some(t) = self.store.tables.get_mut(model) {
            t.rows.remove(&id);
        }
    }
    /// Undoes everything done in this transaction.
    pub fn rollback(mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Row { model, id, before } => {
                    let table = self.store.tables.entry(model).or_default();
                    match before {
                        Some(r) => {
                            table.rows.insert(id, r);
                        }
                        None => {
                            table.rows.remove(&id);
                        }
                    }
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
}
