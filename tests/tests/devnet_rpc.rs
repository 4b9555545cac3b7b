//! The devnet's JSON-RPC as NEAR clients see it: `near-api` reads status,
//! blocks, accounts, keys and transaction status and sends transfers; hand-built
//! transactions that NEAR would refuse (bad signature, replayed nonce, unknown
//! block, unknown signer or key, too little balance, a function-call key used
//! beyond its permission, garbage) are refused with NEAR's error names and
//! change nothing; the HTTP server's bounds hold; state survives a restart.

#[path = "support/rpc.rs"]
mod rpc_support;

use agentwire_devnet::{random_secret_key, DevAccount, Devnet, DevnetConfig, ONE_NEAR};
use base64::Engine as _;
use near_api::{Account, AccountId, Chain, NearToken, NetworkConfig, Signer, Tokens};
use near_primitives::account::{AccessKey, AccessKeyPermission, FunctionCallPermission};
use near_primitives::action::{AddKeyAction, FunctionCallAction};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{Action, SignedTransaction, Transaction, TransactionV0};
use near_primitives::types::{Balance, Gas};
use rpc_support::{head, http, nonce_of, rpc, transfer, tx};
use serde_json::{json, Value};

fn network(devnet: &Devnet) -> NetworkConfig {
    NetworkConfig::from_rpc_url("devnet", devnet.rpc_url().parse().unwrap())
}

fn signer(a: &DevAccount) -> std::sync::Arc<Signer> {
    Signer::from_secret_key(a.secret_key.to_string().parse().unwrap()).unwrap()
}

fn id(a: &DevAccount) -> AccountId {
    a.account_id.as_str().parse().unwrap()
}

