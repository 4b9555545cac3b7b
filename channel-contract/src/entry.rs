//! The wasm entry points: JSON in, JSON out, and the checks near-sdk's
//! `#[near]` macro used to generate (private, no deposit, arguments), with
//! the same messages. Hand-written so the contract carries no serde_json
//! (see [`crate::json`] for why that matters for gas).

use near_sdk::json_types::{U128, U64};
use near_sdk::{env, AccountId, PromiseError};

use crate::contract::{ChannelContract, ChannelView, FinalVoucher, TokenMessage};
use crate::events::push_currency;
use crate::json::{self, push_dec, push_str, Obj};

fn bad(detail: &str) -> ! {
    env::panic_str(&["Failed to deserialize input from JSON. Error: `", detail, "`"].concat())
}

fn input() -> Vec<u8> {
    env::input().unwrap_or_else(|| env::panic_str("Expected input since method has arguments."))
}

fn args(b: &[u8]) -> Obj<'_> {
    Obj::parse(b).unwrap_or_else(|| bad("expected a JSON object"))
}

fn req<'a>(o: &Obj<'a>, name: &str) -> &'a [u8] {
    o.raw(name).unwrap_or_else(|| bad(&["missing field `", name, "`"].concat()))
}

fn invalid(name: &str) -> ! {
    bad(&["invalid value for field `", name, "`"].concat())
}

fn account(raw: &[u8], name: &str) -> AccountId {
    json::string(raw).and_then(|s| s.parse().ok()).unwrap_or_else(|| invalid(name))
}

fn string(raw: &[u8], name: &str) -> String {
    json::string(raw).unwrap_or_else(|| invalid(name))
}

fn u128_arg(raw: &[u8], name: &str) -> U128 {
    U128(json::dec(raw).unwrap_or_else(|| invalid(name)))
}

fn u64_arg(raw: &[u8], name: &str) -> U64 {
    U64(json::dec(raw).unwrap_or_else(|| invalid(name)))
}

fn bool_arg(raw: &[u8], name: &str) -> bool {
    match raw {
        b"true" => true,
        b"false" => false,
        _ => invalid(name),
    }
}

fn u32_arg(raw: &[u8], name: &str) -> u32 {
    json::uint(raw).unwrap_or_else(|| invalid(name))
}

/// Parses `ft_transfer_call`'s `msg` (spec/contract.md §4.7).
pub fn token_message(msg: &str) -> Option<TokenMessage> {
    let outer = Obj::parse(msg.as_bytes())?;
    let (tag, body) = outer.single()?;
    let o = Obj::parse(body)?;
    match tag {
        b"Open" => Some(TokenMessage::Open {
            payee: json::string(o.raw("payee")?)?.parse().ok()?,
            payer_key: json::string(o.raw("payer_key")?)?,
            challenge_period_ns: U64(json::dec(o.raw("challenge_period_ns")?)?),
        }),
        b"TopUp" => Some(TokenMessage::TopUp { channel_id: U64(json::dec(o.raw("channel_id")?)?) }),
        _ => None,
    }
}

fn no_deposit(method: &str) {
    if env::attached_deposit().as_yoctonear() != 0 {
        env::panic_str(&["Method ", method, " doesn't accept deposit"].concat());
    }
}

fn private(method: &str) {
    if env::predecessor_account_id() != env::current_account_id() {
        env::panic_str(&["Method ", method, " is private"].concat());
    }
}

/// The result of the one promise a callback waits on. The value itself is
/// ignored (a NEAR transfer has none, `ft_transfer` returns nothing).
fn callback_result() -> Result<(), PromiseError> {
    let [r] = callback_results::<1>();
    r
}

fn callback_results<const N: usize>() -> [Result<(), PromiseError>; N] {
    if env::promise_results_count() != N as u64 {
        env::panic_str("Callback expects another number of promise results");
    }
    core::array::from_fn(|i| match env::promise_result_checked(i as u64, 0) {
        Err(PromiseError::Failed) => Err(PromiseError::Failed),
        _ => Ok(()),
    })
}

fn ret(s: &str) {
    env::value_return(s.as_bytes());
}

fn ret_dec(v: u128) {
    let mut s = String::new();
    push_dec(&mut s, v);
    ret(&s);
}

