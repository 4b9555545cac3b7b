//! A ready-to-use local devnet: the channel contract deployed at
//! `channels.<root>`, a USDC-like NEP-141 token at `usdc.<root>` accepted by
//! it, a registrar at the root (`create_account`, as NEAR's top-level
//! accounts have), and funded user accounts holding NEAR and USDC. What `agentwire
//! devnet` serves and what the demo and tests run on. Everything goes
//! through the JSON-RPC with the same client code as on testnet or mainnet.

use agentwire_devnet::{DevAccount, Devnet, ONE_NEAR};
use near_api::{AccountId, Contract, NearGas};
use serde_json::json;

use crate::near::{ChannelClient, NearAccount, NearError};

/// The channel contract, built for the chain when this binary was built.
pub const CHANNEL_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentwire_channel.wasm"));
/// The devnet's NEP-141 token contract.
pub const TOKEN_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentwire_devnet_token.wasm"));
/// The registrar deployed at the devnet's root.
pub const REGISTRAR_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agentwire_devnet_registrar.wasm"));

/// One USDC in the token's smallest unit (6 decimals, like USDC on NEAR).
pub const ONE_USDC: u128 = 1_000_000;
/// The shortest challenge period the devnet's contract accepts (one hour).
pub const MIN_CHALLENGE_PERIOD_NS: u64 = 3_600_000_000_000;

/// What a provisioned devnet offers.
#[derive(Clone, Debug)]
pub struct Provisioned {
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// The channel contract's account.
    pub channels: AccountId,
    /// The token's account.
    pub token: AccountId,
    /// Funded user accounts with their keys.
    pub users: Vec<DevAccount>,
}

fn account_id(a: &DevAccount) -> Result<AccountId, NearError> {
    a.account_id.as_str().parse().map_err(|_| NearError::Invalid { what: "account", value: a.account_id.to_string() })
}

fn near_account(a: &DevAccount) -> Result<NearAccount, NearError> {
    NearAccount::new(a.account_id.as_str(), &a.secret_key.to_string())
}

/// The devnet's own account named `name.<root>`, creating it with `balance` if needed.
fn dev_account(devnet: &Devnet, name: &str, balance: u128) -> Result<(DevAccount, bool), NearError> {
    let full = format!("{name}.{}", devnet.root().account_id);
    if let Some(existing) = devnet.dev_accounts().into_iter().find(|a| a.account_id.as_str() == full) {
        return Ok((existing, false));
    }
    devnet.create_account(name, balance).map(|a| (a, true)).map_err(|e| NearError::Failed {
        method: "create account".into(),
        reason: e.to_string(),
        tokens_burnt: 0,
    })
}

async fn deploy(
    client: &ChannelClient,
    owner: &DevAccount,
    wasm: &[u8],
    init: Option<serde_json::Value>,
) -> Result<(), NearError> {
    let signer = near_account(owner)?;
    let deploy = Contract::deploy(signer.id.clone()).use_code(wasm.to_vec());
    let signed = match init {
        Some(init) => deploy
            .with_init_call("new", init)
            .map_err(|e| NearError::Invalid { what: "init arguments", value: e.to_string() })?
            .gas(NearGas::from_tgas(300))
            .with_signer(signer.signer()),
        None => deploy.without_init_call().with_signer(signer.signer()),
    };
    signed
        .send_to(client.network())
        .await
        .map_err(|e| NearError::Rpc(e.to_string()))?
        .into_result()
        .map(|_| ())
        .map_err(|e| NearError::Failed { method: "deploy".into(), reason: e.to_string(), tokens_burnt: 0 })
}

/// Deploys what is missing and funds `users` (created if missing) with
/// `near_each` yoctoNEAR and `usdc_each` token units. Idempotent: a devnet
/// restarted from its state file is left as it is.
pub async fn provision(
    devnet: &Devnet,
    users: &[&str],
    near_each: u128,
    usdc_each: u128,
) -> Result<Provisioned, NearError> {
    let (channels, new_channels) = dev_account(devnet, "channels", 50 * ONE_NEAR)?;
    let (usdc, new_usdc) = dev_account(devnet, "usdc", 50 * ONE_NEAR)?;
    let client = ChannelClient::new(&devnet.rpc_url(), channels.account_id.as_str())?;
    let token = account_id(&usdc)?;
    let root = devnet.root().clone();
    let root_has_code = devnet.chain().state.accounts.get(&root.account_id).is_some_and(|a| a.code_hash.is_some());
    if !root_has_code {
        deploy(&client, &root, REGISTRAR_WASM, None).await?;
    }
    if new_channels {
        let init = json!({
            "owner_id": channels.account_id,
            "min_challenge_period_ns": MIN_CHALLENGE_PERIOD_NS.to_string(),
            "tokens": [usdc.account_id],
        });
        deploy(&client, &channels, CHANNEL_WASM, Some(init)).await?;
    }
    if new_usdc {
        let init = json!({
            "owner_id": usdc.account_id,
            "total_supply": (1_000_000_000 * ONE_USDC).to_string(),
            "symbol": "USDC",
            "decimals": 6,
        });
        deploy(&client, &usdc, TOKEN_WASM, Some(init)).await?;
        // The channel contract must be registered with the token to hold it.
        client.ft_storage_deposit(&near_account(&usdc)?, &token, client.contract(), ONE_NEAR / 100).await?;
    }
    let mut funded = Vec::new();
    for name in users {
        let (user, new) = dev_account(devnet, name, near_each)?;
        if new && usdc_each > 0 {
            let id = account_id(&user)?;
            let issuer = near_account(&usdc)?;
            client.ft_storage_deposit(&issuer, &token, &id, ONE_NEAR / 100).await?;
            let args = json!({ "receiver_id": id, "amount": usdc_each.to_string() });
            client.call_on(&token, &issuer, "ft_transfer", args, 1, 30).await?;
        }
        funded.push(user);
    }
    Ok(Provisioned { rpc_url: devnet.rpc_url(), channels: client.contract().clone(), token, users: funded })
}
