//! What a service speaks and how it is priced (spec §6.2), and the one rule
//! both sides use to price a request: the payer to know what to sign, the
//! payee to know what to admit. A request is admitted at its ceiling (the
//! most it can cost); under per-token pricing the brand then charges what
//! the upstream counted, and the rest is the payer's credit (spec §13.10).

use core::fmt;

use crate::chat::{ChatError, ChatRequest, Usage};

/// What a service's request and answer bodies are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interface {
    /// Bytes in, bytes out (usually UTF-8 text); the v1 default.
    Text,
    /// A typed chat request in, chat events out (spec §13.11).
    Chat,
}

impl Interface {
    /// The record's number for it.
    pub fn code(self) -> u64 {
        match self {
            Interface::Text => 0,
            Interface::Chat => 1,
        }
    }

    /// The interface of a record number.
    pub fn from_code(n: u64) -> Option<Interface> {
        match n {
            0 => Some(Interface::Text),
            1 => Some(Interface::Chat),
            _ => None,
        }
    }

    /// Its name (`text`, `chat`).
    pub fn name(self) -> &'static str {
        match self {
            Interface::Text => "text",
            Interface::Chat => "chat",
        }
    }
}

/// How a service is charged. The service's `price` stays the most one
/// payment can be, whatever the pricing, so a payer that reads only `price`
/// is never asked for more.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pricing {
    /// `price` per request (the v1 default).
    PerQuery,
    /// Per token of a chat request: the request is admitted at its ceiling
    /// (prompt bound × `input` + max tokens × `output`) and charged what the
    /// upstream counted.
    PerToken {
        /// Price of one prompt token.
        input: u128,
        /// Price of one generated token.
        output: u128,
        /// The most tokens the brand generates for one request (its cap).
        max_output_tokens: u32,
    },
    /// A streamed answer paid by groups of chunks (spec §13.7): `price` buys
    /// the first `chunks` chunks, each further group costs `increment`.
    Metered {
        /// Chunks per payment, at least 1.
        chunks: u32,
        /// Price of each further group, at most `price`.
        increment: u128,
    },
}

/// Why a request cannot be priced (and so is refused before anything is signed or admitted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceError {
    /// The body is not a valid chat request (spec §13.11).
    Chat(ChatError),
    /// `max_tokens` is above the service's `max_output_tokens`.
    MaxTokensAboveCap {
        /// What the request asked for.
        asked: u32,
        /// The service's cap.
        cap: u32,
    },
    /// The request's ceiling is above the service's `price`: shorten the messages or lower max_tokens.
    AboveCeiling {
        /// The request's ceiling.
        cost: u128,
        /// The service's price.
        price: u128,
    },
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceError::Chat(e) => e.fmt(f),
            PriceError::MaxTokensAboveCap { asked, cap } => {
                write!(f, "max_tokens {asked} is above this service's cap of {cap}")
            }
            PriceError::AboveCeiling { cost, price } => write!(
                f,
                "the request could cost {cost}, above the service's ceiling price {price}: shorten the messages or lower max_tokens"
            ),
        }
    }
}

impl std::error::Error for PriceError {}

impl PriceError {
    /// The request field at fault, for an error's `param`.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            PriceError::Chat(e) => e.field(),
            PriceError::MaxTokensAboveCap { .. } => Some("max_tokens"),
            PriceError::AboveCeiling { .. } => Some("messages"),
        }
    }
}

impl Pricing {
    /// Checks the pricing against the service's `price` and interface (spec §6.2):
    /// per-token pricing needs the chat interface, a cap of at least one token
    /// and a price that covers the cap's output; a metered increment is at
    /// least one chunk and costs at most `price`.
    pub fn valid(&self, price: u128, interface: Interface) -> bool {
        match self {
            Pricing::PerQuery => true,
            Pricing::PerToken { output, max_output_tokens, .. } => {
                interface == Interface::Chat
                    && *max_output_tokens >= 1
                    && output.checked_mul(u128::from(*max_output_tokens)).is_some_and(|o| o <= price)
            }
            Pricing::Metered { chunks, increment } => *chunks >= 1 && *increment <= price,
        }
    }

