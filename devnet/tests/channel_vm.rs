//! The compiled channel contract in NEAR's VM: a whole channel life with real
//! gas, the checks only the wasm entry points enforce (`#[private]`, payable),
//! and the per-method gas and storage table (printed; recorded in
//! spec/contract.md §8 and BENCHMARKS.md).
//!
//! The VM runs one receipt at a time: the test runs each call's callback
//! itself, with the results it wants the transfers to have had.

use agentwire_devnet::contracts::Contract as Wasm;
use agentwire_devnet::vm::{CallOutcome, ContractVm, PriorResult};
use agentwire_protocol::identity::Keypair;
use agentwire_protocol::voucher::Voucher;
use near_vm_runner::logic::mocks::mock_external::MockAction;
use serde_json::{json, Value};

const CONTRACT: &str = "channels.test.near";
const HOUR_NS: u64 = 3_600_000_000_000;
const NEAR: u128 = 1_000_000_000_000_000_000_000_000;
const BYTE: u128 = 10_000_000_000_000_000_000;

/// The contract wasm: `AGENTWIRE_CONTRACT_WASM` (set by scripts/test.sh), or
/// built with the chain flags (see [`agentwire_devnet::contracts`]).
fn contract_wasm() -> Vec<u8> {
    Wasm::Channel.wasm().unwrap_or_else(|e| panic!("{e}"))
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn payer() -> Keypair {
    Keypair::from_seed(&[11; 32])
}

fn sign(id: u64, epoch: u64, cumulative: u128) -> String {
    let v = Voucher {
        contract: agentwire_protocol::account::AccountId::new(CONTRACT).unwrap(),
        channel_id: id,
        epoch,
        cumulative,
    };
    hexs(&payer().sign_raw(&v.signing_bytes()))
}

fn ok(o: CallOutcome) -> CallOutcome {
    assert!(o.error.is_none(), "call failed: {:?}\nlogs: {:?}", o.error, o.logs);
    o
}

fn err(o: CallOutcome, text: &str) {
    let e = o.error.clone().unwrap_or_default();
    assert!(e.contains(text), "expected an error containing {text:?}, got {e:?}");
}

fn tgas(g: u64) -> String {
    format!("{:.2}", g as f64 / 1e12)
}

/// The block's random seed at deployment, and the epoch `new` draws from it.
const SEED: [u8; 32] = [5; 32];
const EPOCH: u64 = u64::from_le_bytes([5; 8]);

fn deploy() -> ContractVm {
    let mut vm = ContractVm::deploy(CONTRACT, contract_wasm()).expect("deploy");
    vm.block_height = 1_000;
    vm.random_seed = SEED;
    ok(vm
        .call("new", &json!({"owner_id": "owner.test.near", "min_challenge_period_ns": HOUR_NS.to_string(), "tokens": ["usdc.test.near"]}), CONTRACT, 0)
        .expect("vm"));
    vm
}

fn open(vm: &mut ContractVm, deposit: u128) -> (CallOutcome, u64) {
    let o = ok(vm
        .call(
            "open",
            &json!({"payee": "brand.test.near", "payer_key": hexs(&payer().public().to_bytes()),
                    "challenge_period_ns": HOUR_NS.to_string(), "deposit": deposit.to_string()}),
            "user.test.near",
            deposit + NEAR / 100,
        )
        .expect("vm"));
    let id: u64 = o.json().as_str().expect("channel id").parse().expect("u64");
    (o, id)
}

/// The callbacks a call created: (method, arguments, how many results it waits on).
fn callbacks(o: &CallOutcome) -> Vec<(String, Value, usize)> {
    o.receipts
        .iter()
        .filter_map(|a| match a {
            MockAction::FunctionCallWeight { receipt_index, method_name, args, .. }
                if method_name.starts_with(b"on_") =>
            {
                let waits = match o.receipts.get(*receipt_index as usize) {
                    Some(MockAction::CreateReceipt { receipt_indices, .. }) => receipt_indices.len(),
                    _ => panic!("a callback without its receipt"),
                };
                Some((String::from_utf8_lossy(method_name).into_owned(), serde_json::from_slice(args).unwrap(), waits))
            }
            _ => None,
        })
        .collect()
}

/// Runs every callback `o` created, its transfers having succeeded (`ok`) or failed.
fn run_callbacks(vm: &mut ContractVm, o: &CallOutcome, succeeded: bool) -> Vec<CallOutcome> {
    callbacks(o)
        .into_iter()
        .map(|(method, args, waits)| {
            let results = (0..waits)
                .map(|_| if succeeded { PriorResult::Success(vec![]) } else { PriorResult::Failed })
                .collect();
            ok(vm.callback(&method, &args, results).expect("vm"))
        })
        .collect()
}

fn channel(vm: &mut ContractVm, id: u64) -> Value {
    vm.view("get_channel", &json!({"channel_id": id.to_string()})).expect("vm").json()
}

fn storage_balance(vm: &mut ContractVm, who: &str) -> u128 {
    vm.view("storage_balance_of", &json!({"account_id": who})).expect("vm").json().as_str().unwrap().parse().unwrap()
}

#[test]
fn channel_life_in_the_vm_and_gas_table() {
    let mut vm = deploy();
    let mut table = Vec::new();
    let config = vm.view("config", &json!({})).expect("vm").json();
    assert_eq!(config["epoch"], json!(EPOCH.to_string()), "the epoch is drawn from the block's random seed");
    assert_eq!(config["state_version"], json!(2));

    let before = vm.storage_usage();
    let (o, id) = open(&mut vm, 5 * NEAR);
    let first_bytes = vm.storage_usage() - before;
    table.push(("open (first channel of a payer and payee)", o.burnt_gas));
    let (o2, id2) = open(&mut vm, 2 * NEAR);
    let channel_bytes = o2.storage_usage - o.storage_usage;
    table.push(("open", o2.burnt_gas));
    // Every byte is charged to the payer: its own record, the payee's (which
    // it sponsors), the two channels with their index entries.
    assert_eq!(
        storage_balance(&mut vm, "user.test.near"),
        2 * NEAR / 100 - u128::from(first_bytes + channel_bytes) * BYTE,
        "the payer paid for exactly the bytes stored"
    );

    vm.block_timestamp_ns += 10;
    let o = ok(vm
        .call(
            "claim",
            &json!({"channel_id": id.to_string(), "cumulative": NEAR.to_string(), "signature": sign(id, EPOCH, NEAR)}),
            "brand.test.near",
            0,
        )
        .expect("vm"));
    assert_eq!(
        callbacks(&o),
        vec![(
            "on_payout".into(),
            json!({"channel_id": id.to_string(), "to_payee": true, "amount": NEAR.to_string()}),
            1
        )]
    );
    table.push(("claim", o.burnt_gas));
    assert_eq!(channel(&mut vm, id)["claimed"], NEAR.to_string());
    // The transfer failed: the claim is rolled back.
    let cb = run_callbacks(&mut vm, &o, false);
    table.push(("on_payout (failed claim payout: rolled back)", cb[0].burnt_gas));
    assert_eq!(cb[0].json(), json!(false));
    assert_eq!(channel(&mut vm, id)["claimed"], "0", "rolled back in the VM too");
    // Again, and this time it succeeds.
    let o = ok(vm
        .call(
            "claim",
            &json!({"channel_id": id.to_string(), "cumulative": NEAR.to_string(), "signature": sign(id, EPOCH, NEAR)}),
            "brand.test.near",
            0,
        )
        .expect("vm"));
    let cb = run_callbacks(&mut vm, &o, true);
    table.push(("on_payout (claim paid)", cb[0].burnt_gas));

    let o = ok(vm.call("start_close", &json!({"channel_id": id.to_string()}), "user.test.near", 0).expect("vm"));
    table.push(("start_close", o.burnt_gas));
    err(
        vm.call("top_up", &json!({"channel_id": id.to_string()}), "user.test.near", NEAR).expect("vm"),
        "channel is closing",
    );
    // The payee claims inside the challenge period.
    let o = ok(vm
        .call("claim", &json!({"channel_id": id.to_string(), "cumulative": (2 * NEAR).to_string(), "signature": sign(id, EPOCH, 2 * NEAR)}), "brand.test.near", 0)
        .expect("vm"));
    run_callbacks(&mut vm, &o, true);
    err(
        vm.call("finalize", &json!({"channel_id": id.to_string()}), "user.test.near", 0).expect("vm"),
        "challenge period runs until",
    );
    vm.block_timestamp_ns += HOUR_NS;
    let o = ok(vm.call("finalize", &json!({"channel_id": id.to_string()}), "user.test.near", 0).expect("vm"));
    table.push(("finalize", o.burnt_gas));
    assert!(o.logs.iter().any(|l| l.contains(&format!("\"refund\":\"{}\"", 3 * NEAR))), "{:?}", o.logs);
    assert_eq!(channel(&mut vm, id)["settled"], json!(true), "kept until its refund is done");
    // After finalize nothing can be claimed.
    err(
        vm.call("claim", &json!({"channel_id": id.to_string(), "cumulative": (3 * NEAR).to_string(), "signature": sign(id, EPOCH, 3 * NEAR)}), "brand.test.near", 0)
            .expect("vm"),
        "channel is closed",
    );
    let cb = run_callbacks(&mut vm, &o, true);
    table.push(("on_payout (refund paid: channel deleted)", cb[0].burnt_gas));
    assert_eq!(channel(&mut vm, id), Value::Null, "the channel and its key are gone");
    err(
        vm.call("claim", &json!({"channel_id": id.to_string(), "cumulative": (3 * NEAR).to_string(), "signature": sign(id, EPOCH, 3 * NEAR)}), "brand.test.near", 0)
            .expect("vm"),
        "no such channel",
    );

    let o = ok(vm
        .call("close", &json!({"channel_id": id2.to_string(), "final_voucher": {"cumulative": NEAR.to_string(), "signature": sign(id2, EPOCH, NEAR)}}), "brand.test.near", 0)
        .expect("vm"));
    table.push(("close (final voucher: payout and refund)", o.burnt_gas));
    err(vm.call("top_up", &json!({"channel_id": "99"}), "user.test.near", NEAR).expect("vm"), "no such channel");
    let cb = run_callbacks(&mut vm, &o, true);
    table.push(("on_settle (both paid: channel deleted)", cb[0].burnt_gas));
    assert_eq!(channel(&mut vm, id2), Value::Null);
    // Everything the payer was charged came back; the payee's record (which
    // the payer sponsored) is gone.
    assert_eq!(storage_balance(&mut vm, "user.test.near"), 2 * NEAR / 100 - u128::from(62u64 + 14) * BYTE);
    assert_eq!(vm.storage_usage(), before + 62 + 14, "only the payer's own record is left");

    eprintln!("\n| method | burnt gas (Tgas) |\n|---|---|");
    for (m, g) in &table {
        eprintln!("| {m} | {} |", tgas(*g));
    }
    eprintln!("storage: first channel {first_bytes} bytes (with the payer's and payee's records), another channel {channel_bytes} bytes");
    for (_, g) in &table {
        assert!(*g < 20_000_000_000_000, "every method stays far below 20 Tgas");
    }
}

#[test]
fn entry_point_checks_only_the_wasm_enforces() {
    let mut vm = deploy();
    let (_, id) = open(&mut vm, NEAR);
    // #[private] callbacks refuse outsiders.
    err(
        vm.call(
            "on_payout",
            &json!({"channel_id": id.to_string(), "to_payee": true, "amount": "1"}),
            "mallory.test.near",
            0,
        )
        .expect("vm"),
        "is private",
    );
    // Methods that take no deposit refuse one, views included.
    for (method, args) in [
        ("claim", json!({"channel_id": id.to_string(), "cumulative": "1", "signature": sign(id, EPOCH, 1)})),
        ("get_channel", json!({"channel_id": id.to_string()})),
        ("config", json!({})),
        ("storage_balance_of", json!({"account_id": "user.test.near"})),
        ("channels_of", json!({"account_id": "user.test.near"})),
    ] {
        err(
            vm.call(method, &args, "brand.test.near", 1).expect("vm"),
            &format!("Method {method} doesn't accept deposit"),
        );
    }
    // Re-initialisation is impossible.
    err(
        vm.call(
            "new",
            &json!({"owner_id": "mallory.test.near", "min_challenge_period_ns": HOUR_NS.to_string(), "tokens": []}),
            CONTRACT,
            0,
        )
        .expect("vm"),
        "already been initialized",
    );
    // A forged voucher fails the real ed25519_verify host function.
    let mut bad = sign(id, EPOCH, 1).into_bytes();
    bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
    err(
        vm.call(
            "claim",
            &json!({"channel_id": id.to_string(), "cumulative": "1", "signature": String::from_utf8(bad).unwrap()}),
            "brand.test.near",
            0,
        )
        .expect("vm"),
        "voucher signature does not verify",
    );
    // A voucher for another deployment's epoch fails the same way.
    err(
        vm.call(
            "claim",
            &json!({"channel_id": id.to_string(), "cumulative": "1", "signature": sign(id, 1_000, 1)}),
            "brand.test.near",
            0,
        )
        .expect("vm"),
        "voucher signature does not verify",
    );
    // The all-zero key is refused on chain.
    err(
        vm.call("open", &json!({"payee": "brand.test.near", "payer_key": "00".repeat(32), "challenge_period_ns": HOUR_NS.to_string(), "deposit": "1"}), "user.test.near", NEAR)
            .expect("vm"),
        "small-order",
    );
    // Storage griefing: a storage balance entry costs at least 0.01 NEAR.
    err(
        vm.call("storage_deposit", &json!({"account_id": "nobody.test.near"}), "mallory.test.near", 1).expect("vm"),
        "at least 0.01 NEAR",
    );
    // A voucher burst racing a unilateral close: every claim inside the
    // period counts once, the highest total wins, a lower one is refused.
    ok(vm.call("start_close", &json!({"channel_id": id.to_string()}), "user.test.near", 0).expect("vm"));
    for total in [NEAR / 4, NEAR / 2] {
        ok(vm
            .call("claim", &json!({"channel_id": id.to_string(), "cumulative": total.to_string(), "signature": sign(id, EPOCH, total)}), "brand.test.near", 0)
            .expect("vm"));
    }
    err(
        vm.call("claim", &json!({"channel_id": id.to_string(), "cumulative": (NEAR / 4).to_string(), "signature": sign(id, EPOCH, NEAR / 4)}), "brand.test.near", 0)
            .expect("vm"),
        "not above the claimed total",
    );
    // A refused call leaves no state behind.
    assert_eq!(channel(&mut vm, id + 1), Value::Null);
}

/// Another deployment (another random seed at `new`) has another epoch, so
/// a voucher signed for the first deployment's channel 0 is refused by the
/// second's channel 0.
#[test]
fn a_voucher_of_another_deployment_is_refused() {
    let mut first = deploy();
    let (_, id) = open(&mut first, NEAR);
    let old = sign(id, EPOCH, NEAR / 2);
    ok(first
        .call(
            "claim",
            &json!({"channel_id": id.to_string(), "cumulative": (NEAR / 2).to_string(), "signature": old}),
            "brand.test.near",
            0,
        )
        .expect("vm"));
    let mut second = ContractVm::deploy(CONTRACT, contract_wasm()).expect("deploy");
    second.block_height = 1_000; // the same height: only the seed differs
    second.random_seed = [6; 32];
    ok(second
        .call(
            "new",
            &json!({"owner_id": "owner.test.near", "min_challenge_period_ns": HOUR_NS.to_string(), "tokens": []}),
            CONTRACT,
            0,
        )
        .expect("vm"));
    let (_, id2) = open(&mut second, NEAR);
    assert_eq!(id2, id, "the same channel id");
    err(
        second
            .call("claim", &json!({"channel_id": id.to_string(), "cumulative": (NEAR / 2).to_string(), "signature": sign(id, EPOCH, NEAR / 2)}), "brand.test.near", 0)
            .expect("vm"),
        "voucher signature does not verify",
    );
}

/// Gas of the methods off the main channel path (spec/contract.md §8 rows).
#[test]
fn gas_of_the_other_methods() {
    let mut vm = deploy();
    let mut table: Vec<(&str, u64)> = Vec::new();
    let key = hexs(&payer().public().to_bytes());
    let o = ok(vm.call("storage_deposit", &json!({}), "user.test.near", NEAR / 10).expect("vm"));
    table.push(("storage_deposit (new record)", o.burnt_gas));
    let o = ok(vm.call("storage_deposit", &json!({}), "user.test.near", NEAR / 10).expect("vm"));
    table.push(("storage_deposit", o.burnt_gas));
    let msg =
        format!(r#"{{"Open":{{"payee":"brand.test.near","payer_key":"{key}","challenge_period_ns":"{HOUR_NS}"}}}}"#);
    let open_token = |vm: &mut ContractVm| {
        ok(vm
            .call(
                "ft_on_transfer",
                &json!({"sender_id": "user.test.near", "amount": "1000000", "msg": msg}),
                "usdc.test.near",
                0,
            )
            .expect("vm"))
    };
    let o = open_token(&mut vm);
    assert_eq!(o.json(), json!("0"));
    table.push(("ft_on_transfer Open (first channel)", o.burnt_gas));
    let o = open_token(&mut vm);
    table.push(("ft_on_transfer Open", o.burnt_gas));
    let o = ok(vm
        .call(
            "ft_on_transfer",
            &json!({"sender_id": "user.test.near", "amount": "5", "msg": r#"{"TopUp":{"channel_id":"0"}}"#}),
            "usdc.test.near",
            0,
        )
        .expect("vm"));
    table.push(("ft_on_transfer TopUp", o.burnt_gas));
    let (_, id) = open(&mut vm, NEAR);
    let o = ok(vm.call("top_up", &json!({"channel_id": id.to_string()}), "user.test.near", NEAR).expect("vm"));
    table.push(("top_up", o.burnt_gas));
    // A token close with both transfers failing: one on_settle, both amounts owed.
    let o = ok(vm
        .call("close", &json!({"channel_id": "1", "final_voucher": {"cumulative": "400000", "signature": sign(1, EPOCH, 400_000)}}), "brand.test.near", 0)
        .expect("vm"));
    table.push(("close (token, final voucher, two payouts)", o.burnt_gas));
    let cb = run_callbacks(&mut vm, &o, false);
    table.push(("on_settle (both transfers failed: two owed)", cb[0].burnt_gas));
    let ch = channel(&mut vm, 1);
    assert_eq!((ch["owed_to_payee"].clone(), ch["owed_to_payer"].clone()), (json!("400000"), json!("600000")));
    assert_eq!(ch["settled"], json!(true));
    let o = ok(vm.call("close", &json!({"channel_id": "0", "final_voucher": null}), "brand.test.near", 0).expect("vm"));
    table.push(("close (no voucher, refund only)", o.burnt_gas));
    run_callbacks(&mut vm, &o, true);
    let o = ok(vm
        .call("close", &json!({"channel_id": id.to_string(), "final_voucher": null}), "brand.test.near", 0)
        .expect("vm"));
    run_callbacks(&mut vm, &o, true);
    // The owed amounts, withdrawn: the payer's fails again (still owed), the payee's is paid.
    let o = ok(vm.call("withdraw_owed", &json!({"channel_id": "1"}), "user.test.near", 0).expect("vm"));
    table.push(("withdraw_owed", o.burnt_gas));
    let cb = run_callbacks(&mut vm, &o, false);
    table.push(("on_payout (failed: owed again)", cb[0].burnt_gas));
    assert_eq!(channel(&mut vm, 1)["owed_to_payer"], json!("600000"));
    let o = ok(vm.call("withdraw_owed", &json!({"channel_id": "1"}), "brand.test.near", 0).expect("vm"));
    run_callbacks(&mut vm, &o, true);
    err(vm.call("withdraw_owed", &json!({"channel_id": "1"}), "brand.test.near", 0).expect("vm"), "nothing owed");
    err(
        vm.call("withdraw_owed", &json!({"channel_id": "1"}), "mallory.test.near", 0).expect("vm"),
        "only the payer or the payee",
    );
    let o = ok(vm.call("withdraw_owed", &json!({"channel_id": "1"}), "user.test.near", 0).expect("vm"));
    run_callbacks(&mut vm, &o, true);
    assert_eq!(channel(&mut vm, 1), Value::Null, "nothing owed or in flight: deleted");
    // Everything the payer was charged for its channels came back (plus what `open` attached beyond the deposit).
    assert_eq!(
        storage_balance(&mut vm, "user.test.near"),
        2 * NEAR / 10 + NEAR / 100 - u128::from(62u64 + 14) * BYTE,
        "all but its own record's storage"
    );
    let o = ok(vm.call("storage_withdraw", &json!({"amount": "1000"}), "user.test.near", 1).expect("vm"));
    table.push(("storage_withdraw (part)", o.burnt_gas));
    let cb = run_callbacks(&mut vm, &o, false);
    table.push(("on_storage_withdraw (failed: restored)", cb[0].burnt_gas));
    let o = ok(vm.call("storage_withdraw", &json!({"amount": "1000"}), "user.test.near", 1).expect("vm"));
    let cb = run_callbacks(&mut vm, &o, true);
    table.push(("on_storage_withdraw (paid)", cb[0].burnt_gas));
    let before = vm.storage_usage();
    let o = ok(vm.call("storage_withdraw", &json!({}), "user.test.near", 1).expect("vm"));
    table.push(("storage_withdraw (all: record deleted)", o.burnt_gas));
    assert_eq!(before - vm.storage_usage(), 62 + 14, "the payer's record is gone");
    assert_eq!(
        callbacks(&o)[0].1["amount"],
        json!((2 * NEAR / 10 + NEAR / 100 - 1000).to_string()),
        "all of it, its record's storage included"
    );
    ok(vm.call("storage_deposit", &json!({}), "brand.test.near", NEAR / 10).expect("vm"));
    let ep = hexs(&Keypair::from_seed(&[3; 32]).public().to_bytes());
    let before = vm.storage_usage();
    let o = ok(vm.call("register_endpoint", &json!({"key": ep}), "brand.test.near", 0).expect("vm"));
    table.push(("register_endpoint (first key)", o.burnt_gas));
    let key_bytes = vm.storage_usage() - before;
    assert_eq!(
        vm.view("is_endpoint", &json!({"account_id": "brand.test.near", "key": ep.to_uppercase()})).expect("vm").json(),
        json!(true)
    );
    let o = ok(vm.call("revoke_endpoint", &json!({"key": ep}), "brand.test.near", 0).expect("vm"));
    table.push(("revoke_endpoint (last key)", o.burnt_gas));
    assert_eq!(vm.storage_usage(), before, "revoking the last key frees its record");
    err(vm.call("add_token", &json!({"token": "dai.test.near"}), "owner.test.near", 0).expect("vm"), "storage costs");
    ok(vm.call("storage_deposit", &json!({}), "owner.test.near", NEAR / 100).expect("vm"));
    let o = ok(vm.call("add_token", &json!({"token": "dai.test.near"}), "owner.test.near", 0).expect("vm"));
    table.push(("add_token", o.burnt_gas));
    err(vm.call("add_token", &json!({"token": "x.test.near"}), "mallory.test.near", 0).expect("vm"), "owner only");
    let settle = json!({"channel_id": "1", "payout": "1", "refund": "1"});
    err(vm.callback("on_settle", &settle, vec![PriorResult::Failed]).expect("vm"), "number of promise results");
    err(vm.call("on_settle", &settle, "mallory.test.near", 0).expect("vm"), "is private");
    let cfg = vm.view("config", &json!({})).expect("vm").json();
    assert_eq!(cfg["tokens"], json!(["usdc.test.near", "dai.test.near"]));

    eprintln!("\n| method | burnt gas (Tgas) |\n|---|---|");
    for (m, g) in &table {
        eprintln!("| {m} | {} |", tgas(*g));
    }
    eprintln!("storage: first endpoint key {key_bytes} bytes");
}

/// Malformed JSON arguments fail the way near-sdk's generated code did.
#[test]
fn malformed_arguments_are_refused() {
    let mut vm = deploy();
    let (_, id) = open(&mut vm, NEAR);
    for bad in [json!({"channel_id": id}), json!({"channel_id": "x"}), json!({})] {
        err(vm.call("start_close", &bad, "user.test.near", 0).expect("vm"), "Failed to deserialize input from JSON");
    }
    err(vm.call("start_close", &json!({}), "user.test.near", 0).expect("vm"), "missing field `channel_id`");
    err(
        vm.call("open", &json!({"payee": "Not An Account", "payer_key": "11".repeat(32), "challenge_period_ns": HOUR_NS.to_string(), "deposit": "1"}), "user.test.near", NEAR)
            .expect("vm"),
        "Failed to deserialize input from JSON",
    );
    err(
        vm.call(
            "ft_on_transfer",
            &json!({"sender_id": "user.test.near", "amount": "1", "msg": "{\"Open\":{}}"}),
            "usdc.test.near",
            0,
        )
        .expect("vm"),
        "msg must be",
    );
    let v = vm
        .view("channels_of", &json!({"account_id": "brand.test.near", "from_index": 0, "limit": 5}))
        .expect("vm")
        .json();
    assert_eq!(v[0]["id"], json!(id.to_string()));
    assert_eq!(v[0]["closing_since_ns"], Value::Null);
    assert_eq!(v[0]["settled"], json!(false));
}

/// Partial claims in the wasm: `amount` parsed as a `U128` string (a JSON
/// number, garbage, a negative or an overflowing value refused the way
/// near-sdk refused them; `null` counts as absent), an amount above the
/// voucher refused, the same voucher claimed again for more, and a close
/// with part of its final voucher; with the gas of each (spec/contract.md §8).
#[test]
fn partial_claims_and_closes_in_the_vm() {
    let mut vm = deploy();
    let mut table = Vec::new();
    let (_, id) = open(&mut vm, 5 * NEAR);
    let cum = 3 * NEAR;
    let claim = |amount: Value| json!({"channel_id": id.to_string(), "cumulative": cum.to_string(), "signature": sign(id, EPOCH, cum), "amount": amount});
    for bad in [json!(1), json!("x"), json!("-1"), json!("340282366920938463463374607431768211456"), json!({})] {
        err(vm.call("claim", &claim(bad), "brand.test.near", 0).expect("vm"), "invalid value for field `amount`");
    }
    for above in [cum + 1, u128::MAX] {
        err(
            vm.call("claim", &claim(json!(above.to_string())), "brand.test.near", 0).expect("vm"),
            "amount exceeds the voucher total",
        );
    }
    err(
        vm.call("claim", &claim(json!("0")), "brand.test.near", 0).expect("vm"),
        "amount is not above the claimed total",
    );
    assert_eq!(channel(&mut vm, id)["claimed"], "0", "nothing refused left a trace");

    let o = ok(vm.call("claim", &claim(json!(NEAR.to_string())), "brand.test.near", 0).expect("vm"));
    table.push(("claim (partial: amount below the voucher)", o.burnt_gas));
    assert_eq!(
        callbacks(&o),
        vec![(
            "on_payout".into(),
            json!({"channel_id": id.to_string(), "to_payee": true, "amount": NEAR.to_string()}),
            1
        )]
    );
    assert!(o.logs.iter().any(|l| l.contains(&format!(r#""cumulative":"{NEAR}","payout":"{NEAR}""#))), "{:?}", o.logs);
    run_callbacks(&mut vm, &o, true);
    assert_eq!(channel(&mut vm, id)["claimed"], NEAR.to_string());
    err(
        vm.call("claim", &claim(json!(NEAR.to_string())), "brand.test.near", 0).expect("vm"),
        "amount is not above the claimed total",
    );
    // More of the same voucher, then the rest of it with `amount: null` (absent).
    let o = ok(vm.call("claim", &claim(json!((2 * NEAR).to_string())), "brand.test.near", 0).expect("vm"));
    run_callbacks(&mut vm, &o, true);
    let o = ok(vm.call("claim", &claim(Value::Null), "brand.test.near", 0).expect("vm"));
    assert_eq!(callbacks(&o)[0].1["amount"], json!(NEAR.to_string()));
    run_callbacks(&mut vm, &o, true);
    assert_eq!(channel(&mut vm, id)["claimed"], cum.to_string());

    // Close with part of a higher final voucher: the payer gets back what the payee forgave.
    let fin = 4 * NEAR;
    let close = |amount: Value| json!({"channel_id": id.to_string(), "final_voucher": {"cumulative": fin.to_string(), "signature": sign(id, EPOCH, fin), "amount": amount}});
    err(vm.call("close", &close(json!(5)), "brand.test.near", 0).expect("vm"), "invalid value for field `amount`");
    err(
        vm.call("close", &close(json!((fin + 1).to_string())), "brand.test.near", 0).expect("vm"),
        "amount exceeds the voucher total",
    );
    assert_eq!(channel(&mut vm, id)["settled"], json!(false));
    let o = ok(vm.call("close", &close(json!((cum + NEAR / 2).to_string())), "brand.test.near", 0).expect("vm"));
    table.push(("close (partial final voucher: payout and refund)", o.burnt_gas));
    assert!(
        o.logs.iter().any(|l| l.contains(&format!(
            r#""payout":"{}","refund":"{}""#,
            NEAR / 2,
            5 * NEAR - cum - NEAR / 2
        ))),
        "{:?}",
        o.logs
    );
    let cb = run_callbacks(&mut vm, &o, true);
    assert_eq!(cb.len(), 1, "one on_settle for both transfers");
    assert_eq!(channel(&mut vm, id), Value::Null);

    // A final voucher whose amount is at the claimed total adds nothing: a refund only.
    let (_, id2) = open(&mut vm, NEAR);
    let o = ok(vm
        .call("close", &json!({"channel_id": id2.to_string(), "final_voucher": {"cumulative": "5", "signature": sign(id2, EPOCH, 5), "amount": "0"}}), "brand.test.near", 0)
        .expect("vm"));
    assert!(o.logs.iter().any(|l| l.contains(&format!(r#""payout":"0","refund":"{NEAR}""#))), "{:?}", o.logs);

    eprintln!("\n| method | burnt gas (Tgas) |\n|---|---|");
    for (m, g) in &table {
        eprintln!("| {m} | {} |", tgas(*g));
    }
}
