//! Finished transactions as the JSON-RPC shows them: the receipts a
//! transaction ran (nearcore's `ReceiptView`), and in-memory lookups from a
//! receipt or a block to its transaction. The lookups are rebuilt from the
//! state's stored outcomes when the chain opens, so the state file keeps its
//! format.

use std::collections::HashMap;

use near_primitives::hash::CryptoHash;
use near_primitives::types::Balance;
use near_primitives::views::{ActionView, DataReceiverView, ReceiptEnumView, ReceiptView};
use serde_json::Value;

use crate::fees::GAS_PRICE;
use crate::receipts::Receipt;
use crate::state::{ChainState, MAX_TX_HISTORY};

/// A receipt as nearcore's views show it (an action receipt bought at the
/// devnet's fixed gas price).
pub fn receipt_view(receipt: &Receipt) -> ReceiptView {
    ReceiptView {
        predecessor_id: receipt.predecessor.clone(),
        receiver_id: receipt.receiver.clone(),
        receipt_id: receipt.id,
        receipt: ReceiptEnumView::Action {
            signer_id: receipt.signer.clone(),
            signer_public_key: receipt.signer_key.clone(),
            gas_price: Balance::from_yoctonear(GAS_PRICE),
            output_data_receivers: receipt
                .output_data
                .iter()
                .map(|(data_id, receiver_id)| DataReceiverView { data_id: *data_id, receiver_id: receiver_id.clone() })
                .collect(),
            input_data_ids: receipt.input_data_ids.clone(),
            actions: receipt.actions.iter().cloned().map(ActionView::from).collect(),
            is_promise_yield: false,
            refund_to: None,
        },
        _priority: 0,
    }
}

/// Which stored transaction a receipt id or a block hash belongs to.
#[derive(Default)]
pub struct TxIndex {
    by_receipt: HashMap<CryptoHash, CryptoHash>,
    by_block: HashMap<CryptoHash, CryptoHash>,
}

/// The hashes among `values` (JSON strings), skipping anything else.
fn hashes<'a>(values: impl Iterator<Item = &'a Value> + 'a) -> impl Iterator<Item = CryptoHash> + 'a {
    values.filter_map(|v| v.as_str()).filter_map(|s| s.parse().ok())
}

impl TxIndex {
    /// The index of every outcome `state` keeps.
    pub fn build(state: &ChainState) -> TxIndex {
        let mut index = TxIndex::default();
        for (tx_hash, (_, json)) in &state.outcomes {
            if let Ok(outcome) = serde_json::from_str::<Value>(json) {
                index.add(*tx_hash, &outcome);
            }
        }
        index
    }

    /// Adds one finished transaction (its outcome with `receipts`).
    pub fn add(&mut self, tx_hash: CryptoHash, outcome: &Value) {
        let receipts = outcome.get("receipts").and_then(Value::as_array).map(|r| r.as_slice()).unwrap_or_default();
        for id in hashes(receipts.iter().filter_map(|r| r.get("receipt_id"))) {
            self.by_receipt.insert(id, tx_hash);
        }
        for block in hashes(outcome.pointer("/transaction_outcome/block_hash").into_iter()) {
            self.by_block.insert(block, tx_hash);
        }
    }

    /// Forgets entries whose transaction the state no longer keeps, once the
    /// index has grown well past the history bound (amortized; keeps memory
    /// bounded by a multiple of [`MAX_TX_HISTORY`]).
    pub fn prune(&mut self, state: &ChainState) {
        if self.by_receipt.len() + self.by_block.len() <= 8 * MAX_TX_HISTORY {
            return;
        }
        self.by_receipt.retain(|_, tx| state.outcomes.contains_key(tx));
        self.by_block.retain(|_, tx| state.outcomes.contains_key(tx));
    }

    /// The transaction that ran `receipt_id`.
    pub fn tx_of_receipt(&self, receipt_id: &CryptoHash) -> Option<CryptoHash> {
        self.by_receipt.get(receipt_id).copied()
    }

    /// The transaction included in `block_hash`.
    pub fn tx_of_block(&self, block_hash: &CryptoHash) -> Option<CryptoHash> {
        self.by_block.get(block_hash).copied()
    }
}
