//! Transactions: `send_tx` honouring `wait_until`, the older `broadcast_tx_*`,
//! `tx` and `EXPERIMENTAL_tx_status` (with the receipts the transaction ran),
//! and `EXPERIMENTAL_receipt`.
//!
//! The devnet executes a transaction and everything it causes in one block
//! that is final at once, so any `wait_until` but `NONE` is answered with the
//! whole outcome and `final_execution_status: FINAL` (nearcore answers with
//! the status reached, which may be past the one asked for). `NONE` answers
//! `{"final_execution_status": "NONE"}` alone, as nearcore does; the
//! transaction has run all the same, and `tx` shows its outcome.

use borsh::BorshDeserialize;
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::AccountId;
use near_primitives::views::TxExecutionStatus;
use serde_json::{json, Value};

use super::{hash_param, unb64, RpcError};
use crate::chain::{Chain, TxRejected};

/// The signed transaction of `send_tx` (`{signed_tx_base64}`) or of the
/// older `broadcast_tx_*` (`[base64]`).
fn signed_tx(params: &Value) -> Result<SignedTransaction, RpcError> {
    let encoded = params
        .get("signed_tx_base64")
        .or_else(|| params.get(0))
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::parse("missing signed_tx_base64"))?;
    let bytes = unb64(encoded)?;
    SignedTransaction::try_from_slice(&bytes).map_err(|e| RpcError::parse(format!("not a signed transaction: {e}")))
}

/// `wait_until` (default `EXECUTED_OPTIMISTIC`, as nearcore).
fn wait_until(params: &Value) -> Result<TxExecutionStatus, RpcError> {
    match params.get("wait_until") {
        None | Some(Value::Null) => Ok(TxExecutionStatus::ExecutedOptimistic),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| RpcError::parse(format!("invalid wait_until {v}"))),
    }
}

/// An outcome as `send_tx` and `tx` show it: final, without receipts unless asked.
fn finished(mut outcome: Value, with_receipts: bool) -> Value {
    if let Some(obj) = outcome.as_object_mut() {
        obj.insert("final_execution_status".into(), json!(TxExecutionStatus::Final));
        if !with_receipts {
            obj.remove("receipts");
        }
    }
    outcome
}

fn rejected(e: TxRejected) -> RpcError {
    match e {
        // nearcore: `cause.info` is empty and `data` carries the typed reason.
        TxRejected::Invalid(e) => {
            RpcError::handler("INVALID_TRANSACTION", json!({}), json!({ "TxExecutionError": { "InvalidTxError": e } }))
        }
        TxRejected::Unsupported(what) => RpcError::handler(
            "INVALID_TRANSACTION",
            json!({}),
            json!(format!("the devnet does not support this transaction: {what}")),
        ),
    }
}

fn run(chain: &mut Chain, signed: &SignedTransaction) -> Result<Value, RpcError> {
    let view = chain.apply(signed).map_err(rejected)?;
    serde_json::to_value(&view).map_err(|e| RpcError::internal(e.to_string()))
}

/// `send_tx` and `broadcast_tx_commit`.
pub(super) fn send_tx(chain: &mut Chain, params: &Value) -> Result<Value, RpcError> {
    let signed = signed_tx(params)?;
    let wait = wait_until(params)?;
    let outcome = run(chain, &signed)?;
    if wait == TxExecutionStatus::None {
        return Ok(json!({ "final_execution_status": TxExecutionStatus::None }));
    }
    Ok(finished(outcome, false))
}

/// `broadcast_tx_async`: the transaction's hash.
pub(super) fn broadcast_async(chain: &mut Chain, params: &Value) -> Result<Value, RpcError> {
    let signed = signed_tx(params)?;
    run(chain, &signed)?;
    Ok(json!(signed.get_hash()))
}

fn unknown_transaction(tx_hash: &CryptoHash) -> RpcError {
    RpcError::handler(
        "UNKNOWN_TRANSACTION",
        json!({ "requested_transaction_hash": tx_hash }),
        json!(format!("Transaction {tx_hash} doesn't exist")),
    )
}

/// `tx` and `EXPERIMENTAL_tx_status`: by `{tx_hash, sender_account_id}`,
/// `[tx_hash, sender]` or `{signed_tx_base64}`.
pub(super) fn status(chain: &Chain, params: &Value, with_receipts: bool) -> Result<Value, RpcError> {
    wait_until(params)?;
    let tx_hash = if params.get("signed_tx_base64").is_some() {
        signed_tx(params)?.get_hash()
    } else {
        hash_param(params, "tx_hash")?
    };
    let sender = params.get("sender_account_id").or_else(|| params.get(1)).and_then(Value::as_str);
    let sender: Option<AccountId> = match sender {
        Some(s) => Some(s.parse().map_err(|_| RpcError::parse(format!("invalid sender_account_id {s:?}")))?),
        None => None,
    };
    let signer = chain.state.outcomes.get(&tx_hash).map(|(signer, _)| signer);
    if sender.is_some() && sender.as_ref() != signer {
        return Err(unknown_transaction(&tx_hash));
    }
    let outcome = chain.tx_outcome(&tx_hash).ok_or_else(|| unknown_transaction(&tx_hash))?;
    Ok(finished(outcome, with_receipts))
}

/// `EXPERIMENTAL_receipt`: a receipt a kept transaction ran.
pub(super) fn receipt(chain: &Chain, params: &Value) -> Result<Value, RpcError> {
    let id = hash_param(params, "receipt_id")?;
    chain.receipt(&id).ok_or_else(|| {
        RpcError::handler(
            "UNKNOWN_RECEIPT",
            json!({ "receipt_id": id }),
            json!(format!("Receipt with id {id} has never been observed on this node")),
        )
    })
}
