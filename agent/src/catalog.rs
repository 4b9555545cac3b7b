//! What a user agent knows of the services on the DHT, for the gateway's
//! `GET /v1/models` and the MCP server's search: the DHT is keyed by name
//! (an account, a service), not searchable by words, so a catalog looks up
//! service names (the ones it is told to discover, and each word of a
//! search that is a valid name), keeps every fresh record it has seen, and
//! matches words against names and descriptions. Prices read in human units.

use std::collections::HashMap;

use agentwire_protocol::identity::AgentId;
use agentwire_protocol::money::{format_units, Currency, NEAR_DECIMALS};
use agentwire_protocol::pricing::Pricing;
use agentwire_protocol::record::{valid_service_name, Service, SignedRecord};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::quic::now_secs;
use crate::user::{Lookup, UserAgent};

/// Most records a catalog keeps (older ones are dropped first).
pub const MAX_RECORDS: usize = 1024;

/// One service of one brand.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The brand's account.
    pub account: String,
    /// Its agent.
    pub agent: AgentId,
    /// The service as the record states it.
    pub service: Service,
}

impl Listing {
    /// The gateway's model id: `<account>/<service>`.
    pub fn model_id(&self) -> String {
        format!("{}/{}", self.account, self.service.name)
    }

    /// The listing as JSON: name, description, interface and pricing with raw and human amounts.
    pub fn to_json(&self) -> Value {
        json!({
            "brand": self.account,
            "service": self.service.name,
            "description": self.service.description,
            "interface": self.service.interface.name(),
            "pricing": pricing_json(&self.service),
            "price_text": price_text(&self.service),
        })
    }
}

/// An amount with its currency, for people: NEAR with its decimals, a token
/// in its smallest unit (its decimals are not in the record).
pub fn amount_text(amount: u128, currency: &Currency) -> String {
    match currency {
        Currency::Near => format!("{} NEAR", format_units(amount, NEAR_DECIMALS)),
        Currency::Token(t) => format!("{amount} {t}"),
    }
}

/// What a service costs, in words: "0.01 NEAR per query", "per token: …".
pub fn price_text(s: &Service) -> String {
    price_text_with(s, |v| amount_text(v, &s.currency))
}

/// [`price_text`] with amounts written by `amount` (e.g. a token in its
/// decimals, read from the chain): what a payer shows before it pays.
pub fn price_text_with(s: &Service, amount: impl Fn(u128) -> String) -> String {
    if s.price == 0 {
        return "free".into();
    }
    match &s.pricing {
        Pricing::PerQuery => format!("{} per query", amount(s.price)),
        Pricing::PerToken { input, output, max_output_tokens } => format!(
            "{} per prompt token, {} per generated token, at most {max_output_tokens} generated; at most {} per request",
            amount(*input),
            amount(*output),
            amount(s.price)
        ),
        Pricing::Metered { chunks, increment } => {
            format!("{} for the first {chunks} chunks, then {} per {chunks} more", amount(s.price), amount(*increment))
        }
    }
}

/// The pricing as JSON (amounts as decimal strings in the smallest unit).
pub fn pricing_json(s: &Service) -> Value {
    let mut v = match &s.pricing {
        Pricing::PerQuery => json!({ "kind": "per_query" }),
        Pricing::PerToken { input, output, max_output_tokens } => json!({
            "kind": "per_token",
            "input": input.to_string(),
            "output": output.to_string(),
            "max_output_tokens": max_output_tokens,
        }),
        Pricing::Metered { chunks, increment } => {
            json!({ "kind": "metered", "chunks": chunks, "increment": increment.to_string() })
        }
    };
    v["price"] = json!(s.price.to_string());
    v["currency"] = json!(s.currency.as_text());
    v
}

