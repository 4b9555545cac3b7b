//! Every gateway error as an HTTP status, a stable code, the cause and one
//! action written for the client, in the gateway's own shape
//! (`{"error": {"code", "message", "action"}}`) or OpenAI's
//! (`{"error": {"message", "type", "param", "code"}}`, with `action` added).
//!
//! Status by who must act: 400 fix the request, 402 payment or a spending
//! limit, 404 no such brand, service or model (only when the DHT's walk
//! finished and nobody has it), 502 the brand or its upstream failed, 503
//! retry later (no DHT peers, the chain unreachable), 504 a wait ran out.

use agentwire_protocol::pricing::PriceError;
use agentwire_protocol::wire::{Action, ErrorCode};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::http::{json_response, Body};
use crate::dht::DhtError;
use crate::pay::{PayError, QueryError};
use crate::user::UserError;

/// One error for the HTTP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code (the wire code's name for a brand's error).
    pub code: String,
    /// The cause.
    pub message: String,
    /// What the client should do.
    pub action: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
}

impl ApiError {
    /// An error with no field at fault.
    pub fn new(status: StatusCode, code: &str, message: impl std::fmt::Display, action: &str) -> ApiError {
        ApiError { status, code: code.to_owned(), message: message.to_string(), action: action.to_owned(), param: None }
    }

    /// The same, naming the request field at fault.
    pub fn param(mut self, param: Option<&str>) -> ApiError {
        self.param = param.map(str::to_owned);
        self
    }

    /// The gateway's own shape.
    pub fn native_json(&self) -> Value {
        json!({ "error": { "code": self.code, "message": self.message, "action": self.action } })
    }

    /// OpenAI's shape (with `action`).
    pub fn openai_json(&self) -> Value {
        json!({ "error": {
            "message": self.message,
            "type": self.openai_type(),
            "param": self.param,
            "code": self.code,
            "action": self.action,
        } })
    }

    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 404 | 405 | 413 => "invalid_request_error",
            401 => "authentication_error",
            402 => "payment_error",
            _ => "api_error",
        }
    }

    /// As a response in the gateway's shape.
    pub fn native(&self) -> Response<Body> {
        json_response(self.status, &self.native_json())
    }

    /// As a response in OpenAI's shape.
    pub fn openai(&self) -> Response<Body> {
        json_response(self.status, &self.openai_json())
    }
}

/// The status and action for an error a brand sent (by the code's action, spec §10).
fn remote(code: ErrorCode, message: &str) -> ApiError {
    let (status, action) = match code {
        ErrorCode::UnknownService => {
            (StatusCode::NOT_FOUND, "ask for a service (or model) the brand offers; the message lists them")
        }
        ErrorCode::TooLarge => (StatusCode::BAD_REQUEST, "send less: a shorter request or a lower max_tokens"),
        ErrorCode::UpstreamFailed => (
            StatusCode::BAD_GATEWAY,
            "the brand's model or API failed: retry later or use another brand (you were not charged)",
        ),
        ErrorCode::UpstreamTimeout => {
            (StatusCode::GATEWAY_TIMEOUT, "the brand's model or API was too slow: retry later (you were not charged)")
        }
        ErrorCode::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "slow down, then retry"),
        c => match c.action() {
            Action::FixRequest => (StatusCode::BAD_REQUEST, "fix the request as the message says"),
            Action::Pay => {
                (StatusCode::PAYMENT_REQUIRED, "check the payer's channel and balance (GET /v1/channels), then retry")
            }
            Action::RetryLater => (StatusCode::SERVICE_UNAVAILABLE, "retry in a moment"),
            Action::Reconnect => (StatusCode::BAD_GATEWAY, "retry: the gateway opens a new session"),
            Action::GiveUp => (StatusCode::BAD_GATEWAY, "use another brand"),
        },
    };
    ApiError::new(status, code.name(), format!("the brand answered: {message}"), action)
}

