//! The chain as NEAR describes it: `status`, `block`, `chunk`, `validators`
//! and `EXPERIMENTAL_protocol_config`.
//!
//! The devnet is one shard with one chunk per block, produced by its root
//! account (the only validator, with no stake: the devnet has no staking).
//! A block that holds a transaction has a chunk with that transaction and
//! every receipt it ran (all of them execute in that block); other blocks
//! (genesis, faucet payments, fast-forwards) have an empty chunk.

use near_crypto::{KeyType, PublicKey, Signature};
use near_primitives::hash::{hash, CryptoHash};
use near_primitives::shard_layout::ShardLayout;
use near_primitives::types::{AccountId, Balance, Gas, ShardId};
use near_primitives::views::{ChunkHeaderView, CurrentEpochValidatorInfo, EpochValidatorInfo, NextEpochValidatorInfo};
use near_primitives_core::version::PROTOCOL_VERSION;
use serde_json::{json, Value};

use super::{block_by_id, block_ref, RpcError};
use crate::chain::Chain;
use crate::fees::{runtime_config_view, GAS_PRICE};
use crate::state::{BlockInfo, MAX_RECENT_BLOCKS};

/// Blocks per epoch (NEAR mainnet's; the VM sees `height / EPOCH_LENGTH` as
/// the epoch height).
pub const EPOCH_LENGTH: u64 = 43_200;
/// Gas one chunk may use (NEAR's limit).
pub const CHUNK_GAS_LIMIT: u64 = 1_000_000_000_000_000;

fn total_supply(chain: &Chain) -> u128 {
    chain.state.accounts.values().fold(0u128, |s, a| s.saturating_add(a.amount).saturating_add(a.locked))
}

fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        ns % 1_000_000_000
    )
}

/// The root account: block and chunk author, the one validator.
fn producer(chain: &Chain) -> (AccountId, PublicKey) {
    let root = chain.state.root.clone().unwrap_or_else(|| "devnet".parse().expect("a valid account id"));
    let key = chain
        .state
        .accounts
        .get(&root)
        .and_then(|a| a.keys.keys().next().cloned())
        .unwrap_or_else(|| PublicKey::empty(KeyType::ED25519));
    (root, key)
}

/// The earliest block the devnet keeps (genesis until 10,000 blocks pruned it).
fn earliest(chain: &Chain) -> BlockInfo {
    chain.state.blocks.front().copied().unwrap_or_else(|| chain.state.head())
}

pub(super) fn status(chain: &Chain) -> Value {
    let head = chain.state.head();
    let first = earliest(chain);
    let (root, _) = producer(chain);
    json!({
        "chain_id": chain.state.chain_id,
        "genesis_hash": chain.state.genesis_hash,
        "latest_protocol_version": PROTOCOL_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "node_public_key": PublicKey::empty(KeyType::ED25519),
        "rpc_addr": Value::Null,
        "sync_info": {
            "latest_block_hash": head.hash,
            "latest_block_height": head.height,
            "latest_block_time": rfc3339(head.timestamp_ns),
            "latest_state_root": CryptoHash::default(),
            "earliest_block_hash": first.hash,
            "earliest_block_height": first.height,
            "earliest_block_time": rfc3339(first.timestamp_ns),
            "syncing": false,
        },
        "uptime_sec": 0,
        "validators": [{ "account_id": root }],
        "version": {
            "version": env!("CARGO_PKG_VERSION"),
            "build": "agentwire-devnet",
            "commit": "",
            "rustc_version": "",
        },
    })
}

/// The hash of a block's one chunk.
pub fn chunk_hash(block_hash: &CryptoHash) -> CryptoHash {
    let mut preimage = b"agentwire-devnet chunk ".to_vec();
    preimage.extend_from_slice(block_hash.as_ref());
    hash(&preimage)
}

/// Gas and NEAR burnt by a transaction and all its receipts.
fn burnt(outcome: &Value) -> (u64, u128) {
    let mut all = vec![outcome.pointer("/transaction_outcome/outcome")];
    if let Some(receipts) = outcome.get("receipts_outcome").and_then(Value::as_array) {
        all.extend(receipts.iter().map(|r| r.get("outcome")));
    }
    all.into_iter().flatten().fold((0u64, 0u128), |(gas, tokens), o| {
        let g = o.get("gas_burnt").and_then(Value::as_u64).unwrap_or(0);
        let t = o.get("tokens_burnt").and_then(Value::as_str).and_then(|s| s.parse::<u128>().ok()).unwrap_or(0);
        (gas.saturating_add(g), tokens.saturating_add(t))
    })
}