    /// What a request with `body` is admitted for (spec §6.2, "admission
    /// price"): `price` under per-query and metered pricing; under per-token
    /// pricing `input × prompt_bound + output × max_tokens`, where
    /// `max_tokens` is the request's or else the cap, refused when it is
    /// above the cap or the total is above `price`.
    pub fn admission(&self, price: u128, body: &[u8]) -> Result<u128, PriceError> {
        let Pricing::PerToken { input, output, max_output_tokens } = self else { return Ok(price) };
        let request = ChatRequest::decode(body).map_err(PriceError::Chat)?;
        let tokens = request.max_tokens.unwrap_or(*max_output_tokens);
        if tokens > *max_output_tokens {
            return Err(PriceError::MaxTokensAboveCap { asked: tokens, cap: *max_output_tokens });
        }
        let cost = input
            .checked_mul(request.prompt_bound())
            .and_then(|i| output.checked_mul(u128::from(tokens)).and_then(|o| i.checked_add(o)));
        match cost {
            Some(cost) if cost <= price => Ok(cost),
            Some(cost) => Err(PriceError::AboveCeiling { cost, price }),
            None => Err(PriceError::AboveCeiling { cost: u128::MAX, price }),
        }
    }

    /// What an answer that used `usage` costs under per-token pricing:
    /// `input × prompt_tokens + output × completion_tokens`, never above
    /// `admitted` (the brand charges at most what it admitted). `None` for
    /// other pricings (they charge what they admitted).
    pub fn charge(&self, usage: &Usage, admitted: u128) -> Option<u128> {
        let Pricing::PerToken { input, output, .. } = self else { return None };
        let cost = input
            .checked_mul(u128::from(usage.prompt_tokens))
            .and_then(|i| output.checked_mul(u128::from(usage.completion_tokens)).and_then(|o| i.checked_add(o)));
        Some(cost.map_or(admitted, |c| c.min(admitted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_TOKEN: Pricing = Pricing::PerToken { input: 2, output: 5, max_output_tokens: 100 };

    #[test]
    fn a_per_token_request_is_admitted_at_its_ceiling_and_charged_its_usage() {
        let body = ChatRequest::ask("hello").encode();
        // 2 × (16 + 16 + 5) + 5 × 100
        assert_eq!(PER_TOKEN.admission(10_000, &body), Ok(2 * 37 + 500));
        let mut r = ChatRequest::ask("hello");
        r.max_tokens = Some(10);
        assert_eq!(PER_TOKEN.admission(10_000, &r.encode()), Ok(2 * 37 + 50));
        r.max_tokens = Some(101);
        assert_eq!(
            PER_TOKEN.admission(10_000, &r.encode()),
            Err(PriceError::MaxTokensAboveCap { asked: 101, cap: 100 })
        );
        assert_eq!(PER_TOKEN.admission(500, &body), Err(PriceError::AboveCeiling { cost: 574, price: 500 }));
        assert!(matches!(PER_TOKEN.admission(10_000, b"{"), Err(PriceError::Chat(_))));
        let usage = Usage { prompt_tokens: 9, completion_tokens: 7 };
        assert_eq!(PER_TOKEN.charge(&usage, 574), Some(18 + 35));
        assert_eq!(PER_TOKEN.charge(&Usage { prompt_tokens: 1000, completion_tokens: 1000 }, 574), Some(574));
        let huge = Pricing::PerToken { input: u128::MAX, output: 1, max_output_tokens: 1 };
        assert_eq!(huge.charge(&usage, 7), Some(7), "an overflow charges at most what was admitted");
        assert_eq!(
            huge.admission(u128::MAX, &body),
            Err(PriceError::AboveCeiling { cost: u128::MAX, price: u128::MAX })
        );
        // Per query and metered: the price, whatever the body.
        assert_eq!(Pricing::PerQuery.admission(7, b"anything"), Ok(7));
        assert_eq!(Pricing::PerQuery.charge(&usage, 7), None);
    }

    #[test]
    fn pricing_rules() {
        assert!(PER_TOKEN.valid(500, Interface::Chat));
        assert!(!PER_TOKEN.valid(499, Interface::Chat), "the price must cover the cap's output");
        assert!(!PER_TOKEN.valid(500, Interface::Text), "per-token pricing needs the chat interface");
        assert!(!Pricing::PerToken { input: 1, output: 1, max_output_tokens: 0 }.valid(9, Interface::Chat));
        assert!(Pricing::Metered { chunks: 3, increment: 5 }.valid(5, Interface::Text));
        assert!(!Pricing::Metered { chunks: 0, increment: 5 }.valid(5, Interface::Text));
        assert!(!Pricing::Metered { chunks: 3, increment: 6 }.valid(5, Interface::Text));
        assert_eq!(Interface::from_code(2), None);
    }
}
