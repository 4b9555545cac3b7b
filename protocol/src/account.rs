//! NEAR account ids, validated by construction.
//!
//! Records, vouchers and receipts name NEAR accounts (the brand, the channel
//! contract, a NEP-141 token). An invalid id can never be signed or parsed, so
//! the contract and the agent agree on exactly which strings are accounts.

use core::fmt;

/// Shortest NEAR account id, in bytes.
pub const MIN_ACCOUNT_LEN: usize = 2;
/// Longest NEAR account id, in bytes.
pub const MAX_ACCOUNT_LEN: usize = 64;

/// A syntactically valid NEAR account id (lowercase, 2..=64 bytes, parts of
/// `[a-z0-9]` joined by single `-`/`_`, separated by `.`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

/// Why a string is not a NEAR account id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountIdError {
    /// Shorter than [`MIN_ACCOUNT_LEN`] or longer than [`MAX_ACCOUNT_LEN`].
    Length,
    /// A character outside `[a-z0-9._-]`, or separators in a wrong place.
    Syntax,
}

impl fmt::Display for AccountIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountIdError::Length => write!(f, "NEAR account id must be 2 to 64 bytes"),
            AccountIdError::Syntax => write!(f, "NEAR account id has invalid characters or separators"),
        }
    }
}

impl std::error::Error for AccountIdError {}

impl AccountId {
    /// Validates `s` as a NEAR account id.
    pub fn new(s: &str) -> Result<Self, AccountIdError> {
        validate(s)?;
        Ok(AccountId(s.to_owned()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(s: &str) -> Result<(), AccountIdError> {
    let b = s.as_bytes();
    if b.len() < MIN_ACCOUNT_LEN || b.len() > MAX_ACCOUNT_LEN {
        return Err(AccountIdError::Length);
    }
    // A separator may only stand between two alphanumerics.
    let mut prev_sep = true;
    for &c in b {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'.' | b'-' | b'_' => {
                if prev_sep {
                    return Err(AccountIdError::Syntax);
                }
                prev_sep = true;
            }
            _ => return Err(AccountIdError::Syntax),
        }
    }
    if prev_sep {
        return Err(AccountIdError::Syntax);
    }
    Ok(())
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.0)
    }
}

/// Borsh: the id as a string (`LE32(len) || bytes`), as NEAR stores account ids.
impl borsh::BorshSerialize for AccountId {
    fn serialize<W: borsh::io::Write>(&self, writer: &mut W) -> borsh::io::Result<()> {
        self.0.serialize(writer)
    }
}

/// Borsh: an id that is not valid is refused, like any other parse.
impl borsh::BorshDeserialize for AccountId {
    fn deserialize_reader<R: borsh::io::Read>(reader: &mut R) -> borsh::io::Result<Self> {
        let s = String::deserialize_reader(reader)?;
        AccountId::new(&s).map_err(|e| borsh::io::Error::new(borsh::io::ErrorKind::InvalidData, e.to_string()))
    }
}

impl core::str::FromStr for AccountId {
    type Err = AccountIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for s in ["ab", "brand.near", "a-b_c.d0", "channels.agentwire.testnet", &"a".repeat(64)] {
            assert!(AccountId::new(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        assert_eq!(AccountId::new("a"), Err(AccountIdError::Length));
        assert_eq!(AccountId::new(&"a".repeat(65)), Err(AccountIdError::Length));
        for s in ["Brand.near", ".ab", "ab.", "a..b", "a-.b", "a b", "ab-", "_ab", "a\u{e9}b"] {
            assert_eq!(AccountId::new(s), Err(AccountIdError::Syntax), "{s}");
        }
    }
}
