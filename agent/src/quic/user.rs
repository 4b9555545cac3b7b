//! The initiating side: connect, run the Noise handshake (IK when the
//! peer's record gave its static key, XX otherwise), then send requests,
//! read streamed answers and send one-way messages, each on its own stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agentwire_protocol::identity::{LocalIdentity, NoiseStaticKey, PublicKey};
use agentwire_protocol::payment::SignedReceipt;
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::session::StreamWriter;
use agentwire_protocol::session::{
    initiate_ik, initiate_xx, FrameSplitter, HandshakeConfig, PeerInfo, Session, StreamReader, CHANNEL_BINDING_LABEL,
    CHANNEL_BINDING_LEN, HANDSHAKE_HEADER_LEN,
};
use agentwire_protocol::wire::{Message, OneWay, PaymentRequired, Request, Response, VoucherMessage};
use quinn::{RecvStream, SendStream, VarInt};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

use super::io::{read_handshake_frame, read_message, write_message};
use super::{now_secs, tls, TransportError, TransportLimits};

/// Whom to connect to.
#[derive(Clone, Debug)]
pub struct Target {
    /// The agent's QUIC address.
    pub addr: SocketAddr,
    /// Its identity key, if known (from a verified record): the handshake must prove it.
    pub identity: Option<PublicKey>,
    /// Its Noise static key, if known: enables IK (one round trip).
    pub noise_static: Option<NoiseStaticKey>,
}

/// An established session to a peer.
pub struct Connection {
    conn: quinn::Connection,
    session: Mutex<Session>,
    peer: PeerInfo,
    next_id: AtomicU64,
    limits: TransportLimits,
}

fn conn_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Connection(e.to_string())
}

fn stream_id(id: quinn::StreamId) -> u64 {
    VarInt::from(id).into_inner()
}

/// Connects to `target` and completes the handshake within the limits' timeout.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    local: Arc<LocalIdentity>,
    target: &Target,
    capabilities: &[String],
    limits: TransportLimits,
) -> Result<Connection, TransportError> {
    let config = tls::client_config(&limits)?;
    let connecting = endpoint.connect_with(config, target.addr, "agentwire").map_err(conn_err)?;
    let run = async {
        let conn = connecting.await.map_err(conn_err)?;
        let mut binding = [0u8; CHANNEL_BINDING_LEN];
        conn.export_keying_material(&mut binding, CHANNEL_BINDING_LABEL, b"")
            .map_err(|_| TransportError::Connection("TLS exporter unavailable".into()))?;
        let cfg = HandshakeConfig { local: &local, capabilities, channel_binding: &binding, limits: limits.session };
        let (mut send, mut recv) = conn.open_bi().await.map_err(conn_err)?;
        let mut splitter = FrameSplitter::handshake();
        let mut pending = Vec::new();
        let now = now_secs();
        let established = match (&target.noise_static, target.identity) {
            (Some(noise), Some(identity)) => {
                let (init, m1) = initiate_ik(&cfg, noise, identity, &mut OsRng)?;
                send.write_all(&m1).await.map_err(conn_err)?;
                let m2 = read_handshake_frame(&mut recv, &mut splitter, &mut pending).await?;
                init.read_response(&m2[HANDSHAKE_HEADER_LEN..], now)?
            }
            _ => {
                // XX still proves a pinned identity (checked inside the handshake).
                let (init, m1) = initiate_xx(&cfg, target.identity, &mut OsRng)?;
                send.write_all(&m1).await.map_err(conn_err)?;
                let m2 = read_handshake_frame(&mut recv, &mut splitter, &mut pending).await?;
                let (established, m3) = init.read_response(&m2[HANDSHAKE_HEADER_LEN..], now)?;
                send.write_all(&m3).await.map_err(conn_err)?;
                established
            }
        };
        send.finish().map_err(conn_err)?;
        Ok::<_, TransportError>((conn, established))
    };
    let (conn, established) =
        tokio::time::timeout(limits.handshake_timeout, run).await.map_err(|_| TransportError::HandshakeTimeout)??;
    Ok(Connection {
        conn,
        session: Mutex::new(established.session),
        peer: established.peer,
        next_id: AtomicU64::new(1),
        limits,
    })
}

/// What a streamed answer delivers next.
#[derive(Debug)]
pub enum StreamEvent {
    /// The next chunk's data.
    Chunk(Vec<u8>),
    /// A metered stream asks for one more increment (spec §13.7): answer
    /// with [`StreamedAnswer::pay`] or drop the answer.
    PaymentRequired(Box<PaymentRequired>),
    /// The StreamEnd arrived (its chunk count checked).
    End,
}

