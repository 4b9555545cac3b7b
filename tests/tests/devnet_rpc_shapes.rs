//! The devnet's JSON-RPC answers in nearcore's shapes, read back with
//! nearcore's own view types (`near-primitives`) and with the types
//! `near-openapi-types` generates from nearcore's OpenAPI spec:
//! `EXPERIMENTAL_protocol_config`; refused transactions with `error.data` a
//! typed `TxExecutionError` and `cause.info` empty; `send_tx` honouring
//! `wait_until`; `EXPERIMENTAL_tx_status` with the receipts a transaction
//! ran (data dependencies included) and `EXPERIMENTAL_receipt`; `chunk`;
//! `validators`; and each method's errors.

#[path = "support/rpc.rs"]
mod rpc_support;

use agentwire_agent::devnet::provision;
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use near_primitives::errors::{InvalidTxError, TxExecutionError};
use near_primitives::hash::CryptoHash;
use near_primitives::version::PROTOCOL_VERSION;
use near_primitives::views::{
    ChunkHeaderView, ChunkView, EpochValidatorInfo, FinalExecutionOutcomeWithReceiptView, ReceiptEnumView, ReceiptView,
};
use rpc_support::{burnt, call, head, nonce_of, rpc, send, transfer, tx};
use serde_json::{json, Value};

fn error(answer: &Value) -> &Value {
    answer.get("error").unwrap_or_else(|| panic!("expected an error, got {answer}"))
}

fn result(answer: &Value) -> &Value {
    answer.get("result").unwrap_or_else(|| panic!("expected a result, got {answer}"))
}

#[test]
fn protocol_config_is_nearcores_and_gives_the_storage_cost() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    for params in [json!({ "finality": "final" }), json!({ "block_id": devnet.chain().state.head().height })] {
        let answer = rpc(&devnet, "EXPERIMENTAL_protocol_config", params);
        let config: near_openapi_types::RpcProtocolConfigResponse =
            serde_json::from_value(result(&answer).clone()).expect("nearcore's RpcProtocolConfigResponse");
        let runtime = config.runtime_config.expect("runtime_config");
        assert_eq!(runtime.storage_amount_per_byte.map(|b| b.as_yoctonear()), Some(10u128.pow(19)));
        assert_eq!(config.protocol_version, Some(PROTOCOL_VERSION));
        assert_eq!(config.chain_id.as_deref(), Some("agentwire-devnet"));
        assert_eq!(config.min_gas_price, config.max_gas_price, "the devnet's gas price is fixed");
        assert!(config.shard_layout.is_some());
        // The devnet's own view type reads it too.
        let view: near_parameters::RuntimeConfigView =
            serde_json::from_value(result(&answer)["runtime_config"].clone()).expect("RuntimeConfigView");
        assert_eq!(view.storage_amount_per_byte.as_yoctonear(), 10u128.pow(19));
    }
    let unknown = rpc(&devnet, "EXPERIMENTAL_protocol_config", json!({ "block_id": 999_999 }));
    assert_eq!(error(&unknown)["cause"]["name"], "UNKNOWN_BLOCK");
}

