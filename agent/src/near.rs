//! The agent's NEAR client: the channel contract's methods and the few
//! account and token queries an agent needs, over NEAR's JSON-RPC with the
//! official `near-api` client. The same code talks to the local devnet,
//! testnet or mainnet: only the RPC URL and the contract account change.
//!
//! Every transaction reports what it cost (`tokens_burnt` over all its
//! outcomes), so callers can account for balances to the yoctoNEAR.

use std::sync::Arc;
use std::time::Duration;

use agentwire_protocol::identity::PublicKey as VoucherKey;
use agentwire_protocol::payment::SignedVoucher;
use near_api::types::transaction::result::{ExecutionSuccess, TransactionResultError};
use near_api::{AccountId, Contract, NearGas, NearToken, NetworkConfig, SecretKey, Signer};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

mod error;
pub use error::NearError;

/// Gas attached to channel calls: the method plus its payout and callback
/// (spec/contract.md §8 lists what each needs).
pub const CALL_GAS_TGAS: u64 = 100;
/// Gas attached to `ft_transfer_call` (token transfer, `ft_on_transfer`, resolve).
pub const FT_CALL_GAS_TGAS: u64 = 150;
/// Most channels one `channels_of` call returns (the contract's `MAX_PAGE`).
pub const CHANNELS_PAGE: u32 = 100;
/// Most channels the contract lists per account (its `MAX_INDEXED`); one
/// opened past this is usable but not listed (spec/contract.md §3.5).
pub const CHANNELS_LISTED: usize = 512;

/// A NEAR account we can sign for.
#[derive(Clone)]
pub struct NearAccount {
    /// The account.
    pub id: AccountId,
    signer: Arc<Signer>,
}

impl std::fmt::Debug for NearAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearAccount").field("id", &self.id).finish_non_exhaustive()
    }
}

impl NearAccount {
    /// The `near-api` signer for this account's key.
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.clone()
    }

    /// An account and its full-access (or function-call) secret key, `ed25519:...`.
    pub fn new(id: &str, secret_key: &str) -> Result<Self, NearError> {
        let id = parse_account(id)?;
        let key: SecretKey =
            secret_key.parse().map_err(|_| NearError::Invalid { what: "secret key", value: "<redacted>".into() })?;
        let signer = Signer::from_secret_key(key)
            .map_err(|e| NearError::Invalid { what: "secret key", value: e.to_string() })?;
        Ok(NearAccount { id, signer })
    }
}