/// The `cause.name` of a refused transaction and its `data` (nearcore's
/// `{"TxExecutionError": {"InvalidTxError": …}}`) as JSON text.
fn refusal(answer: &Value) -> (String, String) {
    let error = answer.get("error").unwrap_or_else(|| panic!("expected an error, got {answer}"));
    assert!(
        error["data"]["TxExecutionError"]["InvalidTxError"].is_object()
            || error["data"]["TxExecutionError"]["InvalidTxError"].is_string(),
        "{error}"
    );
    (error["cause"]["name"].as_str().unwrap_or_default().to_owned(), error["data"].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_api_reads_the_chain_and_sends_transfers() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let net = network(&devnet);
    let alice = devnet.create_account("alice", 10 * ONE_NEAR).unwrap();
    let bob = devnet.create_account("bob", ONE_NEAR).unwrap();

    let height = Chain::block_number().fetch_from(&net).await.unwrap();
    let hash = Chain::block_hash().fetch_from(&net).await.unwrap();
    assert_eq!(height, devnet.chain().state.head().height);
    assert_eq!(hash.to_string(), head(&devnet).to_string());
    let block = Chain::block().fetch_from(&net).await.unwrap();
    assert_eq!(block.header.height, height);

    let view = Account(id(&alice)).view().fetch_from(&net).await.unwrap().data;
    assert_eq!(view.amount.as_yoctonear(), 10 * ONE_NEAR);
    let keys = Account(id(&alice)).list_keys().fetch_from(&net).await.unwrap().data;
    assert_eq!(keys.len(), 1);

    let result = Tokens::account(id(&alice))
        .send_to(id(&bob))
        .near(NearToken::from_millinear(1_500))
        .with_signer(signer(&alice))
        .send_to(&net)
        .await
        .unwrap();
    let success = result.into_result().unwrap();
    let burnt: u128 = success.outcomes().iter().map(|o| o.tokens_burnt.as_yoctonear()).sum();
    assert!(burnt > 0);
    assert_eq!(devnet.balance("bob.devnet"), ONE_NEAR + 1_500 * ONE_NEAR / 1_000);
    assert_eq!(devnet.balance("alice.devnet"), 10 * ONE_NEAR - 1_500 * ONE_NEAR / 1_000 - burnt);

    let tx_hash = success.outcomes()[0].transaction_hash;
    let status = near_api::Transaction::status(id(&alice), tx_hash).fetch_from(&net).await.unwrap();
    assert!(status.into_result().is_ok(), "tx status is answered from the devnet's history");

    // Implicit accounts are created by a transfer.
    let implicit = hex::encode(random_secret_key().public_key().key_data());
    Tokens::account(id(&alice))
        .send_to(implicit.parse().unwrap())
        .near(NearToken::from_millinear(100))
        .with_signer(signer(&alice))
        .send_to(&net)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(devnet.balance(&implicit), ONE_NEAR / 10);

    // A transfer to an account that does not exist fails and refunds.
    let before = devnet.balance("alice.devnet");
    let r = Tokens::account(id(&alice))
        .send_to("nobody.devnet".parse().unwrap())
        .near(NearToken::from_near(1))
        .with_signer(signer(&alice))
        .send_to(&net)
        .await
        .unwrap();
    let failure = r.into_result().unwrap_err();
    let burnt: u128 = match &failure {
        near_api::types::transaction::result::TransactionResultError::Failure(f) => {
            f.outcomes().iter().map(|o| o.tokens_burnt.as_yoctonear()).sum()
        }
        other => panic!("unexpected {other:?}"),
    };
    assert!(format!("{failure:?}").contains("AccountDoesNotExist"));
    assert_eq!(devnet.balance("alice.devnet"), before - burnt, "the deposit came back; only gas was spent");
}

#[test]
fn transactions_near_would_refuse_are_refused_and_change_nothing() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let alice = devnet.create_account("alice", 10 * ONE_NEAR).unwrap();
    devnet.create_account("bob", ONE_NEAR).unwrap();
    let key = alice.secret_key.clone();
    let balances = || (devnet.balance("alice.devnet"), devnet.balance("bob.devnet"));
    let start = balances();
    let n = nonce_of(&devnet, &alice);
    let send = |encoded: String| rpc(&devnet, "send_tx", json!({ "signed_tx_base64": encoded, "wait_until": "FINAL" }));

    // Signed by a key that is not the one named.
    let other = random_secret_key();
    let forged = Transaction::V0(TransactionV0 {
        signer_id: alice.account_id.clone(),
        public_key: key.public_key(),
        nonce: n + 1,
        receiver_id: "bob.devnet".parse().unwrap(),
        block_hash: head(&devnet),
        actions: transfer(1),
    });
    let sig = other.sign(forged.get_hash_and_size().0.as_ref());
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(borsh::to_vec(&SignedTransaction::new(sig, forged)).unwrap());
    let (cause, info) = refusal(&send(encoded));
    assert_eq!(cause, "INVALID_TRANSACTION");
    assert!(info.contains("InvalidSignature"), "{info}");

    // Unknown signer, unknown key, unknown block, too large a nonce, too little balance.
    let ghost = DevAccount { account_id: "ghost.devnet".parse().unwrap(), secret_key: key.clone() };
    assert!(refusal(&send(tx(&ghost, &key, "bob.devnet", n + 1, head(&devnet), transfer(1))))
        .1
        .contains("SignerDoesNotExist"));
    assert!(refusal(&send(tx(&alice, &other, "bob.devnet", n + 1, head(&devnet), transfer(1))))
        .1
        .contains("AccessKeyNotFound"));
    assert!(refusal(&send(tx(&alice, &key, "bob.devnet", n + 1, near_primitives::hash::hash(b"x"), transfer(1))))
        .1
        .contains("Expired"));
    assert!(refusal(&send(tx(&alice, &key, "bob.devnet", u64::MAX, head(&devnet), transfer(1))))
        .1
        .contains("NonceTooLarge"));
    assert!(refusal(&send(tx(&alice, &key, "bob.devnet", n + 1, head(&devnet), transfer(11 * ONE_NEAR))))
        .1
        .contains("NotEnoughBalance"));
    assert_eq!(balances(), start);
    assert_eq!(nonce_of(&devnet, &alice), n, "a refused transaction does not use its nonce");

    // A good one; sent twice it runs once; its nonce cannot be used again.
    let good = tx(&alice, &key, "bob.devnet", n + 1, head(&devnet), transfer(ONE_NEAR));
    let first = send(good.clone());
    assert!(first.get("result").is_some(), "{first}");
    let again = send(good);
    assert_eq!(again["result"]["transaction"]["hash"], first["result"]["transaction"]["hash"]);
    assert_eq!(devnet.balance("bob.devnet"), start.1 + ONE_NEAR, "a resent transaction runs once");
    let mid = balances();
    assert!(refusal(&send(tx(&alice, &key, "bob.devnet", n + 1, head(&devnet), transfer(2))))
        .1
        .contains("InvalidNonce"));
    assert_eq!(balances(), mid);

    // A function-call key may only call its receiver's methods, without deposit.
    let limited = random_secret_key();
    let add = Action::AddKey(Box::new(AddKeyAction {
        public_key: limited.public_key(),
        access_key: AccessKey {
            nonce: 0,
            permission: AccessKeyPermission::FunctionCall(FunctionCallPermission {
                allowance: None,
                receiver_id: "bob.devnet".into(),
                method_names: vec!["ping".into()],
            }),
        },
    }));
    let r = send(tx(&alice, &key, "alice.devnet", n + 2, head(&devnet), vec![add]));
    assert!(r["result"]["status"].get("SuccessValue").is_some(), "{r}");
    let ln = devnet.chain().access_key(&alice.account_id, &limited.public_key()).unwrap().nonce;
    let call = |method: &str, deposit: u128| {
        vec![Action::FunctionCall(Box::new(FunctionCallAction {
            method_name: method.into(),
            args: b"{}".to_vec(),
            gas: Gas::from_gas(10_000_000_000_000),
            deposit: Balance::from_yoctonear(deposit),
        }))]
    };
    let mid = balances();
    assert!(refusal(&send(tx(&alice, &limited, "bob.devnet", ln + 1, head(&devnet), transfer(1))))
        .1
        .contains("RequiresFullAccess"));
    assert!(refusal(&send(tx(&alice, &limited, "carol.devnet", ln + 1, head(&devnet), call("ping", 0))))
        .1
        .contains("ReceiverMismatch"));
    assert!(refusal(&send(tx(&alice, &limited, "bob.devnet", ln + 1, head(&devnet), call("other", 0))))
        .1
        .contains("MethodNameMismatch"));
    assert!(refusal(&send(tx(&alice, &limited, "bob.devnet", ln + 1, head(&devnet), call("ping", 1))))
        .1
        .contains("DepositWithFunctionCall"));
    assert_eq!(balances(), mid);

    // Not a transaction at all.
    let r = send("not base64!".into());
    assert_eq!(r["error"]["cause"]["name"], "PARSE_ERROR");
    let r = send(base64::engine::general_purpose::STANDARD.encode(b"garbage"));
    assert_eq!(r["error"]["cause"]["name"], "PARSE_ERROR");
    assert_eq!(rpc(&devnet, "no_such_method", json!({}))["error"]["cause"]["name"], "METHOD_NOT_FOUND");
    let r = rpc(
        &devnet,
        "query",
        json!({ "request_type": "view_account", "account_id": "ghost.devnet", "finality": "final" }),
    );
    assert_eq!(r["error"]["cause"]["name"], "UNKNOWN_ACCOUNT");
    let r = rpc(
        &devnet,
        "tx",
        json!({ "tx_hash": CryptoHash::default().to_string(), "sender_account_id": "alice.devnet" }),
    );
    assert_eq!(r["error"]["cause"]["name"], "UNKNOWN_TRANSACTION");
}

