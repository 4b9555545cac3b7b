//! One payment channel's rules, as plain Rust with no NEAR host calls.
//!
//! The near-sdk layer owns storage, transfers and events; every decision about
//! who may do what and how much moves is made here, deterministically, so it
//! is tested natively and once. Signature checks are injected (`env::ed25519_verify`
//! on chain), and so is time (block timestamp, nanoseconds).
//!
//! Money rule: `claimed <= deposit` always; a payout is `new total - claimed`,
//! a refund `deposit - claimed`, both computed with checked arithmetic.

use agentwire_protocol::account::AccountId;
use agentwire_protocol::voucher::Voucher;

use crate::weak_keys::is_small_order;

/// Why a channel operation was refused. Messages are the contract's panic texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// Only the payer may do this.
    NotPayer,
    /// Only the payee may do this.
    NotPayee,
    /// Only the payer or the payee may do this.
    NotParty,
    /// Payer and payee must differ.
    SelfChannel,
    /// The voucher key is a small-order point (forgeable under non-strict verification).
    WeakKey,
    /// A deposit or top-up of zero.
    ZeroAmount,
    /// The challenge period is below the contract's minimum.
    PeriodTooShort { min_ns: u64 },
    /// The challenge period is above [`MAX_CHALLENGE_PERIOD_NS`].
    PeriodTooLong,
    /// A close has started: no top-ups.
    Closing,
    /// The channel was closed or finalized: only owed payouts are left.
    Closed,
    /// `finalize` before a close was started.
    NotClosing,
    /// `finalize` before the challenge period ended.
    ChallengePeriodRunning { ends_ns: u64 },
    /// The voucher's total is above the deposit.
    VoucherExceedsDeposit,
    /// The voucher's total is not above what was already claimed.
    NothingToClaim,
    /// The voucher's signature does not verify under the channel's key.
    BadSignature,
    /// An amount overflowed.
    Overflow,
}

impl ChannelError {
    /// The panic message, built without `core::fmt` (which would add to the
    /// contract's wasm, and so to its load gas on every call).
    pub fn message(&self) -> String {
        let fixed = match self {
            ChannelError::NotPayer => "only the payer may do this",
            ChannelError::NotPayee => "only the payee may do this",
            ChannelError::NotParty => "only the payer or the payee may do this",
            ChannelError::SelfChannel => "payer and payee must differ",
            ChannelError::WeakKey => "voucher key is a small-order point",
            ChannelError::ZeroAmount => "amount must be positive",
            ChannelError::PeriodTooShort { min_ns } => {
                return with_number("challenge period below the minimum of ", *min_ns, " ns")
            }
            ChannelError::PeriodTooLong => "challenge period above the maximum of 30 days",
            ChannelError::Closing => "channel is closing",
            ChannelError::Closed => "channel is closed",
            ChannelError::NotClosing => "no close was started",
            ChannelError::ChallengePeriodRunning { ends_ns } => {
                return with_number("challenge period runs until ", *ends_ns, "")
            }
            ChannelError::VoucherExceedsDeposit => "voucher exceeds the deposit",
            ChannelError::NothingToClaim => "voucher total is not above the claimed total",
            ChannelError::BadSignature => "voucher signature does not verify",
            ChannelError::Overflow => "amount overflow",
        };
        fixed.into()
    }
}

fn with_number(before: &str, n: u64, after: &str) -> String {
    let mut s = String::from(before);
    crate::json::push_u128(&mut s, n.into());
    s.push_str(after);
    s
}

impl core::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
    }
}

/// Ed25519 verification, injected: `(message, signature, public key) -> valid`
/// (`env::ed25519_verify` on chain).
pub type VerifyFn = dyn Fn(&[u8], &[u8; 64], &[u8; 32]) -> bool;

/// Longest challenge period a channel may ask for (30 days): keeps
/// `now + period` far from overflow and a payer's refund within reach.
pub const MAX_CHALLENGE_PERIOD_NS: u64 = 30 * 24 * 3_600 * 1_000_000_000;

/// A unidirectional channel payer → payee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Channel id (never reused within one contract account's life).
    pub id: u64,
    /// Epoch assigned at open: differs for any reuse of an id (redeployment).
    pub epoch: u64,
    /// Who funds the channel and signs vouchers.
    pub payer: AccountId,
    /// Who is paid.
    pub payee: AccountId,
    /// The payer's voucher key (never small-order).
    pub payer_key: [u8; 32],
    /// Total deposited.
    pub deposit: u128,
    /// Total paid out to the payee.
    pub claimed: u128,
    /// Length of the unilateral close's challenge period.
    pub challenge_period_ns: u64,
    /// When the payer started a unilateral close.
    pub closing_since_ns: Option<u64>,
    /// `close` or `finalize` ran: nothing but owed payouts is left.
    pub settled: bool,
}

