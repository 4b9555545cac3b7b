//! The devnet root's registrar. On NEAR, `near` and `testnet` hold a contract
//! whose `create_account` makes `<name>.near` for anyone who pays for it;
//! clients such as near-api-js (`account.createAccount("x.near")`) call it.
//! This is the same interface for the devnet's root, deployed there by
//! `agentwire devnet`: `create_account` creates `new_account_id` with a
//! full-access key and the attached NEAR, and `on_account_created` returns
//! whether that worked, sending the NEAR back to the caller when it did not.

use near_sdk::{env, near, AccountId, Gas, NearToken, Promise, PromiseError, PublicKey};

/// Gas kept for the callback.
const ON_ACCOUNT_CREATED_GAS: Gas = Gas::from_tgas(10);

/// No state: the registrar only schedules receipts (near-sdk keeps the empty
/// struct under `STATE`; `&mut self` marks the methods as calls, not views).
#[near(contract_state)]
#[derive(Default)]
pub struct Registrar {}

#[near]
impl Registrar {
    /// Creates `new_account_id` with `new_public_key` as its full-access key
    /// and the attached NEAR as its balance. Returns (through the callback)
    /// `true` if the account was created.
    #[payable]
    pub fn create_account(&mut self, new_account_id: AccountId, new_public_key: PublicKey) -> Promise {
        let amount = env::attached_deposit();
        Promise::new(new_account_id).create_account().add_full_access_key(new_public_key).transfer(amount).then(
            Self::ext(env::current_account_id())
                .with_static_gas(ON_ACCOUNT_CREATED_GAS)
                .on_account_created(env::predecessor_account_id(), amount),
        )
    }

    /// Whether the account was created; if not, `amount` goes back to
    /// `predecessor_account_id` (the failed creation refunded it here).
    #[private]
    pub fn on_account_created(
        &mut self,
        predecessor_account_id: AccountId,
        amount: NearToken,
        #[callback_result] created: Result<(), PromiseError>,
    ) -> bool {
        if created.is_err() && !amount.is_zero() {
            // Dropping the promise schedules it.
            let _refund = Promise::new(predecessor_account_id).transfer(amount);
        }
        created.is_ok()
    }
}
