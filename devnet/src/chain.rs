//! The devnet chain: transactions checked as NEAR checks them (signature,
//! access key and its permission, nonce, recent block hash, balance), turned
//! into a receipt, executed with everything it causes, and recorded in a new
//! block; plus the read-only queries the JSON-RPC serves.
//!
//! Costs: the signer prepays `(send + exec fees + attached gas) × gas price`
//! plus deposits; what the receipts did not burn is refunded when the
//! transaction ends. So a signer's balance drops by exactly its deposits plus
//! the `tokens_burnt` of the transaction's outcomes, which is what clients
//! and tests can check to the yoctoNEAR.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use near_crypto::PublicKey;
use near_primitives::account::{AccessKey, AccessKeyPermission};
use near_primitives::errors::{InvalidAccessKeyError, InvalidTxError};
use near_primitives::hash::{hash, CryptoHash};
use near_primitives::transaction::{Action, SignedTransaction, TransactionNonce};
use near_primitives::types::{AccountId, Balance, Gas};
use near_primitives::views::{
    ExecutionMetadataView, ExecutionOutcomeView, ExecutionOutcomeWithIdView, ExecutionStatusView,
    FinalExecutionOutcomeView, FinalExecutionOutcomeWithReceiptView, FinalExecutionStatus, SignedTransactionView,
};
use near_vm_runner::ContractCode;
use serde_json::Value;

use crate::fees::{action_gas, GAS_PRICE};
use crate::history::{receipt_view, TxIndex};
use crate::receipts::{attached_deposit, vm_context, Engine, Receipt, ReceiptOutcome, ReceiptRunner};
use crate::state::{key_storage_bytes, Account, BlockInfo, ChainState, StateFileError, ACCOUNT_RECORD_BYTES};

/// Largest transaction accepted, in bytes (NEAR's `max_transaction_size`).
pub const MAX_TRANSACTION_BYTES: usize = 1_572_864;
/// Gas a view call may burn.
pub const VIEW_GAS: u64 = 300_000_000_000_000;
/// Simulated time per height skipped by [`Chain::fast_forward`].
pub const BLOCK_TIME_NS: u64 = 1_000_000_000;

/// Why a transaction was refused before it ran (nothing changed).
#[derive(Debug, Clone)]
pub enum TxRejected {
    /// NEAR's own reason.
    Invalid(InvalidTxError),
    /// Something this devnet does not implement (e.g. staking, gas keys).
    Unsupported(String),
}

impl std::fmt::Display for TxRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxRejected::Invalid(e) => write!(f, "invalid transaction: {e}"),
            TxRejected::Unsupported(what) => write!(f, "not supported by the devnet: {what}"),
        }
    }
}

/// Why a read-only query failed.
#[derive(Debug, Clone)]
pub enum QueryError {
    /// No such account.
    UnknownAccount(AccountId),
    /// No such access key.
    UnknownAccessKey(PublicKey),
    /// The account has no contract.
    NoContractCode(AccountId),
    /// The view call failed (panic, bad method, out of gas).
    ContractExecution(String),
}

/// The devnet: state, the VM engine, and where state is kept.
pub struct Chain {
    /// World state.
    pub state: ChainState,
    engine: Engine,
    state_file: Option<PathBuf>,
    index: TxIndex,
}

fn wall_clock_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn invalid(e: InvalidTxError) -> TxRejected {
    TxRejected::Invalid(e)
}

impl Chain {
    /// Opens the chain in `state_file` if it exists, else a new one with
    /// `root` as the registrar holding `root_balance` under `root_key`.
    pub fn open(
        chain_id: &str,
        state_file: Option<PathBuf>,
        root: &AccountId,
        root_key: &PublicKey,
        root_balance: u128,
    ) -> Result<Chain, StateFileError> {
        if let Some(path) = state_file.as_ref().filter(|p| p.exists()) {
            let state = ChainState::load(path)?;
            let index = TxIndex::build(&state);
            return Ok(Chain { state, engine: Engine::new(), state_file, index });
        }
        let mut salt = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
        let mut state = ChainState::genesis(chain_id, wall_clock_ns(), salt);
        state.root = Some(root.clone());
        let mut chain = Chain { state, engine: Engine::new(), state_file, index: TxIndex::default() };
        chain.insert_account(root, root_key, root_balance);
        chain.persist()?;
        Ok(chain)
    }

