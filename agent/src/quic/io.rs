//! Moving bytes between quinn streams and the sans-IO machines: the
//! handshake frames on the handshake stream, and an exchange machine's input,
//! output and deadline on a request stream. A stream whose exchange is done
//! has its peer's end read (spec §13.1 item 5) so quinn retires it quietly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agentwire_protocol::exchange::{RequestStream, ResponseStream, Transmit};
use agentwire_protocol::session::{FrameSplitter, HandshakeError};
use futures::FutureExt;
use quinn::{RecvStream, SendStream};

use super::{TransportError, TransportLimits};

/// Largest chunk read from QUIC at once.
const READ_CHUNK: usize = 64 * 1024;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The machines' clock: milliseconds since this process first asked.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(origin().elapsed().as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn instant_of(ms: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(origin() + Duration::from_millis(ms))
}

pub(crate) fn conn_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Connection(e.to_string())
}

/// A sans-IO exchange machine, as the driver moves its bytes.
pub(crate) trait Machine {
    fn handle_input(&mut self, input: &[u8], now_ms: u64);
    fn handle_fin(&mut self);
    fn handle_timeout(&mut self, now_ms: u64);
    fn poll_timeout(&self) -> Option<u64>;
    fn take_transmit(&mut self) -> Option<Transmit>;
}

macro_rules! machine {
    ($t:ty) => {
        impl Machine for $t {
            fn handle_input(&mut self, input: &[u8], now_ms: u64) {
                <$t>::handle_input(self, input, now_ms)
            }
            fn handle_fin(&mut self) {
                <$t>::handle_fin(self)
            }
            fn handle_timeout(&mut self, now_ms: u64) {
                <$t>::handle_timeout(self, now_ms)
            }
            fn poll_timeout(&self) -> Option<u64> {
                <$t>::poll_timeout(self)
            }
            fn take_transmit(&mut self) -> Option<Transmit> {
                <$t>::take_transmit(self)
            }
        }
    };
}
machine!(ResponseStream);
machine!(RequestStream);
/// The drivers keep their machine boxed (see `call.rs`, `respond.rs`).
impl<M: Machine + ?Sized> Machine for Box<M> {
    fn handle_input(&mut self, input: &[u8], now_ms: u64) {
        (**self).handle_input(input, now_ms)
    }
    fn handle_fin(&mut self) {
        (**self).handle_fin()
    }
    fn handle_timeout(&mut self, now_ms: u64) {
        (**self).handle_timeout(now_ms)
    }
    fn poll_timeout(&self) -> Option<u64> {
        (**self).poll_timeout()
    }
    fn take_transmit(&mut self) -> Option<Transmit> {
        (**self).take_transmit()
    }
}

/// Writes whatever the machine has for its stream.
pub(crate) async fn flush(m: &mut impl Machine, send: &mut SendStream) -> Result<(), TransportError> {
    while let Some(Transmit { bytes, fin }) = m.take_transmit() {
        if !bytes.is_empty() {
            // Handed over whole: quinn keeps the buffer rather than copying it.
            send.write_chunk(bytes.into()).await.map_err(conn_err)?;
        }
        if fin {
            let _ = send.finish();
        }
    }
    Ok(())
}

/// One stream's receiving half as the machine reads it.
pub(crate) struct Inbound {
    pub(crate) recv: RecvStream,
    /// The peer's FIN has been read.
    pub(crate) fin: bool,
}

impl Inbound {
    pub(crate) fn new(recv: RecvStream) -> Inbound {
        Inbound { recv, fin: false }
    }

    /// Reads the next piece of the stream into `m`, or lets its deadline pass.
    pub(crate) async fn read_into(&mut self, m: &mut impl Machine) -> Result<(), TransportError> {
        let deadline = m.poll_timeout();
        if self.fin {
            // Nothing more can arrive; only a deadline can move the machine.
            match deadline {
                Some(d) => tokio::time::sleep_until(instant_of(d)).await,
                None => return Err(TransportError::Connection("the stream ended".into())),
            }
            m.handle_timeout(now_ms());
            return Ok(());
        }
        let read = self.recv.read_chunk(READ_CHUNK, true);
        let chunk = match deadline {
            Some(d) => match tokio::time::timeout_at(instant_of(d), read).await {
                Ok(r) => r,
                Err(_) => {
                    m.handle_timeout(now_ms());
                    return Ok(());
                }
            },
            None => read.await,
        };
        match chunk.map_err(conn_err)? {
            Some(c) => m.handle_input(&c.bytes, now_ms()),
            None => {
                self.fin = true;
                m.handle_fin();
            }
        }
        Ok(())
    }

    /// Reads what is already buffered into `m`, without waiting.
    pub(crate) fn read_ready(&mut self, m: &mut impl Machine) {
        while !self.fin {
            match self.recv.read_chunk(READ_CHUNK, true).now_or_never() {
                Some(Ok(Some(c))) => m.handle_input(&c.bytes, now_ms()),
                Some(Ok(None)) => {
                    self.fin = true;
                    m.handle_fin();
                }
                _ => return,
            }
        }
    }
}

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

impl Drop for EndingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EndingStreams {
    pub(crate) fn new(limits: &TransportLimits) -> EndingStreams {
        EndingStreams { count: Arc::default(), max: limits.max_ending_streams, grace: limits.end_grace }
    }

    /// Streams waiting for their peer's end now.
    pub(crate) fn in_use(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Reads the peer's end of a stream whose exchange is done (its
    /// END_STREAM through `m`, then QUIC's FIN), so quinn retires it
    /// without a STOP_SENDING. The end is usually there already; if not, a
    /// task waits for it, for at most the grace and at most the limit's
    /// number of the connection's streams at once; past either, the stream
    /// is dropped unread after all.
    pub(crate) fn finish<M: Machine + Send + 'static>(&self, mut inbound: Inbound, mut m: M) {
        inbound.read_ready(&mut m);
        if inbound.fin {
            return;
        }
        let (Some(slot), Ok(runtime)) = (self.reserve(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let grace = self.grace;
        runtime.spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(grace, async {
                while !inbound.fin {
                    if inbound.read_into(&mut m).await.is_err() {
                        return;
                    }
                }
            })
            .await;
        });
    }

    /// Reads the FIN of the handshake stream (nothing follows the last handshake message).
    pub(crate) fn finish_handshake(&self, mut recv: RecvStream) {
        if matches!(recv.read_chunk(READ_CHUNK, true).now_or_never(), Some(Ok(None))) {
            return;
        }
        let (Some(slot), Ok(runtime)) = (self.reserve(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let grace = self.grace;
        runtime.spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(grace, recv.read_chunk(READ_CHUNK, true)).await;
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

/// Reads one handshake frame (header included). A frame that breaks the
/// handshake framing, or a stream that ends mid-handshake, fails the
/// handshake (code 71, spec §11.14).
pub(crate) async fn read_handshake_frame(
    recv: &mut RecvStream,
    splitter: &mut FrameSplitter,
    pending: &mut Vec<u8>,
) -> Result<Vec<u8>, TransportError> {
    loop {
        let mut input = &pending[..];
        let frame = splitter.next_frame(&mut input).map_err(HandshakeError::Framing)?;
        let consumed = pending.len() - input.len();
        pending.drain(..consumed);
        if let Some(frame) = frame {
            return Ok(frame);
        }
        match recv.read_chunk(READ_CHUNK, true).await.map_err(conn_err)? {
            Some(chunk) => pending.extend_from_slice(&chunk.bytes),
            None => return Err(HandshakeError::Truncated.into()),
        }
    }
}
