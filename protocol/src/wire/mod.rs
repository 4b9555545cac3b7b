//! Wire messages: versioned CBOR arrays `[version, kind, fields...]`.
//!
//! Each message travels as one logical message on a session stream (see
//! [`crate::session`] for framing and encryption). Decoding is total: any byte
//! string yields a message or a typed [`WireError`], never a panic.

use core::fmt;

pub use crate::codes::{Action, ErrorCode};

use crate::account::AccountId;
use crate::cbor::{CborError, Reader, Writer};
use crate::money::Currency;
use crate::payment::{SignedReceipt, SignedVoucher};
pub use crate::receipts::ReceiptBatch;
use crate::record::{valid_service_name, MAX_SERVICE_NAME};

/// Message format version.
pub const WIRE_VERSION: u64 = 1;
/// Largest message (default; a session may set a lower one), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Longest error text, in bytes.
pub const MAX_ERROR_TEXT: usize = 256;
/// Longest service name a Request may carry, in bytes. A Request decodes
/// whatever name it asks for (up to this length), so that an unknown or
/// invalid name is answered with code 3 on its stream (spec §13.1 item 4)
/// rather than failing the whole message.
pub const MAX_REQUESTED_SERVICE: usize = 255;

/// Message kinds (the second array element).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A request that expects an answer.
    Request = 1,
    /// The whole answer to a request.
    Response = 2,
    /// One piece of a streamed answer.
    StreamChunk = 3,
    /// The end of a streamed answer.
    StreamEnd = 4,
    /// A message that expects no answer.
    OneWay = 5,
    /// An error with a stable code.
    Error = 6,
    /// The price of a request and the last voucher accepted.
    PaymentRequired = 7,
    /// A payment on its own (e.g. mid-stream).
    Voucher = 8,
    /// A receipt on its own.
    Receipt = 9,
    /// A change of a channel's state.
    ChannelNotice = 10,
    /// Receipts for a batch of answers, under one signed root.
    ReceiptBatch = 11,
    /// A payer asks for the receipts of a channel's pending answers now.
    ReceiptFlush = 12,
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Correlation id chosen by the requester, unique among its open requests.
    pub id: u64,
    /// Service name from the agent's record. A decoded Request holds the
    /// name as asked (at most [`MAX_REQUESTED_SERVICE`] bytes), which need
    /// not be a valid service name.
    pub service: String,
    /// Application payload (opaque; commonly JSON).
    pub body: Vec<u8>,
    /// Payment for this request, if the service is priced.
    pub payment: Option<SignedVoucher>,
}

/// A complete answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Correlation id of the request.
    pub id: u64,
    /// Application payload.
    pub body: Vec<u8>,
    /// Signed receipt if the request was paid.
    pub receipt: Option<SignedReceipt>,
}

/// One chunk of a streamed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamChunk {
    /// Correlation id of the request.
    pub id: u64,
    /// Chunk number, from 0, without gaps.
    pub seq: u32,
    /// Chunk payload.
    pub data: Vec<u8>,
}

/// End of a streamed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEnd {
    /// Correlation id of the request.
    pub id: u64,
    /// Number of chunks sent.
    pub chunks: u32,
    /// Signed receipt if the stream was paid.
    pub receipt: Option<SignedReceipt>,
}

/// A message that expects no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneWay {
    /// Topic (same naming rule as service names).
    pub topic: String,
    /// Application payload.
    pub body: Vec<u8>,
}

/// An error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorMessage {
    /// Correlation id, if the error answers a request.
    pub id: Option<u64>,
    /// Stable code.
    pub code: ErrorCode,
    /// Short human text (at most 256 bytes), never internal detail.
    pub message: String,
}

/// The price of a request, and the payee's last accepted voucher so the payer can resync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRequired {
    /// Correlation id of the request (or stream) to pay for.
    pub id: u64,
    /// Amount to add to the cumulative total.
    pub price: u128,
    /// Currency of `price`.
    pub currency: Currency,
    /// The highest voucher the payee accepted on this payer's channel.
    pub last_voucher: Option<SignedVoucher>,
}

/// A payment on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherMessage {
    /// Correlation id it pays for.
    pub id: u64,
    /// The voucher.
    pub voucher: SignedVoucher,
}

