//! NEAR's JSON-RPC, the part clients use: `status`, `block`, `gas_price`,
//! `query` (`view_account`, `view_access_key`, `view_access_key_list`,
//! `call_function`, `view_code`, `view_state`), `send_tx`,
//! `broadcast_tx_commit`, `broadcast_tx_async`, `tx`,
//! `EXPERIMENTAL_tx_status`, and the sandbox's `sandbox_fast_forward`.
//!
//! Responses and errors have nearcore's shapes (the views are nearcore's own
//! types), so `near-api` and other NEAR clients work unchanged. The devnet
//! keeps only the latest state: a query naming an older block is answered
//! from the latest one, and says so in `block_height`.

use std::sync::Mutex;

use base64::Engine as _;
use borsh::BorshDeserialize;
use near_crypto::{KeyType, PublicKey, Signature};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::AccountId;
use near_primitives::views::{AccessKeyInfoView, AccessKeyList, AccessKeyView};
use near_primitives_core::version::PROTOCOL_VERSION;
use serde_json::{json, Value};

use crate::chain::{Chain, QueryError, TxRejected};
use crate::fees::GAS_PRICE;
use crate::state::BlockInfo;

/// Largest `view_state` answer, in entries.
pub const MAX_VIEW_STATE_ENTRIES: usize = 10_000;

/// A JSON-RPC error object in nearcore's shape.
struct RpcError(Value);

impl RpcError {
    fn handler(cause: &str, info: Value) -> RpcError {
        let data = info.to_string();
        RpcError(json!({
            "name": "HANDLER_ERROR",
            "cause": { "name": cause, "info": info },
            "code": -32000,
            "message": "Server error",
            "data": data,
        }))
    }

    fn parse(message: impl Into<String>) -> RpcError {
        let message = message.into();
        RpcError(json!({
            "name": "REQUEST_VALIDATION_ERROR",
            "cause": { "name": "PARSE_ERROR", "info": { "error_message": message } },
            "code": -32700,
            "message": "Parse error",
            "data": message,
        }))
    }

    fn method_not_found(method: &str) -> RpcError {
        RpcError(json!({
            "name": "REQUEST_VALIDATION_ERROR",
            "cause": { "name": "METHOD_NOT_FOUND", "info": { "method_name": method } },
            "code": -32601,
            "message": "Method not found",
            "data": method,
        }))
    }

    fn internal(message: impl Into<String>) -> RpcError {
        let message = message.into();
        RpcError(json!({
            "name": "INTERNAL_ERROR",
            "cause": { "name": "INTERNAL_ERROR", "info": { "error_message": message } },
            "code": -32000,
            "message": "Server error",
            "data": message,
        }))
    }
}

/// Answers one JSON-RPC request body.
pub fn handle(chain: &Mutex<Chain>, body: &[u8]) -> Value {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return envelope(Value::Null, Err(RpcError::parse(format!("request is not JSON: {e}")))),
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return envelope(id, Err(RpcError::parse("missing method")));
    };
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let mut chain = match chain.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    let result = dispatch(&mut chain, method, &params);
    envelope(id, result)
}

fn envelope(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(RpcError(error)) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
    }
}