/// Records seen, by agent.
#[derive(Default)]
pub struct Catalog {
    records: Mutex<HashMap<AgentId, SignedRecord>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Keeps `records` (the newest of each agent).
    pub async fn add(&self, records: &[SignedRecord]) {
        let mut map = self.records.lock().await;
        for r in records {
            let id = r.record().agent_id();
            let newer = map.get(&id).is_none_or(|old| old.record().seq < r.record().seq);
            if newer {
                map.insert(id, r.clone());
            }
        }
        let now = now_secs();
        map.retain(|_, r| r.check_fresh(now).is_ok());
        while map.len() > MAX_RECORDS {
            let Some(oldest) = map.iter().min_by_key(|(_, r)| r.record().expires_at).map(|(id, _)| *id) else { break };
            map.remove(&oldest);
        }
    }

    /// Looks up each of `names` as a service on the DHT (errors are skipped:
    /// a name nobody offers is simply not listed) and keeps what it finds.
    pub async fn discover(&self, user: &UserAgent, names: &[String]) {
        for name in names.iter().filter(|n| valid_service_name(n)) {
            if let Ok(found) = user.find(&Lookup::Service(name.clone())).await {
                self.add(&found).await;
            }
        }
    }

    /// Every fresh service known, sorted by model id.
    pub async fn listings(&self) -> Vec<Listing> {
        let now = now_secs();
        let map = self.records.lock().await;
        let mut out: Vec<Listing> = map
            .values()
            .filter(|r| r.check_fresh(now).is_ok())
            .flat_map(|r| {
                let rec = r.record();
                rec.services.iter().map(move |s| Listing {
                    account: rec.near_account.as_str().to_owned(),
                    agent: rec.agent_id(),
                    service: s.clone(),
                })
            })
            .collect();
        out.sort_by_key(Listing::model_id);
        out
    }

    /// Services whose name, brand or description contains any of the words
    /// of `query` (case-insensitive), after looking each word up as a
    /// service name; an empty query lists everything known.
    pub async fn search(&self, user: &UserAgent, query: &str, discover: &[String]) -> Vec<Listing> {
        let words: Vec<String> = query
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut names: Vec<String> = discover.to_vec();
        names.extend(words.iter().filter(|w| valid_service_name(w)).cloned());
        names.sort();
        names.dedup();
        self.discover(user, &names).await;
        let all = self.listings().await;
        if words.is_empty() {
            return all;
        }
        all.into_iter()
            .filter(|l| {
                let hay = format!("{} {} {}", l.account, l.service.name, l.service.description).to_lowercase();
                words.iter().any(|w| hay.contains(w.as_str()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_protocol::pricing::Interface;

    #[test]
    fn prices_read_in_human_units() {
        let near = Service::per_query("chat", "", 10u128.pow(22), Currency::Near);
        assert_eq!(price_text(&near), "0.01 NEAR per query");
        let tokens = Service {
            interface: Interface::Chat,
            pricing: Pricing::PerToken { input: 10u128.pow(18), output: 3 * 10u128.pow(18), max_output_tokens: 64 },
            ..Service::per_query("m", "", 10u128.pow(21), Currency::Near)
        };
        assert_eq!(
            price_text(&tokens),
            "0.000001 NEAR per prompt token, 0.000003 NEAR per generated token, at most 64 generated; at most 0.001 NEAR per request"
        );
        assert_eq!(pricing_json(&tokens)["output"], "3000000000000000000");
        let story = Service {
            pricing: Pricing::Metered { chunks: 4, increment: 2 * 10u128.pow(21) },
            ..Service::per_query("story", "", 10u128.pow(22), Currency::Near)
        };
        assert_eq!(price_text(&story), "0.01 NEAR for the first 4 chunks, then 0.002 NEAR per 4 more");
        assert_eq!(pricing_json(&story)["increment"], "2000000000000000000000");
        let usdc = Service::per_query("q", "", 10_000, Currency::parse("usdc.devnet").unwrap());
        assert_eq!(price_text(&usdc), "10000 usdc.devnet per query");
    }
}
