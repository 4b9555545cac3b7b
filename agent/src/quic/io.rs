//! Moving protocol frames over quinn streams: the handshake framing on the
//! handshake stream, and whole messages on encrypted streams.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentwire_protocol::session::{FrameSplitter, StreamEvent, StreamReader, StreamWriter};
use futures::FutureExt;
use quinn::{RecvStream, SendStream};

use super::{TransportError, TransportLimits};

/// Largest chunk read from QUIC at once.
const READ_CHUNK: usize = 64 * 1024;

/// A connection's streams kept open only to read their peer's end (spec
/// §13.1 item 5), within [`TransportLimits::end_grace`] and
/// [`TransportLimits::max_ending_streams`].
#[derive(Clone)]
pub(crate) struct EndingStreams {
    count: Arc<AtomicUsize>,
    max: usize,
    grace: Duration,
}

/// One of a connection's [`EndingStreams`] places, given back on drop.
struct EndingSlot(Arc<AtomicUsize>);

/// A stream's receiving half once the last message it should carry is read.
pub(crate) trait StreamEnd: Send + 'static {
    /// Reads the peer's end of stream; false if something else comes.
    fn read_end(&mut self) -> impl std::future::Future<Output = bool> + Send;
}

/// The handshake stream: nothing follows the last handshake message but FIN.
impl StreamEnd for RecvStream {
    async fn read_end(&mut self) -> bool {
        matches!(self.read_chunk(READ_CHUNK, true).await, Ok(None))
    }
}

impl EndingStreams {
    pub(crate) fn new(limits: &TransportLimits) -> EndingStreams {
        EndingStreams { count: Arc::default(), max: limits.max_ending_streams, grace: limits.end_grace }
    }

    /// Reads `stream`'s end so that quinn retires it quietly (spec §13.1
    /// item 5): a stream dropped unread costs a STOP_SENDING frame and a
    /// wake-up of the connection's driver. The end is usually there
    /// already; if not, a task waits for it, for at most the grace and at
    /// most the limit's number of the connection's streams at once; past
    /// either, the stream is dropped unread after all.
    pub(crate) fn finish(&self, mut stream: impl StreamEnd) {
        if stream.read_end().now_or_never().is_some() {
            return;
        }
        let (Some(slot), Ok(runtime)) = (self.reserve(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let grace = self.grace;
        runtime.spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(grace, stream.read_end()).await;
        });
    }

    fn reserve(&self) -> Option<EndingSlot> {
        let taken = self.count.fetch_add(1, Ordering::AcqRel);
        if taken >= self.max {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(EndingSlot(self.count.clone()))
    }
}

impl Drop for EndingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn conn_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Connection(e.to_string())
}

/// Reads one handshake frame (header included).
pub(crate) async fn read_handshake_frame(
    recv: &mut RecvStream,
    splitter: &mut FrameSplitter,
    pending: &mut Vec<u8>,
) -> Result<Vec<u8>, TransportError> {
    loop {
        let mut input = &pending[..];
        let frame =
            splitter.next_frame(&mut input).map_err(|e| TransportError::Protocol(format!("handshake framing: {e}")))?;
        let consumed = pending.len() - input.len();
        pending.drain(..consumed);
        if let Some(frame) = frame {
            return Ok(frame);
        }
        match recv.read_chunk(READ_CHUNK, true).await.map_err(conn_err)? {
            Some(chunk) => pending.extend_from_slice(&chunk.bytes),
            None => return Err(TransportError::Protocol("handshake stream ended mid-handshake".into())),
        }
    }
}

/// The receiving half of an encrypted stream: quinn's stream, the
/// session's reader for it, and the bytes read past the last whole message
/// (kept for the next read: a chunk may hold more than one message).
pub(crate) struct Inbound {
    recv: RecvStream,
    reader: StreamReader,
    pending: Vec<u8>,
    /// The peer's END_STREAM has been read (its FIN may still be due).
    end_read: bool,
}

impl Inbound {
    pub(crate) fn new(recv: RecvStream, reader: StreamReader) -> Inbound {
        Inbound { recv, reader, pending: Vec::new(), end_read: false }
    }

    /// Reads the next whole message; `None` once the peer ended the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        let mut event = self.parse_pending()?;
        loop {
            match event {
                Some(StreamEvent::Message(m)) => return Ok(Some(m)),
                Some(StreamEvent::End) => return Ok(None),
                None => {}
            }
            let Some(chunk) = self.recv.read_chunk(READ_CHUNK, true).await.map_err(conn_err)? else {
                // FIN without END_STREAM is a truncated stream (spec §12.9).
                self.reader.at_eof()?;
                return Ok(None);
            };
            event = if self.pending.is_empty() {
                // The usual case: parse straight from quinn's buffer and
                // keep only what follows the event.
                let mut input = &chunk.bytes[..];
                let event = self.reader.poll(&mut input)?;
                self.pending.extend_from_slice(input);
                event
            } else {
                self.pending.extend_from_slice(&chunk.bytes);
                self.parse_pending()?
            };
        }
    }

    fn parse_pending(&mut self) -> Result<Option<StreamEvent>, TransportError> {
        let mut input = &self.pending[..];
        let event = self.reader.poll(&mut input)?;
        let consumed = self.pending.len() - input.len();
        self.pending.drain(..consumed);
        Ok(event)
    }
}

/// An encrypted stream ends with END_STREAM, then QUIC's FIN. Anything
/// else (a message, data after the end, an error) means it cannot end
/// cleanly, and it is left to the drop.
impl StreamEnd for Inbound {
    async fn read_end(&mut self) -> bool {
        if !self.end_read {
            match self.next().await {
                Ok(None) => self.end_read = true,
                _ => return false,
            }
        }
        self.recv.read_end().await
    }
}

/// Ends our direction of a stream whose last message was already written:
/// an END_STREAM frame, then QUIC's FIN (a FIN alone reads as truncation,
/// spec §12.9). Best effort, for at most `within` (a peer that grants no
/// flow-control credit cannot hold the caller): by then the exchange is
/// complete, and a peer that is gone needs nothing more.
pub(crate) async fn end_stream(send: &mut SendStream, writer: &mut StreamWriter, within: std::time::Duration) {
    let mut out = Vec::new();
    if writer.finish(&mut out).is_ok() {
        if let Ok(Ok(())) = tokio::time::timeout(within, send.write_chunk(out.into())).await {
            let _ = send.finish();
        }
    }
}

/// Encrypts and writes one message; `end` also ends the stream.
pub(crate) async fn write_message(
    send: &mut SendStream,
    writer: &mut StreamWriter,
    message: &[u8],
    end: bool,
) -> Result<(), TransportError> {
    let mut out = Vec::with_capacity(writer.sealed_len(message.len()));
    writer.write_message(message, end, &mut out)?;
    // Handed over whole (and sized exactly, so the conversion allocates
    // nothing): quinn keeps the buffer rather than copying it.
    send.write_chunk(out.into()).await.map_err(conn_err)?;
    if end {
        send.finish().map_err(conn_err)?;
    }
    Ok(())
}
