//! The user's spending controls: a maximum price per query, a budget per
//! brand per day and a budget per day over all brands (each per currency),
//! and a say over every channel deposit before it is locked on chain.
//!
//! A query's ceiling is reserved against the budgets *before* anything is
//! signed, so a budget that would be exceeded refuses with nothing signed;
//! once the answer's receipt states what it cost, the reservation becomes
//! that cost (the rest returns to the budget). Days are UTC days. With a
//! file, what was spent today survives a restart (written atomically on
//! every change, so a crash never forgets spending: at worst it remembers a
//! ceiling for a query whose answer never came).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentwire_protocol::money::{format_units, Currency, NEAR_DECIMALS};
use serde::{Deserialize, Serialize};

/// Limits for one currency (amounts in its smallest unit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// The most one query may cost (its ceiling, increments included).
    pub max_price: Option<u128>,
    /// The most spent on one brand in one UTC day.
    pub per_brand_per_day: Option<u128>,
    /// The most spent on all brands together in one UTC day.
    pub per_day: Option<u128>,
    /// The largest deposit a channel may be opened with.
    pub max_deposit: Option<u128>,
}

impl Limits {
    fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// A channel about to be opened, for the user to confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepositOffer {
    /// The brand's account.
    pub payee: String,
    /// The currency.
    pub currency: Currency,
    /// The deposit that would be locked (plus the channel's storage, returned at close).
    pub deposit: u128,
}

impl DepositOffer {
    /// "1.5 NEAR to bob.devnet" (tokens in their smallest unit).
    pub fn describe(&self) -> String {
        format!("a channel to {} with a deposit of {}", self.payee, human(self.deposit, &self.currency))
    }
}

/// Asks the user whether a channel may be opened (true: open it).
pub type ConfirmDeposit = Arc<dyn Fn(&DepositOffer) -> bool + Send + Sync>;

/// Why a query or a channel was refused; nothing was signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The query could cost more than the maximum price.
    #[error("this query could cost {cost}, above the maximum price per query of {max}; nothing was signed")]
    PriceAboveMax {
        /// Its ceiling, in human units.
        cost: String,
        /// The limit, in human units.
        max: String,
    },
    /// The budget for the brand or the day would be exceeded.
    #[error("{which}: {spent} spent today and this query could cost {cost}, above the budget of {budget}; nothing was signed")]
    Budget {
        /// `budget for bob.devnet` or `daily budget`.
        which: String,
        /// Already spent (or reserved) today.
        spent: String,
        /// This query's ceiling.
        cost: String,
        /// The budget.
        budget: String,
    },
    /// The deposit is above the maximum, or the user said no.
    #[error("{offer} was not opened: {why}")]
    Deposit {
        /// What would have been opened.
        offer: String,
        /// Why not.
        why: String,
    },
}

impl LimitError {
    /// What the user can do.
    pub fn action(&self) -> &'static str {
        match self {
            LimitError::PriceAboveMax { .. } => {
                "ask for less (fewer messages, a lower max_tokens) or raise --max-price"
            }
            LimitError::Budget { .. } => "wait for the next UTC day or raise the budget",
            LimitError::Deposit { .. } => {
                "open the channel yourself (`agentwire channel open`), lower --deposit-queries, or raise --max-deposit"
            }
        }
    }
}

/// An amount for people: NEAR with its decimals, a token in its smallest unit.
pub fn human(amount: u128, currency: &Currency) -> String {
    match currency {
        Currency::Near => format!("{} NEAR", format_units(amount, NEAR_DECIMALS)),
        Currency::Token(t) => format!("{amount} {t} (smallest units)"),
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Spent {
    /// The UTC day (days since 1970-01-01) these counts are for.
    day: u64,
    /// Per currency text: spent (or reserved) today.
    #[serde(with = "amount_map")]
    today: HashMap<String, u128>,
    /// Per `brand currency`: spent (or reserved) today.
    #[serde(with = "amount_map")]
    brands: HashMap<String, u128>,
}

/// A query's ceiling held against the budgets until its cost is known.
#[derive(Debug)]
#[must_use = "a reservation is settled with what the query cost"]
pub struct Reservation {
    brand: String,
    currency: Currency,
    day: u64,
    amount: u128,
}

impl Reservation {
    /// What is held.
    pub fn amount(&self) -> u128 {
        self.amount
    }
}

/// The user's spending controls and what was spent today.
pub struct Spending {
    limits: HashMap<Currency, Limits>,
    confirm: Option<ConfirmDeposit>,
    file: Option<PathBuf>,
    spent: Mutex<Spent>,
}

impl std::fmt::Debug for Spending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spending").field("limits", &self.limits).field("file", &self.file).finish()
    }
}

impl Default for Spending {
    fn default() -> Self {
        Spending::unlimited()
    }
}