/// Money that leaves the contract when a channel ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// To the payee.
    pub payout: u128,
    /// Back to the payer.
    pub refund: u128,
}

impl Channel {
    /// Opens a channel; `caller` is the payer.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        id: u64,
        epoch: u64,
        caller: AccountId,
        payee: AccountId,
        payer_key: [u8; 32],
        deposit: u128,
        challenge_period_ns: u64,
        min_period_ns: u64,
    ) -> Result<Channel, ChannelError> {
        if caller == payee {
            return Err(ChannelError::SelfChannel);
        }
        if is_small_order(&payer_key) {
            return Err(ChannelError::WeakKey);
        }
        if deposit == 0 {
            return Err(ChannelError::ZeroAmount);
        }
        if challenge_period_ns < min_period_ns {
            return Err(ChannelError::PeriodTooShort { min_ns: min_period_ns });
        }
        if challenge_period_ns > MAX_CHALLENGE_PERIOD_NS {
            return Err(ChannelError::PeriodTooLong);
        }
        Ok(Channel {
            id,
            epoch,
            payer: caller,
            payee,
            payer_key,
            deposit,
            claimed: 0,
            challenge_period_ns,
            closing_since_ns: None,
            settled: false,
        })
    }

    /// The bytes the payer signed for a voucher of `cumulative` on this channel of `contract`.
    pub fn voucher_message(&self, contract: &AccountId, cumulative: u128) -> Vec<u8> {
        Voucher { contract: contract.clone(), channel_id: self.id, epoch: self.epoch, cumulative }.signing_bytes()
    }

    /// Adds to the deposit; only the payer, and not once a close started.
    pub fn top_up(&mut self, caller: &AccountId, amount: u128) -> Result<(), ChannelError> {
        self.not_settled()?;
        if *caller != self.payer {
            return Err(ChannelError::NotPayer);
        }
        if self.closing_since_ns.is_some() {
            return Err(ChannelError::Closing);
        }
        if amount == 0 {
            return Err(ChannelError::ZeroAmount);
        }
        self.deposit = self.deposit.checked_add(amount).ok_or(ChannelError::Overflow)?;
        Ok(())
    }

    fn not_settled(&self) -> Result<(), ChannelError> {
        if self.settled {
            return Err(ChannelError::Closed);
        }
        Ok(())
    }

    /// Checks a voucher and returns the payout it allows, without changing state.
    fn check_voucher(
        &self,
        contract: &AccountId,
        cumulative: u128,
        signature: &[u8; 64],
        verify: &VerifyFn,
    ) -> Result<u128, ChannelError> {
        if cumulative > self.deposit {
            return Err(ChannelError::VoucherExceedsDeposit);
        }
        if cumulative <= self.claimed {
            return Err(ChannelError::NothingToClaim);
        }
        if !verify(&self.voucher_message(contract, cumulative), signature, &self.payer_key) {
            return Err(ChannelError::BadSignature);
        }
        cumulative.checked_sub(self.claimed).ok_or(ChannelError::Overflow)
    }

    /// The payee claims up to `cumulative`; the channel stays open. Allowed
    /// while a close is pending, until the channel is finalized. Returns the payout.
    pub fn claim(
        &mut self,
        contract: &AccountId,
        caller: &AccountId,
        cumulative: u128,
        signature: &[u8; 64],
        verify: &VerifyFn,
    ) -> Result<u128, ChannelError> {
        self.not_settled()?;
        if *caller != self.payee {
            return Err(ChannelError::NotPayee);
        }
        let payout = self.check_voucher(contract, cumulative, signature, verify)?;
        self.claimed = cumulative;
        Ok(payout)
    }

    /// Undoes a claim whose transfer failed (called from the transfer's callback).
    pub fn rollback_claim(&mut self, payout: u128) -> Result<(), ChannelError> {
        self.claimed = self.claimed.checked_sub(payout).ok_or(ChannelError::Overflow)?;
        Ok(())
    }

    /// The payee closes at once: claims `final_voucher` if given and higher,
    /// refunds the rest to the payer. The channel is settled: the caller sends
    /// the money and removes the channel once every payout is done.
    pub fn close(
        &mut self,
        contract: &AccountId,
        caller: &AccountId,
        final_voucher: Option<(u128, [u8; 64])>,
        verify: &VerifyFn,
    ) -> Result<Settlement, ChannelError> {
        self.not_settled()?;
        if *caller != self.payee {
            return Err(ChannelError::NotPayee);
        }
        let payout = match final_voucher {
            Some((cumulative, sig)) if cumulative > self.claimed => {
                self.check_voucher(contract, cumulative, &sig, verify)?
            }
            _ => 0,
        };
        let claimed = self.claimed.checked_add(payout).ok_or(ChannelError::Overflow)?;
        let refund = self.deposit.checked_sub(claimed).ok_or(ChannelError::Overflow)?;
        self.claimed = claimed;
        self.settled = true;
        Ok(Settlement { payout, refund })
    }

    /// The payer starts a unilateral close at `now_ns`.
    pub fn start_close(&mut self, caller: &AccountId, now_ns: u64) -> Result<u64, ChannelError> {
        self.not_settled()?;
        if *caller != self.payer {
            return Err(ChannelError::NotPayer);
        }
        if self.closing_since_ns.is_some() {
            return Err(ChannelError::Closing);
        }
        self.closing_since_ns = Some(now_ns);
        now_ns.checked_add(self.challenge_period_ns).ok_or(ChannelError::Overflow)
    }

    /// After the challenge period, refunds what was not claimed. Payer or
    /// payee may call it. The channel is settled, as by [`Channel::close`].
    pub fn finalize(&mut self, caller: &AccountId, now_ns: u64) -> Result<Settlement, ChannelError> {
        self.not_settled()?;
        if *caller != self.payer && *caller != self.payee {
            return Err(ChannelError::NotParty);
        }
        let since = self.closing_since_ns.ok_or(ChannelError::NotClosing)?;
        let ends_ns = since.checked_add(self.challenge_period_ns).ok_or(ChannelError::Overflow)?;
        if now_ns < ends_ns {
            return Err(ChannelError::ChallengePeriodRunning { ends_ns });
        }
        let refund = self.deposit.checked_sub(self.claimed).ok_or(ChannelError::Overflow)?;
        self.settled = true;
        Ok(Settlement { payout: 0, refund })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_protocol::identity::Keypair;

    const MIN: u64 = 3_600_000_000_000;

    fn acct(s: &str) -> AccountId {
        AccountId::new(s).unwrap()
    }

    fn verify(msg: &[u8], sig: &[u8; 64], key: &[u8; 32]) -> bool {
        agentwire_protocol::identity::PublicKey::from_bytes(key).and_then(|k| k.verify_raw(msg, sig)).is_ok()
    }

    fn setup() -> (Keypair, Channel, AccountId) {
        let k = Keypair::from_seed(&[5; 32]);
        let ch = Channel::open(1, 77, acct("user.near"), acct("brand.near"), k.public().to_bytes(), 1_000, MIN, MIN)
            .unwrap();
        (k, ch, acct("channels.near"))
    }

    fn sign(k: &Keypair, ch: &Channel, contract: &AccountId, cum: u128) -> [u8; 64] {
        k.sign_raw(&ch.voucher_message(contract, cum))
    }

    #[test]
    fn open_refuses_weak_keys_self_channels_zero_and_short_periods() {
        let weak = crate::weak_keys::SMALL_ORDER_ENCODINGS[4];
        let e = |r: Result<Channel, ChannelError>| r.unwrap_err();
        assert_eq!(e(Channel::open(1, 1, acct("u.near"), acct("b.near"), weak, 1, MIN, MIN)), ChannelError::WeakKey);
        assert_eq!(
            e(Channel::open(1, 1, acct("u.near"), acct("u.near"), [9; 32], 1, MIN, MIN)),
            ChannelError::SelfChannel
        );
        assert_eq!(
            e(Channel::open(1, 1, acct("u.near"), acct("b.near"), [9; 32], 0, MIN, MIN)),
            ChannelError::ZeroAmount
        );
        assert_eq!(
            e(Channel::open(1, 1, acct("u.near"), acct("b.near"), [9; 32], 1, MIN - 1, MIN)),
            ChannelError::PeriodTooShort { min_ns: MIN }
        );
    }

    #[test]
    fn claims_are_cumulative_and_bound_to_contract_channel_and_epoch() {
        let (k, mut ch, contract) = setup();
        let payee = acct("brand.near");
        let s = sign(&k, &ch, &contract, 300);
        assert_eq!(ch.claim(&contract, &acct("user.near"), 300, &s, &verify), Err(ChannelError::NotPayee));
        assert_eq!(ch.claim(&contract, &payee, 300, &s, &verify), Ok(300));
        // Replay: nothing more to claim.
        assert_eq!(ch.claim(&contract, &payee, 300, &s, &verify), Err(ChannelError::NothingToClaim));
        let s5 = sign(&k, &ch, &contract, 500);
        assert_eq!(ch.claim(&contract, &payee, 500, &s5, &verify), Ok(200));
        // Another contract, channel or epoch: the signature does not match this channel.
        let other = acct("other.near");
        let s_other = sign(&k, &ch, &other, 600);
        assert_eq!(ch.claim(&contract, &payee, 600, &s_other, &verify), Err(ChannelError::BadSignature));
        let mut ch2 = ch.clone();
        ch2.id = 2;
        let s_ch2 = sign(&k, &ch2, &contract, 600);
        assert_eq!(ch.claim(&contract, &payee, 600, &s_ch2, &verify), Err(ChannelError::BadSignature));
        let mut ch3 = ch.clone();
        ch3.epoch = 78;
        let s_ep = sign(&k, &ch3, &contract, 600);
        assert_eq!(ch.claim(&contract, &payee, 600, &s_ep, &verify), Err(ChannelError::BadSignature));
        // Above the deposit: never, even with a valid signature.
        let s_big = sign(&k, &ch, &contract, 1_001);
        assert_eq!(ch.claim(&contract, &payee, 1_001, &s_big, &verify), Err(ChannelError::VoucherExceedsDeposit));
        assert_eq!(ch.claimed, 500);
    }

    #[test]
    fn failed_transfer_rolls_back() {
        let (k, mut ch, contract) = setup();
        let s = sign(&k, &ch, &contract, 400);
        let payout = ch.claim(&contract, &acct("brand.near"), 400, &s, &verify).unwrap();
        ch.rollback_claim(payout).unwrap();
        assert_eq!(ch.claimed, 0);
        assert_eq!(ch.claim(&contract, &acct("brand.near"), 400, &s, &verify), Ok(400));
    }

    #[test]
    fn unilateral_close_with_claim_inside_the_period_then_finalize() {
        let (k, mut ch, contract) = setup();
        let (payer, payee) = (acct("user.near"), acct("brand.near"));
        assert_eq!(ch.start_close(&payee, 10), Err(ChannelError::NotPayer));
        let ends = ch.start_close(&payer, 10).unwrap();
        assert_eq!(ends, 10 + MIN);
        assert_eq!(ch.start_close(&payer, 11), Err(ChannelError::Closing));
        assert_eq!(ch.top_up(&payer, 5), Err(ChannelError::Closing));
        assert_eq!(ch.finalize(&payer, ends - 1), Err(ChannelError::ChallengePeriodRunning { ends_ns: ends }));
        let s = sign(&k, &ch, &contract, 700);
        assert_eq!(ch.claim(&contract, &payee, 700, &s, &verify), Ok(700));
        assert_eq!(ch.finalize(&acct("stranger.near"), ends), Err(ChannelError::NotParty));
        assert_eq!(ch.finalize(&payer, ends), Ok(Settlement { payout: 0, refund: 300 }));
    }

    #[test]
    fn cooperative_close_claims_the_final_voucher_and_refunds_the_rest() {
        let (k, mut ch, contract) = setup();
        let payee = acct("brand.near");
        let s = sign(&k, &ch, &contract, 250);
        ch.claim(&contract, &payee, 250, &s, &verify).unwrap();
        let s2 = sign(&k, &ch, &contract, 600);
        assert_eq!(ch.close(&contract, &acct("user.near"), Some((600, s2)), &verify), Err(ChannelError::NotPayee));
        assert_eq!(ch.close(&contract, &payee, Some((600, s2)), &verify), Ok(Settlement { payout: 350, refund: 400 }));
        let (_, mut fresh, contract) = setup();
        assert_eq!(fresh.close(&contract, &payee, None, &verify), Ok(Settlement { payout: 0, refund: 1_000 }));
        let mut forged = sign(&k, &fresh, &contract, 900);
        forged[0] ^= 1;
        let (_, mut again, contract) = setup();
        assert_eq!(again.close(&contract, &payee, Some((900, forged)), &verify), Err(ChannelError::BadSignature));
    }

    #[test]
    fn top_up_rules_and_overflow() {
        let (_, mut ch, _) = setup();
        assert_eq!(ch.top_up(&acct("brand.near"), 5), Err(ChannelError::NotPayer));
        assert_eq!(ch.top_up(&acct("user.near"), 0), Err(ChannelError::ZeroAmount));
        ch.top_up(&acct("user.near"), 5).unwrap();
        assert_eq!(ch.deposit, 1_005);
        assert_eq!(ch.top_up(&acct("user.near"), u128::MAX), Err(ChannelError::Overflow));
    }
}
