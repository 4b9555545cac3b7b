//! Receipt execution: the actions of one receipt applied to the receiver's
//! account, contract calls run in NEAR's VM, and the receipts a contract
//! creates scheduled with NEAR's data-dependency rules (a callback runs once
//! every promise it waits on has a result; a receipt that returns a promise
//! hands its result over to that promise).
//!
//! A receipt is atomic: if any action fails, the receiver's account is
//! restored, the deposits go back to the predecessor and the receipts it
//! created are dropped. Unused gas is refunded to the signer once the whole
//! transaction has finished (see [`crate::chain`]).
//!
//! Unlike NEAR, the devnet pays contracts no share of the gas they burn (the
//! 30% developer reward): a contract's balance moves only by the money it
//! receives and sends, so tests can account for it to the yoctoNEAR.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use near_crypto::PublicKey;
use near_parameters::RuntimeFeesConfig;
use near_primitives::account::{AccessKey, AccessKeyPermission, FunctionCallPermission};
use near_primitives::action::{
    AddKeyAction, CreateAccountAction, DeleteAccountAction, DeleteKeyAction, DeployContractAction, FunctionCallAction,
    TransferAction,
};
use near_primitives::errors::{ActionError, ActionErrorKind, FunctionCallError, TxExecutionError};
use near_primitives::hash::{hash, CryptoHash};
use near_primitives::transaction::Action;
use near_primitives::types::{AccountId, Balance, Gas};
use near_primitives::views::ExecutionStatusView;
use near_vm_runner::logic::mocks::mock_external::{MockAction, MockedExternal};
use near_vm_runner::logic::types::{PromiseResult, ReturnData};
use near_vm_runner::logic::{Config, VMContext};
use near_vm_runner::{ContractCode, MockContractRuntimeCache};

use crate::fees::exec_gas;
use crate::state::{key_storage_bytes, Account, BlockInfo, ChainState, ACCOUNT_RECORD_BYTES};

/// Most receipts one transaction may cause; beyond it the rest fail (gas
/// bounds this already; the cap keeps a devnet bug from looping forever).
pub const MAX_RECEIPTS_PER_TX: usize = 1_000;
/// Accounts without a contract using at most this many bytes need no balance
/// for storage (NEAR's zero-balance accounts).
const ZERO_BALANCE_ACCOUNT_BYTES: u64 = 770;

/// A receipt waiting to execute.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// Receipt id.
    pub id: CryptoHash,
    /// Who sent it.
    pub predecessor: AccountId,
    /// Whose account it runs on.
    pub receiver: AccountId,
    /// The transaction's signer.
    pub signer: AccountId,
    /// The key that signed the transaction.
    pub signer_key: PublicKey,
    /// What to do.
    pub actions: Vec<Action>,
    /// Gas weights of the function calls, for sharing a contract's unused gas.
    pub gas_weights: Vec<u64>,
    /// Results this receipt waits for, in promise order.
    pub input_data_ids: Vec<CryptoHash>,
    /// Where this receipt's result goes: (data id, receiving account).
    pub output_data: Vec<(CryptoHash, AccountId)>,
}

/// What executing one receipt did.
#[derive(Clone, Debug)]
pub struct ReceiptOutcome {
    /// The receipt.
    pub id: CryptoHash,
    /// Its receiver.
    pub executor: AccountId,
    /// Logs written by the contract.
    pub logs: Vec<String>,
    /// Receipts it created.
    pub receipt_ids: Vec<CryptoHash>,
    /// Gas burnt: execution fees plus the VM's burnt gas.
    pub gas_burnt: u64,
    /// The result.
    pub status: ExecutionStatusView,
}

/// The VM configuration and compiled-code cache shared by all calls.
pub struct Engine {
    /// Wasm costs and limits.
    pub config: Arc<Config>,
    /// Action fees.
    pub fees: Arc<RuntimeFeesConfig>,
    /// yoctoNEAR an account must hold per byte of storage.
    pub storage_byte_cost: u128,
    cache: MockContractRuntimeCache,
}

impl Engine {
    /// The devnet's engine (see [`crate::fees::runtime_config`]).
    pub fn new() -> Engine {
        let (config, fees, storage_byte_cost) = crate::fees::runtime_config();
        Engine { config, fees, storage_byte_cost, cache: MockContractRuntimeCache::default() }
    }