#[test]
fn the_http_server_keeps_its_bounds() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let (status, _) = http(&devnet, "POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n");
    assert_eq!(status, 413);
    let (status, _) = http(&devnet, &format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)));
    assert_eq!(status, 431);
    let (status, _) = http(&devnet, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(status, 411);
    let (status, _) = http(&devnet, "garbage\r\nno colon here\r\n\r\n");
    assert_eq!(status, 400);
    let (status, body) = http(&devnet, "GET /status HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.contains("agentwire-devnet"));
    // Still serving after all that.
    assert!(rpc(&devnet, "status", json!([])).get("result").is_some());
}

#[test]
fn state_survives_a_restart_from_its_file() {
    let dir = std::env::temp_dir().join(format!("agentwire-devnet-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("devnet.state");
    let _ = std::fs::remove_file(&file);
    let config = DevnetConfig { state_file: Some(file.clone()), ..DevnetConfig::default() };
    let (root_key, alice, height) = {
        let devnet = Devnet::start(config.clone()).unwrap();
        let alice = devnet.create_account("alice", 5 * ONE_NEAR).unwrap();
        let n = nonce_of(&devnet, &alice);
        let r = rpc(
            &devnet,
            "send_tx",
            json!({ "signed_tx_base64": tx(&alice, &alice.secret_key, "devnet", n + 1, head(&devnet), transfer(ONE_NEAR)) }),
        );
        assert!(r.get("result").is_some(), "{r}");
        let height = devnet.chain().state.head().height;
        (devnet.root().secret_key.clone(), alice, height)
    };
    let devnet = Devnet::start(config).unwrap();
    assert_eq!(devnet.root().secret_key, root_key, "the root key is kept");
    assert!(devnet.balance("alice.devnet") < 4 * ONE_NEAR && devnet.balance("alice.devnet") > 3 * ONE_NEAR);
    assert_eq!(devnet.chain().state.head().height, height);
    let accounts = devnet.dev_accounts();
    assert!(accounts.iter().any(|a| a.account_id == alice.account_id && a.secret_key == alice.secret_key));
    // The used nonce stays used.
    let n = nonce_of(&devnet, &alice);
    let r = rpc(
        &devnet,
        "send_tx",
        json!({ "signed_tx_base64": tx(&alice, &alice.secret_key, "devnet", n, head(&devnet), transfer(1)) }),
    );
    assert!(refusal(&r).1.contains("InvalidNonce"));
    drop(devnet);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `create_account` on the root's registrar (deployed by `provision`), as
/// near-api-js's `createAccount("name.devnet")` calls it: the account gets the
/// key and the NEAR; asked again, the registrar answers `false` and sends the
/// NEAR back; the root keeps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roots_registrar_creates_accounts_for_anyone() {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = agentwire_agent::devnet::provision(&devnet, &["alice"], 10 * ONE_NEAR, 0).await.unwrap();
    let alice = &ready.users[0];
    let key = random_secret_key();
    let args = json!({ "new_account_id": "carol.devnet", "new_public_key": key.public_key().to_string() });
    let create = || rpc_support::call("create_account", args.clone(), 2 * ONE_NEAR, 60);
    let (a0, r0) = (devnet.balance("alice.devnet"), devnet.balance("devnet"));
    let answer = rpc_support::send(&devnet, alice, "devnet", create(), "FINAL");
    let outcome = &answer["result"];
    assert_eq!(outcome["status"]["SuccessValue"], base64::engine::general_purpose::STANDARD.encode("true"), "{answer}");
    assert_eq!(devnet.balance("carol.devnet"), 2 * ONE_NEAR);
    assert!(devnet.chain().access_key(&"carol.devnet".parse().unwrap(), &key.public_key()).is_ok());
    assert_eq!(devnet.balance("alice.devnet"), a0 - 2 * ONE_NEAR - rpc_support::burnt(outcome));
    assert_eq!(devnet.balance("devnet"), r0);

    let a1 = devnet.balance("alice.devnet");
    let answer = rpc_support::send(&devnet, alice, "devnet", create(), "FINAL");
    let outcome = &answer["result"];
    assert_eq!(
        outcome["status"]["SuccessValue"],
        base64::engine::general_purpose::STANDARD.encode("false"),
        "{answer}"
    );
    assert_eq!(devnet.balance("alice.devnet"), a1 - rpc_support::burnt(outcome), "the NEAR came back");
    assert_eq!(devnet.balance("carol.devnet"), 2 * ONE_NEAR);
    assert_eq!(devnet.balance("devnet"), r0);
}
