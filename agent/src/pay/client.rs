//! One query from a user agent, paid if the brand's record prices it
//! (spec §13.5–13.7): sign a voucher for the price, send, answer a
//! PaymentRequired by resyncing and paying again on a new stream, pay a
//! metered stream's increments, and check the receipt of what arrived.

use std::future::Future;

use agentwire_protocol::payment::{SignedReceipt, SignedVoucher};
use agentwire_protocol::record::{Currency, SignedRecord};
use agentwire_protocol::wire::ErrorCode;
use sha2::{Digest, Sha256};

use super::payer::{PayError, Payer};
use crate::quic::{Connection, FirstAnswer, StreamEvent, TransportError};

/// How many times one query is re-sent after a PaymentRequired.
pub const MAX_PAYMENT_RETRIES: usize = 3;

/// What a query produced.
#[derive(Debug)]
pub struct QueryOutcome {
    /// The whole answer (a response body, or the chunks in order).
    pub body: Vec<u8>,
    /// Whether it was streamed.
    pub streamed: bool,
    /// What it cost (sum of the vouchers' increments).
    pub paid: u128,
    /// The brand's receipt, checked (present if paid).
    pub receipt: Option<SignedReceipt>,
}

/// Why a query failed, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The session or the brand failed (see the code's action, spec §10).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Paying failed (funds, chain, a bad receipt).
    #[error(transparent)]
    Pay(#[from] PayError),
    /// The brand wants payment and no payer is configured.
    #[error("the service costs {price} ({currency}); configure a NEAR account to pay")]
    NoPayer {
        /// The price.
        price: u128,
        /// Its currency.
        currency: String,
    },
}

fn currency_text(c: &Currency) -> String {
    match c {
        Currency::Near => "yoctoNEAR".into(),
        Currency::Token(t) => t.as_str().to_owned(),
    }
}

/// Asks `service` of the brand behind `record` over `conn`, paying with
/// `payer` if it is priced; `on_chunk` gets each streamed chunk as it
/// arrives (and is awaited, so a slow consumer slows the stream down).
pub async fn query<F: Future<Output = ()>>(
    conn: &Connection,
    record: &SignedRecord,
    service: &str,
    body: Vec<u8>,
    payer: Option<&Payer>,
    mut on_chunk: impl FnMut(&[u8]) -> F,
) -> Result<QueryOutcome, QueryError> {
    let r = record.record();
    let payee = r.near_account.as_str().to_owned();
    let offer = r.services.iter().find(|s| s.name == service);
    let mut price = offer.map_or(0, |s| s.price);
    // No single payment may exceed what the record advertises.
    let cap = price;
    let currency = offer.map_or(Currency::Near, |s| s.currency.clone());
    let mut attempts = 0;
    loop {
        let voucher = match (price, payer) {
            (0, _) => None,
            (p, Some(payer)) => payer.pay_or_ask(&payee, &currency, r.min_deposit, p).await?,
            (p, None) => return Err(QueryError::NoPayer { price: p, currency: currency_text(&currency) }),
        };
        let paid_now = if voucher.is_some() { price } else { 0 };
        match conn.call_hashed(service, body.clone(), voucher.clone()).await {
            Ok((first, request_hash)) => {
                let outcome = match finish(first, &payee, &currency, payer, paid_now, cap, &mut on_chunk).await {
                    Ok(o) => o,
                    Err(QueryError::Transport(e)) => {
                        if let (Some(p), Some(_), true) = (payer, &voucher, unanswered(&e)) {
                            p.unanswered(&payee, &currency).await;
                        }
                        return Err(e.into());
                    }
                    Err(e) => return Err(e),
                };
                if let (Some(payer), Some(v), Some(request_hash)) = (payer, &voucher, request_hash) {
                    let receipt =
                        outcome.receipt.as_ref().ok_or(PayError::Receipt("a paid answer came without a receipt"))?;
                    let response_hash = outcome.response_hash;
                    payer
                        .check_receipt(&payee, &currency, &r.identity, receipt, v, &request_hash, &response_hash)
                        .await?;
                }
                return Ok(outcome.into_outcome());
            }
            Err(TransportError::PaymentRequired(pr)) if attempts < MAX_PAYMENT_RETRIES => {
                attempts += 1;
                let Some(p) = payer else {
                    return Err(QueryError::NoPayer { price: pr.price, currency: currency_text(&pr.currency) });
                };
                if pr.currency != currency || pr.price > cap {
                    return Err(PayError::Price(format!(
                        "asked {} {} for a service the record prices at {cap} {}",
                        pr.price,
                        currency_text(&pr.currency),
                        currency_text(&currency)
                    ))
                    .into());
                }
                p.credit_used_up(&payee, &currency).await;
                if let Some(last) = &pr.last_voucher {
                    p.resync(&payee, &currency, last).await?;
                }
                tracing::debug!(price = %pr.price, "payment required; paying and retrying");
                price = pr.price;
            }
            Err(e) => {
                if let (Some(p), Some(_)) = (payer, &voucher) {
                    if unanswered(&e) {
                        p.unanswered(&payee, &currency).await;
                    }
                }
                return Err(e.into());
            }
        }
    }
}

