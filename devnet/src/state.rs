//! The devnet's world state: accounts, their keys and contract data, deployed
//! code, recent blocks and finished transactions, and how it is kept on disk.
//!
//! One shard, one block per transaction. The whole state is one Borsh file,
//! replaced atomically (write, fsync, rename, fsync the directory) after every
//! change, so a killed devnet restarts at its last block.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::Path;

use borsh::{BorshDeserialize, BorshSerialize};
use near_crypto::PublicKey;
use near_primitives::account::AccessKey;
use near_primitives::hash::{hash, CryptoHash};
use near_primitives::types::AccountId;

/// Magic and version at the start of a state file.
const STATE_MAGIC: &[u8; 8] = b"AWDEVNT1";
/// Finished transactions kept for `tx` queries; older ones are forgotten.
pub const MAX_TX_HISTORY: usize = 20_000;
/// Blocks whose hash a transaction may name (NEAR's validity window is longer;
/// a devnet never needs more).
pub const MAX_RECENT_BLOCKS: usize = 10_000;
/// Bytes NEAR charges for an account record itself (`num_bytes_account`).
pub const ACCOUNT_RECORD_BYTES: u64 = 100;
/// Bytes NEAR adds per stored record (`num_extra_bytes_record`).
pub const EXTRA_BYTES_PER_RECORD: u64 = 40;

/// One account.
#[derive(BorshSerialize, BorshDeserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Liquid balance, yoctoNEAR.
    pub amount: u128,
    /// Locked (staked) balance; always zero on the devnet.
    pub locked: u128,
    /// Hash of the deployed contract, if any.
    pub code_hash: Option<CryptoHash>,
    /// Bytes of state this account pays for.
    pub storage_usage: u64,
    /// Access keys.
    pub keys: BTreeMap<PublicKey, AccessKey>,
    /// Contract storage.
    pub data: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Storage an access key takes, as NEAR counts it.
pub fn key_storage_bytes(public_key: &PublicKey, key: &AccessKey) -> u64 {
    let key_len = borsh::to_vec(public_key).map(|v| v.len()).unwrap_or(33) as u64;
    let value_len = borsh::to_vec(key).map(|v| v.len()).unwrap_or(0) as u64;
    key_len + value_len + EXTRA_BYTES_PER_RECORD
}

/// A produced block.
#[derive(BorshSerialize, BorshDeserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Height.
    pub height: u64,
    /// Hash.
    pub hash: CryptoHash,
    /// Previous block's hash.
    pub prev_hash: CryptoHash,
    /// Timestamp, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
}

/// Everything the devnet knows.
#[derive(BorshSerialize, BorshDeserialize, Clone, Debug)]
pub struct ChainState {
    /// Chain id reported by `status`.
    pub chain_id: String,
    /// Genesis block hash.
    pub genesis_hash: CryptoHash,
    /// The root account (the registrar: it may create any account).
    pub root: Option<AccountId>,
    /// Secret keys of the accounts the devnet created (its root and dev
    /// accounts), so they can be shown again after a restart. Devnet only.
    pub dev_keys: BTreeMap<AccountId, String>,
    /// Simulated time added to the wall clock by fast-forwarding.
    pub time_offset_ns: u64,
    /// Accounts by id.
    pub accounts: BTreeMap<AccountId, Account>,
    /// Contract code by hash.
    pub codes: BTreeMap<CryptoHash, Vec<u8>>,
    /// Recent blocks, oldest first; the last one is the head.
    pub blocks: VecDeque<BlockInfo>,
    /// Finished transactions: hash → (signer, final outcome as JSON).
    pub outcomes: BTreeMap<CryptoHash, (AccountId, String)>,
    /// Order in which `outcomes` were added, to forget the oldest.
    pub outcome_order: VecDeque<CryptoHash>,
}

/// Why a state file could not be used.
#[derive(Debug)]
pub enum StateFileError {
    /// Reading or writing failed.
    Io(std::io::Error),
    /// The file is not a devnet state file of this version, or is corrupt.
    Corrupt(String),
}

impl std::fmt::Display for StateFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateFileError::Io(e) => write!(f, "devnet state file: {e}"),
            StateFileError::Corrupt(e) => {
                write!(f, "devnet state file is not usable ({e}); move it away to start afresh")
            }
        }
    }
}

impl std::error::Error for StateFileError {}

impl ChainState {
    /// A new chain whose genesis block has `timestamp_ns`. `salt` (random
    /// per chain, kept in the state file as part of the genesis hash) makes
    /// every block hash, and so every random seed a contract sees, differ
    /// from any other chain's, even one started with the same keys at the
    /// same instant: a contract initialized on a fresh devnet never draws
    /// the epoch of one on an earlier devnet.
    pub fn genesis(chain_id: &str, timestamp_ns: u64, salt: [u8; 32]) -> ChainState {
        let mut preimage = format!("agentwire-devnet genesis {chain_id} {timestamp_ns}").into_bytes();
        preimage.extend_from_slice(&salt);
        let genesis_hash = hash(&preimage);
        let genesis = BlockInfo { height: 1, hash: genesis_hash, prev_hash: CryptoHash::default(), timestamp_ns };
        ChainState {
            chain_id: chain_id.to_owned(),
            genesis_hash,
            root: None,
            time_offset_ns: 0,
            dev_keys: BTreeMap::new(),
            accounts: BTreeMap::new(),
            codes: BTreeMap::new(),
            blocks: VecDeque::from([genesis]),
            outcomes: BTreeMap::new(),
            outcome_order: VecDeque::new(),
        }
    }