fn push_view(out: &mut String, v: &ChannelView) {
    out.push_str("{\"id\":");
    push_dec(out, v.id.0.into());
    out.push_str(",\"epoch\":");
    push_dec(out, v.epoch.0.into());
    out.push_str(",\"payer\":");
    push_str(out, v.payer.as_str());
    out.push_str(",\"payee\":");
    push_str(out, v.payee.as_str());
    out.push_str(",\"payer_key\":");
    push_str(out, &v.payer_key);
    out.push_str(",\"currency\":");
    push_currency(out, &v.currency);
    out.push_str(",\"deposit\":");
    push_dec(out, v.deposit.0);
    out.push_str(",\"claimed\":");
    push_dec(out, v.claimed.0);
    out.push_str(",\"challenge_period_ns\":");
    push_dec(out, v.challenge_period_ns.0.into());
    out.push_str(",\"closing_since_ns\":");
    match v.closing_since_ns {
        Some(t) => push_dec(out, t.0.into()),
        None => out.push_str("null"),
    }
    out.push_str(if v.settled { ",\"settled\":true" } else { ",\"settled\":false" });
    out.push_str(",\"owed_to_payee\":");
    push_dec(out, v.owed_to_payee.0);
    out.push_str(",\"owed_to_payer\":");
    push_dec(out, v.owed_to_payer.0);
    out.push('}');
}

fn push_list<T>(out: &mut String, items: &[T], mut f: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        f(out, x);
    }
    out.push(']');
}

/// One function per exported method, named as the method.
pub mod methods {
    use super::*;

    pub fn new() {
        private("new");
        no_deposit("new");
        let i = input();
        let a = args(&i);
        let owner = account(req(&a, "owner_id"), "owner_id");
        let min = u64_arg(req(&a, "min_challenge_period_ns"), "min_challenge_period_ns");
        let tokens = json::array(req(&a, "tokens"))
            .unwrap_or_else(|| invalid("tokens"))
            .into_iter()
            .map(|t| account(t, "tokens"))
            .collect();
        ChannelContract::new(owner, min, tokens);
    }

    pub fn storage_deposit() {
        let i = input();
        let a = args(&i);
        let who = a.opt("account_id").map(|r| account(r, "account_id"));
        ret_dec(ChannelContract.storage_deposit(who).0);
    }

    pub fn storage_balance_of() {
        no_deposit("storage_balance_of");
        let i = input();
        let a = args(&i);
        ret_dec(ChannelContract.storage_balance_of(account(req(&a, "account_id"), "account_id")).0);
    }

    pub fn storage_withdraw() {
        let i = input();
        let a = args(&i);
        let amount = a.opt("amount").map(|r| u128_arg(r, "amount"));
        env::promise_return(ChannelContract.storage_withdraw(amount));
    }

    pub fn on_storage_withdraw() {
        private("on_storage_withdraw");
        no_deposit("on_storage_withdraw");
        let i = input();
        let a = args(&i);
        let who = account(req(&a, "account"), "account");
        let amount = u128_arg(req(&a, "amount"), "amount");
        let kept = bool_arg(req(&a, "kept"), "kept");
        ChannelContract.on_storage_withdraw(who, amount, kept, callback_result());
    }

    pub fn open() {
        let i = input();
        let a = args(&i);
        let payee = account(req(&a, "payee"), "payee");
        let key = string(req(&a, "payer_key"), "payer_key");
        let period = u64_arg(req(&a, "challenge_period_ns"), "challenge_period_ns");
        let deposit = u128_arg(req(&a, "deposit"), "deposit");
        ret_dec(ChannelContract.open(payee, key, period, deposit).0.into());
    }

    pub fn ft_on_transfer() {
        no_deposit("ft_on_transfer");
        let i = input();
        let a = args(&i);
        let sender = account(req(&a, "sender_id"), "sender_id");
        let amount = u128_arg(req(&a, "amount"), "amount");
        let msg = string(req(&a, "msg"), "msg");
        ret_dec(ChannelContract.ft_on_transfer(sender, amount, msg).0);
    }

    pub fn top_up() {
        let i = input();
        let a = args(&i);
        ChannelContract.top_up(u64_arg(req(&a, "channel_id"), "channel_id"));
    }

    pub fn claim() {
        no_deposit("claim");
        let i = input();
        let a = args(&i);
        let id = u64_arg(req(&a, "channel_id"), "channel_id");
        let cumulative = u128_arg(req(&a, "cumulative"), "cumulative");
        let sig = string(req(&a, "signature"), "signature");
        env::promise_return(ChannelContract.claim(id, cumulative, sig));
    }

    pub fn close() {
        no_deposit("close");
        let i = input();
        let a = args(&i);
        let id = u64_arg(req(&a, "channel_id"), "channel_id");
        let fv = a.opt("final_voucher").map(|r| {
            let v = Obj::parse(r).unwrap_or_else(|| invalid("final_voucher"));
            FinalVoucher {
                cumulative: u128_arg(req(&v, "cumulative"), "cumulative"),
                signature: string(req(&v, "signature"), "signature"),
            }
        });
        ChannelContract.close(id, fv);
    }

    pub fn start_close() {
        no_deposit("start_close");
        let i = input();
        let a = args(&i);
        ret_dec(ChannelContract.start_close(u64_arg(req(&a, "channel_id"), "channel_id")).0.into());
    }