/// A streamed answer being read: chunk data in order, then the end.
pub struct StreamedAnswer {
    recv: RecvStream,
    reader: StreamReader,
    pending: Vec<u8>,
    /// Our direction of a paid request's stream, open for mid-stream vouchers.
    send: Option<(SendStream, StreamWriter)>,
    id: u64,
    next_seq: u32,
    max_message: usize,
    answer_timeout: std::time::Duration,
    done: bool,
    /// Chunk 0, read while telling a stream from a response.
    first: Option<Vec<u8>>,
    hash: Sha256,
    receipt: Option<SignedReceipt>,
}

impl StreamedAnswer {
    /// The next event: a chunk, a request for payment, or the end.
    pub async fn next_event(&mut self) -> Result<StreamEvent, TransportError> {
        if let Some(first) = self.first.take() {
            self.hash.update(&first);
            return Ok(StreamEvent::Chunk(first));
        }
        if self.done {
            return Ok(StreamEvent::End);
        }
        let read = read_message(&mut self.recv, &mut self.reader, &mut self.pending);
        let Some(bytes) =
            tokio::time::timeout(self.answer_timeout, read).await.map_err(|_| TransportError::AnswerTimeout)??
        else {
            return Err(TransportError::Protocol("streamed answer ended without StreamEnd (truncated)".into()));
        };
        match Message::decode_with_limit(&bytes, self.max_message)? {
            Message::StreamChunk(c) if c.id == self.id && c.seq == self.next_seq => {
                self.next_seq += 1;
                self.hash.update(&c.data);
                Ok(StreamEvent::Chunk(c.data))
            }
            Message::StreamEnd(e) if e.id == self.id && e.chunks == self.next_seq => {
                self.done = true;
                self.receipt = e.receipt;
                if let Some((mut send, _)) = self.send.take() {
                    let _ = send.finish();
                }
                Ok(StreamEvent::End)
            }
            Message::PaymentRequired(p) if p.id == self.id && self.send.is_some() => {
                Ok(StreamEvent::PaymentRequired(Box::new(p)))
            }
            Message::Error(e) => Err(TransportError::Remote { code: e.code, message: e.message }),
            other => Err(TransportError::Protocol(format!("unexpected {:?} in a streamed answer", other.kind()))),
        }
    }

    /// The next chunk's data; `None` after the StreamEnd. A request for
    /// more payment is an error here (use [`next_event`](Self::next_event)).
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        match self.next_event().await? {
            StreamEvent::Chunk(c) => Ok(Some(c)),
            StreamEvent::End => Ok(None),
            StreamEvent::PaymentRequired(p) => Err(TransportError::PaymentRequired(p)),
        }
    }

    /// Pays one more increment of a metered stream.
    pub async fn pay(&mut self, voucher: agentwire_protocol::payment::SignedVoucher) -> Result<(), TransportError> {
        let Some((send, writer)) = self.send.as_mut() else {
            return Err(TransportError::Protocol("this answer takes no payment".into()));
        };
        let m = Message::Voucher(VoucherMessage { id: self.id, voucher }).encode();
        write_message(send, writer, &m, false).await
    }

    /// SHA-256 of all chunk data so far (the receipt's `response_hash` once ended).
    pub fn response_hash(&self) -> [u8; 32] {
        self.hash.clone().finalize().into()
    }

    /// The StreamEnd's receipt, once ended (present if the request was paid).
    pub fn receipt(&self) -> Option<&SignedReceipt> {
        self.receipt.as_ref()
    }
}

/// The first answer to a request: a whole response or the start of a stream.
pub enum FirstAnswer {
    /// A whole response.
    Response(Box<Response>),
    /// A streamed answer: read it with [`StreamedAnswer::next_chunk`].
    Stream(Box<StreamedAnswer>),
}

impl Connection {
    /// The authenticated peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The QUIC connection (addresses, stats).
    pub fn quic(&self) -> &quinn::Connection {
        &self.conn
    }

    fn open(
        &self,
        id: quinn::StreamId,
    ) -> Result<(agentwire_protocol::session::StreamWriter, StreamReader), TransportError> {
        let mut session = self.session.lock().map_err(|_| TransportError::Protocol("session lock poisoned".into()))?;
        Ok(session.open_stream(stream_id(id), now_secs())?)
    }

