//! The money vocabulary every part of AgentWire shares: what a channel is
//! funded in ([`Currency`]) and how an amount reads in human units.
//!
//! Built without default features, so the NEAR contract stores exactly this
//! type (Borsh) and the agent and the wire use its one text form: `NEAR` for
//! the native currency (upper case, so never an account id), else the
//! NEP-141 token's account id.

use core::fmt;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::account::{AccountId, AccountIdError};

/// Text of the native NEAR currency (upper case: never a NEAR account id).
pub const NEAR_CURRENCY: &str = "NEAR";
/// Decimals of NEAR: amounts are in yoctoNEAR (10^-24 NEAR).
pub const NEAR_DECIMALS: u8 = 24;

/// What a channel is funded in and a service is priced in.
///
/// Borsh: `00` for NEAR, `01 || LE32(len) || token` for a token (the
/// contract's stored layout, spec/contract.md §3.1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub enum Currency {
    /// Native NEAR, amounts in yoctoNEAR.
    Near,
    /// A NEP-141 fungible token (its contract account), amounts in its smallest unit.
    Token(AccountId),
}

/// Why a text is not a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrencyError(pub AccountIdError);

impl fmt::Display for CurrencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a currency is NEAR or a token's account id: {}", self.0)
    }
}

impl std::error::Error for CurrencyError {}

impl Currency {
    /// The one text form: `NEAR`, or the token's account id.
    pub fn as_text(&self) -> &str {
        match self {
            Currency::Near => NEAR_CURRENCY,
            Currency::Token(a) => a.as_str(),
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<Self, CurrencyError> {
        if s == NEAR_CURRENCY {
            return Ok(Currency::Near);
        }
        AccountId::new(s).map(Currency::Token).map_err(CurrencyError)
    }

    /// The token's account, if this is a token.
    pub fn token(&self) -> Option<&AccountId> {
        match self {
            Currency::Near => None,
            Currency::Token(t) => Some(t),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_text())
    }
}

impl core::str::FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

/// `amount` smallest units as a decimal with `decimals` places, trailing
/// zeros dropped: `format_units(15 * 10^21, 24)` is `"0.015"`. Exact (no
/// floating point), so what a user reads is what is signed.
pub fn format_units(amount: u128, decimals: u8) -> String {
    let digits = amount.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return digits;
    }
    let (int, frac) = if digits.len() > d {
        let (i, f) = digits.split_at(digits.len() - d);
        (i.to_owned(), f.to_owned())
    } else {
        ("0".to_owned(), format!("{digits:0>d$}"))
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

/// Why a decimal amount could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitsError {
    /// Not a decimal number (digits, at most one `.`).
    Syntax,
    /// More fractional digits than the currency has.
    TooPrecise,
    /// Larger than u128 smallest units.
    Overflow,
}

impl fmt::Display for UnitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitsError::Syntax => f.write_str("not a decimal amount"),
            UnitsError::TooPrecise => f.write_str("more decimal places than the currency has"),
            UnitsError::Overflow => f.write_str("amount too large"),
        }
    }
}

impl std::error::Error for UnitsError {}

/// Reads a decimal amount (`"0.015"`) as smallest units with `decimals`
/// places; the inverse of [`format_units`].
pub fn parse_units(text: &str, decimals: u8) -> Result<u128, UnitsError> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !digits_only(int) || !digits_only(frac) {
        return Err(UnitsError::Syntax);
    }
    if text.ends_with('.') {
        return Err(UnitsError::Syntax);
    }
    if frac.len() > usize::from(decimals) {
        return Err(UnitsError::TooPrecise);
    }
    let scale = 10u128.checked_pow(u32::from(decimals)).ok_or(UnitsError::Overflow)?;
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| UnitsError::Overflow)? };
    let mut fraction: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| UnitsError::Overflow)? };
    for _ in frac.len()..usize::from(decimals) {
        fraction = fraction.checked_mul(10).ok_or(UnitsError::Overflow)?;
    }
    whole.checked_mul(scale).and_then(|w| w.checked_add(fraction)).ok_or(UnitsError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_text_and_borsh() {
        let usdc = Currency::Token(AccountId::new("usdc.near").unwrap());
        assert_eq!(Currency::parse("NEAR"), Ok(Currency::Near));
        assert_eq!(Currency::parse("usdc.near").unwrap(), usdc);
        assert!(Currency::parse("near").is_ok(), "a lower-case `near` is an account id");
        assert!(Currency::parse("Usdc").is_err());
        assert_eq!(borsh::to_vec(&Currency::Near).unwrap(), vec![0]);
        let mut want = vec![1, 9, 0, 0, 0];
        want.extend_from_slice(b"usdc.near");
        assert_eq!(borsh::to_vec(&usdc).unwrap(), want);
        assert_eq!(borsh::from_slice::<Currency>(&want).unwrap(), usdc);
        // An invalid account id never deserializes.
        let mut bad = vec![1, 2, 0, 0, 0];
        bad.extend_from_slice(b"A!");
        assert!(borsh::from_slice::<Currency>(&bad).is_err());
    }

    #[test]
    fn units_round_trip() {
        let cases = [
            (0u128, 24u8, "0"),
            (10u128.pow(22), 24, "0.01"),
            (15 * 10u128.pow(21), 24, "0.015"),
            (10u128.pow(24), 24, "1"),
            (1_234_567, 6, "1.234567"),
            (1, 24, "0.000000000000000000000001"),
            (7, 0, "7"),
            (u128::MAX, 24, "340282366920938.463463374607431768211455"),
        ];
        for (amount, dec, text) in cases {
            assert_eq!(format_units(amount, dec), text);
            assert_eq!(parse_units(text, dec), Ok(amount), "{text}");
        }
        assert_eq!(parse_units(".5", 1), Ok(5));
        assert_eq!(parse_units("1.", 1), Err(UnitsError::Syntax));
        assert_eq!(parse_units("", 1), Err(UnitsError::Syntax));
        assert_eq!(parse_units("1.23", 1), Err(UnitsError::TooPrecise));
        assert_eq!(parse_units("-1", 1), Err(UnitsError::Syntax));
        assert_eq!(parse_units("340282366920938.463463374607431768211456", 24), Err(UnitsError::Overflow));
    }
}