    /// Runs `method` of `account`'s contract. `data` is the account's storage,
    /// lent to the VM and handed back (changed only if the call succeeded).
    pub(crate) fn run(
        &self,
        code: Arc<ContractCode>,
        data: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        method: &str,
        context: &VMContext,
    ) -> Result<(near_vm_runner::logic::VMOutcome, Vec<MockAction>), String> {
        let mut ext = MockedExternal::with_code_and_hash(*code.hash(), ContractCode::clone(&code));
        ext.fake_trie = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let gas_counter = context.make_gas_counter(&self.config);
        let prepared = near_vm_runner::prepare(&ext, self.config.clone(), Some(&self.cache), gas_counter, method);
        let outcome = near_vm_runner::run(prepared, &mut ext, context, self.fees.clone())
            .map_err(|e| format!("VM failure: {e:?}"))?;
        if outcome.aborted.is_none() && context.view_config.is_none() {
            *data = ext.fake_trie.into_iter().collect();
        }
        Ok((outcome, ext.action_log))
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

/// Builds the VM context for a call on `receiver`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn vm_context(
    receiver: &AccountId,
    account: &Account,
    block: &BlockInfo,
    predecessor: &AccountId,
    signer: &AccountId,
    signer_key: &PublicKey,
    args: &[u8],
    deposit: u128,
    gas: u64,
    promise_results: Vec<PromiseResult>,
    output_receivers: Vec<AccountId>,
    seed: &CryptoHash,
    view: bool,
) -> VMContext {
    VMContext {
        current_account_id: receiver.clone(),
        signer_account_id: signer.clone(),
        signer_account_pk: borsh::to_vec(signer_key).unwrap_or_default(),
        predecessor_account_id: predecessor.clone(),
        refund_to_account_id: predecessor.clone(),
        input: std::rc::Rc::from(args.to_vec()),
        promise_results: promise_results.into(),
        block_height: block.height,
        block_timestamp: block.timestamp_ns,
        epoch_height: block.height / 43_200,
        account_balance: Balance::from_yoctonear(account.amount),
        account_locked_balance: Balance::from_yoctonear(account.locked),
        storage_usage: account.storage_usage,
        account_contract: match account.code_hash {
            Some(h) => near_primitives_core::account::AccountContract::Local(h),
            None => near_primitives_core::account::AccountContract::None,
        },
        attached_deposit: Balance::from_yoctonear(deposit),
        prepaid_gas: Gas::from_gas(gas),
        random_seed: seed.as_ref().to_vec(),
        view_config: view.then_some(near_primitives_core::config::ViewConfig { max_gas_burnt: Gas::from_gas(gas) }),
        output_data_receivers: output_receivers,
    }
}

/// The random seed a receipt's contract call sees: its block's hash (which
/// chains back to the devnet's salted genesis) and the receipt's id, so it
/// differs per receipt, per block and per devnet, as NEAR's does.
fn random_seed(block: &BlockInfo, receipt: &CryptoHash) -> CryptoHash {
    let mut preimage = block.hash.as_ref().to_vec();
    preimage.extend_from_slice(receipt.as_ref());
    hash(&preimage)
}

/// Total NEAR a receipt's actions carry (transfers and call deposits).
pub fn attached_deposit(actions: &[Action]) -> Option<u128> {
    actions.iter().try_fold(0u128, |sum, a| match a {
        Action::Transfer(t) => sum.checked_add(t.deposit.as_yoctonear()),
        Action::FunctionCall(f) => sum.checked_add(f.deposit.as_yoctonear()),
        _ => Some(sum),
    })
}

/// 64 lowercase hex characters: a NEAR implicit account, created by a transfer.
fn implicit_key(account: &AccountId) -> Option<PublicKey> {
    let s = account.as_str();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        bytes[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(PublicKey::ED25519(near_crypto::ED25519PublicKey(bytes)))
}

fn action_error(index: usize, kind: ActionErrorKind) -> TxExecutionError {
    TxExecutionError::ActionError(ActionError { index: Some(index as u64), kind })
}

fn call_error(index: usize, message: String) -> TxExecutionError {
    action_error(index, ActionErrorKind::FunctionCallError(FunctionCallError::ExecutionError(message)))
}

/// Executes the receipts of one transaction in dependency order.
pub struct ReceiptRunner<'a> {
    state: &'a mut ChainState,
    engine: &'a Engine,
    block: BlockInfo,
    pending: VecDeque<Receipt>,
    data: HashMap<CryptoHash, Option<Vec<u8>>>,
    /// Outcomes in execution order.
    pub outcomes: Vec<ReceiptOutcome>,
    /// The receipts executed, in the same order, as they were when they ran
    /// (what `EXPERIMENTAL_tx_status` and `EXPERIMENTAL_receipt` show).
    pub executed: Vec<Receipt>,
}

/// What the last action of a receipt produced.
enum Produced {
    Value(Vec<u8>),
    /// The result will be that of this new receipt.
    Receipt(usize),
}

impl<'a> ReceiptRunner<'a> {
    /// A runner over `state` in `block`.
    pub fn new(state: &'a mut ChainState, engine: &'a Engine, block: BlockInfo) -> Self {
        ReceiptRunner {
            state,
            engine,
            block,
            pending: VecDeque::new(),
            data: HashMap::new(),
            outcomes: Vec::new(),
            executed: Vec::new(),
        }
    }