    /// Sends a request and returns the first answer (a response or a stream).
    pub async fn call(
        &self,
        service: &str,
        body: Vec<u8>,
        payment: Option<SignedVoucher>,
    ) -> Result<FirstAnswer, TransportError> {
        Ok(self.call_hashed(service, body, payment).await?.0)
    }

    /// Like [`call`](Self::call), and also returns SHA-256 of the Request as
    /// sent (a receipt's `request_hash`). A paid request keeps our direction
    /// of the stream open until the answer ends, for mid-stream vouchers.
    pub async fn call_hashed(
        &self,
        service: &str,
        body: Vec<u8>,
        payment: Option<SignedVoucher>,
    ) -> Result<(FirstAnswer, [u8; 32]), TransportError> {
        let paid = payment.is_some();
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(conn_err)?;
        let (mut writer, mut reader) = self.open(send.id())?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Message::Request(Request { id, service: service.to_owned(), body, payment }).encode();
        let request_hash: [u8; 32] = Sha256::digest(&request).into();
        write_message(&mut send, &mut writer, &request, !paid).await?;
        let mut send = paid.then_some((send, writer));
        let mut pending = Vec::new();
        let max = self.limits.session.max_message_bytes;
        let read = read_message(&mut recv, &mut reader, &mut pending);
        let Some(bytes) = tokio::time::timeout(self.limits.answer_timeout, read)
            .await
            .map_err(|_| TransportError::AnswerTimeout)??
        else {
            return Err(TransportError::Protocol("stream ended without an answer".into()));
        };
        let stream = |send, pending, next_seq, done, first, receipt| StreamedAnswer {
            recv,
            reader,
            pending,
            send,
            id,
            next_seq,
            max_message: max,
            answer_timeout: self.limits.answer_timeout,
            done,
            first,
            hash: Sha256::new(),
            receipt,
        };
        let first = match Message::decode_with_limit(&bytes, max)? {
            Message::Response(r) if r.id == id => FirstAnswer::Response(Box::new(r)),
            Message::StreamChunk(c) if c.id == id && c.seq == 0 => {
                FirstAnswer::Stream(Box::new(stream(send.take(), pending, 1, false, Some(c.data), None)))
            }
            Message::StreamEnd(e) if e.id == id && e.chunks == 0 => {
                FirstAnswer::Stream(Box::new(stream(None, pending, 0, true, None, e.receipt)))
            }
            Message::PaymentRequired(p) if p.id == id => return Err(TransportError::PaymentRequired(Box::new(p))),
            Message::Error(e) => return Err(TransportError::Remote { code: e.code, message: e.message }),
            other => return Err(TransportError::Protocol(format!("unexpected {:?} answer", other.kind()))),
        };
        if let Some((mut s, _)) = send {
            let _ = s.finish();
        }
        Ok((first, request_hash))
    }

    /// Sends a request and waits for a whole response body.
    pub async fn request(&self, service: &str, body: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        match self.call(service, body, None).await? {
            FirstAnswer::Response(r) => Ok(r.body),
            FirstAnswer::Stream(mut s) => {
                let mut all = Vec::new();
                while let Some(chunk) = s.next_chunk().await? {
                    all.extend_from_slice(&chunk);
                }
                Ok(all)
            }
        }
    }

    /// Sends a one-way message on its own unidirectional stream.
    pub async fn one_way(&self, topic: &str, body: Vec<u8>) -> Result<(), TransportError> {
        let mut send = self.conn.open_uni().await.map_err(conn_err)?;
        let (mut writer, _) = self.open(send.id())?;
        let message = Message::OneWay(OneWay { topic: topic.to_owned(), body }).encode();
        write_message(&mut send, &mut writer, &message, true).await?;
        // Returns once the peer has read it all, so closing right after loses nothing.
        send.stopped().await.map_err(conn_err)?;
        Ok(())
    }

    /// Opens a bidirectional stream registered with the session and hands
    /// out its raw halves and frame writer/reader: for tests that play a
    /// misbehaving peer (replayed or reordered frames). Not for normal use.
    #[doc(hidden)]
    pub async fn raw_stream(
        &self,
    ) -> Result<(quinn::SendStream, RecvStream, agentwire_protocol::session::StreamWriter, StreamReader), TransportError>
    {
        let (send, recv) = self.conn.open_bi().await.map_err(conn_err)?;
        let (writer, reader) = self.open(send.id())?;
        Ok((send, recv, writer, reader))
    }

    /// Closes the connection gracefully.
    pub fn close(&self) {
        self.conn.close(VarInt::from_u32(0), b"bye");
    }
}