/// Whether a paid request's failure means no answer was delivered (so the
/// brand may hold its payment as credit), rather than a refusal.
fn unanswered(e: &TransportError) -> bool {
    match e {
        TransportError::Remote { code, .. } => matches!(
            code,
            ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::UpstreamFailed | ErrorCode::UpstreamTimeout
        ),
        TransportError::PaymentRequired(_) => false,
        _ => true,
    }
}

struct Finished {
    body: Vec<u8>,
    streamed: bool,
    paid: u128,
    receipt: Option<SignedReceipt>,
    response_hash: [u8; 32],
}

impl Finished {
    fn into_outcome(self) -> QueryOutcome {
        QueryOutcome { body: self.body, streamed: self.streamed, paid: self.paid, receipt: self.receipt }
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish<F: Future<Output = ()>>(
    first: FirstAnswer,
    payee: &str,
    currency: &Currency,
    payer: Option<&Payer>,
    mut paid: u128,
    cap: u128,
    on_chunk: &mut impl FnMut(&[u8]) -> F,
) -> Result<Finished, QueryError> {
    let mut increments = 0u32;
    match first {
        FirstAnswer::Response(r) => {
            let response_hash = Sha256::digest(&r.body).into();
            Ok(Finished { body: r.body, streamed: false, paid, receipt: r.receipt, response_hash })
        }
        FirstAnswer::Stream(mut s) => {
            let mut all = Vec::new();
            loop {
                match s.next_event().await? {
                    StreamEvent::Chunk(c) => {
                        on_chunk(&c).await;
                        all.extend_from_slice(&c);
                    }
                    StreamEvent::PaymentRequired(pr) => {
                        let Some(payer) = payer else {
                            return Err(TransportError::Remote {
                                code: ErrorCode::PaymentRequired,
                                message: "metered stream and no payer".into(),
                            }
                            .into());
                        };
                        if &pr.currency != currency || pr.price > cap {
                            let e = "increment above the record's price or in another currency";
                            return Err(PayError::Price(e.into()).into());
                        }
                        increments += 1;
                        if increments > payer.config().max_increments {
                            return Err(
                                PayError::Price("the stream asks for more increments than allowed".into()).into()
                            );
                        }
                        let v: SignedVoucher = payer.pay(payee, currency, 0, pr.price).await?;
                        paid = paid.checked_add(pr.price).ok_or(PayError::Price("overflow".into()))?;
                        s.pay(v).await?;
                    }
                    StreamEvent::End => break,
                }
            }
            let receipt = s.receipt().cloned();
            Ok(Finished { body: all, streamed: true, paid, receipt, response_hash: s.response_hash() })
        }
    }
}
