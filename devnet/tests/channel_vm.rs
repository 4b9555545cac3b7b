//! The compiled channel contract in NEAR's VM: a whole channel life with real
//! gas, the checks only the wasm entry points enforce (`#[private]`, payable),
//! and the per-method gas and storage table (printed; recorded in spec/contract.md).

use agentwire_devnet::contracts::Contract as Wasm;
use agentwire_devnet::vm::{CallOutcome, ContractVm, PriorResult};
use agentwire_protocol::identity::Keypair;
use agentwire_protocol::voucher::Voucher;
use serde_json::json;

const CONTRACT: &str = "channels.test.near";
const HOUR_NS: u64 = 3_600_000_000_000;
const NEAR: u128 = 1_000_000_000_000_000_000_000_000;

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

fn deploy() -> ContractVm {
    let mut vm = ContractVm::deploy(CONTRACT, contract_wasm()).expect("deploy");
    vm.block_height = 1_000;
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

#[test]
fn channel_life_in_the_vm_and_gas_table() {
    let mut vm = deploy();
    let mut table = Vec::new();

    let before = vm.storage_usage();
    let (o, id) = open(&mut vm, 5 * NEAR);
    let channel_bytes = vm.storage_usage() - before;
    table.push(("open (first channel of a payer/payee)", o.burnt_gas));
    let (o2, id2) = open(&mut vm, 2 * NEAR);
    let channel_bytes_2 = o2.storage_usage - o.storage_usage;
    table.push(("open", o2.burnt_gas));

    vm.block_timestamp_ns += 10;
    let o = ok(vm
        .call(
            "claim",
            &json!({"channel_id": id.to_string(), "cumulative": NEAR.to_string(), "signature": sign(id, 1_000, NEAR)}),
            "brand.test.near",
            0,
        )
        .expect("vm"));
    assert!(!o.receipts.is_empty(), "claim creates the payout and its callback");
    table.push(("claim", o.burnt_gas));
    let view = vm.view("get_channel", &json!({"channel_id": id.to_string()})).expect("vm").json();
    assert_eq!(view["claimed"], NEAR.to_string());

    // The payout callback, as the runtime would run it after a failed transfer.
    let o = ok(vm
        .callback("on_payout", &json!({"receiver": "brand.test.near", "currency": "Near", "amount": NEAR.to_string(), "channel_id": id.to_string()}), vec![PriorResult::Failed])
        .expect("vm"));
    table.push(("on_payout (failed transfer, rollback)", o.burnt_gas));
    let view = vm.view("get_channel", &json!({"channel_id": id.to_string()})).expect("vm").json();
    assert_eq!(view["claimed"], "0", "rolled back in the VM too");

    let o = ok(vm.call("start_close", &json!({"channel_id": id.to_string()}), "user.test.near", 0).expect("vm"));
    table.push(("start_close", o.burnt_gas));
    err(
        vm.call("top_up", &json!({"channel_id": id.to_string()}), "user.test.near", NEAR).expect("vm"),
        "channel is closing",
    );
    // The payee claims inside the challenge period.
    ok(vm
        .call("claim", &json!({"channel_id": id.to_string(), "cumulative": (2 * NEAR).to_string(), "signature": sign(id, 1_000, 2 * NEAR)}), "brand.test.near", 0)
        .expect("vm"));
    err(
        vm.call("finalize", &json!({"channel_id": id.to_string()}), "user.test.near", 0).expect("vm"),
        "challenge period runs until",
    );
    vm.block_timestamp_ns += HOUR_NS;
    let o = ok(vm.call("finalize", &json!({"channel_id": id.to_string()}), "user.test.near", 0).expect("vm"));
    table.push(("finalize", o.burnt_gas));
    assert!(o.logs.iter().any(|l| l.contains(&format!("\"refund\":\"{}\"", 3 * NEAR))), "{:?}", o.logs);
    assert_eq!(
        vm.view("get_channel", &json!({"channel_id": id.to_string()})).expect("vm").json(),
        serde_json::Value::Null
    );
    // After finalize nothing can be claimed: the channel and its key are gone.
    err(
        vm.call("claim", &json!({"channel_id": id.to_string(), "cumulative": (3 * NEAR).to_string(), "signature": sign(id, 1_000, 3 * NEAR)}), "brand.test.near", 0)
            .expect("vm"),
        "no such channel",
    );

    let o = ok(vm
        .call("close", &json!({"channel_id": id2.to_string(), "final_voucher": {"cumulative": NEAR.to_string(), "signature": sign(id2, 1_000, NEAR)}}), "brand.test.near", 0)
        .expect("vm"));
    table.push(("close (with final voucher)", o.burnt_gas));
    err(vm.call("top_up", &json!({"channel_id": "99"}), "user.test.near", NEAR).expect("vm"), "no such channel");

    let o = ok(vm
        .callback("on_settle", &json!({"payee": "brand.test.near", "payer": "user.test.near", "currency": "Near", "payout": NEAR.to_string(), "refund": NEAR.to_string()}), vec![PriorResult::Success(vec![]), PriorResult::Success(vec![])])
        .expect("vm"));
    table.push(("on_settle (both transfers succeeded)", o.burnt_gas));

    eprintln!("\n| method | burnt gas (Tgas) |\n|---|---|");
    for (m, g) in &table {
        eprintln!("| {m} | {} |", tgas(*g));
    }
    eprintln!("storage: first channel {channel_bytes} bytes (incl. index sets and balance entries), another channel {channel_bytes_2} bytes");
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
            &json!({"receiver": "mallory.test.near", "currency": "Near", "amount": "1", "channel_id": null}),
            "mallory.test.near",
            0,
        )
        .expect("vm"),
        "is private",
    );
    // Non-payable methods refuse deposits.
    err(
        vm.call(
            "claim",
            &json!({"channel_id": id.to_string(), "cumulative": "1", "signature": sign(id, 1_000, 1)}),
            "brand.test.near",
            1,
        )
        .expect("vm"),
        "doesn't accept deposit",
    );
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
    let mut bad = sign(id, 1_000, 1).into_bytes();
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
            .call("claim", &json!({"channel_id": id.to_string(), "cumulative": total.to_string(), "signature": sign(id, 1_000, total)}), "brand.test.near", 0)
            .expect("vm"));
    }
    err(
        vm.call("claim", &json!({"channel_id": id.to_string(), "cumulative": (NEAR / 4).to_string(), "signature": sign(id, 1_000, NEAR / 4)}), "brand.test.near", 0)
            .expect("vm"),
        "not above the claimed total",
    );
    // A refused call leaves no state behind.
    assert_eq!(
        vm.view("get_channel", &json!({"channel_id": (id + 1).to_string()})).expect("vm").json(),
        serde_json::Value::Null
    );
}