fn parse_account(s: &str) -> Result<AccountId, NearError> {
    s.parse().map_err(|_| NearError::Invalid { what: "NEAR account id", value: s.to_owned() })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A finished transaction.
#[derive(Clone, Debug)]
pub struct TxOutcome {
    /// yoctoNEAR burnt for gas over all outcomes (what the signer paid beyond deposits).
    pub tokens_burnt: u128,
    /// Gas burnt over all outcomes.
    pub gas_burnt: u64,
    /// Logs (NEP-297 events among them).
    pub logs: Vec<String>,
    /// The JSON the call returned (Null if none).
    pub value: serde_json::Value,
}

pub use agentwire_protocol::money::Currency;

/// The contract's JSON form of a currency: `"Near"` or `{"Token": "<account>"}`.
mod currency_json {
    use agentwire_protocol::account::AccountId;
    use agentwire_protocol::money::Currency;
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    enum Wire {
        Near,
        Token(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Currency, D::Error> {
        match Wire::deserialize(d)? {
            Wire::Near => Ok(Currency::Near),
            Wire::Token(t) => AccountId::new(&t).map(Currency::Token).map_err(serde::de::Error::custom),
        }
    }
}

/// A channel as the contract's `get_channel` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ChannelView {
    /// Channel id.
    #[serde(with = "u64_string")]
    pub id: u64,
    /// Epoch bound into vouchers.
    #[serde(with = "u64_string")]
    pub epoch: u64,
    /// Who pays.
    pub payer: AccountId,
    /// Who is paid.
    pub payee: AccountId,
    /// Hex of the payer's voucher key.
    pub payer_key: String,
    /// What it is funded in.
    #[serde(with = "currency_json")]
    pub currency: Currency,
    /// Total deposited.
    #[serde(with = "u128_string")]
    pub deposit: u128,
    /// Total claimed by the payee.
    #[serde(with = "u128_string")]
    pub claimed: u128,
    /// Challenge period, ns.
    #[serde(with = "u64_string")]
    pub challenge_period_ns: u64,
    /// When a unilateral close started, ns.
    #[serde(default, with = "opt_u64_string")]
    pub closing_since_ns: Option<u64>,
}

mod u64_string {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}
mod u128_string {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}
mod opt_u64_string {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

/// Storage balance paid before listing an endpoint (0.01 NEAR; the unused
/// rest stays in the account's storage balance).
pub const REGISTRY_STORAGE: u128 = 10_000_000_000_000_000_000_000;

/// The lowest gas price NEAR charges (yoctoNEAR per gas): the floor of
/// what a transaction's attached gas can cost.
pub const MIN_GAS_PRICE: u128 = 100_000_000;

/// Client for one channel contract on one NEAR network.
#[derive(Clone, Debug)]
pub struct ChannelClient {
    network: NetworkConfig,
    contract: AccountId,
    rpc_url: String,
}

fn outcome_of(method: &str, result: ExecutionSuccess) -> Result<TxOutcome, NearError> {
    let tokens_burnt = result.outcomes().iter().map(|o| o.tokens_burnt.as_yoctonear()).sum();
    let gas_burnt = result.outcomes().iter().map(|o| o.gas_burnt.as_gas()).sum();
    let logs = result.logs().into_iter().map(str::to_owned).collect();
    let raw = result.raw_bytes().map_err(|e| NearError::BadResponse(format!("{method}: {e}")))?;
    let value = if raw.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null)
    };
    Ok(TxOutcome { tokens_burnt, gas_burnt, logs, value })
}

impl ChannelClient {
    /// A client for `contract` through the JSON-RPC at `rpc_url`.
    pub fn new(rpc_url: &str, contract: &str) -> Result<Self, NearError> {
        let url: url::Url =
            rpc_url.parse().map_err(|_| NearError::Invalid { what: "RPC URL", value: rpc_url.to_owned() })?;
        Ok(ChannelClient {
            network: NetworkConfig::from_rpc_url("agentwire", url),
            contract: parse_account(contract)?,
            rpc_url: rpc_url.to_owned(),
        })
    }

    /// The RPC URL, as given.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// The channel contract's account.
    pub fn contract(&self) -> &AccountId {
        &self.contract
    }

    /// The network configuration (for other `near-api` calls).
    pub fn network(&self) -> &NetworkConfig {
        &self.network
    }

    /// Calls `method` on `receiver` as `signer`, attaching `deposit` yoctoNEAR.
    pub async fn call_on(
        &self,
        receiver: &AccountId,
        signer: &NearAccount,
        method: &str,
        args: serde_json::Value,
        deposit: u128,
        gas_tgas: u64,
    ) -> Result<TxOutcome, NearError> {
        let result = Contract(receiver.clone())
            .call_function(method, args)
            .transaction()
            .deposit(NearToken::from_yoctonear(deposit))
            .gas(NearGas::from_tgas(gas_tgas))
            .with_signer(signer.id.clone(), signer.signer.clone())
            .send_to(&self.network)
            .await;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let error = error::from_send(&e, &self.rpc_url, signer.id.as_str(), method);
                return Err(self.explain(error, signer, deposit, gas_tgas).await);
            }
        };
        match result.into_result() {
            Ok(success) => outcome_of(method, success),
            Err(TransactionResultError::Failure(failure)) => Err(NearError::Failed {
                method: method.to_owned(),
                reason: error::refusal(&failure),
                tokens_burnt: failure.outcomes().iter().map(|o| o.tokens_burnt.as_yoctonear()).sum(),
            }),
            Err(pending @ TransactionResultError::Pending(_)) => Err(NearError::Rpc(pending.to_string())),
        }
    }

    /// A transaction refused before it ran: NEAR's reason is in a part of
    /// the error `near-api` drops, so a balance below what it attaches plus
    /// its gas is checked here and said in amounts.
    async fn explain(&self, error: NearError, signer: &NearAccount, deposit: u128, gas_tgas: u64) -> NearError {
        let NearError::InvalidTransaction { method } = &error else { return error };
        let gas = u128::from(gas_tgas).saturating_mul(1_000_000_000_000).saturating_mul(MIN_GAS_PRICE);
        match self.near_balance(&signer.id).await {
            Ok(balance) if balance < deposit.saturating_add(gas) => NearError::NotEnoughBalance {
                account: signer.id.to_string(),
                method: method.clone(),
                balance,
                attached: deposit,
                gas,
            },
            _ => error,
        }
    }

    async fn call(
        &self,
        signer: &NearAccount,
        method: &str,
        args: serde_json::Value,
        deposit: u128,
    ) -> Result<TxOutcome, NearError> {
        self.call_on(&self.contract.clone(), signer, method, args, deposit, CALL_GAS_TGAS).await
    }

    /// Runs a view method on `receiver`.
    pub async fn view_on<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        receiver: &AccountId,
        method: &str,
        args: serde_json::Value,
    ) -> Result<T, NearError> {
        Contract(receiver.clone())
            .call_function(method, args)
            .read_only::<T>()
            .fetch_from(&self.network)
            .await
            .map(|d| d.data)
            .map_err(|e| error::from_query(&e, &self.rpc_url, receiver.as_str(), method))
    }

    async fn view<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        method: &str,
        args: serde_json::Value,
    ) -> Result<T, NearError> {
        self.view_on(&self.contract.clone(), method, args).await
    }

    /// An account's liquid NEAR balance, yoctoNEAR.
    pub async fn near_balance(&self, account: &AccountId) -> Result<u128, NearError> {
        near_api::Account(account.clone())
            .view()
            .fetch_from(&self.network)
            .await
            .map(|d| d.data.amount.as_yoctonear())
            .map_err(|e| error::from_query(&e, &self.rpc_url, account.as_str(), "view_account"))
    }

    /// The chain's time: the latest block's timestamp, ns since the Unix
    /// epoch (challenge periods end by it; a devnet may run ahead of the clock).
    pub async fn chain_time_ns(&self) -> Result<u64, NearError> {
        near_api::Chain::block()
            .fetch_from(&self.network)
            .await
            .map(|b| b.header.timestamp)
            .map_err(|e| error::from_other_query(&e, &self.rpc_url, "block"))
    }

    /// Opens a NEAR channel; `storage` yoctoNEAR beyond `deposit` pays for its storage.
    /// Returns the channel id.
    pub async fn open_near(
        &self,
        payer: &NearAccount,
        payee: &AccountId,
        payer_key: &VoucherKey,
        challenge_period_ns: u64,
        deposit: u128,
        storage: u128,
    ) -> Result<(u64, TxOutcome), NearError> {
        let attached = deposit
            .checked_add(storage)
            .ok_or_else(|| NearError::Invalid { what: "amount", value: "overflow".into() })?;
        let args = json!({
            "payee": payee,
            "payer_key": hex(&payer_key.to_bytes()),
            "challenge_period_ns": challenge_period_ns.to_string(),
            "deposit": deposit.to_string(),
        });
        let outcome = self.call(payer, "open", args, attached).await?;
        let id = outcome
            .value
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| NearError::BadResponse(format!("open returned {}", outcome.value)))?;
        Ok((id, outcome))
    }

    /// Pays NEAR into the payer's storage balance on the channel contract
    /// (needed before a token-funded open).
    pub async fn storage_deposit(&self, account: &NearAccount, amount: u128) -> Result<TxOutcome, NearError> {
        self.call(account, "storage_deposit", json!({}), amount).await
    }

    /// Withdraws `amount` (all if `None`) of the account's unused storage
    /// balance; withdrawing all with no channels left also returns the
    /// storage of the account's record. Attaches 1 yoctoNEAR (NEP-145).
    pub async fn storage_withdraw(&self, account: &NearAccount, amount: Option<u128>) -> Result<TxOutcome, NearError> {
        self.call(account, "storage_withdraw", json!({ "amount": amount.map(|a| a.to_string()) }), 1).await
    }

    /// The account's unused storage balance on the channel contract.
    pub async fn storage_balance_of(&self, account: &AccountId) -> Result<u128, NearError> {
        let s: String = self.view("storage_balance_of", json!({ "account_id": account })).await?;
        s.parse().map_err(|_| NearError::BadResponse(format!("storage_balance_of returned {s:?}")))
    }

    /// Opens a channel funded with `amount` of `token` (`ft_transfer_call`).
    /// The channel id is read from the contract's `channels_of` afterwards.
    pub async fn open_token(
        &self,
        payer: &NearAccount,
        token: &AccountId,
        payee: &AccountId,
        payer_key: &VoucherKey,
        challenge_period_ns: u64,
        amount: u128,
    ) -> Result<(u64, TxOutcome), NearError> {
        let msg = json!({ "Open": {
            "payee": payee,
            "payer_key": hex(&payer_key.to_bytes()),
            "challenge_period_ns": challenge_period_ns.to_string(),
        }});
        let outcome = self.ft_transfer_call(payer, token, amount, msg).await?;
        let channels = self.channels_of(&payer.id).await?;
        let id = channels
            .iter()
            .filter(|c| c.payee == *payee && c.currency.token().is_some_and(|t| t.as_str() == token.as_str()))
            .map(|c| c.id)
            .max()
            .ok_or_else(|| NearError::Failed {
                method: "ft_transfer_call Open".into(),
                reason: "no channel was opened (the token refunded the transfer)".into(),
                tokens_burnt: 0,
            })?;
        Ok((id, outcome))
    }

    /// `ft_transfer_call` of `amount` to the channel contract with `msg`;
    /// fails if the contract refunded any of it.
    pub async fn ft_transfer_call(
        &self,
        payer: &NearAccount,
        token: &AccountId,
        amount: u128,
        msg: serde_json::Value,
    ) -> Result<TxOutcome, NearError> {
        let args = json!({ "receiver_id": self.contract, "amount": amount.to_string(), "msg": msg.to_string() });
        let outcome = self.call_on(token, payer, "ft_transfer_call", args, 1, FT_CALL_GAS_TGAS).await?;
        let used: Option<u128> = outcome.value.as_str().and_then(|s| s.parse().ok());
        if used != Some(amount) {
            return Err(NearError::Failed {
                method: "ft_transfer_call".into(),
                reason: format!("the channel contract accepted {} of {amount}; the rest was refunded", outcome.value),
                tokens_burnt: outcome.tokens_burnt,
            });
        }
        Ok(outcome)
    }

    /// Adds `amount` NEAR to a NEAR channel.
    pub async fn top_up_near(
        &self,
        payer: &NearAccount,
        channel_id: u64,
        amount: u128,
    ) -> Result<TxOutcome, NearError> {
        self.call(payer, "top_up", json!({ "channel_id": channel_id.to_string() }), amount).await
    }

    /// Adds `amount` of `token` to a token channel.
    pub async fn top_up_token(
        &self,
        payer: &NearAccount,
        token: &AccountId,
        channel_id: u64,
        amount: u128,
    ) -> Result<TxOutcome, NearError> {
        self.ft_transfer_call(payer, token, amount, json!({ "TopUp": { "channel_id": channel_id.to_string() } })).await
    }

    /// The payee claims up to `amount` of what `voucher` authorises (the
    /// channel stays open): the channel's claimed total becomes
    /// `min(amount, cumulative)` (spec/contract.md §4.9). A payee claims what
    /// it charged, which is below the voucher when the payer paid ahead or an
    /// answer was not charged.
    pub async fn claim(
        &self,
        payee: &NearAccount,
        voucher: &SignedVoucher,
        amount: u128,
    ) -> Result<TxOutcome, NearError> {
        let mut args = json!({
            "channel_id": voucher.voucher.channel_id.to_string(),
            "cumulative": voucher.voucher.cumulative.to_string(),
            "signature": hex(&voucher.signature),
        });
        if amount < voucher.voucher.cumulative {
            args["amount"] = json!(amount.to_string());
        }
        self.call(payee, "claim", args, 0).await
    }

    /// The payee closes now, claiming `last` if given up to `amount` (the
    /// claimed total it ends at: less than the voucher when credit was
    /// forgiven); the rest goes back to the payer.
    pub async fn close(
        &self,
        payee: &NearAccount,
        channel_id: u64,
        last: Option<(&SignedVoucher, u128)>,
    ) -> Result<TxOutcome, NearError> {
        let final_voucher = last.map(|(v, amount)| {
            let mut fv = json!({ "cumulative": v.voucher.cumulative.to_string(), "signature": hex(&v.signature) });
            if amount < v.voucher.cumulative {
                fv["amount"] = json!(amount.to_string());
            }
            fv
        });
        self.call(payee, "close", json!({ "channel_id": channel_id.to_string(), "final_voucher": final_voucher }), 0)
            .await
    }

    /// The payer starts a unilateral close; returns when the challenge period ends (ns).
    pub async fn start_close(&self, payer: &NearAccount, channel_id: u64) -> Result<(u64, TxOutcome), NearError> {
        let outcome = self.call(payer, "start_close", json!({ "channel_id": channel_id.to_string() }), 0).await?;
        let ends = outcome
            .value
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| NearError::BadResponse(format!("start_close returned {}", outcome.value)))?;
        Ok((ends, outcome))
    }

    /// After the challenge period, refunds the unclaimed rest to the payer.
    pub async fn finalize(&self, caller: &NearAccount, channel_id: u64) -> Result<TxOutcome, NearError> {
        self.call(caller, "finalize", json!({ "channel_id": channel_id.to_string() }), 0).await
    }

    /// Registers `key` (hex of an agent's ed25519 key) as speaking for the caller's account.
    pub async fn register_endpoint(&self, account: &NearAccount, key: &VoucherKey) -> Result<TxOutcome, NearError> {
        self.call(account, "register_endpoint", json!({ "key": hex(&key.to_bytes()) }), 0).await
    }

    /// Lists `key` for the caller's account in the endpoint registry unless
    /// it is already, paying the registry's storage first when the account's
    /// storage balance is short. Returns whether it was newly listed.
    pub async fn ensure_endpoint(&self, account: &NearAccount, key: &VoucherKey) -> Result<bool, NearError> {
        if self.is_endpoint(&account.id, key).await? {
            return Ok(false);
        }
        if self.storage_balance_of(&account.id).await? < REGISTRY_STORAGE {
            self.storage_deposit(account, REGISTRY_STORAGE).await?;
        }
        self.register_endpoint(account, key).await?;
        Ok(true)
    }

    /// Whether `key` speaks for `account` in the endpoint registry.
    pub async fn is_endpoint(&self, account: &AccountId, key: &VoucherKey) -> Result<bool, NearError> {
        self.view("is_endpoint", json!({ "account_id": account, "key": hex(&key.to_bytes()) })).await
    }

    /// A channel, if it exists.
    pub async fn get_channel(&self, channel_id: u64) -> Result<Option<ChannelView>, NearError> {
        self.view("get_channel", json!({ "channel_id": channel_id.to_string() })).await
    }

    /// An account's channels (as payer or payee): every page the contract
    /// lists. It pages by [`CHANNELS_PAGE`] and lists at most
    /// [`CHANNELS_LISTED`] channels per account (spec/contract.md §3.5, §4.19),
    /// so this reads at most six pages; a short page is the last.
    pub async fn channels_of(&self, account: &AccountId) -> Result<Vec<ChannelView>, NearError> {
        self.channels_of_paced(account, Duration::ZERO).await
    }

    /// [`channels_of`](Self::channels_of) with `gap` between page reads: a
    /// brand's periodic watch spreads its view calls, so neither a
    /// rate-limited RPC provider nor a node on the brand's own machine gets
    /// them in one burst (six views at once stalled a brand's answers by
    /// 20-40 ms every 30 s when its node shared the machine; BENCHMARKS.md).
    pub async fn channels_of_paced(&self, account: &AccountId, gap: Duration) -> Result<Vec<ChannelView>, NearError> {
        let mut all = Vec::new();
        let mut from = 0u32;
        while (from as usize) < CHANNELS_LISTED {
            if from > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            let args = json!({ "account_id": account, "from_index": from, "limit": CHANNELS_PAGE });
            let page: Vec<ChannelView> = self.view("channels_of", args).await?;
            let last = page.len() < CHANNELS_PAGE as usize;
            all.extend(page);
            if last {
                break;
            }
            from += CHANNELS_PAGE;
        }
        Ok(all)
    }

    /// A NEP-141 balance.
    pub async fn ft_balance_of(&self, token: &AccountId, account: &AccountId) -> Result<u128, NearError> {
        let s: String = self.view_on(token, "ft_balance_of", json!({ "account_id": account })).await?;
        s.parse().map_err(|_| NearError::BadResponse(format!("ft_balance_of returned {s:?}")))
    }

    /// A NEP-141 token's decimals (its `ft_metadata`, NEP-148).
    pub async fn ft_decimals(&self, token: &AccountId) -> Result<u8, NearError> {
        #[derive(Deserialize)]
        struct Metadata {
            decimals: u8,
        }
        let m: Metadata = self.view_on(token, "ft_metadata", json!({})).await?;
        Ok(m.decimals)
    }

    /// Registers `account` with `token` (NEP-145), paid by `payer`.
    pub async fn ft_storage_deposit(
        &self,
        payer: &NearAccount,
        token: &AccountId,
        account: &AccountId,
        amount: u128,
    ) -> Result<TxOutcome, NearError> {
        self.call_on(token, payer, "storage_deposit", json!({ "account_id": account }), amount, CALL_GAS_TGAS).await
    }
}