/// A receipt on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptMessage {
    /// Correlation id it is for.
    pub id: u64,
    /// The receipt.
    pub receipt: SignedReceipt,
}

/// Channel events, as announced between payer and payee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChannelEvent {
    /// Opened; amount = deposit.
    Opened = 0,
    /// Topped up; amount = new deposit.
    ToppedUp = 1,
    /// Payer started a unilateral close; amount = unix time the challenge period ends.
    Closing = 2,
    /// Payee claimed; amount = cumulative total claimed.
    Claimed = 3,
    /// Closed; amount = final total paid to the payee.
    Closed = 4,
}

/// A channel state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelNotice {
    /// Channel contract.
    pub contract: AccountId,
    /// Channel id.
    pub channel_id: u64,
    /// Channel epoch.
    pub epoch: u64,
    /// What happened.
    pub event: ChannelEvent,
    /// Event-specific amount (see [`ChannelEvent`]).
    pub amount: u128,
}

/// A payer asks the payee to close and send a channel's pending batch of receipts now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptFlush {
    /// Channel contract.
    pub contract: AccountId,
    /// Channel id.
    pub channel_id: u64,
    /// Channel epoch.
    pub epoch: u64,
}

/// Every message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// See [`Request`].
    Request(Request),
    /// See [`Response`].
    Response(Response),
    /// See [`StreamChunk`].
    StreamChunk(StreamChunk),
    /// See [`StreamEnd`].
    StreamEnd(StreamEnd),
    /// See [`OneWay`].
    OneWay(OneWay),
    /// See [`ErrorMessage`].
    Error(ErrorMessage),
    /// See [`PaymentRequired`].
    PaymentRequired(PaymentRequired),
    /// See [`VoucherMessage`].
    Voucher(VoucherMessage),
    /// See [`ReceiptMessage`].
    Receipt(ReceiptMessage),
    /// See [`ChannelNotice`].
    ChannelNotice(ChannelNotice),
    /// See [`ReceiptBatch`].
    ReceiptBatch(ReceiptBatch),
    /// See [`ReceiptFlush`].
    ReceiptFlush(ReceiptFlush),
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Larger than the message limit.
    TooLarge,
    /// Not valid AgentWire CBOR, or a field of the wrong type/count.
    Cbor(CborError),
    /// A message version this implementation does not know.
    UnsupportedVersion(u64),
    /// A message kind this implementation does not know.
    UnknownKind(u64),
}

