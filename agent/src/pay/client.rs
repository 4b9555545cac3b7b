//! One query from a user agent, paid if the brand's record prices it
//! (spec §13.5–13.10): pay from the ledger, send, answer a PaymentRequired by
//! resyncing and paying again on a new stream, pay a metered stream's
//! increments, check the receipt of what arrived, and take a failed answer's
//! credit statement as proof it was not charged.

use std::future::Future;
use std::pin::Pin;

use agentwire_protocol::exchange::ExchangeError;
use agentwire_protocol::ledger::{ChannelRef, Payment};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedReceipt;
use agentwire_protocol::pricing::PriceError;
use agentwire_protocol::receipts::{ReceiptProof, Settled};
use agentwire_protocol::record::SignedRecord;
use sha2::{Digest, Sha256};

use super::limits::Reservation;
use super::payer::{PayError, Payer};
use crate::quic::{Connection, FirstAnswer, ReceiptError, StreamEvent, TransportError};

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
    /// The channel that paid, if paid.
    pub channel: Option<ChannelRef>,
    /// The brand's receipt, checked (present if paid and receipts come one per answer).
    pub receipt: Option<SignedReceipt>,
    /// The answer's receipt out of a batch, checked (paid, receipts in batches, spec §8.7).
    pub proof: Option<ReceiptProof>,
}

impl QueryOutcome {
    /// The channel that paid and the charged total the answer's receipt (one
    /// of its own, or its entry in a batch) states.
    pub fn charged_total(&self) -> Option<(&ChannelRef, u128)> {
        let total = match (&self.receipt, &self.proof) {
            (Some(r), _) => r.receipt.cumulative,
            (None, Some(p)) => p.entry.cumulative,
            (None, None) => return None,
        };
        Some((self.channel.as_ref()?, total))
    }
}

/// A paid answer's batch receipt on its way (spec §8.7): settle it with the
/// payer once it comes ([`ReceiptDue::settle`]), which checks it and records
/// the charge.
pub struct ReceiptDue {
    receipt: Pin<Box<dyn Future<Output = Result<Settled, ReceiptError>> + Send + 'static>>,
    payee: String,
    currency: Currency,
    payment: Payment,
    increments: Vec<Payment>,
    most: u128,
    /// The user's budget held for this answer: what the receipt states is
    /// kept, the rest given back (all of it kept if no valid receipt comes).
    reservation: Option<Reservation>,
}

impl std::fmt::Debug for ReceiptDue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptDue").field("payee", &self.payee).finish_non_exhaustive()
    }
}

impl ReceiptDue {
    /// Waits for the receipt, checks it against what `payer` signed and records the charge.
    pub async fn settle(self, payer: &Payer) -> Result<Settlement, QueryError> {
        let ReceiptDue { receipt, payee, currency, payment, increments, most, reservation } = self;
        let spend = |cost: Option<u128>| {
            if let Some(held) = reservation {
                let cost = cost.unwrap_or(held.amount());
                payer.spending().settle(held, cost);
            }
        };
        let settled = match receipt.await {
            Ok(s) => s,
            Err(e) => {
                spend(None);
                // Delivered, but unproven: recorded without a total; the brand is suspect.
                payer.answered(&payee, &currency, &payment, None).await;
                for inc in &increments {
                    payer.answered(&payee, &currency, inc, None).await;
                }
                tracing::warn!(error = %e, brand = %payee, "no valid receipt for a paid answer");
                return Err(QueryError::from(PayError::Receipt(match e {
                    ReceiptError::Batch(_) => "the receipt batch does not check out",
                    _ => "the brand did not send the answer's receipt",
                })));
            }
        };
        if let Err(e) = payer.check_total(&payee, &currency, settled.cumulative).await {
            spend(None);
            return Err(e.into());
        }
        payer.answered(&payee, &currency, &payment, Some(settled.cumulative)).await;
        for inc in &increments {
            payer.answered(&payee, &currency, inc, Some(settled.cumulative)).await;
        }
        let paid = charged_for(&payment, settled.cumulative, most);
        spend(Some(paid));
        Ok(Settlement { paid, proof: settled.proof })
    }
}