#[test]
fn a_refused_transaction_carries_nearcores_typed_error_data() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let alice = devnet.create_account("alice", 10 * ONE_NEAR).unwrap();
    devnet.create_account("bob", ONE_NEAR).unwrap();
    let n = nonce_of(&devnet, &alice);
    let stale = tx(&alice, &alice.secret_key, "bob.devnet", n, head(&devnet), transfer(1));
    let answer = rpc(&devnet, "send_tx", json!({ "signed_tx_base64": stale }));
    let e = error(&answer);
    assert_eq!(e["name"], "HANDLER_ERROR");
    assert_eq!(e["code"], -32000);
    assert_eq!(e["cause"], json!({ "name": "INVALID_TRANSACTION", "info": {} }));
    assert_eq!(
        e["data"],
        json!({ "TxExecutionError": { "InvalidTxError": { "InvalidNonce": { "tx_nonce": n, "ak_nonce": n } } } })
    );
    let typed: TxExecutionError = serde_json::from_value(e["data"]["TxExecutionError"].clone()).unwrap();
    assert!(
        matches!(typed, TxExecutionError::InvalidTxError(InvalidTxError::InvalidNonce { tx_nonce, ak_nonce }) if tx_nonce == n && ak_nonce == n)
    );
    let wrapped: near_openapi_types::ErrorWrapperForRpcTransactionError = serde_json::from_value(e.clone()).unwrap();
    assert!(matches!(
        wrapped,
        near_openapi_types::ErrorWrapperForRpcTransactionError::HandlerError(
            near_openapi_types::RpcTransactionError::InvalidTransaction(_)
        )
    ));

    // Other handler errors: typed `cause.info`, the error's text in `data`.
    let unknown = rpc(&devnet, "tx", json!({ "tx_hash": CryptoHash::default(), "sender_account_id": "alice.devnet" }));
    let e = error(&unknown);
    assert_eq!(e["cause"]["info"]["requested_transaction_hash"], CryptoHash::default().to_string());
    assert!(e["data"].as_str().unwrap().contains("doesn't exist"), "{e}");
    let wrapped: near_openapi_types::ErrorWrapperForRpcTransactionError = serde_json::from_value(e.clone()).unwrap();
    assert!(matches!(
        wrapped,
        near_openapi_types::ErrorWrapperForRpcTransactionError::HandlerError(
            near_openapi_types::RpcTransactionError::UnknownTransaction { .. }
        )
    ));
}