    /// Runs `first` and everything it causes; returns the outcomes and the
    /// receipts they belong to, in execution order.
    pub fn run(mut self, first: Receipt) -> (Vec<ReceiptOutcome>, Vec<Receipt>) {
        self.pending.push_back(first);
        let mut executed = 0usize;
        while let Some(pos) =
            self.pending.iter().position(|r| r.input_data_ids.iter().all(|d| self.data.contains_key(d)))
        {
            let Some(receipt) = self.pending.remove(pos) else { break };
            self.executed.push(receipt.clone());
            executed += 1;
            let outcome = if executed > MAX_RECEIPTS_PER_TX {
                self.fail_receipt(&receipt, call_error(0, "devnet: too many receipts in one transaction".into()))
            } else {
                self.execute(receipt)
            };
            self.outcomes.push(outcome);
        }
        // A receipt still waiting here waits on data that can never arrive (a
        // devnet bug or an unsupported feature such as yield): fail it visibly.
        while let Some(receipt) = self.pending.pop_front() {
            self.executed.push(receipt.clone());
            let outcome = self.fail_receipt(&receipt, call_error(0, "devnet: receipt input never arrived".into()));
            self.outcomes.push(outcome);
        }
        (self.outcomes, self.executed)
    }

    fn resolve(&mut self, output: &[(CryptoHash, AccountId)], value: Option<Vec<u8>>) {
        for (data_id, _) in output {
            self.data.insert(*data_id, value.clone());
        }
    }

    fn fail_receipt(&mut self, receipt: &Receipt, error: TxExecutionError) -> ReceiptOutcome {
        self.resolve(&receipt.output_data, None);
        self.refund_deposit(receipt);
        ReceiptOutcome {
            id: receipt.id,
            executor: receipt.receiver.clone(),
            logs: Vec::new(),
            receipt_ids: Vec::new(),
            gas_burnt: exec_gas(&self.engine.fees, &receipt.actions),
            status: ExecutionStatusView::Failure(error),
        }
    }

    /// Gives a failed receipt's deposits back to whoever sent them.
    fn refund_deposit(&mut self, receipt: &Receipt) {
        let amount = attached_deposit(&receipt.actions).unwrap_or(0);
        if amount == 0 {
            return;
        }
        let to =
            if self.state.accounts.contains_key(&receipt.predecessor) { &receipt.predecessor } else { &receipt.signer };
        if let Some(account) = self.state.accounts.get_mut(to) {
            account.amount = account.amount.saturating_add(amount);
        }
    }