fn dispatch(chain: &mut Chain, method: &str, params: &Value) -> Result<Value, RpcError> {
    match method {
        "status" => Ok(status(chain)),
        "block" => block(chain, params),
        "gas_price" => Ok(json!({ "gas_price": GAS_PRICE.to_string() })),
        "query" => query(chain, params),
        "send_tx" | "broadcast_tx_commit" => send_tx(chain, params).map(|(_, v)| v),
        "broadcast_tx_async" => send_tx(chain, params).map(|(hash, _)| json!(hash.to_string())),
        "tx" | "EXPERIMENTAL_tx_status" => tx_status(chain, params, method != "tx"),
        "sandbox_fast_forward" => {
            let delta =
                params.get("delta_height").and_then(Value::as_u64).ok_or_else(|| RpcError::parse("delta_height"))?;
            chain.fast_forward(delta).map_err(|e| RpcError::internal(e.to_string()))?;
            Ok(json!({}))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn total_supply(chain: &Chain) -> u128 {
    chain.state.accounts.values().fold(0u128, |s, a| s.saturating_add(a.amount).saturating_add(a.locked))
}

fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        ns % 1_000_000_000
    )
}

fn status(chain: &Chain) -> Value {
    let head = chain.state.head();
    let first = chain.state.blocks.front().copied().unwrap_or(head);
    json!({
        "chain_id": chain.state.chain_id,
        "genesis_hash": chain.state.genesis_hash,
        "latest_protocol_version": PROTOCOL_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "node_public_key": PublicKey::empty(KeyType::ED25519),
        "rpc_addr": Value::Null,
        "sync_info": {
            "latest_block_hash": head.hash,
            "latest_block_height": head.height,
            "latest_block_time": rfc3339(head.timestamp_ns),
            "latest_state_root": CryptoHash::default(),
            "earliest_block_hash": first.hash,
            "earliest_block_height": first.height,
            "earliest_block_time": rfc3339(first.timestamp_ns),
            "syncing": false,
        },
        "uptime_sec": 0,
        "validators": [],
        "version": {
            "version": env!("CARGO_PKG_VERSION"),
            "build": "agentwire-devnet",
            "commit": "",
            "rustc_version": "",
        },
    })
}

/// The block a request names (`finality`, `block_id` or `sync_checkpoint`).
fn block_ref(chain: &Chain, params: &Value) -> Result<BlockInfo, RpcError> {
    let head = chain.state.head();
    let found = match params.get("block_id") {
        None | Some(Value::Null) => Some(head),
        Some(Value::Number(n)) => n.as_u64().and_then(|h| chain.state.block_by_height(h)),
        Some(Value::String(s)) => s.parse::<CryptoHash>().ok().and_then(|h| chain.state.block_by_hash(&h)),
        Some(_) => None,
    };
    let found = match params.get("sync_checkpoint").and_then(Value::as_str) {
        Some("genesis") => chain.state.blocks.front().copied(),
        _ => found,
    };
    found.ok_or_else(|| RpcError::handler("UNKNOWN_BLOCK", json!({ "block_reference": params })))
}

fn block(chain: &Chain, params: &Value) -> Result<Value, RpcError> {
    let b = block_ref(chain, params)?;
    let zero = CryptoHash::default();
    let epoch = CryptoHash::default();
    let root = chain.state.root.as_ref().map(|r| r.to_string()).unwrap_or_else(|| "devnet".into());
    Ok(json!({
        "author": root,
        "chunks": [],
        "header": {
            "approvals": [],
            "block_merkle_root": zero,
            "challenges_result": [],
            "challenges_root": zero,
            "chunk_headers_root": zero,
            "chunk_mask": [],
            "chunk_receipts_root": zero,
            "chunk_tx_root": zero,
            "chunks_included": 0,
            "epoch_id": epoch,
            "gas_price": GAS_PRICE.to_string(),
            "hash": b.hash,
            "height": b.height,
            "last_ds_final_block": b.hash,
            "last_final_block": b.hash,
            "latest_protocol_version": PROTOCOL_VERSION,
            "next_bp_hash": zero,
            "next_epoch_id": epoch,
            "outcome_root": zero,
            "prev_hash": b.prev_hash,
            "prev_state_root": zero,
            "random_value": b.hash,
            "rent_paid": "0",
            "signature": Signature::empty(KeyType::ED25519),
            "timestamp": b.timestamp_ns,
            "timestamp_nanosec": b.timestamp_ns.to_string(),
            "total_supply": total_supply(chain).to_string(),
            "validator_proposals": [],
            "validator_reward": "0",
        },
    }))
}

fn field<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    params.get(name).and_then(Value::as_str).ok_or_else(|| RpcError::parse(format!("missing {name}")))
}

fn account_param(params: &Value) -> Result<AccountId, RpcError> {
    let raw = field(params, "account_id")?;
    raw.parse().map_err(|_| RpcError::parse(format!("invalid account id {raw:?}")))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, RpcError> {
    base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| RpcError::parse(format!("bad base64: {e}")))
}

fn query_error(e: QueryError, head: &BlockInfo) -> RpcError {
    let (h, height) = (head.hash, head.height);
    match e {
        QueryError::UnknownAccount(a) => RpcError::handler(
            "UNKNOWN_ACCOUNT",
            json!({ "requested_account_id": a, "block_hash": h, "block_height": height }),
        ),
        QueryError::UnknownAccessKey(k) => {
            RpcError::handler("UNKNOWN_ACCESS_KEY", json!({ "public_key": k, "block_hash": h, "block_height": height }))
        }
        QueryError::NoContractCode(a) => RpcError::handler(
            "NO_CONTRACT_CODE",
            json!({ "contract_account_id": a, "block_hash": h, "block_height": height }),
        ),
        QueryError::ContractExecution(message) => RpcError::handler(
            "CONTRACT_EXECUTION_ERROR",
            json!({
                "vm_error": message,
                "error": { "ExecutionError": message },
                "block_hash": h,
                "block_height": height,
            }),
        ),
    }
}

