//! One contract account executed in NEAR's VM with real gas accounting.
//!
//! State lives in `near-vm-runner`'s `MockedExternal` and is rolled back when
//! a call aborts, as the chain would. Receipts a call creates are recorded
//! (`receipts`) but not executed here: the caller runs transfers and callbacks.

use std::sync::Arc;

use near_parameters::RuntimeFeesConfig;
use near_primitives_core::types::{AccountId, Balance, Gas};
use near_vm_runner::logic::mocks::mock_external::{MockAction, MockedExternal};
use near_vm_runner::logic::types::{PromiseResult, ReturnData};
use near_vm_runner::logic::{Config, VMContext};
use near_vm_runner::{ContractCode, MockContractRuntimeCache};

/// Gas attached to every call (the protocol maximum for one function call).
pub const CALL_GAS: u64 = 300_000_000_000_000;

/// What one call did.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    /// Gas burnt by this execution (wasm, host functions, receipts created).
    pub burnt_gas: u64,
    /// Logs written.
    pub logs: Vec<String>,
    /// The value returned, if any.
    pub value: Option<Vec<u8>>,
    /// The panic or VM error, if the call aborted (state was rolled back).
    pub error: Option<String>,
    /// Account storage after the call, in bytes.
    pub storage_usage: u64,
    /// Receipts the call created: (receiver, actions as debug text).
    pub receipts: Vec<MockAction>,
}

impl CallOutcome {
    /// The returned value parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        self.value.as_deref().and_then(|v| serde_json::from_slice(v).ok()).unwrap_or(serde_json::Value::Null)
    }
}

/// Why a call could not even start.
#[derive(Debug)]
pub enum VmError {
    /// An account id did not parse.
    BadAccount(String),
    /// The VM failed internally (not a contract error).
    Runner(String),
}

impl std::fmt::Display for VmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmError::BadAccount(a) => write!(f, "invalid account id {a}"),
            VmError::Runner(e) => write!(f, "VM failure: {e}"),
        }
    }
}

impl std::error::Error for VmError {}

/// Outcome of an earlier receipt, handed to a callback.
#[derive(Clone, Debug)]
pub enum PriorResult {
    /// The receipt succeeded with this value.
    Success(Vec<u8>),
    /// The receipt failed.
    Failed,
}

/// One deployed contract and its state.
pub struct ContractVm {
    account: AccountId,
    config: Arc<Config>,
    fees: Arc<RuntimeFeesConfig>,
    ext: MockedExternal,
    /// The contract compiled once: without a cache near-vm-runner compiles
    /// the wasm again for every call (tens of milliseconds of CPU each).
    compiled: MockContractRuntimeCache,
    storage_usage: u64,
    balance: Balance,
    /// Block height seen by the next call.
    pub block_height: u64,
    /// Block timestamp (ns) seen by the next call.
    pub block_timestamp_ns: u64,
    /// The block's random seed seen by the next call.
    pub random_seed: [u8; 32],
}

fn account(s: &str) -> Result<AccountId, VmError> {
    s.parse().map_err(|_| VmError::BadAccount(s.to_owned()))
}

impl ContractVm {
    /// Deploys `wasm` on `account_id` with the protocol-88 runtime configuration.
    pub fn deploy(account_id: &str, wasm: Vec<u8>) -> Result<Self, VmError> {
        let (config, fees, _) = crate::fees::runtime_config();
        let code_len = wasm.len() as u64;
        Ok(ContractVm {
            account: account(account_id)?,
            config,
            fees,
            ext: MockedExternal::with_code(ContractCode::new(wasm, None)),
            compiled: MockContractRuntimeCache::default(),
            // An account's record plus its code count toward storage.
            storage_usage: 100 + code_len,
            balance: Balance::from_near(1_000),
            block_height: 1,
            block_timestamp_ns: 1_700_000_000_000_000_000,
            random_seed: [0; 32],
        })
    }

    /// Storage the account uses now, in bytes.
    pub fn storage_usage(&self) -> u64 {
        self.storage_usage
    }

    /// Calls `method` with JSON `args` as `predecessor`, attaching `deposit` yocto.
    pub fn call(
        &mut self,
        method: &str,
        args: &serde_json::Value,
        predecessor: &str,
        deposit: u128,
    ) -> Result<CallOutcome, VmError> {
        self.execute(method, args, predecessor, deposit, Vec::new(), false)
    }

    /// Calls a callback `method` as the contract itself, with the results of the receipts it waited on.
    pub fn callback(
        &mut self,
        method: &str,
        args: &serde_json::Value,
        results: Vec<PriorResult>,
    ) -> Result<CallOutcome, VmError> {
        let me = self.account.to_string();
        self.execute(method, args, &me, 0, results, false)
    }

    /// A view call (no state change is allowed by the VM).
    pub fn view(&mut self, method: &str, args: &serde_json::Value) -> Result<CallOutcome, VmError> {
        let me = self.account.to_string();
        self.execute(method, args, &me, 0, Vec::new(), true)
    }

    fn execute(
        &mut self,
        method: &str,
        args: &serde_json::Value,
        predecessor: &str,
        deposit: u128,
        results: Vec<PriorResult>,
        view: bool,
    ) -> Result<CallOutcome, VmError> {
        let predecessor = account(predecessor)?;
        let promise_results: Vec<PromiseResult> = results
            .into_iter()
            .map(|r| match r {
                PriorResult::Success(v) => PromiseResult::Successful(v.into()),
                PriorResult::Failed => PromiseResult::Failed,
            })
            .collect();
        let context = VMContext {
            current_account_id: self.account.clone(),
            signer_account_id: predecessor.clone(),
            signer_account_pk: vec![0; 33],
            predecessor_account_id: predecessor.clone(),
            refund_to_account_id: predecessor,
            input: std::rc::Rc::from(serde_json::to_vec(args).unwrap_or_default()),
            promise_results: promise_results.into(),
            block_height: self.block_height,
            block_timestamp: self.block_timestamp_ns,
            epoch_height: 1,
            account_balance: self.balance,
            account_locked_balance: Balance::ZERO,
            storage_usage: self.storage_usage,
            account_contract: near_primitives_core::account::AccountContract::None,
            attached_deposit: Balance::from_yoctonear(deposit),
            prepaid_gas: Gas::from_gas(CALL_GAS),
            random_seed: self.random_seed.to_vec(),
            view_config: view
                .then(|| near_primitives_core::config::ViewConfig { max_gas_burnt: Gas::from_gas(CALL_GAS) }),
            output_data_receivers: vec![],
        };
        let snapshot = self.ext.fake_trie.clone();
        self.ext.action_log.clear();
        let gas_counter = context.make_gas_counter(&self.config);
        let prepared =
            near_vm_runner::prepare(&self.ext, self.config.clone(), Some(&self.compiled), gas_counter, method);
        let outcome = near_vm_runner::run(prepared, &mut self.ext, &context, self.fees.clone())
            .map_err(|e| VmError::Runner(format!("{e:?}")))?;
        let error = outcome.aborted.as_ref().map(|e| format!("{e:?}"));
        if error.is_some() {
            self.ext.fake_trie = snapshot;
        } else if !view {
            self.storage_usage = outcome.storage_usage;
            self.balance = outcome.balance;
        }
        let value = match &outcome.return_data {
            ReturnData::Value(v) => Some(v.clone()),
            _ => None,
        };
        Ok(CallOutcome {
            burnt_gas: outcome.burnt_gas.as_gas(),
            logs: outcome.logs.clone(),
            value,
            error,
            storage_usage: self.storage_usage,
            receipts: self.ext.action_log.clone(),
        })
    }
}