    fn execute(&mut self, receipt: Receipt) -> ReceiptOutcome {
        let before = self.state.accounts.get(&receipt.receiver).cloned();
        let mut logs = Vec::new();
        let mut created: Vec<Receipt> = Vec::new();
        let mut vm_burnt = 0u64;
        let result = self.apply_actions(&receipt, &mut logs, &mut created, &mut vm_burnt);
        let result = result.and_then(|p| self.check_storage(&receipt.receiver).map(|()| p));
        let fee_gas = exec_gas(&self.engine.fees, &receipt.actions);
        let gas_burnt = fee_gas.saturating_add(vm_burnt);
        match result {
            Ok(produced) => {
                let status = match produced {
                    Produced::Value(v) => {
                        self.resolve(&receipt.output_data, Some(v.clone()));
                        ExecutionStatusView::SuccessValue(v)
                    }
                    Produced::Receipt(i) => match created.get_mut(i) {
                        Some(child) => {
                            child.output_data.extend(receipt.output_data.iter().cloned());
                            ExecutionStatusView::SuccessReceiptId(child.id)
                        }
                        None => {
                            self.resolve(&receipt.output_data, Some(Vec::new()));
                            ExecutionStatusView::SuccessValue(Vec::new())
                        }
                    },
                };
                let receipt_ids = created.iter().map(|r| r.id).collect();
                self.pending.extend(created);
                ReceiptOutcome { id: receipt.id, executor: receipt.receiver, logs, receipt_ids, gas_burnt, status }
            }
            Err(error) => {
                match before {
                    Some(account) => self.state.accounts.insert(receipt.receiver.clone(), account),
                    None => self.state.accounts.remove(&receipt.receiver),
                };
                let mut outcome = self.fail_receipt(&receipt, error);
                outcome.logs = logs;
                outcome.gas_burnt = gas_burnt;
                outcome
            }
        }
    }

    fn check_storage(&self, account_id: &AccountId) -> Result<(), TxExecutionError> {
        let Some(account) = self.state.accounts.get(account_id) else { return Ok(()) };
        if account.code_hash.is_none() && account.storage_usage <= ZERO_BALANCE_ACCOUNT_BYTES {
            return Ok(());
        }
        let required = u128::from(account.storage_usage).saturating_mul(self.engine.storage_byte_cost);
        let have = account.amount.saturating_add(account.locked);
        if have >= required {
            return Ok(());
        }
        Err(TxExecutionError::ActionError(ActionError {
            index: None,
            kind: ActionErrorKind::LackBalanceForState {
                account_id: account_id.clone(),
                amount: Balance::from_yoctonear(required - have),
            },
        }))
    }

    fn apply_actions(
        &mut self,
        receipt: &Receipt,
        logs: &mut Vec<String>,
        created: &mut Vec<Receipt>,
        vm_burnt: &mut u64,
    ) -> Result<Produced, TxExecutionError> {
        let receiver = &receipt.receiver;
        if !self.state.accounts.contains_key(receiver) {
            let creates = matches!(receipt.actions.first(), Some(Action::CreateAccount(_)));
            match implicit_key(receiver) {
                Some(key) if !creates && matches!(receipt.actions.as_slice(), [Action::Transfer(_)]) => {
                    let mut account = Account { storage_usage: ACCOUNT_RECORD_BYTES, ..Account::default() };
                    let access = AccessKey::full_access();
                    account.storage_usage += key_storage_bytes(&key, &access);
                    account.keys.insert(key, access);
                    self.state.accounts.insert(receiver.clone(), account);
                }
                _ if creates => {}
                _ => {
                    return Err(action_error(0, ActionErrorKind::AccountDoesNotExist { account_id: receiver.clone() }))
                }
            }
        }
        let mut produced = Produced::Value(Vec::new());
        for (index, action) in receipt.actions.iter().enumerate() {
            produced = Produced::Value(Vec::new());
            match action {
                Action::CreateAccount(CreateAccountAction {}) => self.create_account(index, receipt)?,
                Action::DeployContract(DeployContractAction { code }) => {
                    self.require_self(index, receipt)?;
                    let code_hash = hash(code);
                    self.state.codes.entry(code_hash).or_insert_with(|| code.clone());
                    let old_len = self.code_len(receiver);
                    let account = self.account_mut(index, receiver)?;
                    account.storage_usage =
                        account.storage_usage.saturating_sub(old_len).saturating_add(code.len() as u64);
                    account.code_hash = Some(code_hash);
                }
                Action::FunctionCall(call) => {
                    produced = self.function_call(index, receipt, call, logs, created, vm_burnt)?;
                }
                Action::Transfer(TransferAction { deposit }) => {
                    let account = self.account_mut(index, receiver)?;
                    account.amount = account
                        .amount
                        .checked_add(deposit.as_yoctonear())
                        .ok_or_else(|| call_error(index, "balance overflow".into()))?;
                }
                Action::AddKey(add) => {
                    self.require_self(index, receipt)?;
                    let nonce = self.block.height.saturating_sub(1).saturating_mul(1_000_000);
                    let AddKeyAction { public_key, access_key } = add.as_ref();
                    let account = self.account_mut(index, receiver)?;
                    if account.keys.contains_key(public_key) {
                        return Err(action_error(
                            index,
                            ActionErrorKind::AddKeyAlreadyExists {
                                account_id: receiver.clone(),
                                public_key: Box::new(public_key.clone()),
                            },
                        ));
                    }
                    let key = AccessKey { nonce, permission: access_key.permission.clone() };
                    account.storage_usage += key_storage_bytes(public_key, &key);
                    account.keys.insert(public_key.clone(), key);
                }
                Action::DeleteKey(del) => {
                    self.require_self(index, receipt)?;
                    let DeleteKeyAction { public_key } = del.as_ref();
                    let account = self.account_mut(index, receiver)?;
                    let Some(key) = account.keys.remove(public_key) else {
                        return Err(action_error(
                            index,
                            ActionErrorKind::DeleteKeyDoesNotExist {
                                account_id: receiver.clone(),
                                public_key: Box::new(public_key.clone()),
                            },
                        ));
                    };
                    account.storage_usage = account.storage_usage.saturating_sub(key_storage_bytes(public_key, &key));
                }
                Action::DeleteAccount(DeleteAccountAction { beneficiary_id }) => {
                    self.require_self(index, receipt)?;
                    let account = self.state.accounts.remove(receiver).unwrap_or_default();
                    let payout = account.amount.saturating_add(account.locked);
                    created.push(self.new_receipt(
                        receipt,
                        created.len(),
                        beneficiary_id.clone(),
                        vec![transfer(payout)],
                    ));
                }
                other => {
                    return Err(call_error(index, format!("the devnet does not support this action: {other:?}")));
                }
            }
        }
        Ok(produced)
    }