fn today(now_secs: u64) -> u64 {
    now_secs / 86_400
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Spending {
    /// No limits, no confirmation.
    pub fn unlimited() -> Spending {
        Spending { limits: HashMap::new(), confirm: None, file: None, spent: Mutex::new(Spent::default()) }
    }

    /// `limits` per currency; with `file`, today's spending is kept there
    /// (read now, rewritten atomically on every change).
    pub fn new(limits: HashMap<Currency, Limits>, file: Option<&Path>) -> std::io::Result<Spending> {
        let limits: HashMap<Currency, Limits> = limits.into_iter().filter(|(_, l)| !l.is_empty()).collect();
        let spent = match file {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Spent::default(),
                Err(e) => return Err(e),
            },
            None => Spent::default(),
        };
        Ok(Spending { limits, confirm: None, file: file.map(Path::to_path_buf), spent: Mutex::new(spent) })
    }

    /// Asks `confirm` before every channel is opened.
    pub fn confirm_deposits(mut self, confirm: ConfirmDeposit) -> Spending {
        self.confirm = Some(confirm);
        self
    }

    /// The limits of `currency`.
    pub fn limits(&self, currency: &Currency) -> Option<&Limits> {
        self.limits.get(currency)
    }

    /// Whether a daily budget (per brand or overall) bounds `currency`: the
    /// payer then signs no more than the requests it sends need (no paying
    /// ahead), so what a brand holds signed beyond its charges is only what
    /// the budget reserved for the requests in flight.
    pub fn has_budget(&self, currency: &Currency) -> bool {
        self.limits.get(currency).is_some_and(|l| l.per_brand_per_day.is_some() || l.per_day.is_some())
    }

    /// Checks the deposit of a channel about to be opened: under the maximum, and confirmed.
    pub fn allow_deposit(&self, offer: &DepositOffer) -> Result<(), LimitError> {
        if let Some(max) = self.limits.get(&offer.currency).and_then(|l| l.max_deposit) {
            if offer.deposit > max {
                return Err(LimitError::Deposit {
                    offer: offer.describe(),
                    why: format!("the deposit is above the maximum of {}", human(max, &offer.currency)),
                });
            }
        }
        if let Some(confirm) = &self.confirm {
            if !confirm(offer) {
                return Err(LimitError::Deposit { offer: offer.describe(), why: "not confirmed".into() });
            }
        }
        Ok(())
    }

    /// Holds `cost` (a query's ceiling) for `brand` against the limits, or refuses.
    pub fn reserve(&self, brand: &str, currency: &Currency, cost: u128) -> Result<Reservation, LimitError> {
        self.reserve_at(brand, currency, cost, now())
    }

    fn reserve_at(&self, brand: &str, currency: &Currency, cost: u128, now: u64) -> Result<Reservation, LimitError> {
        let day = today(now);
        if let Some(max) = self.limits.get(currency).and_then(|l| l.max_price) {
            if cost > max {
                return Err(LimitError::PriceAboveMax { cost: human(cost, currency), max: human(max, currency) });
            }
        }
        self.hold(brand, currency, cost, day)?;
        Ok(Reservation { brand: brand.to_owned(), currency: currency.clone(), day, amount: cost })
    }

    /// Counts `cost` against the day's budgets, or refuses.
    fn hold(&self, brand: &str, currency: &Currency, cost: u128, day: u64) -> Result<(), LimitError> {
        let Some(limits) = self.limits.get(currency) else { return Ok(()) };
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        if spent.day != day {
            *spent = Spent { day, ..Spent::default() };
        }
        let brand_key = format!("{brand} {currency}");
        let checks = [
            (
                format!("budget for {brand}"),
                limits.per_brand_per_day,
                spent.brands.get(&brand_key).copied().unwrap_or(0),
            ),
            ("daily budget".to_owned(), limits.per_day, spent.today.get(currency.as_text()).copied().unwrap_or(0)),
        ];
        for (which, budget, so_far) in checks {
            let Some(budget) = budget else { continue };
            if so_far.checked_add(cost).is_none_or(|t| t > budget) {
                return Err(LimitError::Budget {
                    which,
                    spent: human(so_far, currency),
                    cost: human(cost, currency),
                    budget: human(budget, currency),
                });
            }
        }
        let b = spent.brands.entry(brand_key).or_insert(0);
        *b = b.saturating_add(cost);
        let t = spent.today.entry(currency.as_text().to_owned()).or_insert(0);
        *t = t.saturating_add(cost);
        self.save(&spent);
        Ok(())
    }

    /// Adds `more` to a reservation (a metered stream's next increment), or refuses.
    pub fn extend(&self, reservation: &mut Reservation, more: u128) -> Result<(), LimitError> {
        let total = reservation.amount.saturating_add(more);
        if let Some(max) = self.limits.get(&reservation.currency).and_then(|l| l.max_price) {
            if total > max {
                return Err(LimitError::PriceAboveMax {
                    cost: human(total, &reservation.currency),
                    max: human(max, &reservation.currency),
                });
            }
        }
        // The increment alone against the budgets (the reservation is already counted).
        self.hold(&reservation.brand, &reservation.currency, more, reservation.day)?;
        reservation.amount = total;
        Ok(())
    }

    /// The query cost `actual` (0: not charged): the rest of its reservation returns to the budgets.
    pub fn settle(&self, reservation: Reservation, actual: u128) {
        let back = reservation.amount.saturating_sub(actual);
        if back == 0 || !self.limits.contains_key(&reservation.currency) {
            return;
        }
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        if spent.day != reservation.day {
            return; // yesterday's spending no longer counts
        }
        let brand_key = format!("{} {}", reservation.brand, reservation.currency);
        if let Some(v) = spent.brands.get_mut(&brand_key) {
            *v = v.saturating_sub(back);
        }
        if let Some(v) = spent.today.get_mut(reservation.currency.as_text()) {
            *v = v.saturating_sub(back);
        }
        self.save(&spent);
    }

    /// Spent (or held) today: (currency, amount) over all brands.
    pub fn spent_today(&self) -> Vec<(String, u128)> {
        let spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        if spent.day != today(now()) {
            return Vec::new();
        }
        let mut v: Vec<(String, u128)> = spent.today.iter().map(|(c, a)| (c.clone(), *a)).collect();
        v.sort();
        v
    }

    fn save(&self, spent: &Spent) {
        let Some(path) = &self.file else { return };
        if let Err(e) = write_atomically(path, &serde_json::to_vec(spent).unwrap_or_default()) {
            tracing::warn!(error = %e, path = %path.display(), "could not record today's spending");
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

mod amount_map {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &HashMap<String, u128>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<HashMap<_, _>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, u128>, D::Error> {
        let m = HashMap::<String, String>::deserialize(d)?;
        m.into_iter()
            .map(|(k, v)| v.parse().map(|v| (k, v)).map_err(|_| serde::de::Error::custom("not an amount")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spending(limits: Limits, file: Option<&Path>) -> Spending {
        Spending::new(HashMap::from([(Currency::Near, limits)]), file).unwrap()
    }

    #[test]
    fn budgets_refuse_before_anything_is_spent_and_settling_returns_the_rest() {
        let s = spending(
            Limits { max_price: Some(50), per_brand_per_day: Some(100), per_day: Some(150), max_deposit: None },
            None,
        );
        let day = 20_000 * 86_400;
        assert!(matches!(s.reserve_at("a", &Currency::Near, 51, day), Err(LimitError::PriceAboveMax { .. })));
        let r1 = s.reserve_at("a", &Currency::Near, 50, day).unwrap();
        let r2 = s.reserve_at("a", &Currency::Near, 50, day).unwrap();
        let e = s.reserve_at("a", &Currency::Near, 1, day).unwrap_err();
        assert!(e.to_string().contains("budget for a"), "{e}");
        // The answer cost 10 of its 50: 40 come back.
        s.settle(r1, 10);
        let r3 = s.reserve_at("a", &Currency::Near, 40, day).unwrap();
        let r4 = s.reserve_at("b", &Currency::Near, 50, day).unwrap();
        let e = s.reserve_at("b", &Currency::Near, 1, day).unwrap_err();
        assert!(e.to_string().contains("daily budget"), "{e}");
        // A new day starts afresh.
        let r5 = s.reserve_at("b", &Currency::Near, 50, day + 86_400).unwrap();
        // Other currencies have no limits here.
        let token = Currency::parse("usdc.near").unwrap();
        let r6 = s.reserve_at("a", &token, u128::MAX, day).unwrap();
        for r in [r2, r3, r4, r5, r6] {
            s.settle(r, 0);
        }
    }

    #[test]
    fn increments_count_against_the_price_and_the_budgets() {
        let s = spending(Limits { max_price: Some(30), per_brand_per_day: Some(100), ..Limits::default() }, None);
        let day = 7 * 86_400;
        let mut r = s.reserve_at("a", &Currency::Near, 20, day).unwrap();
        s.extend(&mut r, 10).unwrap();
        assert_eq!(r.amount(), 30);
        assert!(matches!(s.extend(&mut r, 1), Err(LimitError::PriceAboveMax { .. })));
        s.settle(r, 30);
    }

    #[test]
    fn spending_survives_a_restart_and_deposits_are_checked() {
        let dir = std::env::temp_dir().join(format!("agentwire-spending-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("spending.json");
        let _ = std::fs::remove_file(&file);
        let limits = Limits { per_day: Some(100), max_deposit: Some(1000), ..Limits::default() };
        let s = spending(limits.clone(), Some(&file));
        let r = s.reserve("a", &Currency::Near, 80).unwrap();
        s.settle(r, 70);
        drop(s);
        let s = spending(limits, Some(&file));
        assert!(s.reserve("a", &Currency::Near, 31).is_err(), "70 were spent before the restart");
        let offer = DepositOffer { payee: "a".into(), currency: Currency::Near, deposit: 1001 };
        assert!(matches!(s.allow_deposit(&offer), Err(LimitError::Deposit { .. })));
        let no = s.confirm_deposits(Arc::new(|o: &DepositOffer| o.deposit < 10));
        assert!(no.allow_deposit(&DepositOffer { deposit: 500, ..offer.clone() }).is_err());
        assert!(no.allow_deposit(&DepositOffer { deposit: 5, ..offer }).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
