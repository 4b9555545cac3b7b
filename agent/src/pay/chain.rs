//! What the payer and the payee need from the chain, as traits: the NEAR
//! channel contract through [`NearChain`] in production, an in-memory
//! contract that can fail on purpose in tests ([`super::testing::MemoryChain`]).

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::PublicKey;
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedVoucher;
use futures::future::BoxFuture;

use crate::near::{ChannelClient, ChannelView, NearAccount, NearError, TxOutcome};

/// The chain as the payee (a brand) uses it: read its channels, claim.
pub trait PayeeChain: Send + Sync + 'static {
    /// The channel contract vouchers must name.
    fn contract(&self) -> &AccountId;
    /// The payee's own account.
    fn account(&self) -> &str;
    /// One channel, if it exists.
    fn get_channel(&self, channel_id: u64) -> BoxFuture<'_, Result<Option<ChannelView>, NearError>>;
    /// The payee's channels.
    fn my_channels(&self) -> BoxFuture<'_, Result<Vec<ChannelView>, NearError>>;
    /// Claims up to `amount` of what `voucher` authorises.
    fn claim<'a>(&'a self, voucher: &'a SignedVoucher, amount: u128) -> BoxFuture<'a, Result<TxOutcome, NearError>>;
}

/// Time between the pages of a payee's periodic read of its channels.
const WATCH_PAGE_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// The chain as the payer (a user agent) uses it.
pub trait PayerChain: Send + Sync + 'static {
    /// The channel contract.
    fn contract(&self) -> &AccountId;
    /// The payer's own account.
    fn account(&self) -> &str;
    /// One channel, if it exists.
    fn get_channel(&self, channel_id: u64) -> BoxFuture<'_, Result<Option<ChannelView>, NearError>>;
    /// The payer's channels.
    fn my_channels(&self) -> BoxFuture<'_, Result<Vec<ChannelView>, NearError>>;
    /// Opens a channel to `payee` with `deposit` (and `storage` NEAR for its
    /// storage); returns its id.
    fn open<'a>(
        &'a self,
        payee: &'a AccountId,
        key: &'a PublicKey,
        challenge_period_ns: u64,
        currency: &'a Currency,
        deposit: u128,
        storage: u128,
    ) -> BoxFuture<'a, Result<u64, NearError>>;
    /// Adds `amount` to a channel.
    fn top_up<'a>(
        &'a self,
        channel_id: u64,
        currency: &'a Currency,
        amount: u128,
    ) -> BoxFuture<'a, Result<(), NearError>>;
    /// Starts a unilateral close; returns when its challenge period ends (ns).
    fn start_close(&self, channel_id: u64) -> BoxFuture<'_, Result<u64, NearError>>;
    /// Finalizes a closed channel; returns the yoctoNEAR burnt for gas.
    fn finalize(&self, channel_id: u64) -> BoxFuture<'_, Result<u128, NearError>>;
}

/// The NEAR channel contract, signed for by one account.
#[derive(Clone, Debug)]
pub struct NearChain {
    client: ChannelClient,
    account: NearAccount,
    contract: AccountId,
}

impl NearChain {
    /// `account` acting on `client`'s contract.
    pub fn new(client: ChannelClient, account: NearAccount) -> Result<NearChain, NearError> {
        let contract = AccountId::new(client.contract().as_str())
            .map_err(|_| NearError::Invalid { what: "contract account", value: client.contract().to_string() })?;
        Ok(NearChain { client, account, contract })
    }

    /// The underlying client.
    pub fn client(&self) -> &ChannelClient {
        &self.client
    }

    /// The signing account.
    pub fn near_account(&self) -> &NearAccount {
        &self.account
    }
}

impl PayeeChain for NearChain {
    fn contract(&self) -> &AccountId {
        &self.contract
    }
    fn account(&self) -> &str {
        self.account.id.as_str()
    }
    fn get_channel(&self, channel_id: u64) -> BoxFuture<'_, Result<Option<ChannelView>, NearError>> {
        Box::pin(self.client.get_channel(channel_id))
    }
    fn my_channels(&self) -> BoxFuture<'_, Result<Vec<ChannelView>, NearError>> {
        // The payee's watch is periodic, never urgent: its pages are spread.
        Box::pin(self.client.channels_of_paced(&self.account.id, WATCH_PAGE_GAP))
    }
    fn claim<'a>(&'a self, voucher: &'a SignedVoucher, amount: u128) -> BoxFuture<'a, Result<TxOutcome, NearError>> {
        Box::pin(self.client.claim(&self.account, voucher, amount))
    }
}

fn near_id(a: &AccountId) -> Result<near_api::AccountId, NearError> {
    a.as_str().parse().map_err(|_| NearError::Invalid { what: "NEAR account id", value: a.to_string() })
}

impl PayerChain for NearChain {
    fn contract(&self) -> &AccountId {
        &self.contract
    }
    fn account(&self) -> &str {
        self.account.id.as_str()
    }
    fn get_channel(&self, channel_id: u64) -> BoxFuture<'_, Result<Option<ChannelView>, NearError>> {
        Box::pin(self.client.get_channel(channel_id))
    }
    fn my_channels(&self) -> BoxFuture<'_, Result<Vec<ChannelView>, NearError>> {
        Box::pin(self.client.channels_of(&self.account.id))
    }
    fn open<'a>(
        &'a self,
        payee: &'a AccountId,
        key: &'a PublicKey,
        challenge_period_ns: u64,
        currency: &'a Currency,
        deposit: u128,
        storage: u128,
    ) -> BoxFuture<'a, Result<u64, NearError>> {
        Box::pin(async move {
            let payee = near_id(payee)?;
            match currency {
                Currency::Near => {
                    let (id, _) = self
                        .client
                        .open_near(&self.account, &payee, key, challenge_period_ns, deposit, storage)
                        .await?;
                    Ok(id)
                }
                Currency::Token(t) => {
                    let token = near_id(t)?;
                    if self.client.storage_balance_of(&self.account.id).await? < storage {
                        self.client.storage_deposit(&self.account, storage).await?;
                    }
                    let (id, _) = self
                        .client
                        .open_token(&self.account, &token, &payee, key, challenge_period_ns, deposit)
                        .await?;
                    Ok(id)
                }
            }
        })
    }
    fn top_up<'a>(
        &'a self,
        channel_id: u64,
        currency: &'a Currency,
        amount: u128,
    ) -> BoxFuture<'a, Result<(), NearError>> {
        Box::pin(async move {
            match currency {
                Currency::Near => self.client.top_up_near(&self.account, channel_id, amount).await?,
                Currency::Token(t) => self.client.top_up_token(&self.account, &near_id(t)?, channel_id, amount).await?,
            };
            Ok(())
        })
    }
    fn start_close(&self, channel_id: u64) -> BoxFuture<'_, Result<u64, NearError>> {
        Box::pin(async move { Ok(self.client.start_close(&self.account, channel_id).await?.0) })
    }
    fn finalize(&self, channel_id: u64) -> BoxFuture<'_, Result<u128, NearError>> {
        Box::pin(async move { Ok(self.client.finalize(&self.account, channel_id).await?.tokens_burnt) })
    }
}
