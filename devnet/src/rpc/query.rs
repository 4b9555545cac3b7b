//! `query`: accounts, access keys, view calls, code and contract state, with
//! nearcore's typed errors (`UNKNOWN_ACCOUNT`, `UNKNOWN_ACCESS_KEY`,
//! `NO_CONTRACT_CODE`, `CONTRACT_EXECUTION_ERROR`).

use near_crypto::PublicKey;
use near_primitives::views::{AccessKeyInfoView, AccessKeyList, AccessKeyView};
use serde_json::{json, Value};

use super::{account_param, b64, block_ref, field, unb64, RpcError};
use crate::chain::{Chain, QueryError};
use crate::state::BlockInfo;

/// Largest `view_state` answer, in entries.
pub const MAX_VIEW_STATE_ENTRIES: usize = 10_000;

fn query_error(e: QueryError, head: &BlockInfo) -> RpcError {
    let (h, height) = (head.hash, head.height);
    match e {
        QueryError::UnknownAccount(a) => RpcError::handler(
            "UNKNOWN_ACCOUNT",
            json!({ "requested_account_id": a, "block_hash": h, "block_height": height }),
            json!(format!("account {a} does not exist while viewing")),
        ),
        QueryError::UnknownAccessKey(k) => RpcError::handler(
            "UNKNOWN_ACCESS_KEY",
            json!({ "public_key": k, "block_hash": h, "block_height": height }),
            json!(format!("access key {k} does not exist while viewing")),
        ),
        QueryError::NoContractCode(a) => RpcError::handler(
            "NO_CONTRACT_CODE",
            json!({ "contract_account_id": a, "block_hash": h, "block_height": height }),
            json!(format!("Contract code for contract ID #{a} has never been observed on the node")),
        ),
        QueryError::ContractExecution(message) => RpcError::handler(
            "CONTRACT_EXECUTION_ERROR",
            json!({
                "vm_error": message,
                "error": { "ExecutionError": message },
                "block_hash": h,
                "block_height": height,
            }),
            json!(format!("Function call returned an error: {message}")),
        ),
    }
}

pub(super) fn query(chain: &Chain, params: &Value) -> Result<Value, RpcError> {
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
