//! The Odoo call that moves a pushed order to its local status (DESIGN.md section 2), one table
//! for every push path. Transitions Odoo has no call for (a confirmed order back to draft,
//! receiving) are not attempted: `complete_job` compares the state Odoo ends in with the local
//! status and either follows Odoo (it decided approval on confirm) or records a conflict.

use serde_json::json;

use crate::odoo::{OdooClient, OdooError};

/// One status call on `purchase.order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusAction {
    /// `button_confirm`: Odoo confirms, or asks for approval ("Odoo decides approval on
    /// confirm").
    Confirm,
    /// Marks the RFQ as sent: the write Odoo's own "print RFQ" / "send by email" make
    /// (`print_quotation` writes `state = 'sent'` on a draft and nothing else).
    MarkSent,
    /// `button_cancel`.
    Cancel,
}

impl StatusAction {
    /// Every action, in the order a push applies them.
    pub const ALL: [StatusAction; 3] = [
        StatusAction::Confirm,
        StatusAction::MarkSent,
        StatusAction::Cancel,
    ];

    /// What moves an Odoo order in `odoo_state` towards the local status `local`, if anything.
    pub fn for_status(local: &str, odoo_state: &str) -> Option<StatusAction> {
        match (local, odoo_state) {
            ("CONFIRMED" | "PENDING_APPROVAL", "draft" | "sent") => Some(StatusAction::Confirm),
            ("SENT_TO_SUPPLIER", "draft") => Some(StatusAction::MarkSent),
            ("CANCELLED", s) if !s.is_empty() && s != "cancel" => Some(StatusAction::Cancel),
            _ => None,
        }
    }

    /// Applies the action to the Odoo orders `ids` with one call.
    pub async fn run(self, odoo: &OdooClient, ids: &[i64]) -> Result<(), OdooError> {
        match self {
            StatusAction::Confirm => odoo
                .call_button("purchase.order", "button_confirm", ids)
                .await
                .map(drop),
            StatusAction::MarkSent => {
                odoo.write("purchase.order", ids, &json!({"state": "sent"}))
                    .await
            }
            StatusAction::Cancel => odoo
                .call_button("purchase.order", "button_cancel", ids)
                .await
                .map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StatusAction::{self, *};

    #[test]
    fn each_local_status_maps_to_odoos_call() {
        let action = StatusAction::for_status;
        assert_eq!(action("CONFIRMED", "draft"), Some(Confirm));
        assert_eq!(action("CONFIRMED", "sent"), Some(Confirm));
        assert_eq!(action("PENDING_APPROVAL", "draft"), Some(Confirm));
        assert_eq!(action("SENT_TO_SUPPLIER", "draft"), Some(MarkSent));
        assert_eq!(action("CANCELLED", "purchase"), Some(Cancel));
        // Already there, or no call exists: nothing.
        assert_eq!(action("CONFIRMED", "purchase"), None);
        assert_eq!(action("CONFIRMED", "to approve"), None);
        assert_eq!(action("SENT_TO_SUPPLIER", "sent"), None);
        assert_eq!(action("SENT_TO_SUPPLIER", "purchase"), None);
        assert_eq!(action("DRAFT", "purchase"), None);
        assert_eq!(action("APPROVED", "draft"), None);
        assert_eq!(action("CANCELLED", "cancel"), None);
        assert_eq!(action("CANCELLED", ""), None);
    }
}