impl WireError {
    /// The stable code to send to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::TooLarge => ErrorCode::TooLarge,
            WireError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::Malformed,
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooLarge => write!(f, "message larger than {MAX_MESSAGE_BYTES} bytes"),
            WireError::Cbor(e) => write!(f, "message encoding: {e}"),
            WireError::UnsupportedVersion(v) => write!(f, "unsupported message version {v}"),
            WireError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<CborError> for WireError {
    fn from(e: CborError) -> Self {
        WireError::Cbor(e)
    }
}

fn opt_voucher(w: &mut Writer, v: &Option<SignedVoucher>) {
    match v {
        Some(v) => v.encode(w),
        None => {
            w.null();
        }
    }
}

fn opt_receipt(w: &mut Writer, r: &Option<SignedReceipt>) {
    match r {
        Some(r) => r.encode(w),
        None => {
            w.null();
        }
    }
}

fn name(r: &mut Reader<'_>, what: &'static str) -> Result<String, WireError> {
    let s = r.text(MAX_SERVICE_NAME, what)?;
    if !valid_service_name(s) {
        return Err(CborError::InvalidValue(what).into());
    }
    Ok(s.to_owned())
}

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Request(_) => Kind::Request,
            Message::Response(_) => Kind::Response,
            Message::StreamChunk(_) => Kind::StreamChunk,
            Message::StreamEnd(_) => Kind::StreamEnd,
            Message::OneWay(_) => Kind::OneWay,
            Message::Error(_) => Kind::Error,
            Message::PaymentRequired(_) => Kind::PaymentRequired,
            Message::Voucher(_) => Kind::Voucher,
            Message::Receipt(_) => Kind::Receipt,
            Message::ChannelNotice(_) => Kind::ChannelNotice,
            Message::ReceiptBatch(_) => Kind::ReceiptBatch,
            Message::ReceiptFlush(_) => Kind::ReceiptFlush,
        }
    }

    /// Canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        // Sized for the payload plus the fixed fields (a voucher or receipt
        // included), so a typical message is encoded without regrowing.
        let payload = match self {
            Message::Request(m) => m.service.len() + m.body.len(),
            Message::Response(m) => m.body.len(),
            Message::StreamChunk(m) => m.data.len(),
            Message::OneWay(m) => m.topic.len() + m.body.len(),
            Message::ReceiptBatch(b) => b.entries.len() * 100,
            _ => 0,
        };
        let mut w = Writer::with_capacity(payload.saturating_add(384));
        let head = |w: &mut Writer, n: u64, k: Kind| {
            w.array(n).u64(WIRE_VERSION).u64(k as u64);
        };
        match self {
            Message::Request(m) => {
                head(&mut w, 6, Kind::Request);
                w.u64(m.id).text(&m.service).bytes(&m.body);
                opt_voucher(&mut w, &m.payment);
            }
            Message::Response(m) => {
                head(&mut w, 5, Kind::Response);
                w.u64(m.id).bytes(&m.body);
                opt_receipt(&mut w, &m.receipt);
            }
            Message::StreamChunk(m) => {
                head(&mut w, 5, Kind::StreamChunk);
                w.u64(m.id).u64(u64::from(m.seq)).bytes(&m.data);
            }
            Message::StreamEnd(m) => {
                head(&mut w, 5, Kind::StreamEnd);
                w.u64(m.id).u64(u64::from(m.chunks));
                opt_receipt(&mut w, &m.receipt);
            }
            Message::OneWay(m) => {
                head(&mut w, 4, Kind::OneWay);
                w.text(&m.topic).bytes(&m.body);
            }
            Message::Error(m) => {
                head(&mut w, 5, Kind::Error);
                match m.id {
                    Some(id) => w.u64(id),
                    None => w.null(),
                };
                w.u64(u64::from(m.code.as_u16())).text(truncate_text(&m.message, MAX_ERROR_TEXT));
            }
            Message::PaymentRequired(m) => {
                head(&mut w, 6, Kind::PaymentRequired);
                w.u64(m.id).amount(m.price).text(m.currency.as_text());
                opt_voucher(&mut w, &m.last_voucher);
            }
            Message::Voucher(m) => {
                head(&mut w, 4, Kind::Voucher);
                w.u64(m.id);
                m.voucher.encode(&mut w);
            }
            Message::Receipt(m) => {
                head(&mut w, 4, Kind::Receipt);
                w.u64(m.id);
                m.receipt.encode(&mut w);
            }
            Message::ChannelNotice(m) => {
                head(&mut w, 7, Kind::ChannelNotice);
                w.text(m.contract.as_str()).u64(m.channel_id).u64(m.epoch).u64(m.event as u64).amount(m.amount);
            }
            Message::ReceiptBatch(b) => {
                head(&mut w, 8, Kind::ReceiptBatch);
                b.encode_fields(&mut w);
            }
            Message::ReceiptFlush(f) => {
                head(&mut w, 5, Kind::ReceiptFlush);
                w.text(f.contract.as_str()).u64(f.channel_id).u64(f.epoch);
            }
        }
        w.finish()
    }

    /// Decodes one message of at most [`MAX_MESSAGE_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        Self::decode_with_limit(bytes, MAX_MESSAGE_BYTES)
    }

    /// Decodes one message of at most `max_len` bytes.
    pub fn decode_with_limit(bytes: &[u8], max_len: usize) -> Result<Message, WireError> {
        if bytes.len() > max_len {
            return Err(WireError::TooLarge);
        }
        let mut r = Reader::new(bytes)?;
        let n = r.array("message")?;
        if n < 2 {
            return Err(CborError::Malformed("message header").into());
        }
        let version = r.u64("version")?;
        if version != WIRE_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let kind = r.u64("kind")?;
        let expect = |want: u64| -> Result<(), WireError> {
            if n == want {
                Ok(())
            } else {
                Err(CborError::Malformed("message field count").into())
            }
        };
        let max_body = max_len;
        let msg = match kind {
            1 => {
                expect(6)?;
                let id = r.u64("id")?;
                let service = r.text(MAX_REQUESTED_SERVICE, "service")?.to_owned();
                let body = r.bytes(max_body, "body")?.to_vec();
                let payment = if r.null() { None } else { Some(SignedVoucher::decode(&mut r)?) };
                Message::Request(Request { id, service, body, payment })
            }
            2 => {
                expect(5)?;
                let id = r.u64("id")?;
                let body = r.bytes(max_body, "body")?.to_vec();
                let receipt = if r.null() { None } else { Some(SignedReceipt::decode(&mut r)?) };
                Message::Response(Response { id, body, receipt })
            }
            3 => {
                expect(5)?;
                let id = r.u64("id")?;
                let seq = r.u32("seq")?;
                let data = r.bytes(max_body, "data")?.to_vec();
                Message::StreamChunk(StreamChunk { id, seq, data })
            }
            4 => {
                expect(5)?;
                let id = r.u64("id")?;
                let chunks = r.u32("chunks")?;
                let receipt = if r.null() { None } else { Some(SignedReceipt::decode(&mut r)?) };
                Message::StreamEnd(StreamEnd { id, chunks, receipt })
            }
            5 => {
                expect(4)?;
                let topic = name(&mut r, "topic")?;
                let body = r.bytes(max_body, "body")?.to_vec();
                Message::OneWay(OneWay { topic, body })
            }
            6 => {
                expect(5)?;
                let id = if r.null() { None } else { Some(r.u64("id")?) };
                let code =
                    u16::try_from(r.u64("code")?).map_err(|_| WireError::Cbor(CborError::InvalidValue("code")))?;
                let message = r.text(MAX_ERROR_TEXT, "error message")?.to_owned();
                Message::Error(ErrorMessage { id, code: ErrorCode::from_u16(code), message })
            }
            7 => {
                expect(6)?;
                let id = r.u64("id")?;
                let price = r.amount("price")?;
                let currency = Currency::parse(r.text(64, "currency")?)
                    .map_err(|_| WireError::Cbor(CborError::InvalidValue("currency")))?;
                let last_voucher = if r.null() { None } else { Some(SignedVoucher::decode(&mut r)?) };
                Message::PaymentRequired(PaymentRequired { id, price, currency, last_voucher })
            }
            8 => {
                expect(4)?;
                let id = r.u64("id")?;
                let voucher = SignedVoucher::decode(&mut r)?;
                Message::Voucher(VoucherMessage { id, voucher })
            }
            9 => {
                expect(4)?;
                let id = r.u64("id")?;
                let receipt = SignedReceipt::decode(&mut r)?;
                Message::Receipt(ReceiptMessage { id, receipt })
            }
            10 => {
                expect(7)?;
                let contract = AccountId::new(r.text(64, "contract")?)
                    .map_err(|_| WireError::Cbor(CborError::InvalidValue("contract")))?;
                let channel_id = r.u64("channel_id")?;
                let epoch = r.u64("epoch")?;
                let event = match r.u64("event")? {
                    0 => ChannelEvent::Opened,
                    1 => ChannelEvent::ToppedUp,
                    2 => ChannelEvent::Closing,
                    3 => ChannelEvent::Claimed,
                    4 => ChannelEvent::Closed,
                    _ => return Err(CborError::InvalidValue("event").into()),
                };
                let amount = r.amount("amount")?;
                Message::ChannelNotice(ChannelNotice { contract, channel_id, epoch, event, amount })
            }
            11 => {
                expect(8)?;
                Message::ReceiptBatch(ReceiptBatch::decode_fields(&mut r)?)
            }
            12 => {
                expect(5)?;
                let contract = AccountId::new(r.text(64, "contract")?)
                    .map_err(|_| WireError::Cbor(CborError::InvalidValue("contract")))?;
                let channel_id = r.u64("channel_id")?;
                let epoch = r.u64("epoch")?;
                Message::ReceiptFlush(ReceiptFlush { contract, channel_id, epoch })
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_text(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