    /// Writes the state file, if there is one.
    pub fn persist(&self) -> Result<(), StateFileError> {
        match &self.state_file {
            Some(path) => self.state.save(path),
            None => Ok(()),
        }
    }

    fn insert_account(&mut self, id: &AccountId, key: &PublicKey, amount: u128) {
        let access = AccessKey {
            nonce: self.state.head().height.saturating_mul(1_000_000),
            permission: AccessKeyPermission::FullAccess,
        };
        let mut account = Account { amount, storage_usage: ACCOUNT_RECORD_BYTES, ..Account::default() };
        account.storage_usage += key_storage_bytes(key, &access);
        account.keys.insert(key.clone(), access);
        self.state.accounts.insert(id.clone(), account);
    }

    /// Creates a funded account directly, paid from the root (a faucet).
    /// Returns false if it exists or the root cannot pay.
    pub fn create_funded_account(
        &mut self,
        id: &AccountId,
        key: &PublicKey,
        amount: u128,
    ) -> Result<bool, StateFileError> {
        let Some(root) = self.state.root.clone() else { return Ok(false) };
        if self.state.accounts.contains_key(id) {
            return Ok(false);
        }
        let Some(root_account) = self.state.accounts.get_mut(&root) else { return Ok(false) };
        let Some(left) = root_account.amount.checked_sub(amount) else { return Ok(false) };
        root_account.amount = left;
        self.insert_account(id, key, amount);
        self.state.produce_block(1, self.elapsed_ns(), &hash(id.as_bytes()));
        self.persist()?;
        Ok(true)
    }

    fn elapsed_ns(&self) -> u64 {
        let head = self.state.head();
        wall_clock_ns().saturating_add(self.state.time_offset_ns).saturating_sub(head.timestamp_ns)
    }

    /// Skips `delta_height` blocks, advancing time by [`BLOCK_TIME_NS`] each
    /// (NEAR sandbox's `sandbox_fast_forward`): how tests reach the end of a
    /// challenge period.
    pub fn fast_forward(&mut self, delta_height: u64) -> Result<BlockInfo, StateFileError> {
        let advance = delta_height.saturating_mul(BLOCK_TIME_NS);
        self.state.time_offset_ns = self.state.time_offset_ns.saturating_add(advance);
        let elapsed = self.elapsed_ns();
        let block = self.state.produce_block(delta_height, elapsed, &CryptoHash::default());
        self.persist()?;
        Ok(block)
    }

    /// A finished transaction's outcome with the receipts it ran (nearcore's
    /// `FinalExecutionOutcomeWithReceiptView`), as JSON.
    pub fn tx_outcome(&self, tx_hash: &CryptoHash) -> Option<Value> {
        let mut outcome: Value =
            self.state.outcomes.get(tx_hash).and_then(|(_, json)| serde_json::from_str(json).ok())?;
        // Outcomes stored before receipts were kept have none to show.
        if let Some(obj) = outcome.as_object_mut() {
            obj.entry("receipts").or_insert_with(|| Value::Array(Vec::new()));
        }
        Some(outcome)
    }

    /// A receipt a kept transaction ran (`ReceiptView`), as JSON.
    pub fn receipt(&self, receipt_id: &CryptoHash) -> Option<Value> {
        let outcome = self.tx_outcome(&self.index.tx_of_receipt(receipt_id)?)?;
        let receipts = outcome.get("receipts")?.as_array()?;
        let id = receipt_id.to_string();
        receipts.iter().find(|r| r.get("receipt_id").and_then(Value::as_str) == Some(id.as_str())).cloned()
    }

    /// The outcome (with receipts) of the transaction included in `block_hash`,
    /// if that block holds one.
    pub fn tx_in_block(&self, block_hash: &CryptoHash) -> Option<Value> {
        self.tx_outcome(&self.index.tx_of_block(block_hash)?)
    }

