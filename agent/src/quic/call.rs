//! One request on its own stream, driven over quinn: the requester machine
//! (`agentwire_protocol::exchange::RequestStream`) writes the Request and
//! reads the answer; this module moves its bytes and hands out the first
//! answer: a whole response, a payment request, or a streamed answer to read
//! chunk by chunk (paying a metered stream's increments on it, spec §13.7).

use agentwire_protocol::exchange::{RequestEvent, RequestStream};
use agentwire_protocol::payment::{SignedReceipt, SignedVoucher};
use agentwire_protocol::wire::{PaymentRequired, Response};
use quinn::SendStream;

use super::io::{flush, now_ms, EndingStreams, Inbound};
use super::TransportError;

/// The first answer to a request.
#[derive(Debug)]
pub enum FirstAnswer {
    /// A whole response.
    Response(Box<Response>),
    /// A streamed answer: read it with [`StreamedAnswer::next_event`].
    Stream(Box<StreamedAnswer>),
    /// The payee asks for payment (spec §13.6): pay and send the request
    /// again, on a new stream.
    PaymentRequired(Box<PaymentRequired>),
}

/// What a streamed answer delivers next.
#[derive(Debug)]
pub enum StreamEvent {
    /// The next chunk's data.
    Chunk(Vec<u8>),
    /// A metered stream asks for one more increment (spec §13.7): answer
    /// with [`StreamedAnswer::pay`], or [`StreamedAnswer::decline`].
    PaymentRequired(Box<PaymentRequired>),
    /// The StreamEnd arrived (its chunk count checked).
    End,
}

/// A request in flight: its machine and its stream.
pub(super) struct Call {
    /// Boxed: the call's futures hold it across awaits, and inline it would
    /// widen each of them (every layer of `async fn` copies its arguments).
    pub(super) m: Box<RequestStream>,
    pub(super) send: SendStream,
    pub(super) inbound: Inbound,
    pub(super) ending: EndingStreams,
}

impl Call {
    /// Runs the machine until it reports something, writing what it produces.
    async fn event(&mut self) -> Result<RequestEvent, TransportError> {
        loop {
            // Once the answer is in, ending our direction is best effort: a
            // brand that stopped reading the stream has the whole exchange.
            if let Err(e) = flush(&mut self.m, &mut self.send).await {
                if !self.m.is_done() {
                    return Err(e);
                }
            }
            if let Some(ev) = self.m.poll_event() {
                if self.m.is_done() {
                    let _ = flush(&mut self.m, &mut self.send).await;
                }
                return Ok(ev);
            }
            self.inbound.read_into(&mut self.m).await?;
        }
    }

    /// The first answer.
    pub(super) async fn first(mut self) -> Result<FirstAnswer, TransportError> {
        let first = match self.event().await? {
            RequestEvent::Response(r) => FirstAnswer::Response(r),
            RequestEvent::PaymentRequired(p) => FirstAnswer::PaymentRequired(p),
            RequestEvent::Failed(e) => {
                self.done();
                return Err(e.into());
            }
            RequestEvent::Chunk(data) => {
                let id = Some(self.m.id());
                return Ok(FirstAnswer::Stream(Box::new(StreamedAnswer {
                    call: Some(self),
                    first: Some(data),
                    receipt: None,
                    hash: [0; 32],
                    id,
                })));
            }
            RequestEvent::End(receipt) => {
                let hash = self.m.response_hash();
                let id = Some(self.m.id());
                self.done();
                return Ok(FirstAnswer::Stream(Box::new(StreamedAnswer {
                    call: None,
                    first: None,
                    receipt: receipt.map(|r| *r),
                    hash,
                    id,
                })));
            }
            RequestEvent::Receipt(_) => return Err(TransportError::Connection("a receipt before any answer".into())),
        };
        self.done();
        Ok(first)
    }

    /// The exchange is over: read the brand's end of stream (spec §13.1 item 5).
    fn done(self) {
        let Call { m, inbound, ending, .. } = self;
        ending.finish(inbound, m);
    }
}