fn query(chain: &Chain, params: &Value) -> Result<Value, RpcError> {
    block_ref(chain, params)?;
    let head = chain.state.head();
    let request_type = field(params, "request_type")?;
    let err = |e| query_error(e, &head);
    let mut result = match request_type {
        "view_account" => {
            let id = account_param(params)?;
            let a = chain.account(&id).map_err(err)?;
            json!({
                "amount": a.amount.to_string(),
                "locked": a.locked.to_string(),
                "code_hash": a.code_hash.unwrap_or_default(),
                "storage_usage": a.storage_usage,
                "storage_paid_at": 0,
            })
        }
        "view_access_key" => {
            let id = account_param(params)?;
            let raw = field(params, "public_key")?;
            let key: PublicKey = raw.parse().map_err(|_| RpcError::parse(format!("invalid public key {raw:?}")))?;
            let access = chain.access_key(&id, &key).map_err(err)?;
            serde_json::to_value(AccessKeyView::from(access)).map_err(|e| RpcError::internal(e.to_string()))?
        }
        "view_access_key_list" => {
            let id = account_param(params)?;
            let a = chain.account(&id).map_err(err)?;
            let list: AccessKeyList =
                a.keys.iter().map(|(k, v)| AccessKeyInfoView::new(k.clone(), AccessKeyView::from(v.clone()))).collect();
            serde_json::to_value(list).map_err(|e| RpcError::internal(e.to_string()))?
        }
        "call_function" => {
            let id = account_param(params)?;
            let method = field(params, "method_name")?;
            let args = unb64(params.get("args_base64").and_then(Value::as_str).unwrap_or(""))?;
            let (result, logs) = chain.call_view(&id, method, &args).map_err(err)?;
            json!({ "result": result, "logs": logs })
        }
        "view_code" => {
            let id = account_param(params)?;
            let (hash, code) = chain.code(&id).map_err(err)?;
            json!({ "code_base64": b64(code), "hash": hash })
        }
        "view_state" => {
            let id = account_param(params)?;
            let prefix = unb64(params.get("prefix_base64").and_then(Value::as_str).unwrap_or(""))?;
            let a = chain.account(&id).map_err(err)?;
            let values: Vec<Value> = a
                .data
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .take(MAX_VIEW_STATE_ENTRIES)
                .map(|(k, v)| json!({ "key": b64(k), "value": b64(v) }))
                .collect();
            json!({ "values": values })
        }
        other => return Err(RpcError::parse(format!("unsupported request_type {other:?}"))),
    };
    if let Some(obj) = result.as_object_mut() {
        obj.insert("block_height".into(), json!(head.height));
        obj.insert("block_hash".into(), json!(head.hash));
    }
    Ok(result)
}

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

fn with_status(outcome: Value) -> Value {
    let mut outcome = outcome;
    if let Some(obj) = outcome.as_object_mut() {
        obj.insert("final_execution_status".into(), json!("FINAL"));
    }
    outcome
}

fn send_tx(chain: &mut Chain, params: &Value) -> Result<(CryptoHash, Value), RpcError> {
    let signed = signed_tx(params)?;
    let tx_hash = signed.get_hash();
    match chain.apply(&signed) {
        Ok(view) => {
            let json = serde_json::to_value(&view).map_err(|e| RpcError::internal(e.to_string()))?;
            Ok((tx_hash, with_status(json)))
        }
        Err(TxRejected::Invalid(e)) => {
            let info = serde_json::to_value(&e).unwrap_or(Value::Null);
            Err(RpcError::handler("INVALID_TRANSACTION", json!({ "TxExecutionError": { "InvalidTxError": info } })))
        }
        Err(TxRejected::Unsupported(what)) => {
            Err(RpcError::handler("INVALID_TRANSACTION", json!({ "DevnetUnsupported": what })))
        }
    }
}

fn tx_status(chain: &Chain, params: &Value, with_receipts: bool) -> Result<Value, RpcError> {
    let raw = params
        .get("tx_hash")
        .or_else(|| params.get(0))
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::parse("missing tx_hash"))?;
    let tx_hash: CryptoHash = raw.parse().map_err(|_| RpcError::parse(format!("invalid tx_hash {raw:?}")))?;
    let Some(outcome) = chain.tx_outcome(&tx_hash) else {
        return Err(RpcError::handler("UNKNOWN_TRANSACTION", json!({ "requested_transaction_hash": tx_hash })));
    };
    let mut outcome = with_status(outcome);
    if with_receipts {
        if let Some(obj) = outcome.as_object_mut() {
            obj.insert("receipts".into(), json!([]));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
    }
}