    fn code_len(&self, account: &AccountId) -> u64 {
        let hash = self.state.accounts.get(account).and_then(|a| a.code_hash);
        hash.and_then(|h| self.state.codes.get(&h)).map(|c| c.len() as u64).unwrap_or(0)
    }

    fn account_mut(&mut self, index: usize, id: &AccountId) -> Result<&mut Account, TxExecutionError> {
        self.state
            .accounts
            .get_mut(id)
            .ok_or_else(|| action_error(index, ActionErrorKind::AccountDoesNotExist { account_id: id.clone() }))
    }

    fn require_self(&self, index: usize, receipt: &Receipt) -> Result<(), TxExecutionError> {
        let created_here = matches!(receipt.actions.first(), Some(Action::CreateAccount(_)));
        if receipt.predecessor == receipt.receiver || created_here {
            return Ok(());
        }
        Err(action_error(
            index,
            ActionErrorKind::ActorNoPermission {
                account_id: receipt.receiver.clone(),
                actor_id: receipt.predecessor.clone(),
            },
        ))
    }

    fn create_account(&mut self, index: usize, receipt: &Receipt) -> Result<(), TxExecutionError> {
        let id = &receipt.receiver;
        if self.state.accounts.contains_key(id) {
            return Err(action_error(index, ActionErrorKind::AccountAlreadyExists { account_id: id.clone() }));
        }
        // A sub-account of the predecessor, or anything the devnet's root (the
        // registrar) creates.
        let allowed =
            id.is_sub_account_of(&receipt.predecessor) || self.state.root.as_ref() == Some(&receipt.predecessor);
        if !allowed {
            return Err(action_error(
                index,
                ActionErrorKind::CreateAccountNotAllowed {
                    account_id: id.clone(),
                    predecessor_id: receipt.predecessor.clone(),
                },
            ));
        }
        self.state.accounts.insert(id.clone(), Account { storage_usage: ACCOUNT_RECORD_BYTES, ..Account::default() });
        Ok(())
    }

    fn new_receipt(&self, parent: &Receipt, position: usize, receiver: AccountId, actions: Vec<Action>) -> Receipt {
        let mut preimage = parent.id.as_ref().to_vec();
        preimage.extend_from_slice(b"receipt");
        preimage.extend_from_slice(&(position as u64).to_le_bytes());
        Receipt {
            id: hash(&preimage),
            predecessor: parent.receiver.clone(),
            receiver,
            signer: parent.signer.clone(),
            signer_key: parent.signer_key.clone(),
            gas_weights: Vec::new(),
            actions,
            input_data_ids: Vec::new(),
            output_data: Vec::new(),
        }
    }