    /// Checks and executes a signed transaction; returns its final outcome.
    pub fn apply(&mut self, signed: &SignedTransaction) -> Result<FinalExecutionOutcomeView, TxRejected> {
        let (tx_hash, size) = (signed.get_hash(), signed.get_size());
        if let Some(done) = self.tx_outcome(&tx_hash).and_then(|v| serde_json::from_value(v).ok()) {
            return Ok(done);
        }
        if size as usize > MAX_TRANSACTION_BYTES {
            return Err(invalid(InvalidTxError::TransactionSizeExceeded { size, limit: MAX_TRANSACTION_BYTES as u64 }));
        }
        let tx = &signed.transaction;
        let signer_id = tx.signer_id().clone();
        let receiver_id = tx.receiver_id().clone();
        // Like nearcore, a transaction to its own signer runs its first receipt
        // locally; that receipt is not stored or listed.
        let local = signer_id == receiver_id;
        let public_key = tx.public_key().clone();
        let TransactionNonce::Nonce { nonce } = tx.nonce() else {
            return Err(TxRejected::Unsupported("gas-key nonces".into()));
        };
        let head = self.state.head();
        let Some(signer) = self.state.accounts.get(&signer_id) else {
            return Err(invalid(InvalidTxError::SignerDoesNotExist { signer_id }));
        };
        let Some(key) = signer.keys.get(&public_key).cloned() else {
            return Err(invalid(InvalidTxError::InvalidAccessKeyError(InvalidAccessKeyError::AccessKeyNotFound {
                account_id: signer_id,
                public_key: Box::new(public_key),
            })));
        };
        if !signed.signature.verify(tx_hash.as_ref(), &public_key) {
            return Err(invalid(InvalidTxError::InvalidSignature));
        }
        if nonce <= key.nonce {
            return Err(invalid(InvalidTxError::InvalidNonce { tx_nonce: nonce, ak_nonce: key.nonce }));
        }
        let upper_bound = head.height.saturating_add(1).saturating_mul(1_000_000);
        if nonce > upper_bound {
            return Err(invalid(InvalidTxError::NonceTooLarge { tx_nonce: nonce, upper_bound }));
        }
        if self.state.block_by_hash(tx.block_hash()).is_none() {
            return Err(invalid(InvalidTxError::Expired));
        }
        let actions = tx.actions().to_vec();
        let sir = signer_id == receiver_id;
        let gas = action_gas(&self.engine.fees, &actions, sir)
            .ok_or_else(|| TxRejected::Unsupported(format!("one of these actions: {actions:?}")))?;
        let gas_cost = [gas.send, gas.exec, gas.attached]
            .iter()
            .try_fold(0u128, |sum, g| sum.checked_add(u128::from(*g) * GAS_PRICE))
            .ok_or(invalid(InvalidTxError::CostOverflow))?;
        let deposit = attached_deposit(&actions).ok_or(invalid(InvalidTxError::CostOverflow))?;
        let total_cost = gas_cost.checked_add(deposit).ok_or(invalid(InvalidTxError::CostOverflow))?;
        let mut key_after = key.clone();
        key_after.nonce = nonce;
        check_permission(&mut key_after, &signer_id, &public_key, &receiver_id, &actions, gas_cost)?;
        let balance = signer.amount;
        let Some(left) = balance.checked_sub(total_cost) else {
            return Err(invalid(InvalidTxError::NotEnoughBalance {
                signer_id,
                balance: Balance::from_yoctonear(balance),
                cost: Balance::from_yoctonear(total_cost),
            }));
        };
        let required = u128::from(signer.storage_usage).saturating_mul(self.engine.storage_byte_cost);
        if signer.code_hash.is_some() && left.saturating_add(signer.locked) < required {
            return Err(invalid(InvalidTxError::LackBalanceForState {
                signer_id,
                amount: Balance::from_yoctonear(required - left),
            }));
        }

        // Accepted: charge, then run in a new block.
        if let Some(signer) = self.state.accounts.get_mut(&signer_id) {
            signer.amount = left;
            signer.keys.insert(public_key.clone(), key_after);
        }
        let elapsed = self.elapsed_ns();
        let block = self.state.produce_block(1, elapsed, &tx_hash);
        let mut preimage = tx_hash.as_ref().to_vec();
        preimage.extend_from_slice(b"receipt");
        let first = Receipt {
            id: hash(&preimage),
            predecessor: signer_id.clone(),
            receiver: receiver_id,
            signer: signer_id.clone(),
            signer_key: public_key,
            gas_weights: Vec::new(),
            actions,
            input_data_ids: Vec::new(),
            output_data: Vec::new(),
        };
        let first_id = first.id;
        let (outcomes, receipts) = ReceiptRunner::new(&mut self.state, &self.engine, block).run(first);
        let spent: u64 = outcomes.iter().map(|o| o.gas_burnt).fold(0u64, u64::saturating_add);
        let refund = u128::from(gas.exec.saturating_add(gas.attached).saturating_sub(spent)) * GAS_PRICE;
        if let Some(signer) = self.state.accounts.get_mut(&signer_id) {
            signer.amount = signer.amount.saturating_add(refund);
        }
        let view = final_outcome(signed, tx_hash, &signer_id, gas.send, first_id, &outcomes, block.hash);
        let receipts = receipts.iter().filter(|r| !(local && r.id == first_id)).map(receipt_view).collect();
        let stored = FinalExecutionOutcomeWithReceiptView { final_outcome: view.clone(), receipts };
        let json = serde_json::to_value(&stored).unwrap_or_default();
        self.index.add(tx_hash, &json);
        self.state.record_outcome(tx_hash, signer_id, json.to_string());
        self.index.prune(&self.state);
        // A state file that cannot be written is reported by the server's next
        // `persist`; the transaction itself has happened.
        let _ = self.persist();
        Ok(view)
    }