/// A streamed answer being read: chunk data in order, then the end.
#[derive(Debug)]
pub struct StreamedAnswer {
    /// `None` once the answer is complete.
    call: Option<Call>,
    /// Chunk 0, read while telling a stream from a response.
    first: Option<Vec<u8>>,
    receipt: Option<SignedReceipt>,
    /// SHA-256 of all chunk data, once complete.
    hash: [u8; 32],
    /// The request's id (kept once the call is complete).
    id: Option<u64>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("id", &self.m.id()).finish_non_exhaustive()
    }
}

impl StreamedAnswer {
    /// The next event: a chunk, a request for payment, or the end.
    pub async fn next_event(&mut self) -> Result<StreamEvent, TransportError> {
        if let Some(first) = self.first.take() {
            return Ok(StreamEvent::Chunk(first));
        }
        let Some(call) = self.call.as_mut() else { return Ok(StreamEvent::End) };
        let event = call.event().await;
        match event {
            Ok(RequestEvent::Chunk(data)) => Ok(StreamEvent::Chunk(data)),
            Ok(RequestEvent::PaymentRequired(p)) => Ok(StreamEvent::PaymentRequired(p)),
            Ok(RequestEvent::Receipt(_)) => Box::pin(self.next_event()).await,
            Ok(RequestEvent::End(receipt)) => {
                self.receipt = receipt.map(|r| *r);
                self.complete();
                Ok(StreamEvent::End)
            }
            Ok(RequestEvent::Failed(e)) => {
                self.complete();
                Err(e.into())
            }
            Ok(RequestEvent::Response(_)) => {
                self.complete();
                Err(TransportError::Connection("a Response in the middle of a streamed answer".into()))
            }
            Err(e) => {
                self.call = None;
                Err(e)
            }
        }
    }

    fn complete(&mut self) {
        if let Some(call) = self.call.take() {
            self.hash = call.m.response_hash();
            call.done();
        }
    }

    /// The next chunk's data; `None` after the StreamEnd. A request for
    /// more payment is an error here (use [`next_event`](Self::next_event)).
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        match self.next_event().await? {
            StreamEvent::Chunk(c) => Ok(Some(c)),
            StreamEvent::End => Ok(None),
            StreamEvent::PaymentRequired(_) => {
                let _ = self.decline().await;
                Err(agentwire_protocol::exchange::ExchangeError::ApiMisuse(
                    "a metered stream asked for payment; read it with next_event",
                )
                .into())
            }
        }
    }

    /// Pays the increment a metered stream asked for.
    pub async fn pay(&mut self, voucher: SignedVoucher) -> Result<(), TransportError> {
        let call = self
            .call
            .as_mut()
            .ok_or(agentwire_protocol::exchange::ExchangeError::ApiMisuse("pay: the answer is complete"))?;
        call.m.pay(voucher, now_ms())?;
        flush(&mut call.m, &mut call.send).await
    }

    /// Declines the increment asked for: the payee stops the answer.
    pub async fn decline(&mut self) -> Result<(), TransportError> {
        let call = self
            .call
            .as_mut()
            .ok_or(agentwire_protocol::exchange::ExchangeError::ApiMisuse("decline: the answer is complete"))?;
        call.m.decline()?;
        flush(&mut call.m, &mut call.send).await
    }

    /// The request's correlation id.
    pub fn id(&self) -> Option<u64> {
        self.call.as_ref().map(|c| c.m.id()).or(self.id)
    }

    /// SHA-256 of all chunk data (the receipt's `response_hash`), once ended.
    pub fn response_hash(&self) -> [u8; 32] {
        match &self.call {
            Some(c) => c.m.response_hash(),
            None => self.hash,
        }
    }

    /// The StreamEnd's receipt, once ended (present if the request was paid).
    pub fn receipt(&self) -> Option<&SignedReceipt> {
        self.receipt.as_ref()
    }
}
