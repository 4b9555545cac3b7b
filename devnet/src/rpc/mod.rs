//! NEAR's JSON-RPC, the part clients use: `status`, `block`, `chunk`,
//! `validators`, `gas_price`, `EXPERIMENTAL_protocol_config`, `query`
//! (`view_account`, `view_access_key`, `view_access_key_list`,
//! `call_function`, `view_code`, `view_state`), `send_tx` (honouring
//! `wait_until`), `broadcast_tx_commit`, `broadcast_tx_async`, `tx`,
//! `EXPERIMENTAL_tx_status` (with receipts), `EXPERIMENTAL_receipt`, and the
//! sandbox's `sandbox_fast_forward`.
//!
//! Responses and errors have nearcore's shapes (the views are nearcore's own
//! types; an error is `{name, cause: {name, info}, code, message, data}` with
//! `data` an object where nearcore sends one, e.g. an invalid transaction's
//! `{"TxExecutionError": {"InvalidTxError": …}}`), so `near-api`,
//! near-api-js and other NEAR clients work unchanged. The devnet keeps only
//! the latest state: a query naming an older block is answered from the
//! latest one, and says so in `block_height`.
//!
//! - [`chain_info`]: status, blocks, chunks, validators, protocol config.
//! - [`query`]: the `query` views.
//! - [`tx`]: sending transactions, their status and receipts.

mod chain_info;
mod query;
mod tx;

use std::sync::Mutex;

use base64::Engine as _;
use near_primitives::hash::CryptoHash;
use near_primitives::types::AccountId;
use serde_json::{json, Value};

use crate::chain::Chain;
use crate::fees::GAS_PRICE;
use crate::state::BlockInfo;

pub use query::MAX_VIEW_STATE_ENTRIES;

/// A JSON-RPC error object in nearcore's shape.
struct RpcError(Value);

impl RpcError {
    /// A handler error: `cause` names it, `info` is its typed body and `data`
    /// what nearcore sends beside it (an object for invalid transactions, the
    /// error's text otherwise).
    fn handler(cause: &str, info: Value, data: Value) -> RpcError {
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

    fn unknown_block(params: &Value) -> RpcError {
        let data = format!("DB Not Found Error: BLOCK: {params}");
        RpcError::handler("UNKNOWN_BLOCK", json!({ "block_reference": params, "error_message": data }), json!(data))
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
        "status" => Ok(chain_info::status(chain)),
        "block" => chain_info::block(chain, params),
        "chunk" => chain_info::chunk(chain, params),
        "validators" => chain_info::validators(chain, params),
        "EXPERIMENTAL_protocol_config" => chain_info::protocol_config(chain, params),
        "gas_price" => Ok(json!({ "gas_price": GAS_PRICE.to_string() })),
        "query" => query::query(chain, params),
        "send_tx" | "broadcast_tx_commit" => tx::send_tx(chain, params),
        "broadcast_tx_async" => tx::broadcast_async(chain, params),
        "tx" => tx::status(chain, params, false),
        "EXPERIMENTAL_tx_status" => tx::status(chain, params, true),
        "EXPERIMENTAL_receipt" => tx::receipt(chain, params),
        "sandbox_fast_forward" => {
            let delta =
                params.get("delta_height").and_then(Value::as_u64).ok_or_else(|| RpcError::parse("delta_height"))?;
            chain.fast_forward(delta).map_err(|e| RpcError::internal(e.to_string()))?;
            Ok(json!({}))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

/// The block a request names (`finality`, `block_id` or `sync_checkpoint`).
fn block_ref(chain: &Chain, params: &Value) -> Result<BlockInfo, RpcError> {
    let found = match params.get("block_id") {
        None | Some(Value::Null) => Some(chain.state.head()),
        Some(id) => block_by_id(chain, id),
    };
    let found = match params.get("sync_checkpoint").and_then(Value::as_str) {
        Some("genesis") => chain.state.blocks.front().copied(),
        _ => found,
    };
    found.ok_or_else(|| RpcError::unknown_block(params))
}

/// A kept block by height (a number) or hash (a string).
fn block_by_id(chain: &Chain, id: &Value) -> Option<BlockInfo> {
    match id {
        Value::Number(n) => n.as_u64().and_then(|h| chain.state.block_by_height(h)),
        Value::String(s) => s.parse::<CryptoHash>().ok().and_then(|h| chain.state.block_by_hash(&h)),
        _ => None,
    }
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

/// A hash parameter, named or first positional.
fn hash_param(params: &Value, name: &str) -> Result<CryptoHash, RpcError> {
    let raw = params
        .get(name)
        .or_else(|| params.get(0))
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::parse(format!("missing {name}")))?;
    raw.parse().map_err(|_| RpcError::parse(format!("invalid {name} {raw:?}")))
}