    /// An account.
    pub fn account(&self, id: &AccountId) -> Result<&Account, QueryError> {
        self.state.accounts.get(id).ok_or_else(|| QueryError::UnknownAccount(id.clone()))
    }

    /// An access key.
    pub fn access_key(&self, id: &AccountId, key: &PublicKey) -> Result<AccessKey, QueryError> {
        self.account(id)?.keys.get(key).cloned().ok_or_else(|| QueryError::UnknownAccessKey(key.clone()))
    }

    /// An account's contract code.
    pub fn code(&self, id: &AccountId) -> Result<(CryptoHash, &[u8]), QueryError> {
        let account = self.account(id)?;
        let code_hash = account.code_hash.ok_or_else(|| QueryError::NoContractCode(id.clone()))?;
        let code = self.state.codes.get(&code_hash).ok_or_else(|| QueryError::NoContractCode(id.clone()))?;
        Ok((code_hash, code))
    }

    /// Runs a view method; returns (result bytes, logs).
    pub fn call_view(&self, id: &AccountId, method: &str, args: &[u8]) -> Result<(Vec<u8>, Vec<String>), QueryError> {
        let (code_hash, code) = self.code(id)?;
        let account = self.account(id)?;
        let code = std::sync::Arc::new(ContractCode::new(code.to_vec(), Some(code_hash)));
        let head = self.state.head();
        let key = PublicKey::empty(near_crypto::KeyType::ED25519);
        let context =
            vm_context(id, account, &head, id, id, &key, args, 0, VIEW_GAS, Vec::new(), Vec::new(), &head.hash, true);
        let mut data = account.data.clone();
        let (outcome, _) = self.engine.run(code, &mut data, method, &context).map_err(QueryError::ContractExecution)?;
        if let Some(error) = outcome.aborted {
            return Err(QueryError::ContractExecution(error.to_string()));
        }
        let value = match outcome.return_data {
            near_vm_runner::logic::types::ReturnData::Value(v) => v,
            _ => Vec::new(),
        };
        Ok((value, outcome.logs))
    }
}