#[test]
fn send_tx_honours_wait_until() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let alice = devnet.create_account("alice", 10 * ONE_NEAR).unwrap();
    devnet.create_account("bob", ONE_NEAR).unwrap();

    // NONE: nothing but the status, at once; the transaction has run.
    let before = (devnet.balance("alice.devnet"), devnet.balance("bob.devnet"));
    let signed = tx(&alice, &alice.secret_key, "bob.devnet", nonce_of(&devnet, &alice) + 1, head(&devnet), transfer(5));
    let answer = rpc(&devnet, "send_tx", json!({ "signed_tx_base64": signed, "wait_until": "NONE" }));
    assert_eq!(result(&answer), &json!({ "final_execution_status": "NONE" }));
    let hash = {
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &signed).unwrap();
        let t: near_primitives::transaction::SignedTransaction = borsh::from_slice(&bytes).unwrap();
        t.get_hash()
    };
    let status =
        rpc(&devnet, "tx", json!({ "tx_hash": hash, "sender_account_id": "alice.devnet", "wait_until": "FINAL" }));
    let outcome = result(&status);
    assert_eq!(outcome["final_execution_status"], "FINAL");
    assert!(outcome.get("receipts").is_none(), "`tx` has no receipts");
    assert_eq!(devnet.balance("alice.devnet"), before.0 - 5 - burnt(outcome));
    assert_eq!(devnet.balance("bob.devnet"), before.1 + 5);

    // Every other level: the whole outcome, final (the devnet's blocks are final at once).
    for wait in ["INCLUDED", "EXECUTED_OPTIMISTIC", "INCLUDED_FINAL", "EXECUTED", "FINAL"] {
        let answer = send(&devnet, &alice, "bob.devnet", transfer(1), wait);
        let outcome = result(&answer);
        assert_eq!(outcome["final_execution_status"], "FINAL", "{wait}");
        assert!(outcome["status"].get("SuccessValue").is_some(), "{wait}: {outcome}");
        assert!(outcome.get("receipts").is_none());
    }

    // A level NEAR does not know is refused and runs nothing.
    let before = devnet.balance("alice.devnet");
    let answer = send(&devnet, &alice, "bob.devnet", transfer(1), "SOON");
    assert_eq!(error(&answer)["cause"]["name"], "PARSE_ERROR");
    assert_eq!(devnet.balance("alice.devnet"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_status_lists_the_receipts_a_transaction_ran_and_each_can_be_fetched() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["alice"], 100 * ONE_NEAR, 0).await.expect("provisioned");
    let alice = &ready.users[0];
    let channels = ready.channels.to_string();
    let deposited = send(&devnet, alice, &channels, call("storage_deposit", json!({}), ONE_NEAR / 10, 30), "FINAL");
    assert!(result(&deposited)["status"].get("SuccessValue").is_some(), "{deposited}");

    // storage_withdraw: the call, a transfer back, and a callback waiting on the transfer's result.
    let answer = send(
        &devnet,
        alice,
        &channels,
        call("storage_withdraw", json!({ "amount": (ONE_NEAR / 100).to_string() }), 1, 100),
        "FINAL",
    );
    let tx_hash = result(&answer)["transaction"]["hash"].as_str().unwrap().to_owned();
    let status =
        rpc(&devnet, "EXPERIMENTAL_tx_status", json!({ "tx_hash": tx_hash, "sender_account_id": alice.account_id }));
    let view: FinalExecutionOutcomeWithReceiptView =
        serde_json::from_value(result(&status).clone()).expect("nearcore's FinalExecutionOutcomeWithReceiptView");
    let outcome_ids: Vec<CryptoHash> = view.final_outcome.receipts_outcome.iter().map(|o| o.id).collect();
    let receipt_ids: Vec<CryptoHash> = view.receipts.iter().map(|r| r.receipt_id).collect();
    assert_eq!(receipt_ids, outcome_ids, "one receipt per outcome, in order");
    assert_eq!(view.receipts.len(), 3, "{status}");
    assert_eq!(view.receipts[0].receipt_id, view.final_outcome.transaction_outcome.outcome.receipt_ids[0]);
    assert_eq!(view.receipts[0].predecessor_id.as_str(), alice.account_id.as_str());
    let action = |r: &ReceiptView| match &r.receipt {
        ReceiptEnumView::Action { output_data_receivers, input_data_ids, actions, signer_id, .. } => {
            assert_eq!(signer_id.as_str(), alice.account_id.as_str());
            (output_data_receivers.clone(), input_data_ids.clone(), actions.clone())
        }
        other => panic!("not an action receipt: {other:?}"),
    };
    let (to_callback, _, transfer_actions) = action(&view.receipts[1]);
    let (_, waits_on, _) = action(&view.receipts[2]);
    assert_eq!(view.receipts[1].receiver_id.as_str(), alice.account_id.as_str());
    assert!(matches!(transfer_actions.as_slice(), [near_primitives::views::ActionView::Transfer { .. }]));
    assert_eq!(to_callback.len(), 1);
    assert_eq!(waits_on, vec![to_callback[0].data_id], "the callback waits on the transfer's result");
    for receipt in &view.receipts {
        let one = rpc(&devnet, "EXPERIMENTAL_receipt", json!({ "receipt_id": receipt.receipt_id }));
        assert_eq!(result(&one), &serde_json::to_value(receipt).unwrap());
    }
    let unknown = rpc(&devnet, "EXPERIMENTAL_receipt", json!({ "receipt_id": CryptoHash::default() }));
    assert_eq!(
        error(&unknown)["cause"],
        json!({ "name": "UNKNOWN_RECEIPT", "info": { "receipt_id": CryptoHash::default() } })
    );

    // A transaction to its own signer runs its first receipt locally: not listed (as nearcore).
    let local = send(&devnet, alice, alice.account_id.as_str(), transfer(1), "FINAL");
    let hash = result(&local)["transaction"]["hash"].clone();
    let status =
        rpc(&devnet, "EXPERIMENTAL_tx_status", json!({ "tx_hash": hash, "sender_account_id": alice.account_id }));
    assert_eq!(result(&status)["receipts"], json!([]));
    assert_eq!(result(&status)["receipts_outcome"].as_array().map(Vec::len), Some(1));
    // Asked for by another sender, the transaction is unknown.
    let other = rpc(&devnet, "tx", json!({ "tx_hash": hash, "sender_account_id": "devnet" }));
    assert_eq!(error(&other)["cause"]["name"], "UNKNOWN_TRANSACTION");
}

