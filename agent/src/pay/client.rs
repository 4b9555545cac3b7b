//! One query from a user agent, paid if the brand's record prices it
//! (spec §13.5–13.10): pay from the ledger, send, answer a PaymentRequired by
//! resyncing and paying again on a new stream, pay a metered stream's
//! increments, check the receipt of what arrived, and take a failed answer's
//! credit statement as proof it was not charged.

use std::future::Future;

use agentwire_protocol::exchange::ExchangeError;
use agentwire_protocol::ledger::Payment;
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedReceipt;
use agentwire_protocol::pricing::PriceError;
use agentwire_protocol::record::SignedRecord;
use sha2::{Digest, Sha256};

use super::limits::Reservation;
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
    /// What it cost: the brand's charged total after it less before it, as
    /// its receipt states (0 for a free service).
    pub paid: u128,
    /// The brand's receipt, checked (present if paid).
    pub receipt: Option<SignedReceipt>,
}

/// Why a query failed, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The session or the brand failed (its code says what to do, spec §10).
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
        currency: Currency,
    },
    /// The brand refused to be paid: it did not announce `pay/1`.
    #[error("the brand's session does not take payments (no pay/1)")]
    NoPayments,
    /// The request cannot be priced from the brand's record (a chat request
    /// that is malformed, or asks more than the service allows): refused
    /// here, before anything is signed.
    #[error("{0}")]
    BadRequest(PriceError),
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
    on_chunk: impl FnMut(&[u8]) -> F,
) -> Result<QueryOutcome, QueryError> {
    let r = record.record();
    let payee = r.near_account.as_str().to_owned();
    let offer = r.services.iter().find(|s| s.name == service);
    // What this request is admitted for: the price, or under per-token
    // pricing the request's ceiling (spec §6.2), computed as the brand does.
    let mut price = match offer {
        Some(s) if s.price > 0 => s.admission(&body).map_err(QueryError::BadRequest)?,
        _ => 0,
    };
    // No single payment may exceed what the record advertises.
    let cap = offer.map_or(0, |s| s.price);
    let currency = offer.map_or(Currency::Near, |s| s.currency.clone());
    // The user's limits hold the ceiling before anything is signed.
    let mut reservation = match (price, payer) {
        (0, _) | (_, None) => None,
        (p, Some(payer)) => Some(payer.spending().reserve(&payee, &currency, p).map_err(PayError::from)?),
    };
    let result = paid_query(conn, record, service, body, payer, on_chunk, &mut price, cap, &currency, &mut reservation).await;
    if let (Some(payer), Some(held)) = (payer, reservation) {
        let cost = match &result {
            Ok(o) => o.paid,
            // The brand answered with an Error (refused before admission, or
            // with a statement that it did not charge): nothing spent.
            Err(QueryError::Transport(e)) if e.remote().is_some() => 0,
            Err(QueryError::Pay(PayError::Receipt(_))) | Err(QueryError::Transport(_)) => held.amount(),
            Err(_) => 0,
        };
        payer.spending().settle(held, cost);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn paid_query<F: Future<Output = ()>>(
    conn: &Connection,
    record: &SignedRecord,
    service: &str,
    body: Vec<u8>,
    payer: Option<&Payer>,
    mut on_chunk: impl FnMut(&[u8]) -> F,
    price: &mut u128,
    cap: u128,
    currency: &Currency,
    reservation: &mut Option<Reservation>,
) -> Result<QueryOutcome, QueryError> {
    let r = record.record();
    let payee = r.near_account.as_str().to_owned();
    let currency = currency.clone();
    let mut attempts = 0;
    loop {
        let price_now = *price;
        let payment = match (price_now, payer) {
            (0, _) => None,
            (_, Some(_)) if !conn.negotiated().pay => return Err(QueryError::NoPayments),
            (p, Some(payer)) => Some(payer.pay(&payee, &currency, r.min_deposit, p).await?),
            (p, None) => return Err(QueryError::NoPayer { price: p, currency }),
        };
        let voucher = payment.as_ref().map(|p| p.voucher.clone());
        let sent = conn.call_hashed(service, body.clone(), voucher).await;
        let fail = |e: TransportError| async {
            if let (Some(payer), Some(p)) = (payer, &payment) {
                payer.unanswered(&payee, &currency, p).await;
            }
            Err(QueryError::from(e))
        };
        let (first, request_hash) = match sent {
            Ok(x) => x,
            Err(e) => return credit_or_fail(e, payer, &payee, &currency, &payment, r, None, fail).await,
        };
        match first {
            FirstAnswer::PaymentRequired(pr) => {
                let Some(p) = payer else {
                    return Err(QueryError::NoPayer { price: pr.price, currency: pr.currency });
                };
                if pr.currency != currency {
                    return Err(PayError::WrongCurrency { asked: pr.currency, record: currency }.into());
                }
                if pr.price > cap {
                    return Err(PayError::PriceAboveRecord { asked: pr.price, record: cap }.into());
                }
                p.payment_required(&payee, &currency, payment.as_ref(), pr.last_voucher.as_ref()).await?;
                if attempts >= MAX_PAYMENT_RETRIES {
                    return Err(TransportError::from(ExchangeError::Remote {
                        code: agentwire_protocol::wire::ErrorCode::PaymentRequired,
                        message: "the brand still asks for payment after paying".into(),
                        credit: None,
                    })
                    .into());
                }
                attempts += 1;
                tracing::debug!(price = %pr.price, "payment required; paying and retrying");
                if let Some(held) = reservation.as_mut() {
                    if pr.price > held.amount() {
                        p.spending().extend(held, pr.price - held.amount()).map_err(PayError::from)?;
                    }
                }
                *price = pr.price;
            }
            first => {
                let mut increments = Vec::new();
                let finished =
                    finish(first, &payee, &currency, payer, cap, &mut on_chunk, &mut increments, reservation).await;
                let finished = match finished {
                    Ok(f) => f,
                    Err(e) => {
                        // The increments went down with the stream: settled by its statement, or credit.
                        if let Some(p) = payer {
                            for inc in &increments {
                                p.unanswered(&payee, &currency, inc).await;
                            }
                        }
                        return match e {
                            FinishError::Transport(e) => {
                                credit_or_fail(e, payer, &payee, &currency, &payment, r, request_hash, fail).await
                            }
                            FinishError::Query(e) => Err(e),
                        };
                    }
                };
                let mut paid = 0;
                if let (Some(payer), Some(p), Some(request_hash)) = (payer, &payment, request_hash) {
                    let receipt =
                        finished.receipt.as_ref().ok_or(PayError::Receipt("a paid answer came without a receipt"))?;
                    payer
                        .check_receipt(&payee, &currency, &r.identity, receipt, &p.voucher, &request_hash, &finished.response_hash)
                        .await?;
                    // What the receipt charges for this request: its total less
                    // what was charged before (exact when queries do not overlap).
                    let most = p.price.saturating_add(finished.paid);
                    paid = match p.charged_before {
                        Some(before) => receipt.receipt.cumulative.saturating_sub(before).min(most),
                        None => most,
                    };
                    payer.answered(&payee, &currency, p, Some(receipt.receipt.cumulative)).await;
                    for inc in &increments {
                        payer.answered(&payee, &currency, inc, Some(receipt.receipt.cumulative)).await;
                    }
                }
                return Ok(QueryOutcome { body: finished.body, streamed: finished.streamed, paid, receipt: finished.receipt });
            }
        }
    }
}

/// A failed paid request: with the brand's credit statement it was not
/// charged (recorded as answered at the stated total); without one its
/// price is offered as credit next time.
#[allow(clippy::too_many_arguments)]
async fn credit_or_fail<F: Future<Output = Result<QueryOutcome, QueryError>>>(
    e: TransportError,
    payer: Option<&Payer>,
    payee: &str,
    currency: &Currency,
    payment: &Option<Payment>,
    record: &agentwire_protocol::record::AgentRecord,
    request_hash: Option<[u8; 32]>,
    fail: impl FnOnce(TransportError) -> F,
) -> Result<QueryOutcome, QueryError> {
    if let (Some(payer), Some(p), TransportError::Exchange(ExchangeError::Remote { credit: Some(statement), .. })) =
        (payer, payment, &e)
    {
        if let Some(hash) = request_hash {
            payer.check_statement(&record.identity, statement, &p.voucher, &hash)?;
            payer.answered(payee, currency, p, Some(statement.receipt.cumulative)).await;
            return Err(e.into());
        }
    }
    fail(e).await
}

enum FinishError {
    Transport(TransportError),
    Query(QueryError),
}

impl From<TransportError> for FinishError {
    fn from(e: TransportError) -> Self {
        FinishError::Transport(e)
    }
}

impl From<PayError> for FinishError {
    fn from(e: PayError) -> Self {
        FinishError::Query(e.into())
    }
}

struct Finished {
    body: Vec<u8>,
    streamed: bool,
    /// Increments paid on the stream.
    paid: u128,
    receipt: Option<SignedReceipt>,
    response_hash: [u8; 32],
}

#[allow(clippy::too_many_arguments)]
async fn finish<F: Future<Output = ()>>(
    first: FirstAnswer,
    payee: &str,
    currency: &Currency,
    payer: Option<&Payer>,
    cap: u128,
    on_chunk: &mut impl FnMut(&[u8]) -> F,
    increments_paid: &mut Vec<Payment>,
    reservation: &mut Option<Reservation>,
) -> Result<Finished, FinishError> {
    match first {
        FirstAnswer::Response(r) => {
            let response_hash = Sha256::digest(&r.body).into();
            Ok(Finished { body: r.body, streamed: false, paid: 0, receipt: r.receipt, response_hash })
        }
        FirstAnswer::PaymentRequired(_) => Err(FinishError::Transport(TransportError::Connection(
            "a payment request where an answer was due".into(),
        ))),
        FirstAnswer::Stream(mut s) => {
            let mut all = Vec::new();
            let mut increments = 0u32;
            let mut paid = 0u128;
            loop {
                match s.next_event().await? {
                    StreamEvent::Chunk(c) => {
                        on_chunk(&c).await;
                        all.extend_from_slice(&c);
                    }
                    StreamEvent::PaymentRequired(pr) => {
                        let Some(payer) = payer else {
                            let _ = s.decline().await;
                            return Err(FinishError::Query(QueryError::NoPayer { price: pr.price, currency: pr.currency }));
                        };
                        if &pr.currency != currency {
                            let _ = s.decline().await;
                            return Err(PayError::WrongCurrency { asked: pr.currency, record: currency.clone() }.into());
                        }
                        if pr.price > cap {
                            let _ = s.decline().await;
                            return Err(PayError::PriceAboveRecord { asked: pr.price, record: cap }.into());
                        }
                        increments += 1;
                        if increments > payer.config().max_increments {
                            let _ = s.decline().await;
                            return Err(PayError::TooManyIncrements(payer.config().max_increments).into());
                        }
                        if let Some(held) = reservation.as_mut() {
                            if let Err(e) = payer.spending().extend(held, pr.price) {
                                let _ = s.decline().await;
                                return Err(PayError::from(e).into());
                            }
                        }
                        let p = payer.pay(payee, currency, 0, pr.price).await?;
                        let sent = s.pay(p.voucher.clone()).await;
                        // In flight with the stream: its receipt (or its failure) settles it.
                        increments_paid.push(p);
                        sent?;
                        paid = paid.saturating_add(pr.price);
                    }
                    StreamEvent::End => break,
                }
            }
            let receipt = s.receipt().cloned();
            Ok(Finished { body: all, streamed: true, paid, receipt, response_hash: s.response_hash() })
        }
    }
}
