//! Amounts on the command line: shown in the currency's units (NEAR's 24
//! decimals, a token's from its metadata), read the same way.

use agentwire_agent::near::ChannelClient;
use agentwire_agent::units;
use agentwire_protocol::account::AccountId;
use agentwire_protocol::money::{parse_units, Currency, UnitsError, NEAR_DECIMALS};

use super::CliError;

/// `NEAR` or a NEP-141 token account, as given on the command line.
pub fn currency(text: &str) -> Result<Currency, CliError> {
    Currency::parse(text)
        .map_err(|_| CliError::usage(format!("{text:?} is neither NEAR nor a token account (e.g. usdc.devnet)")))
}

/// The currency's decimals: 24 for NEAR, a token's from its `ft_metadata`
/// (`None` when the chain cannot say: amounts are then shown raw).
pub async fn decimals(chain: Option<&ChannelClient>, currency: &Currency) -> Option<u8> {
    match currency {
        Currency::Near => Some(NEAR_DECIMALS),
        Currency::Token(t) => {
            let token = t.as_str().parse().ok()?;
            chain?.ft_decimals(&token).await.ok()
        }
    }
}

/// An amount for people, in its currency's units.
pub async fn show(chain: Option<&ChannelClient>, value: u128, currency: &Currency) -> String {
    units::amount(value, currency, decimals(chain, currency).await)
}

/// A price for people: `free`, or the amount.
pub async fn price(chain: Option<&ChannelClient>, value: u128, currency: &Currency) -> String {
    if value == 0 {
        "free".into()
    } else {
        show(chain, value, currency).await
    }
}

/// An amount given in the currency's units (`1.5` NEAR), as smallest units.
pub async fn parse(chain: &ChannelClient, text: &str, currency: &Currency, flag: &str) -> Result<u128, CliError> {
    let decimals = decimals(Some(chain), currency).await.ok_or_else(|| {
        CliError::new(
            "TokenUnknown",
            format!("cannot read the decimals of {} from NEAR", currency.as_text()),
            "check the token account and --near-rpc",
        )
    })?;
    parse_units(text, decimals).map_err(|e| {
        let why = match e {
            UnitsError::Syntax => "is not a decimal number".to_string(),
            UnitsError::TooPrecise => format!("has more than {decimals} decimals"),
            UnitsError::Overflow => "is too large".to_string(),
        };
        CliError::usage(format!("{flag} {text:?} {why}; give it in {} (e.g. 1.5)", currency.as_text()))
    })
}

/// An account id given on the command line.
pub fn account(text: &str, flag: &str) -> Result<AccountId, CliError> {
    AccountId::new(text).map_err(|_| CliError::usage(format!("{flag} {text:?} is not a NEAR account id")))
}