/// A query's failure.
pub fn query_error(e: &QueryError) -> ApiError {
    match e {
        QueryError::NoPayer { .. } => ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "NoPayer",
            e,
            "start the gateway with --near-account and --near-key-file to pay",
        ),
        QueryError::Pay(PayError::Receipt(_)) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "BadReceipt",
            e,
            "do not use this brand again; keep the receipt as evidence",
        ),
        QueryError::Pay(PayError::Limit(l)) => {
            ApiError::new(StatusCode::PAYMENT_REQUIRED, "SpendingLimit", e, l.action())
        }
        QueryError::Pay(PayError::Chain(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ChainUnavailable",
            e,
            "check that the NEAR RPC is reachable and the account funded, then retry",
        ),
        QueryError::Pay(PayError::PriceAboveRecord { .. } | PayError::WrongCurrency { .. }) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "BadPriceRequest",
            e,
            "use another brand: this one asks more than its record",
        ),
        QueryError::Pay(_) => ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "PaymentFailed",
            e,
            "check the payer's balance and channel (GET /v1/channels), then retry",
        ),
        QueryError::Transport(t) => match t.remote() {
            Some((code, message)) => remote(code, message),
            None => ApiError::new(StatusCode::BAD_GATEWAY, "Unreachable", e, "the brand did not answer: retry later"),
        },
        QueryError::NoPayments => {
            ApiError::new(StatusCode::BAD_GATEWAY, "NoPayments", e, "use another brand: this one takes no payments")
        }
        QueryError::BadRequest(p) => bad_price(p),
    }
}

/// A request the record's pricing refuses (spec §6.2).
pub fn bad_price(p: &PriceError) -> ApiError {
    let code = match p {
        PriceError::Chat(_) => "InvalidChatRequest",
        PriceError::MaxTokensAboveCap { .. } => "MaxTokensAboveCap",
        PriceError::AboveCeiling { .. } => "AboveCeiling",
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, p, "fix the request as the message says").param(p.field())
}

/// A discovery or session failure.
pub fn user_error(e: &UserError) -> ApiError {
    match e {
        UserError::Dht(d) => dht_error(d),
        UserError::NotRegistered(_) => ApiError::new(StatusCode::NOT_FOUND, "NotRegistered", e, e.action()),
        UserError::Registry(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "RegistryUnavailable",
            e,
            "check that the NEAR RPC is reachable, or start the gateway with --skip-registry-check",
        ),
        UserError::Transport(_) | UserError::NoAddress => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Unreachable",
            e,
            "the brand did not answer: retry later, or use another brand",
        ),
        UserError::Unanswered(_) => ApiError::new(StatusCode::BAD_GATEWAY, "Unanswered", e, e.action()),
    }
}

/// A DHT failure, by what it means: 404 only when the walk finished and
/// nobody has the name; 5xx when the walk could not finish.
pub fn dht_error(e: &DhtError) -> ApiError {
    let (status, code) = match e {
        DhtError::NotFound { .. } | DhtError::NoValidRecord { .. } => (StatusCode::NOT_FOUND, "NotFound"),
        DhtError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "DhtTimeout"),
        DhtError::NoPeers { .. } | DhtError::BootstrapUnreachable(_) | DhtError::Stopped => {
            (StatusCode::SERVICE_UNAVAILABLE, "DhtUnavailable")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "DhtFailed"),
    };
    ApiError::new(status, code, e, e.action())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dht_errors_are_404_only_for_not_found_and_5xx_for_waits_and_no_peers() {
        let nf = DhtError::NotFound { what: "account x.near".into(), asked: 3 };
        assert_eq!(dht_error(&nf).status, StatusCode::NOT_FOUND);
        let t = DhtError::Timeout { what: "x".into(), timeout: std::time::Duration::from_secs(1) };
        assert_eq!(dht_error(&t).status, StatusCode::GATEWAY_TIMEOUT);
        let np = DhtError::NoPeers { what: "x".into() };
        let e = dht_error(&np);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.action, np.action(), "the DHT's own action, written for a person");
        assert!(!e.action.contains('§'));
    }

    #[test]
    fn a_brands_error_gets_a_status_by_its_action_and_words_not_a_spec_section() {
        for code in ErrorCode::ALL {
            let e = remote(*code, "x");
            assert!(!e.action.contains('§'), "{code:?}: {}", e.action);
            assert_eq!(e.code, code.name());
            let want = match code.action() {
                Action::Pay => 402,
                Action::FixRequest => {
                    if *code == ErrorCode::UnknownService {
                        404
                    } else {
                        400
                    }
                }
                _ => e.status.as_u16().max(500),
            };
            if *code != ErrorCode::RateLimited {
                assert_eq!(e.status.as_u16(), want, "{code:?}");
            }
        }
        assert_eq!(remote(ErrorCode::UpstreamTimeout, "x").status, StatusCode::GATEWAY_TIMEOUT);
    }
}