    fn function_call(
        &mut self,
        index: usize,
        receipt: &Receipt,
        call: &FunctionCallAction,
        logs: &mut Vec<String>,
        created: &mut Vec<Receipt>,
        vm_burnt: &mut u64,
    ) -> Result<Produced, TxExecutionError> {
        let receiver = receipt.receiver.clone();
        let deposit = call.deposit.as_yoctonear();
        // The VM adds the attached deposit to the balance it reports.
        let account = self.account_mut(index, &receiver)?;
        if account.amount.checked_add(deposit).is_none() {
            return Err(call_error(index, "balance overflow".into()));
        }
        let Some(code) = account
            .code_hash
            .and_then(|h| self.state.codes.get(&h))
            .map(|c| Arc::new(ContractCode::new(c.clone(), None)))
        else {
            return Err(action_error(
                index,
                ActionErrorKind::FunctionCallError(FunctionCallError::CompilationError(
                    near_primitives::errors::CompilationError::CodeDoesNotExist { account_id: receiver.clone() },
                )),
            ));
        };
        let promise_results = receipt
            .input_data_ids
            .iter()
            .map(|d| match self.data.get(d) {
                Some(Some(v)) => PromiseResult::Successful(v.clone().into()),
                _ => PromiseResult::Failed,
            })
            .collect();
        let account = self.state.accounts.get(&receiver).cloned().unwrap_or_default();
        let context = vm_context(
            &receiver,
            &account,
            &self.block,
            &receipt.predecessor,
            &receipt.signer,
            &receipt.signer_key,
            &call.args,
            deposit,
            call.gas.as_gas(),
            promise_results,
            receipt.output_data.iter().map(|(_, r)| r.clone()).collect(),
            &random_seed(&self.block, &receipt.id),
            false,
        );
        let mut data = account.data.clone();
        let (outcome, action_log) =
            self.engine.run(code, &mut data, &call.method_name, &context).map_err(|e| call_error(index, e))?;
        *vm_burnt = vm_burnt.saturating_add(outcome.burnt_gas.as_gas());
        logs.extend(outcome.logs.iter().cloned());
        if let Some(error) = &outcome.aborted {
            return Err(call_error(index, error.to_string()));
        }
        if let Some(account) = self.state.accounts.get_mut(&receiver) {
            account.amount = outcome.balance.as_yoctonear();
            account.storage_usage = outcome.storage_usage;
            account.data = data;
        }
        let first_new = created.len();
        self.schedule(receipt, &action_log, created, index)?;
        let unused = call.gas.as_gas().saturating_sub(outcome.used_gas.as_gas());
        distribute_unused_gas(&mut created[first_new..], unused);
        Ok(match outcome.return_data {
            ReturnData::Value(v) => Produced::Value(v),
            ReturnData::ReceiptIndex(i) => {
                let position = action_log
                    .iter()
                    .take(i as usize)
                    .filter(|a| matches!(a, MockAction::CreateReceipt { .. }))
                    .count();
                Produced::Receipt(first_new + position)
            }
            ReturnData::None => Produced::Value(Vec::new()),
        })
    }

