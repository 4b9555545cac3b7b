//! Raw JSON-RPC over HTTP/1.1 and hand-signed transactions, shared by the
//! devnet's JSON-RPC tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;

use agentwire_devnet::{DevAccount, Devnet};
use base64::Engine as _;
use near_crypto::SecretKey;
use near_primitives::action::TransferAction;
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{Action, SignedTransaction, Transaction, TransactionV0};
use near_primitives::types::Balance;
use serde_json::{json, Value};

/// One raw JSON-RPC call over HTTP/1.1.
pub fn rpc(devnet: &Devnet, method: &str, params: Value) -> Value {
    let body = json!({ "jsonrpc": "2.0", "id": "t", "method": method, "params": params }).to_string();
    let (status, answer) = http(devnet, &format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).expect("JSON answer")
}

pub fn http(devnet: &Devnet, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(devnet.addr()).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

pub fn head(devnet: &Devnet) -> CryptoHash {
    devnet.chain().state.head().hash
}

pub fn nonce_of(devnet: &Devnet, a: &DevAccount) -> u64 {
    let chain = devnet.chain();
    chain.access_key(&a.account_id, &a.secret_key.public_key()).unwrap().nonce
}

pub fn tx(from: &DevAccount, key: &SecretKey, to: &str, nonce: u64, block: CryptoHash, actions: Vec<Action>) -> String {
    let t = Transaction::V0(TransactionV0 {
        signer_id: from.account_id.clone(),
        public_key: key.public_key(),
        nonce,
        receiver_id: to.parse().unwrap(),
        block_hash: block,
        actions,
    });
    let signature = key.sign(t.get_hash_and_size().0.as_ref());
    let signed = SignedTransaction::new(signature, t);
    base64::engine::general_purpose::STANDARD.encode(borsh::to_vec(&signed).unwrap())
}

pub fn transfer(yocto: u128) -> Vec<Action> {
    vec![Action::Transfer(TransferAction { deposit: Balance::from_yoctonear(yocto) })]
}

/// One function call as a transaction's actions.
pub fn call(method: &str, args: Value, deposit: u128, tgas: u64) -> Vec<Action> {
    vec![Action::FunctionCall(Box::new(near_primitives::action::FunctionCallAction {
        method_name: method.into(),
        args: args.to_string().into_bytes(),
        gas: near_primitives::types::Gas::from_gas(tgas * 1_000_000_000_000),
        deposit: Balance::from_yoctonear(deposit),
    }))]
}

/// Sends `actions` from `from` with its next nonce; the JSON-RPC answer.
pub fn send(devnet: &Devnet, from: &DevAccount, to: &str, actions: Vec<Action>, wait_until: &str) -> Value {
    let signed = tx(from, &from.secret_key, to, nonce_of(devnet, from) + 1, head(devnet), actions);
    rpc(devnet, "send_tx", json!({ "signed_tx_base64": signed, "wait_until": wait_until }))
}

/// NEAR burnt by a transaction and all its receipts (from an outcome's JSON).
pub fn burnt(outcome: &Value) -> u128 {
    let mut all = vec![&outcome["transaction_outcome"]];
    all.extend(outcome["receipts_outcome"].as_array().into_iter().flatten());
    all.iter().map(|o| o["outcome"]["tokens_burnt"].as_str().unwrap().parse::<u128>().unwrap()).sum()
}