    pub fn finalize() {
        no_deposit("finalize");
        let i = input();
        let a = args(&i);
        ChannelContract.finalize(u64_arg(req(&a, "channel_id"), "channel_id"));
    }

    pub fn withdraw_owed() {
        no_deposit("withdraw_owed");
        let i = input();
        let a = args(&i);
        env::promise_return(ChannelContract.withdraw_owed(u64_arg(req(&a, "channel_id"), "channel_id")));
    }

    pub fn on_payout() {
        private("on_payout");
        no_deposit("on_payout");
        let i = input();
        let a = args(&i);
        let id = u64_arg(req(&a, "channel_id"), "channel_id");
        let to_payee = bool_arg(req(&a, "to_payee"), "to_payee");
        let amount = u128_arg(req(&a, "amount"), "amount");
        ret(if ChannelContract.on_payout(id, to_payee, amount, callback_result()) { "true" } else { "false" });
    }

    pub fn on_settle() {
        private("on_settle");
        no_deposit("on_settle");
        let i = input();
        let a = args(&i);
        let id = u64_arg(req(&a, "channel_id"), "channel_id");
        let payout = u128_arg(req(&a, "payout"), "payout");
        let refund = u128_arg(req(&a, "refund"), "refund");
        ChannelContract.on_settle(id, payout, refund, callback_results::<2>());
    }

    pub fn register_endpoint() {
        no_deposit("register_endpoint");
        let i = input();
        let a = args(&i);
        ChannelContract.register_endpoint(string(req(&a, "key"), "key"));
    }

    pub fn revoke_endpoint() {
        no_deposit("revoke_endpoint");
        let i = input();
        let a = args(&i);
        ChannelContract.revoke_endpoint(string(req(&a, "key"), "key"));
    }

    pub fn is_endpoint() {
        no_deposit("is_endpoint");
        let i = input();
        let a = args(&i);
        let who = account(req(&a, "account_id"), "account_id");
        ret(if ChannelContract.is_endpoint(who, string(req(&a, "key"), "key")) { "true" } else { "false" });
    }

    pub fn endpoint_keys() {
        no_deposit("endpoint_keys");
        let i = input();
        let a = args(&i);
        let keys = ChannelContract.endpoint_keys(account(req(&a, "account_id"), "account_id"));
        let mut s = String::new();
        push_list(&mut s, &keys, |o, k| push_str(o, k));
        ret(&s);
    }

    pub fn get_channel() {
        no_deposit("get_channel");
        let i = input();
        let a = args(&i);
        let mut s = String::new();
        match ChannelContract.get_channel(u64_arg(req(&a, "channel_id"), "channel_id")) {
            Some(v) => push_view(&mut s, &v),
            None => s.push_str("null"),
        }
        ret(&s);
    }

    pub fn channels_of() {
        no_deposit("channels_of");
        let i = input();
        let a = args(&i);
        let who = account(req(&a, "account_id"), "account_id");
        let from = a.opt("from_index").map(|r| u32_arg(r, "from_index"));
        let limit = a.opt("limit").map(|r| u32_arg(r, "limit"));
        let mut s = String::new();
        push_list(&mut s, &ChannelContract.channels_of(who, from, limit), push_view);
        ret(&s);
    }

    pub fn config() {
        no_deposit("config");
        let c = ChannelContract.config();
        let mut s = String::from("{\"owner\":");
        push_str(&mut s, c.owner.as_str());
        s.push_str(",\"state_version\":");
        json::push_u128(&mut s, c.state_version.into());
        s.push_str(",\"epoch\":");
        push_dec(&mut s, c.epoch.0.into());
        s.push_str(",\"min_challenge_period_ns\":");
        push_dec(&mut s, c.min_challenge_period_ns.0.into());
        s.push_str(",\"tokens\":");
        push_list(&mut s, &c.tokens, |o, t| push_str(o, t.as_str()));
        s.push('}');
        ret(&s);
    }

    pub fn add_token() {
        no_deposit("add_token");
        let i = input();
        let a = args(&i);
        ChannelContract.add_token(account(req(&a, "token"), "token"));
    }
}

macro_rules! export {
    ($($name:ident),* $(,)?) => {
        /// The exported wasm functions (only in the wasm build).
        #[cfg(target_arch = "wasm32")]
        mod exports {
            $(
                #[no_mangle]
                pub extern "C" fn $name() {
                    super::methods::$name()
                }
            )*
        }
    };
}

export!(
    new,
    storage_deposit,
    storage_balance_of,
    storage_withdraw,
    on_storage_withdraw,
    open,
    ft_on_transfer,
    top_up,
    claim,
    close,
    start_close,
    finalize,
    withdraw_owed,
    on_payout,
    on_settle,
    register_endpoint,
    revoke_endpoint,
    is_endpoint,
    endpoint_keys,
    get_channel,
    channels_of,
    config,
    add_token,
);