fn chunk_header(block: &BlockInfo, tx: Option<&Value>) -> ChunkHeaderView {
    let zero = CryptoHash::default();
    let (gas_used, balance_burnt) = tx.map(burnt).unwrap_or_default();
    ChunkHeaderView {
        chunk_hash: chunk_hash(&block.hash),
        prev_block_hash: block.prev_hash,
        outcome_root: zero,
        prev_state_root: zero,
        encoded_merkle_root: zero,
        encoded_length: 0,
        height_created: block.height,
        height_included: block.height,
        shard_id: ShardId::new(0),
        gas_used: Gas::from_gas(gas_used),
        gas_limit: Gas::from_gas(CHUNK_GAS_LIMIT),
        rent_paid: Balance::from_yoctonear(0),
        validator_reward: Balance::from_yoctonear(0),
        balance_burnt: Balance::from_yoctonear(balance_burnt),
        outgoing_receipts_root: zero,
        tx_root: zero,
        validator_proposals: Vec::new(),
        congestion_info: None,
        bandwidth_requests: None,
        proposed_split: None,
        signature: Signature::empty(KeyType::ED25519),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, RpcError> {
    serde_json::to_value(value).map_err(|e| RpcError::internal(e.to_string()))
}

pub(super) fn block(chain: &Chain, params: &Value) -> Result<Value, RpcError> {
    let b = block_ref(chain, params)?;
    let zero = CryptoHash::default();
    let epoch = CryptoHash::default();
    let (root, _) = producer(chain);
    let chunk = to_json(&chunk_header(&b, chain.tx_in_block(&b.hash).as_ref()))?;
    Ok(json!({
        "author": root,
        "chunks": [chunk],
        "header": {
            "approvals": [],
            "block_merkle_root": zero,
            "challenges_result": [],
            "challenges_root": zero,
            "chunk_headers_root": zero,
            "chunk_mask": [true],
            "chunk_receipts_root": zero,
            "chunk_tx_root": zero,
            "chunks_included": 1,
            "epoch_id": epoch,
            "gas_price": GAS_PRICE.to_string(),
            "hash": b.hash,
            "height": b.height,
            "last_ds_final_block": b.hash,
            "last_final_block": b.hash,
            "latest_protocol_version": PROTOCOL_VERSION,
            "next_bp_hash": zero,
            "next_epoch_id": epoch,
            "outcome_root": zero,
            "prev_hash": b.prev_hash,
            "prev_state_root": zero,
            "random_value": b.hash,
            "rent_paid": "0",
            "signature": Signature::empty(KeyType::ED25519),
            "timestamp": b.timestamp_ns,
            "timestamp_nanosec": b.timestamp_ns.to_string(),
            "total_supply": total_supply(chain).to_string(),
            "validator_proposals": [],
            "validator_reward": "0",
        },
    }))
}

/// `chunk`: by `{chunk_id}`, `{block_id, shard_id}`, or nearcore's positional
/// `[chunk_hash]` / `[[block_id, shard_id]]`.
pub(super) fn chunk(chain: &Chain, params: &Value) -> Result<Value, RpcError> {
    let first = params.get(0);
    let by_block = params.get("block_id").map(|b| (b, params.get("shard_id"))).or_else(|| match first {
        Some(Value::Array(pair)) => pair.first().map(|b| (b, pair.get(1))),
        _ => None,
    });
    let block = match by_block {
        Some((block_id, shard_id)) => {
            let shard = shard_id.and_then(Value::as_u64);
            if shard != Some(0) {
                return Err(RpcError::handler(
                    "INVALID_SHARD_ID",
                    json!({ "shard_id": shard_id }),
                    json!(format!("Shard id {} does not exist", shard_id.cloned().unwrap_or_default())),
                ));
            }
            block_by_id(chain, block_id).ok_or_else(|| RpcError::unknown_block(params))?
        }
        None => {
            let raw = params
                .get("chunk_id")
                .or(first)
                .and_then(Value::as_str)
                .ok_or_else(|| RpcError::parse("give chunk_id, or block_id and shard_id"))?;
            let wanted: CryptoHash = raw.parse().map_err(|_| RpcError::parse(format!("invalid chunk_id {raw:?}")))?;
            chain.state.blocks.iter().rev().find(|b| chunk_hash(&b.hash) == wanted).copied().ok_or_else(|| {
                RpcError::handler(
                    "UNKNOWN_CHUNK",
                    json!({ "chunk_hash": wanted }),
                    json!(format!("Chunk Missing (unavailable on the node): ChunkHash({wanted})")),
                )
            })?
        }
    };
    let tx = chain.tx_in_block(&block.hash);
    let (root, _) = producer(chain);
    let header = to_json(&chunk_header(&block, tx.as_ref()))?;
    let (transactions, receipts) = match &tx {
        Some(outcome) => (
            vec![outcome.get("transaction").cloned().unwrap_or_default()],
            outcome.get("receipts").cloned().unwrap_or_else(|| json!([])),
        ),
        None => (Vec::new(), json!([])),
    };
    Ok(json!({ "author": root, "header": header, "transactions": transactions, "receipts": receipts }))
}

/// `validators`: by `[null]`/`null` (the current epoch), `{block_id}` or
/// `{epoch_id}` (the devnet's one epoch id is the zero hash).
pub(super) fn validators(chain: &Chain, params: &Value) -> Result<Value, RpcError> {
    let unknown_epoch = || RpcError::handler("UNKNOWN_EPOCH", json!({}), json!("Epoch not found"));
    let at = match (params.get("block_id"), params.get("epoch_id")) {
        (Some(block_id), _) => block_by_id(chain, block_id).ok_or_else(unknown_epoch)?,
        (None, Some(epoch_id)) => {
            if epoch_id.as_str().and_then(|s| s.parse::<CryptoHash>().ok()) != Some(CryptoHash::default()) {
                return Err(unknown_epoch());
            }
            chain.state.head()
        }
        (None, None) => chain.state.head(),
    };
    let epoch_height = at.height / EPOCH_LENGTH;
    let epoch_start_height = (epoch_height * EPOCH_LENGTH).max(earliest(chain).height);
    let produced =
        chain.state.blocks.iter().filter(|b| b.height >= epoch_start_height && b.height <= at.height).count() as u64;
    let (root, key) = producer(chain);
    let stake = Balance::from_yoctonear(chain.state.accounts.get(&root).map(|a| a.locked).unwrap_or(0));
    let shard = ShardId::new(0);
    let info = EpochValidatorInfo {
        current_validators: vec![CurrentEpochValidatorInfo {
            account_id: root.clone(),
            public_key: key.clone(),
            is_slashed: false,
            stake,
            shards_produced: vec![shard],
            num_produced_blocks: produced,
            num_expected_blocks: produced,
            num_produced_chunks: produced,
            num_expected_chunks: produced,
            num_produced_chunks_per_shard: vec![produced],
            num_expected_chunks_per_shard: vec![produced],
            num_produced_endorsements: 0,
            num_expected_endorsements: 0,
            num_produced_endorsements_per_shard: vec![0],
            num_expected_endorsements_per_shard: vec![0],
            shards_endorsed: Vec::new(),
        }],
        next_validators: vec![NextEpochValidatorInfo { account_id: root, public_key: key, stake, shards: vec![shard] }],
        current_fishermen: Vec::new(),
        next_fishermen: Vec::new(),
        current_proposals: Vec::new(),
        prev_epoch_kickout: Vec::new(),
        epoch_start_height,
        epoch_height,
        validator_reward_paid_prev_epoch: Default::default(),
    };
    to_json(&info)
}

/// `EXPERIMENTAL_protocol_config`: nearcore's `ProtocolConfigView`. The
/// runtime configuration is the one the devnet runs; the economics say what
/// the devnet does (a fixed gas price, no inflation, one block producer) and
/// the rest are NEAR mainnet's values.
pub(super) fn protocol_config(chain: &Chain, params: &Value) -> Result<Value, RpcError> {
    block_ref(chain, params)?;
    let (root, _) = producer(chain);
    let genesis = earliest(chain);
    Ok(json!({
        "protocol_version": PROTOCOL_VERSION,
        "genesis_time": rfc3339(genesis.timestamp_ns),
        "chain_id": chain.state.chain_id,
        "genesis_height": genesis.height,
        "num_block_producer_seats": 1,
        "num_block_producer_seats_per_shard": [1],
        "avg_hidden_validator_seats_per_shard": [0],
        "dynamic_resharding": false,
        "protocol_upgrade_stake_threshold": [4, 5],
        "epoch_length": EPOCH_LENGTH,
        "gas_limit": CHUNK_GAS_LIMIT,
        "min_gas_price": GAS_PRICE.to_string(),
        "max_gas_price": GAS_PRICE.to_string(),
        "block_producer_kickout_threshold": 90,
        "chunk_producer_kickout_threshold": 90,
        "chunk_validator_only_kickout_threshold": 80,
        "target_validator_mandates_per_shard": 68,
        "online_min_threshold": [9, 10],
        "online_max_threshold": [99, 100],
        "gas_price_adjustment_rate": [0, 1],
        "runtime_config": to_json(runtime_config_view())?,
        "transaction_validity_period": MAX_RECENT_BLOCKS,
        "protocol_reward_rate": [0, 1],
        "max_inflation_rate": [0, 1],
        "num_blocks_per_year": 31_536_000,
        "protocol_treasury_account": root,
        "fishermen_threshold": "0",
        "minimum_stake_divisor": 10,
        "max_kickout_stake_perc": 100,
        "minimum_stake_ratio": [1, 6_250],
        "minimum_validators_per_shard": 1,
        "num_chunk_only_producer_seats": 0,
        "num_chunk_producer_seats": 1,
        "num_chunk_validator_seats": 1,
        "chunk_producer_assignment_changes_limit": 5,
        "shuffle_shard_assignment_for_chunk_producers": false,
        "shard_layout": to_json(&ShardLayout::single_shard())?,
    }))
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
    }
}
