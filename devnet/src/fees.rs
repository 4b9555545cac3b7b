//! Gas a transaction prepays and burns for its actions, from the protocol's
//! fee table (`RuntimeFeesConfig`), and the VM configuration shared by
//! everything that runs a contract.

use std::sync::{Arc, OnceLock};

use near_parameters::vm::VMKind;
use near_parameters::{ActionCosts, RuntimeConfig, RuntimeConfigStore, RuntimeConfigView, RuntimeFeesConfig};
use near_primitives::account::AccessKeyPermission;
use near_primitives::transaction::Action;
use near_primitives_core::version::PROTOCOL_VERSION;
use near_vm_runner::logic::Config;

/// Price of one gas unit in yoctoNEAR: NEAR's minimum gas price, fixed on the
/// devnet so costs are reproducible.
pub const GAS_PRICE: u128 = 100_000_000;

/// The runtime configuration the devnet runs: mainnet's cost table at the
/// protocol version of `near-vm-runner` 0.38, executed by Wasmtime.
pub fn runtime_config() -> (Arc<Config>, Arc<RuntimeFeesConfig>, u128) {
    let store = RuntimeConfigStore::new(None);
    let runtime_config: &RuntimeConfig = store.get_config(PROTOCOL_VERSION);
    let mut config = Config::clone(&runtime_config.wasm_config);
    config.vm_kind = VMKind::Wasmtime;
    let per_byte = runtime_config.storage_amount_per_byte().as_yoctonear();
    (Arc::new(config), Arc::new(RuntimeFeesConfig::clone(&runtime_config.fees)), per_byte)
}

/// The devnet's runtime configuration as nearcore's `RuntimeConfigView`
/// (what `EXPERIMENTAL_protocol_config` shows as `runtime_config`; clients
/// read `storage_amount_per_byte` from it). Built once.
pub fn runtime_config_view() -> &'static RuntimeConfigView {
    static VIEW: OnceLock<RuntimeConfigView> = OnceLock::new();
    VIEW.get_or_init(|| {
        let store = RuntimeConfigStore::new(None);
        let mut config = RuntimeConfig::clone(store.get_config(PROTOCOL_VERSION));
        // The VM the devnet runs (Wasmtime), as `runtime_config` builds it.
        config.wasm_config = runtime_config().0;
        RuntimeConfigView::from(config)
    })
}

/// Gas for one receipt's actions: burnt when it is sent and when it executes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionGas {
    /// Burnt when the receipt is created (a transaction's conversion cost).
    pub send: u64,
    /// Burnt when the receipt executes, before any contract code runs.
    pub exec: u64,
    /// Gas attached to function calls, available to the contract.
    pub attached: u64,
}

/// Fees for a receipt carrying `actions` (`sir`: sender is receiver).
pub fn action_gas(fees: &RuntimeFeesConfig, actions: &[Action], sir: bool) -> Option<ActionGas> {
    let receipt = fees.fee(ActionCosts::new_action_receipt);
    let mut total =
        ActionGas { send: receipt.send_fee(sir).gas.as_gas(), exec: receipt.exec_fee().gas.as_gas(), attached: 0 };
    let add = |total: &mut ActionGas, cost: ActionCosts, times: u64| -> Option<()> {
        let fee = fees.fee(cost);
        total.send = total.send.checked_add(fee.send_fee(sir).gas.as_gas().checked_mul(times)?)?;
        total.exec = total.exec.checked_add(fee.exec_fee().gas.as_gas().checked_mul(times)?)?;
        Some(())
    };
    for action in actions {
        match action {
            Action::CreateAccount(_) => add(&mut total, ActionCosts::create_account, 1)?,
            Action::DeployContract(d) => {
                add(&mut total, ActionCosts::deploy_contract_base, 1)?;
                add(&mut total, ActionCosts::deploy_contract_byte, d.code.len() as u64)?;
            }
            Action::FunctionCall(f) => {
                add(&mut total, ActionCosts::function_call_base, 1)?;
                add(&mut total, ActionCosts::function_call_byte, (f.method_name.len() + f.args.len()) as u64)?;
                total.attached = total.attached.checked_add(f.gas.as_gas())?;
            }
            Action::Transfer(_) => add(&mut total, ActionCosts::transfer, 1)?,
            Action::AddKey(k) => match &k.access_key.permission {
                AccessKeyPermission::FunctionCall(p) => {
                    add(&mut total, ActionCosts::add_function_call_key_base, 1)?;
                    let bytes: usize = p.method_names.iter().map(|m| m.len() + 1).sum();
                    add(&mut total, ActionCosts::add_function_call_key_byte, bytes as u64)?;
                }
                _ => add(&mut total, ActionCosts::add_full_access_key, 1)?,
            },
            Action::DeleteKey(_) => add(&mut total, ActionCosts::delete_key, 1)?,
            Action::DeleteAccount(_) => add(&mut total, ActionCosts::delete_account, 1)?,
            _ => return None,
        }
    }
    Some(total)
}

/// Gas burnt when a receipt carrying `actions` executes (fees only, no VM).
pub fn exec_gas(fees: &RuntimeFeesConfig, actions: &[Action]) -> u64 {
    action_gas(fees, actions, false).map(|g| g.exec).unwrap_or(0)
}