/// Gas of the methods off the main channel path (spec/contract.md §8 rows).
#[test]
fn gas_of_the_other_methods() {
    let mut vm = deploy();
    let mut table: Vec<(&str, u64)> = Vec::new();
    let key = hexs(&payer().public().to_bytes());
    let o = ok(vm.call("storage_deposit", &json!({}), "user.test.near", NEAR / 10).expect("vm"));
    table.push(("storage_deposit (new balance)", o.burnt_gas));
    let msg =
        format!(r#"{{"Open":{{"payee":"brand.test.near","payer_key":"{key}","challenge_period_ns":"{HOUR_NS}"}}}}"#);
    let o = ok(vm
        .call(
            "ft_on_transfer",
            &json!({"sender_id": "user.test.near", "amount": "1000000", "msg": msg}),
            "usdc.test.near",
            0,
        )
        .expect("vm"));
    assert_eq!(o.json(), json!("0"));
    table.push(("ft_on_transfer Open (first channel)", o.burnt_gas));
    let o = ok(vm
        .call(
            "ft_on_transfer",
            &json!({"sender_id": "user.test.near", "amount": "1000000", "msg": msg}),
            "usdc.test.near",
            0,
        )
        .expect("vm"));
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
        .call("close", &json!({"channel_id": "1", "final_voucher": {"cumulative": "400000", "signature": sign(1, 1_000, 400_000)}}), "brand.test.near", 0)
        .expect("vm"));
    table.push(("close (token, final voucher, two payouts)", o.burnt_gas));
    let settle = json!({"payee": "brand.test.near", "payer": "user.test.near", "currency": {"Token": "usdc.test.near"}, "payout": "400000", "refund": "600000"});
    let o = ok(vm.callback("on_settle", &settle, vec![PriorResult::Failed, PriorResult::Failed]).expect("vm"));
    table.push(("on_settle (both transfers failed: two owed)", o.burnt_gas));
    let owed = |vm: &mut ContractVm, who: &str| {
        vm.view("owed_of", &json!({"account_id": who, "currency": {"Token": "usdc.test.near"}})).expect("vm").json()
    };
    assert_eq!(owed(&mut vm, "brand.test.near"), json!("400000"));
    assert_eq!(owed(&mut vm, "user.test.near"), json!("600000"));
    let o = ok(vm.call("close", &json!({"channel_id": "0", "final_voucher": null}), "brand.test.near", 0).expect("vm"));
    table.push(("close (no voucher, refund only)", o.burnt_gas));
    ok(vm
        .call("close", &json!({"channel_id": id.to_string(), "final_voucher": null}), "brand.test.near", 0)
        .expect("vm"));
    // Everything the payer was charged for its channels came back (plus what `open` attached beyond the deposit).
    assert_eq!(
        vm.view("storage_balance_of", &json!({"account_id": "user.test.near"})).expect("vm").json(),
        json!((NEAR / 10 + NEAR / 100).to_string())
    );
    let o = ok(vm
        .callback(
            "on_payout",
            &json!({"receiver": "user.test.near", "currency": "Near", "amount": "7", "channel_id": null}),
            vec![PriorResult::Success(vec![])],
        )
        .expect("vm"));
    table.push(("on_payout (success)", o.burnt_gas));
    let o = ok(vm
        .callback("on_payout", &json!({"receiver": "user.test.near", "currency": {"Token": "usdc.test.near"}, "amount": "7", "channel_id": null}), vec![PriorResult::Failed])
        .expect("vm"));
    table.push(("on_payout (failed: owed)", o.burnt_gas));
    let o = ok(vm
        .call("withdraw_owed", &json!({"currency": {"Token": "usdc.test.near"}}), "user.test.near", 0)
        .expect("vm"));
    table.push(("withdraw_owed", o.burnt_gas));
    let o = ok(vm.call("storage_withdraw", &json!({"amount": "1000"}), "user.test.near", 1).expect("vm"));
    table.push(("storage_withdraw", o.burnt_gas));
    let o = ok(vm
        .callback(
            "on_storage_withdraw",
            &json!({"account": "user.test.near", "amount": "1000"}),
            vec![PriorResult::Failed],
        )
        .expect("vm"));
    table.push(("on_storage_withdraw (failed: restored)", o.burnt_gas));
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
    let o = ok(vm.call("add_token", &json!({"token": "dai.test.near"}), "owner.test.near", 0).expect("vm"));
    table.push(("add_token", o.burnt_gas));
    err(vm.call("add_token", &json!({"token": "x.test.near"}), "mallory.test.near", 0).expect("vm"), "owner only");
    err(vm.callback("on_settle", &settle, vec![PriorResult::Failed]).expect("vm"), "number of promise results");
    err(vm.call("on_settle", &settle, "mallory.test.near", 0).expect("vm"), "is private");
    let cfg = vm.view("config", &json!({})).expect("vm").json();
    assert_eq!(cfg["tokens"], json!(["usdc.test.near", "dai.test.near"]));
    assert_eq!(cfg["state_version"], json!(1));

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
    assert_eq!(v[0]["closing_since_ns"], serde_json::Value::Null);
}