/// A batch receipt, checked: the proof to keep and what the answer cost.
#[derive(Debug)]
pub struct Settlement {
    /// The answer's receipt, provable offline.
    pub proof: ReceiptProof,
    /// What the answer was charged.
    pub paid: u128,
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
/// Returns once the answer and its receipt are checked (a batch receipt is
/// asked for at once rather than waited for).
pub async fn query<F: Future<Output = ()>>(
    conn: &Connection,
    record: &SignedRecord,
    service: &str,
    body: Vec<u8>,
    payer: Option<&Payer>,
    on_chunk: impl FnMut(&[u8]) -> F,
) -> Result<QueryOutcome, QueryError> {
    let (mut outcome, pending) = query_deferred(conn, record, service, body, payer, on_chunk).await?;
    if let (Some(pending), Some(payer)) = (pending, payer) {
        if let Some(channel) = outcome.channel.clone() {
            let _ = conn.flush_receipts(&channel).await;
        }
        let settled = pending.settle(payer).await?;
        outcome.paid = settled.paid;
        outcome.proof = Some(settled.proof);
    }
    Ok(outcome)
}

/// Like [`query`], but returns as soon as the answer is in: a paid answer's
/// batch receipt comes later ([`ReceiptDue`], which must be settled for the
/// payer to record the charge). For clients that keep many queries in
/// flight: a batch then covers many answers.
pub async fn query_deferred<F: Future<Output = ()>>(
    conn: &Connection,
    record: &SignedRecord,
    service: &str,
    body: Vec<u8>,
    payer: Option<&Payer>,
    on_chunk: impl FnMut(&[u8]) -> F,
) -> Result<(QueryOutcome, Option<ReceiptDue>), QueryError> {
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
    let mut result =
        paid_query(conn, record, service, body, payer, on_chunk, &mut price, cap, &currency, &mut reservation).await;
    if let Ok((_, Some(due))) = &mut result {
        // The charge is known once the batch receipt comes: settled then.
        due.reservation = reservation.take();
    }
    if let (Some(payer), Some(held)) = (payer, reservation) {
        let cost = match &result {
            Ok((o, _)) => o.paid,
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
) -> Result<(QueryOutcome, Option<ReceiptDue>), QueryError> {
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
            QueryError::from(e)
        };
        let (first, request_hash) = match sent {
            Ok(x) => x,
            Err(e) => return Err(credit_or_fail(e, payer, &payee, &currency, &payment, r, None, fail).await),
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
                                Err(credit_or_fail(e, payer, &payee, &currency, &payment, r, request_hash, fail).await)
                            }
                            FinishError::Query(e) => Err(e),
                        };
                    }
                };
                let mut paid = 0;
                let mut pending = None;
                let mut channel = None;
                if let (Some(payer), Some(p), Some(request_hash)) = (payer, payment, request_hash) {
                    let v = &p.voucher.voucher;
                    let ch = ChannelRef { contract: v.contract.clone(), channel_id: v.channel_id, epoch: v.epoch };
                    channel = Some(ch.clone());
                    let most = p.price.saturating_add(finished.paid);
                    match &finished.receipt {
                        Some(receipt) => {
                            payer
                                .check_receipt(
                                    &payee,
                                    &currency,
                                    &r.identity,
                                    receipt,
                                    &p.voucher,
                                    &request_hash,
                                    &finished.response_hash,
                                )
                                .await?;
                            paid = charged_for(&p, receipt.receipt.cumulative, most);
                            payer.answered(&payee, &currency, &p, Some(receipt.receipt.cumulative)).await;
                            for inc in &increments {
                                payer.answered(&payee, &currency, inc, Some(receipt.receipt.cumulative)).await;
                            }
                        }
                        None if conn.negotiated().batch => {
                            let receipt = conn.receipt(finished.id, ch, request_hash, finished.response_hash);
                            pending = Some(ReceiptDue {
                                receipt: Box::pin(receipt),
                                payee: payee.clone(),
                                currency: currency.clone(),
                                payment: p,
                                increments,
                                most,
                                reservation: None,
                            });
                            paid = most;
                        }
                        None => return Err(PayError::Receipt("a paid answer came without a receipt").into()),
                    }
                }
                let outcome = QueryOutcome {
                    body: finished.body,
                    streamed: finished.streamed,
                    paid,
                    receipt: finished.receipt,
                    proof: None,
                    channel,
                };
                return Ok((outcome, pending));
            }
        }
    }
}

/// What an answer paid with `p` cost: its receipt's total less what was
/// charged before (exact when queries do not overlap), at most `most`.
fn charged_for(p: &Payment, cumulative: u128, most: u128) -> u128 {
    match p.charged_before {
        Some(before) => cumulative.saturating_sub(before).min(most),
        None => most,
    }
}

/// A failed paid request: with the brand's credit statement it was not
/// charged (recorded as answered at the stated total); without one its
/// price is offered as credit next time.
#[allow(clippy::too_many_arguments)]
async fn credit_or_fail<F: Future<Output = QueryError>>(
    e: TransportError,
    payer: Option<&Payer>,
    payee: &str,
    currency: &Currency,
    payment: &Option<Payment>,
    record: &agentwire_protocol::record::AgentRecord,
    request_hash: Option<[u8; 32]>,
    fail: impl FnOnce(TransportError) -> F,
) -> QueryError {
    if let (Some(payer), Some(p), TransportError::Exchange(ExchangeError::Remote { credit: Some(statement), .. })) =
        (payer, payment, &e)
    {
        if let Some(hash) = request_hash {
            if let Err(bad) = payer.check_statement(&record.identity, statement, &p.voucher, &hash) {
                return bad.into();
            }
            payer.answered(payee, currency, p, Some(statement.receipt.cumulative)).await;
            return e.into();
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
    id: u64,
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
            Ok(Finished { id: r.id, body: r.body, streamed: false, paid: 0, receipt: r.receipt, response_hash })
        }
        FirstAnswer::PaymentRequired(_) => {
            Err(FinishError::Transport(TransportError::Connection("a payment request where an answer was due".into())))
        }
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
                            return Err(FinishError::Query(QueryError::NoPayer {
                                price: pr.price,
                                currency: pr.currency,
                            }));
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
                        if let Err(e) = payer.increment_required(payee, currency, pr.last_voucher.as_ref()).await {
                            let _ = s.decline().await;
                            return Err(e.into());
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
            let id = s.id().unwrap_or_default();
            Ok(Finished { id, body: all, streamed: true, paid, receipt, response_hash: s.response_hash() })
        }
    }
}