#[test]
fn chunks_and_validators_have_nearcores_shapes() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let alice = devnet.create_account("alice", 10 * ONE_NEAR).unwrap();
    devnet.create_account("bob", ONE_NEAR).unwrap();
    let sent = send(&devnet, &alice, "bob.devnet", transfer(ONE_NEAR), "FINAL");
    let outcome = result(&sent);
    let block_hash = outcome["transaction_outcome"]["block_hash"].as_str().unwrap().to_owned();

    let block = rpc(&devnet, "block", json!({ "block_id": block_hash }));
    let header: ChunkHeaderView = serde_json::from_value(result(&block)["chunks"][0].clone()).expect("ChunkHeaderView");
    assert_eq!(header.balance_burnt.as_yoctonear(), burnt(outcome));
    let by_hash = rpc(&devnet, "chunk", json!({ "chunk_id": header.chunk_hash }));
    let by_block = rpc(&devnet, "chunk", json!({ "block_id": block_hash, "shard_id": 0 }));
    let positional = rpc(&devnet, "chunk", json!([header.chunk_hash]));
    assert_eq!(result(&by_hash), result(&by_block));
    assert_eq!(result(&by_hash), result(&positional));
    let chunk: ChunkView = serde_json::from_value(result(&by_hash).clone()).expect("nearcore's ChunkView");
    assert_eq!(chunk.author.as_str(), "devnet");
    assert_eq!(chunk.transactions.len(), 1);
    assert_eq!(chunk.transactions[0].hash.to_string(), outcome["transaction"]["hash"].as_str().unwrap());
    assert_eq!(chunk.receipts.len(), 1, "the transfer's receipt ran in this block");
    assert_eq!(chunk.header.gas_used.as_gas(), {
        let mut all = vec![&outcome["transaction_outcome"]];
        all.extend(outcome["receipts_outcome"].as_array().unwrap());
        all.iter().map(|o| o["outcome"]["gas_burnt"].as_u64().unwrap()).sum::<u64>()
    });
    // A block without a transaction (the genesis) has an empty chunk.
    let genesis = devnet.chain().state.genesis_hash;
    let empty: ChunkView =
        serde_json::from_value(result(&rpc(&devnet, "chunk", json!({ "block_id": genesis, "shard_id": 0 }))).clone())
            .unwrap();
    assert!(empty.transactions.is_empty() && empty.receipts.is_empty());
    let shard = rpc(&devnet, "chunk", json!({ "block_id": block_hash, "shard_id": 1 }));
    assert_eq!(error(&shard)["cause"]["name"], "INVALID_SHARD_ID");
    let missing = rpc(&devnet, "chunk", json!({ "chunk_id": CryptoHash::default() }));
    assert_eq!(error(&missing)["cause"]["name"], "UNKNOWN_CHUNK");

    for params in
        [json!([null]), Value::Null, json!({ "block_id": block_hash }), json!({ "epoch_id": CryptoHash::default() })]
    {
        let answer = rpc(&devnet, "validators", params.clone());
        let info: EpochValidatorInfo = serde_json::from_value(result(&answer).clone()).expect("EpochValidatorInfo");
        assert_eq!(info.current_validators.len(), 1, "{params}");
        assert_eq!(info.current_validators[0].account_id.as_str(), "devnet");
        assert_eq!(info.next_validators.len(), 1);
        assert!(info.current_validators[0].num_produced_blocks >= 1);
    }
    let unknown = rpc(&devnet, "validators", json!({ "epoch_id": near_primitives::hash::hash(b"other") }));
    assert_eq!(error(&unknown)["cause"]["name"], "UNKNOWN_EPOCH");
}