/// Applies a function-call key's limits (receiver, methods, no deposit,
/// allowance) to a transaction; full-access keys pass.
fn check_permission(
    key: &mut AccessKey,
    signer_id: &AccountId,
    public_key: &PublicKey,
    receiver_id: &AccountId,
    actions: &[Action],
    gas_cost: u128,
) -> Result<(), TxRejected> {
    let permission = match &mut key.permission {
        AccessKeyPermission::FullAccess => return Ok(()),
        AccessKeyPermission::FunctionCall(p) => p,
        _ => return Err(TxRejected::Unsupported("gas keys".into())),
    };
    let deny = |e: InvalidAccessKeyError| invalid(InvalidTxError::InvalidAccessKeyError(e));
    let [Action::FunctionCall(call)] = actions else {
        return Err(deny(InvalidAccessKeyError::RequiresFullAccess));
    };
    if !call.deposit.is_zero() {
        return Err(deny(InvalidAccessKeyError::DepositWithFunctionCall));
    }
    if permission.receiver_id != receiver_id.as_str() {
        return Err(deny(InvalidAccessKeyError::ReceiverMismatch {
            tx_receiver: receiver_id.clone(),
            ak_receiver: permission.receiver_id.clone(),
        }));
    }
    if !permission.method_names.is_empty() && !permission.method_names.iter().any(|m| m == &call.method_name) {
        return Err(deny(InvalidAccessKeyError::MethodNameMismatch { method_name: call.method_name.clone() }));
    }
    if let Some(allowance) = permission.allowance {
        let Some(left) = allowance.as_yoctonear().checked_sub(gas_cost) else {
            return Err(deny(InvalidAccessKeyError::NotEnoughAllowance {
                account_id: signer_id.clone(),
                public_key: Box::new(public_key.clone()),
                allowance,
                cost: Balance::from_yoctonear(gas_cost),
            }));
        };
        permission.allowance = Some(Balance::from_yoctonear(left));
    }
    Ok(())
}

fn outcome_view(
    id: CryptoHash,
    executor: &AccountId,
    logs: Vec<String>,
    receipt_ids: Vec<CryptoHash>,
    gas_burnt: u64,
    status: ExecutionStatusView,
    block_hash: CryptoHash,
) -> ExecutionOutcomeWithIdView {
    ExecutionOutcomeWithIdView {
        proof: Vec::new(),
        block_hash,
        id,
        outcome: ExecutionOutcomeView {
            logs,
            receipt_ids,
            gas_burnt: Gas::from_gas(gas_burnt),
            tokens_burnt: Balance::from_yoctonear(u128::from(gas_burnt) * GAS_PRICE),
            executor_id: executor.clone(),
            status,
            metadata: ExecutionMetadataView::default(),
        },
    }
}

/// NEAR's final status: follow the transaction's receipt through any
/// receipts it handed its result to.
fn final_status(first: CryptoHash, outcomes: &[ReceiptOutcome]) -> FinalExecutionStatus {
    let mut at = first;
    for _ in 0..=outcomes.len() {
        let Some(o) = outcomes.iter().find(|o| o.id == at) else { return FinalExecutionStatus::Started };
        match &o.status {
            ExecutionStatusView::SuccessReceiptId(next) => at = *next,
            ExecutionStatusView::SuccessValue(v) => return FinalExecutionStatus::SuccessValue(v.clone()),
            ExecutionStatusView::Failure(e) => return FinalExecutionStatus::Failure(e.clone()),
            ExecutionStatusView::Unknown => return FinalExecutionStatus::Started,
        }
    }
    FinalExecutionStatus::Started
}

fn final_outcome(
    signed: &SignedTransaction,
    tx_hash: CryptoHash,
    signer: &AccountId,
    conversion_gas: u64,
    first: CryptoHash,
    outcomes: &[ReceiptOutcome],
    block_hash: CryptoHash,
) -> FinalExecutionOutcomeView {
    let transaction_outcome = outcome_view(
        tx_hash,
        signer,
        Vec::new(),
        vec![first],
        conversion_gas,
        ExecutionStatusView::SuccessReceiptId(first),
        block_hash,
    );
    let receipts_outcome = outcomes
        .iter()
        .map(|o| {
            outcome_view(
                o.id,
                &o.executor,
                o.logs.clone(),
                o.receipt_ids.clone(),
                o.gas_burnt,
                o.status.clone(),
                block_hash,
            )
        })
        .collect();
    FinalExecutionOutcomeView {
        status: final_status(first, outcomes),
        transaction: SignedTransactionView::from(signed.clone()),
        transaction_outcome,
        receipts_outcome,
    }
}