    /// The latest block.
    pub fn head(&self) -> BlockInfo {
        // `blocks` is never empty: genesis creates one and pruning keeps the last.
        self.blocks.back().copied().unwrap_or(BlockInfo {
            height: 0,
            hash: self.genesis_hash,
            prev_hash: CryptoHash::default(),
            timestamp_ns: 0,
        })
    }

    /// A recent block by hash.
    pub fn block_by_hash(&self, hash: &CryptoHash) -> Option<BlockInfo> {
        self.blocks.iter().rev().find(|b| &b.hash == hash).copied()
    }

    /// A recent block by height.
    pub fn block_by_height(&self, height: u64) -> Option<BlockInfo> {
        self.blocks.iter().rev().find(|b| b.height == height).copied()
    }

    /// Produces the next block, `skip` heights and `elapsed_ns` after the head
    /// (at least 1 ns, so timestamps strictly increase), committing `content`.
    pub fn produce_block(&mut self, skip: u64, elapsed_ns: u64, content: &CryptoHash) -> BlockInfo {
        let head = self.head();
        let height = head.height.saturating_add(skip.max(1));
        let timestamp_ns = head.timestamp_ns.saturating_add(elapsed_ns.max(1));
        let mut preimage = Vec::with_capacity(80);
        preimage.extend_from_slice(head.hash.as_ref());
        preimage.extend_from_slice(&height.to_le_bytes());
        preimage.extend_from_slice(&timestamp_ns.to_le_bytes());
        preimage.extend_from_slice(content.as_ref());
        let block = BlockInfo { height, hash: hash(&preimage), prev_hash: head.hash, timestamp_ns };
        self.blocks.push_back(block);
        while self.blocks.len() > MAX_RECENT_BLOCKS {
            self.blocks.pop_front();
        }
        block
    }

    /// Records a finished transaction, forgetting the oldest beyond the bound.
    pub fn record_outcome(&mut self, tx_hash: CryptoHash, signer: AccountId, outcome_json: String) {
        if self.outcomes.insert(tx_hash, (signer, outcome_json)).is_none() {
            self.outcome_order.push_back(tx_hash);
        }
        while self.outcome_order.len() > MAX_TX_HISTORY {
            if let Some(old) = self.outcome_order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }

    /// Reads a state file written by [`ChainState::save`].
    pub fn load(path: &Path) -> Result<ChainState, StateFileError> {
        let bytes = fs::read(path).map_err(StateFileError::Io)?;
        let body = bytes
            .strip_prefix(STATE_MAGIC.as_slice())
            .ok_or_else(|| StateFileError::Corrupt("missing header".into()))?;
        ChainState::try_from_slice(body).map_err(|e| StateFileError::Corrupt(e.to_string()))
    }

    /// Replaces the state file atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        let mut bytes = STATE_MAGIC.to_vec();
        borsh::to_writer(&mut bytes, self).map_err(StateFileError::Io)?;
        let tmp = path.with_extension("tmp");
        {
            let mut file = fs::File::create(&tmp).map_err(StateFileError::Io)?;
            file.write_all(&bytes).map_err(StateFileError::Io)?;
            file.sync_all().map_err(StateFileError::Io)?;
        }
        fs::rename(&tmp, path).map_err(StateFileError::Io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StateFileError::Io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_advance_and_state_survives_a_round_trip_through_disk() {
        let mut state = ChainState::genesis("test", 1_000, [1; 32]);
        let b = state.produce_block(1, 1_000_000_000, &CryptoHash::default());
        assert_eq!(b.height, 2);
        assert_eq!(b.prev_hash, state.genesis_hash);
        let alice: AccountId = "alice.devnet".parse().unwrap();
        state.accounts.insert(alice.clone(), Account { amount: 7, ..Account::default() });
        state.record_outcome(CryptoHash::default(), alice.clone(), "{}".into());
        let dir = std::env::temp_dir().join(format!("agentwire-devnet-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.bin");
        state.save(&path).unwrap();
        let back = ChainState::load(&path).unwrap();
        assert_eq!(back.head(), state.head());
        assert_eq!(back.accounts, state.accounts);
        fs::write(&path, b"garbage").unwrap();
        assert!(matches!(ChainState::load(&path), Err(StateFileError::Corrupt(_))));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chains_with_the_same_id_and_time_differ_by_their_salt() {
        let a = ChainState::genesis("test", 1, [1; 32]);
        let b = ChainState::genesis("test", 1, [2; 32]);
        assert_ne!(a.genesis_hash, b.genesis_hash);
        assert_eq!(a.genesis_hash, ChainState::genesis("test", 1, [1; 32]).genesis_hash);
    }

    #[test]
    fn history_is_bounded() {
        let mut state = ChainState::genesis("test", 1, [1; 32]);
        let alice: AccountId = "alice.devnet".parse().unwrap();
        for i in 0..(MAX_TX_HISTORY as u32 + 5) {
            state.record_outcome(hash(&i.to_le_bytes()), alice.clone(), String::new());
        }
        assert_eq!(state.outcomes.len(), MAX_TX_HISTORY);
        assert!(!state.outcomes.contains_key(&hash(&0u32.to_le_bytes())));
    }
}