    /// Turns the VM's action log into receipts with their data dependencies.
    fn schedule(
        &self,
        parent: &Receipt,
        log: &[MockAction],
        created: &mut Vec<Receipt>,
        index: usize,
    ) -> Result<(), TxExecutionError> {
        let first_new = created.len();
        // Action-log position of each CreateReceipt → slot in `created`.
        let mut slot_of: HashMap<u64, usize> = HashMap::new();
        for (position, action) in log.iter().enumerate() {
            let slot = |idx: &u64| {
                slot_of.get(idx).copied().ok_or_else(|| call_error(index, "devnet: unknown receipt index".into()))
            };
            match action {
                MockAction::CreateReceipt { receipt_indices, receiver_id } => {
                    let mut receipt = self.new_receipt(parent, created.len(), receiver_id.clone(), Vec::new());
                    for dep in receipt_indices {
                        let dep_slot = slot(dep)?;
                        let mut preimage = receipt.id.as_ref().to_vec();
                        preimage.extend_from_slice(&(dep_slot as u64).to_le_bytes());
                        let data_id = hash(&preimage);
                        receipt.input_data_ids.push(data_id);
                        created[dep_slot].output_data.push((data_id, receiver_id.clone()));
                    }
                    slot_of.insert(position as u64, created.len());
                    created.push(receipt);
                }
                MockAction::FunctionCallWeight {
                    receipt_index,
                    method_name,
                    args,
                    attached_deposit,
                    prepaid_gas,
                    gas_weight,
                } => {
                    let s = slot(receipt_index)?;
                    created[s].actions.push(Action::FunctionCall(Box::new(FunctionCallAction {
                        method_name: String::from_utf8_lossy(method_name).into_owned(),
                        args: args.clone(),
                        gas: *prepaid_gas,
                        deposit: *attached_deposit,
                    })));
                    created[s].gas_weights.push(gas_weight.0);
                }
                MockAction::Transfer { receipt_index, deposit } => {
                    let s = slot(receipt_index)?;
                    created[s].actions.push(transfer(deposit.as_yoctonear()));
                }
                MockAction::CreateAccount { receipt_index } => {
                    let s = slot(receipt_index)?;
                    created[s].actions.push(Action::CreateAccount(CreateAccountAction {}));
                }
                MockAction::DeployContract { receipt_index, code } => {
                    let s = slot(receipt_index)?;
                    created[s].actions.push(Action::DeployContract(DeployContractAction { code: code.clone() }));
                }
                MockAction::DeleteAccount { receipt_index, beneficiary_id } => {
                    let s = slot(receipt_index)?;
                    created[s]
                        .actions
                        .push(Action::DeleteAccount(DeleteAccountAction { beneficiary_id: beneficiary_id.clone() }));
                }
                MockAction::DeleteKey { receipt_index, public_key } => {
                    let s = slot(receipt_index)?;
                    created[s]
                        .actions
                        .push(Action::DeleteKey(Box::new(DeleteKeyAction { public_key: public_key.clone() })));
                }
                MockAction::AddKeyWithFullAccess { receipt_index, public_key, nonce } => {
                    let s = slot(receipt_index)?;
                    let access_key = AccessKey { nonce: *nonce, permission: AccessKeyPermission::FullAccess };
                    created[s]
                        .actions
                        .push(Action::AddKey(Box::new(AddKeyAction { public_key: public_key.clone(), access_key })));
                }
                MockAction::AddKeyWithFunctionCall {
                    receipt_index,
                    public_key,
                    nonce,
                    allowance,
                    receiver_id,
                    method_names,
                } => {
                    let s = slot(receipt_index)?;
                    let permission = AccessKeyPermission::FunctionCall(FunctionCallPermission {
                        allowance: *allowance,
                        receiver_id: receiver_id.to_string(),
                        method_names: method_names.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect(),
                    });
                    let access_key = AccessKey { nonce: *nonce, permission };
                    created[s]
                        .actions
                        .push(Action::AddKey(Box::new(AddKeyAction { public_key: public_key.clone(), access_key })));
                }
                other => {
                    return Err(call_error(
                        index,
                        format!("the devnet does not support this promise action: {other:?}"),
                    ));
                }
            }
        }
        debug_assert!(created.len() >= first_new);
        Ok(())
    }
}

fn transfer(amount: u128) -> Action {
    Action::Transfer(TransferAction { deposit: Balance::from_yoctonear(amount) })
}

/// Shares a contract's unused gas among the function calls it scheduled, in
/// proportion to their weights; the remainder goes to the last weighted call
/// (NEAR's rule).
fn distribute_unused_gas(receipts: &mut [Receipt], unused: u64) {
    let total: u128 = receipts.iter().flat_map(|r| r.gas_weights.iter()).map(|w| u128::from(*w)).sum();
    if total == 0 || unused == 0 {
        return;
    }
    let mut given = 0u64;
    let mut last: Option<(usize, usize)> = None;
    for (ri, receipt) in receipts.iter_mut().enumerate() {
        let mut call_index = 0usize;
        for (ai, action) in receipt.actions.iter_mut().enumerate() {
            if let Action::FunctionCall(call) = action {
                let weight = receipt.gas_weights.get(call_index).copied().unwrap_or(0);
                call_index += 1;
                if weight == 0 {
                    continue;
                }
                let share = (u128::from(unused) * u128::from(weight) / total) as u64;
                call.gas = Gas::from_gas(call.gas.as_gas().saturating_add(share));
                given = given.saturating_add(share);
                last = Some((ri, ai));
            }
        }
    }
    if let Some((ri, ai)) = last {
        if let Some(Action::FunctionCall(call)) = receipts[ri].actions.get_mut(ai) {
            call.gas = Gas::from_gas(call.gas.as_gas().saturating_add(unused.saturating_sub(given)));
        }
    }
}
