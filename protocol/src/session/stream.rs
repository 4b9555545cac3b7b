//! Per-stream encryption under one Noise session.
//!
//! After the handshake, each direction has one ChaCha20-Poly1305 key (Noise
//! `Split()`). Every QUIC stream encrypts its frames under that key with an
//! explicit 64-bit nonce `stream_id << 32 | counter`, so nonces of different
//! streams never collide and streams need no shared state. The frame header
//! (length, stream id, counter) is the AEAD associated data. Counters are
//! strictly sequential per stream: a replayed, reordered, truncated or
//! cross-stream frame is refused with its own error.
//!
//! Rekey policy: every [`REKEY_INTERVAL`] frames a stream's key is replaced
//! by Noise `REKEY(k)` (a protocol constant: both sides must agree); a session accepts new streams for at most
//! [`SessionLimits::max_age_secs`] and [`SessionLimits::max_streams`], after
//! which the driver runs a new handshake.

use core::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroize;

use super::framing::{FrameError, FrameSplitter, STREAM_HEADER_LEN};
use crate::codes::ErrorCode;
use crate::wire::MAX_MESSAGE_BYTES;

/// Largest stream id a session accepts (ids must fit the 32-bit nonce half).
pub const MAX_STREAM_ID: u64 = u32::MAX as u64;
const TAG_LEN: usize = 16;
/// Largest ciphertext in one frame (the 16-bit length field).
const MAX_CIPHERTEXT: usize = u16::MAX as usize;
/// Stream ids older than this many (per stream type) cannot be opened any more.
const STREAM_WINDOW: u64 = 1024;
/// Frames per stream and direction between key rotations (spec §12.5).
pub const REKEY_INTERVAL: u32 = 1 << 16;

/// Which side of the handshake this session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sent the first handshake message.
    Initiator,
    /// Answered it.
    Responder,
}

/// Limits of one session. A receiver SHOULD accept at least the defaults;
/// lower values are a local policy (spec §12.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Streams a session may open before a new handshake is needed (default 2^20).
    pub max_streams: u64,
    /// Seconds after the handshake during which new streams may open (default 3600).
    pub max_age_secs: u64,
    /// Largest plaintext payload a writer puts in one frame (default 16 KiB).
    pub max_frame_payload: usize,
    /// Largest reassembled message a reader accepts (default 1 MiB).
    pub max_message_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_streams: 1 << 20,
            max_age_secs: 3600,
            max_frame_payload: 16 * 1024,
            max_message_bytes: MAX_MESSAGE_BYTES,
        }
    }
}

/// Why a stream or session operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The stream id is above [`MAX_STREAM_ID`].
    StreamIdTooLarge(u64),
    /// The stream id was used before (or is too old to tell).
    StreamReused(u64),
    /// [`SessionLimits::max_streams`] reached: handshake again.
    TooManyStreams,
    /// [`SessionLimits::max_age_secs`] passed: handshake again.
    SessionExpired,
    /// The stream used up its 2^32 - 1 frame counters.
    StreamExhausted,
    /// Frame framing is invalid.
    Frame(FrameError),
    /// The header's length disagrees with the frame.
    BadLength,
    /// The frame belongs to another stream.
    WrongStream { expected: u32, got: u32 },
    /// The frame's counter was already used (a replay).
    Replayed { expected: u32, got: u32 },
    /// A counter ahead of the next one (a frame was dropped or reordered).
    OutOfOrder { expected: u32, got: u32 },
    /// Authentication failed: the frame was altered.
    Decrypt,
    /// Reserved flag bits set.
    ReservedFlags(u8),
    /// A frame with no payload that does not end the stream.
    EmptyFrame,
    /// A frame after the end of the stream.
    FrameAfterEnd,
    /// The stream ended inside a message or without an end-of-stream frame.
    Truncated,
    /// A message larger than [`SessionLimits::max_message_bytes`].
    MessageTooLarge,
    /// A payload larger than one frame can carry.
    PayloadTooLarge,
    /// An empty message (messages are CBOR and never empty).
    EmptyMessage,
    /// The stream hit an earlier error and is unusable.
    Poisoned,
}

impl SessionError {
    /// Whether the error breaks the session as a whole (encryption or
    /// framing: spec §12.13), so the connection ends; a message too large
    /// for the reader ends only its stream.
    pub fn ends_session(&self) -> bool {
        !matches!(self, SessionError::MessageTooLarge | SessionError::PayloadTooLarge)
    }

    /// The stable code to send to the peer before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::TooManyStreams => ErrorCode::TooManyStreams,
            SessionError::SessionExpired | SessionError::StreamExhausted => ErrorCode::SessionExpired,
            SessionError::MessageTooLarge | SessionError::PayloadTooLarge => ErrorCode::TooLarge,
            _ => ErrorCode::ProtocolViolation,
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::StreamIdTooLarge(id) => write!(f, "stream id {id} above {MAX_STREAM_ID}"),
            SessionError::StreamReused(id) => write!(f, "stream id {id} reused"),
            SessionError::TooManyStreams => write!(f, "session stream limit reached: handshake again"),
            SessionError::SessionExpired => write!(f, "session too old for new streams: handshake again"),
            SessionError::StreamExhausted => write!(f, "stream frame counter exhausted"),
            SessionError::Frame(e) => write!(f, "framing: {e}"),
            SessionError::BadLength => write!(f, "frame length mismatch"),
            SessionError::WrongStream { expected, got } => write!(f, "frame for stream {got} on stream {expected}"),
            SessionError::Replayed { expected, got } => write!(f, "replayed frame {got} (expected {expected})"),
            SessionError::OutOfOrder { expected, got } => write!(f, "frame {got} out of order (expected {expected})"),
            SessionError::Decrypt => write!(f, "frame failed authentication"),
            SessionError::ReservedFlags(b) => write!(f, "reserved frame flags {b:#04x}"),
            SessionError::EmptyFrame => write!(f, "empty frame"),
            SessionError::FrameAfterEnd => write!(f, "frame after end of stream"),
            SessionError::Truncated => write!(f, "stream truncated"),
            SessionError::MessageTooLarge => write!(f, "message too large"),
            SessionError::PayloadTooLarge => write!(f, "payload too large for one frame"),
            SessionError::EmptyMessage => write!(f, "empty message"),
            SessionError::Poisoned => write!(f, "stream unusable after an earlier error"),
        }
    }
}

impl std::error::Error for SessionError {}

/// Frame flags (the first plaintext byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(u8);

impl Flags {
    /// This frame ends a message.
    pub const END_MESSAGE: Flags = Flags(0x01);
    /// This frame ends the stream in this direction.
    pub const END_STREAM: Flags = Flags(0x02);
    /// No flag.
    pub const NONE: Flags = Flags(0);
    const KNOWN: u8 = 0x03;

    /// Combines flags.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    /// Whether `other` is set.
    pub const fn has(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The byte.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

/// Session keys and stream bookkeeping.
pub struct Session {
    role: Role,
    send_key: [u8; 32],
    recv_key: [u8; 32],
    handshake_hash: [u8; 32],
    limits: SessionLimits,
    established_at: u64,
    opened: u64,
    windows: [StreamIdWindow; 4],
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("role", &self.role).field("opened", &self.opened).finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.send_key.zeroize();
        self.recv_key.zeroize();
    }
}

impl Session {
    pub(crate) fn new(
        role: Role,
        send_key: [u8; 32],
        recv_key: [u8; 32],
        handshake_hash: [u8; 32],
        limits: SessionLimits,
        now: u64,
    ) -> Self {
        Session {
            role,
            send_key,
            recv_key,
            handshake_hash,
            limits,
            established_at: now,
            opened: 0,
            windows: Default::default(),
        }
    }

    /// A copy with fresh stream state (fixtures only: duplicating live keys
    /// elsewhere would reuse nonces).
    pub(crate) fn duplicate_for_fixtures(&self) -> Session {
        Session::new(self.role, self.send_key, self.recv_key, self.handshake_hash, self.limits, self.established_at)
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The Noise handshake hash (unique per session; both sides agree).
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.handshake_hash
    }

    /// The limits in force.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// What is left at `now` before new streams are refused: seconds of the
    /// session's age, and streams. A side that keeps a session for many
    /// requests starts a new one before either runs out, rather than fail a
    /// request at the limit.
    pub fn headroom(&self, now: u64) -> (u64, u64) {
        let age = now.saturating_sub(self.established_at);
        (self.limits.max_age_secs.saturating_sub(age), self.limits.max_streams.saturating_sub(self.opened))
    }

    /// Whether new streams may still be opened at `now`.
    pub fn accepts_streams(&self, now: u64) -> bool {
        self.check_new_stream(now).is_ok()
    }

    /// The session-wide limits on opening a stream at `now` (age, then count).
    fn check_new_stream(&self, now: u64) -> Result<(), SessionError> {
        if now.saturating_sub(self.established_at) >= self.limits.max_age_secs {
            return Err(SessionError::SessionExpired);
        }
        if self.opened >= self.limits.max_streams {
            return Err(SessionError::TooManyStreams);
        }
        Ok(())
    }

    /// Sets up encryption for QUIC stream `stream_id` (locally opened or
    /// accepted). Each id may be used once per session.
    pub fn open_stream(&mut self, stream_id: u64, now: u64) -> Result<(StreamWriter, StreamReader), SessionError> {
        if stream_id > MAX_STREAM_ID {
            return Err(SessionError::StreamIdTooLarge(stream_id));
        }
        self.check_new_stream(now)?;
        let window = &mut self.windows[(stream_id & 3) as usize];
        if !window.insert(stream_id >> 2) {
            return Err(SessionError::StreamReused(stream_id));
        }
        self.opened += 1;
        let id = stream_id as u32;
        let sealer = StreamSealer::new(&self.send_key, id);
        let opener = StreamOpener::new(&self.recv_key, id);
        Ok((
            StreamWriter { sealer, max_payload: self.limits.max_frame_payload.clamp(1, MAX_CIPHERTEXT - TAG_LEN - 1) },
            StreamReader::new(opener, self.limits.max_message_bytes),
        ))
    }
}

/// Sliding window of used stream indices of one QUIC stream type.
#[derive(Default)]
struct StreamIdWindow {
    next: u64,
    bits: [u64; (STREAM_WINDOW / 64) as usize],
}

impl StreamIdWindow {
    /// Marks `index` used; false if it was used or fell out of the window.
    fn insert(&mut self, index: u64) -> bool {
        if index >= self.next {
            let advance = index + 1 - self.next;
            if advance >= STREAM_WINDOW {
                self.bits = Default::default();
            } else {
                for i in self.next..=index {
                    self.clear(i);
                }
            }
            self.next = index + 1;
            self.set(index);
            return true;
        }
        if self.next - index > STREAM_WINDOW || self.get(index) {
            return false;
        }
        self.set(index);
        true
    }
    fn slot(i: u64) -> (usize, u64) {
        let i = i % STREAM_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }
    fn get(&self, i: u64) -> bool {
        let (w, b) = Self::slot(i);
        self.bits[w] & b != 0
    }
    fn set(&mut self, i: u64) {
        let (w, b) = Self::slot(i);
        self.bits[w] |= b;
    }
    fn clear(&mut self, i: u64) {
        let (w, b) = Self::slot(i);
        self.bits[w] &= !b;
    }
}

/// Noise nonce encoding: 4 zero bytes then the 64-bit nonce little-endian.
fn nonce(stream_id: u32, counter: u32) -> Nonce {
    let n = (u64::from(stream_id) << 32) | u64::from(counter);
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(b)
}

fn aead_key(raw: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is always valid for ChaCha20-Poly1305.
    match UnboundKey::new(&CHACHA20_POLY1305, raw) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => unreachable!("32-byte ChaCha20-Poly1305 key"),
    }
}

/// Noise `REKEY(k)`: the first 32 bytes of `ENCRYPT(k, 2^64-1, "", zeros(32))`.
pub fn noise_rekey(key: &[u8; 32]) -> [u8; 32] {
    let mut k = *key;
    rekey(&mut k);
    k
}

fn rekey(raw: &mut [u8; 32]) {
    let key = aead_key(raw);
    let mut buf = [0u8; 32];
    let n = Nonce::assume_unique_for_key([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    // Sealing a 32-byte buffer cannot fail.
    let _ = key.seal_in_place_separate_tag(n, Aad::empty(), &mut buf);
    *raw = buf;
    buf.zeroize();
}

/// Encrypts frames of one stream in one direction.
pub struct StreamSealer {
    /// The current key. ring's key object is made per frame: ChaCha20 needs
    /// no key schedule, and a stored `LessSafeKey` (sized for AES's, about
    /// half a kilobyte) made every stream's state large, copied on each move.
    raw: [u8; 32],
    stream_id: u32,
    counter: u32,
    ended: bool,
}

impl Drop for StreamSealer {
    fn drop(&mut self) {
        self.raw.zeroize();
    }
}

impl StreamSealer {
    fn new(raw: &[u8; 32], stream_id: u32) -> Self {
        StreamSealer { raw: *raw, stream_id, counter: 0, ended: false }
    }

    /// Appends one encrypted frame to `out`.
    pub fn seal(&mut self, flags: Flags, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SessionError> {
        if self.ended {
            return Err(SessionError::FrameAfterEnd);
        }
        let ct_len = payload.len() + 1 + TAG_LEN;
        if ct_len > MAX_CIPHERTEXT {
            return Err(SessionError::PayloadTooLarge);
        }
        if self.counter == u32::MAX {
            return Err(SessionError::StreamExhausted);
        }
        if self.counter != 0 && self.counter.is_multiple_of(REKEY_INTERVAL) {
            rekey(&mut self.raw);
        }
        let start = out.len();
        out.extend_from_slice(&(ct_len as u16).to_be_bytes());
        out.extend_from_slice(&self.stream_id.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        let body = start + STREAM_HEADER_LEN;
        out.push(flags.bits());
        out.extend_from_slice(payload);
        let (header, plaintext) = out[start..].split_at_mut(STREAM_HEADER_LEN);
        let tag = aead_key(&self.raw)
            .seal_in_place_separate_tag(nonce(self.stream_id, self.counter), Aad::from(&*header), plaintext)
            .map_err(|_| SessionError::PayloadTooLarge)?;
        out.extend_from_slice(tag.as_ref());
        debug_assert_eq!(out.len() - body, ct_len);
        self.counter += 1;
        if flags.has(Flags::END_STREAM) {
            self.ended = true;
        }
        Ok(())
    }

    /// Frames sealed so far.
    pub fn counter(&self) -> u32 {
        self.counter
    }
}

/// Decrypts frames of one stream in one direction.
pub struct StreamOpener {
    /// The current key. ring's key object is made per frame: ChaCha20 needs
    /// no key schedule, and a stored `LessSafeKey` (sized for AES's, about
    /// half a kilobyte) made every stream's state large, copied on each move.
    raw: [u8; 32],
    stream_id: u32,
    counter: u32,
    ended: bool,
    poisoned: bool,
}

impl Drop for StreamOpener {
    fn drop(&mut self) {
        self.raw.zeroize();
    }
}

impl StreamOpener {
    fn new(raw: &[u8; 32], stream_id: u32) -> Self {
        StreamOpener { raw: *raw, stream_id, counter: 0, ended: false, poisoned: false }
    }

    /// Authenticates and decrypts one whole frame (header included); returns
    /// its flags and payload. Any error poisons the opener.
    pub fn open(&mut self, frame: &[u8]) -> Result<(Flags, Vec<u8>), SessionError> {
        self.open_owned(frame.to_vec())
    }

    /// Like [`open`](Self::open), decrypting in place: the payload is
    /// returned in `frame`'s own buffer (no copy, no allocation).
    pub fn open_owned(&mut self, frame: Vec<u8>) -> Result<(Flags, Vec<u8>), SessionError> {
        if self.poisoned {
            return Err(SessionError::Poisoned);
        }
        let r = self.open_inner(frame);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn open_inner(&mut self, mut frame: Vec<u8>) -> Result<(Flags, Vec<u8>), SessionError> {
        if frame.len() < STREAM_HEADER_LEN + 1 + TAG_LEN {
            return Err(SessionError::BadLength);
        }
        let mut header = [0u8; STREAM_HEADER_LEN];
        header.copy_from_slice(&frame[..STREAM_HEADER_LEN]);
        let ct = &frame[STREAM_HEADER_LEN..];
        if usize::from(u16::from_be_bytes([header[0], header[1]])) != ct.len() {
            return Err(SessionError::BadLength);
        }
        if self.ended {
            return Err(SessionError::FrameAfterEnd);
        }
        let sid = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        let ctr = u32::from_be_bytes([header[6], header[7], header[8], header[9]]);
        if sid != self.stream_id {
            return Err(SessionError::WrongStream { expected: self.stream_id, got: sid });
        }
        if ctr < self.counter {
            return Err(SessionError::Replayed { expected: self.counter, got: ctr });
        }
        if ctr > self.counter {
            return Err(SessionError::OutOfOrder { expected: self.counter, got: ctr });
        }
        if ctr == u32::MAX {
            return Err(SessionError::StreamExhausted);
        }
        if ctr != 0 && ctr % REKEY_INTERVAL == 0 {
            rekey(&mut self.raw);
        }
        let plain_len = aead_key(&self.raw)
            .open_in_place(nonce(sid, ctr), Aad::from(header), &mut frame[STREAM_HEADER_LEN..])
            .map_err(|_| SessionError::Decrypt)?
            .len();
        // The plaintext is the flags byte then the payload: keep the payload only.
        frame.truncate(STREAM_HEADER_LEN + plain_len);
        let flags = frame[STREAM_HEADER_LEN];
        frame.drain(..=STREAM_HEADER_LEN);
        let buf = frame;
        self.counter += 1;
        if flags & !Flags::KNOWN != 0 {
            return Err(SessionError::ReservedFlags(flags));
        }
        let flags = Flags(flags);
        if flags.has(Flags::END_STREAM) {
            self.ended = true;
        }
        if buf.is_empty() && !flags.has(Flags::END_STREAM) && !flags.has(Flags::END_MESSAGE) {
            return Err(SessionError::EmptyFrame);
        }
        Ok((flags, buf))
    }

    /// Whether the peer ended the stream.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

/// Writes whole messages onto a stream, split into frames.
pub struct StreamWriter {
    sealer: StreamSealer,
    max_payload: usize,
}

impl StreamWriter {
    /// Bytes [`write_message`](Self::write_message) appends for a message of
    /// `len` bytes (frame headers, flags and tags included): lets a caller
    /// size its buffer exactly.
    pub fn sealed_len(&self, len: usize) -> usize {
        let frames = len.div_ceil(self.max_payload.max(1)).max(1);
        len + frames * (STREAM_HEADER_LEN + 1 + TAG_LEN)
    }

    /// Appends `message` as one or more frames; `end_stream` also closes our direction.
    pub fn write_message(&mut self, message: &[u8], end_stream: bool, out: &mut Vec<u8>) -> Result<(), SessionError> {
        if message.is_empty() {
            return Err(SessionError::EmptyMessage);
        }
        let mut chunks = message.chunks(self.max_payload).peekable();
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_some() {
                Flags::NONE
            } else if end_stream {
                Flags::END_MESSAGE.with(Flags::END_STREAM)
            } else {
                Flags::END_MESSAGE
            };
            self.sealer.seal(flags, chunk, out)?;
        }
        Ok(())
    }

    /// Appends an empty end-of-stream frame.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), SessionError> {
        self.sealer.seal(Flags::END_STREAM, &[], out)
    }

    /// The underlying sealer (for tests and vectors).
    pub fn sealer_mut(&mut self) -> &mut StreamSealer {
        &mut self.sealer
    }
}

/// What a reader produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// A complete message (CBOR; decode with [`crate::wire::Message::decode`]).
    Message(Vec<u8>),
    /// The peer ended the stream; nothing follows.
    End,
}

/// Reads whole messages from a stream's bytes.
pub struct StreamReader {
    splitter: FrameSplitter,
    opener: StreamOpener,
    partial: Vec<u8>,
    max_message: usize,
    end_pending: bool,
    done: bool,
    failed: bool,
}

impl StreamReader {
    fn new(opener: StreamOpener, max_message: usize) -> Self {
        StreamReader {
            splitter: FrameSplitter::stream(MAX_CIPHERTEXT),
            opener,
            partial: Vec::new(),
            max_message,
            end_pending: false,
            done: false,
            failed: false,
        }
    }

    /// Consumes bytes from `input` until an event is ready. Call repeatedly
    /// (also with an empty input, to collect a pending `End`) until `None`.
    /// After any error the reader is poisoned: drop the stream.
    pub fn poll(&mut self, input: &mut &[u8]) -> Result<Option<StreamEvent>, SessionError> {
        if self.failed {
            return Err(SessionError::Poisoned);
        }
        let r = self.poll_inner(input);
        if r.is_err() {
            self.failed = true;
            self.partial = Vec::new();
        }
        r
    }

    fn poll_inner(&mut self, input: &mut &[u8]) -> Result<Option<StreamEvent>, SessionError> {
        if self.end_pending {
            self.end_pending = false;
            self.done = true;
            return Ok(Some(StreamEvent::End));
        }
        while !input.is_empty() {
            if self.done {
                return Err(SessionError::FrameAfterEnd);
            }
            let Some(frame) = self.splitter.next_frame(input).map_err(SessionError::Frame)? else {
                return Ok(None);
            };
            let (flags, payload) = self.opener.open_owned(frame)?;
            if self.partial.len() + payload.len() > self.max_message {
                return Err(SessionError::MessageTooLarge);
            }
            if self.partial.is_empty() {
                // A message's first frame (usually its only one): keep its buffer.
                self.partial = payload;
            } else {
                self.partial.extend_from_slice(&payload);
            }
            let end_stream = flags.has(Flags::END_STREAM);
            if flags.has(Flags::END_MESSAGE) {
                if self.partial.is_empty() {
                    return Err(SessionError::EmptyMessage);
                }
                self.end_pending = end_stream;
                return Ok(Some(StreamEvent::Message(core::mem::take(&mut self.partial))));
            }
            if end_stream {
                if !self.partial.is_empty() {
                    return Err(SessionError::Truncated);
                }
                self.done = true;
                return Ok(Some(StreamEvent::End));
            }
        }
        Ok(None)
    }

    /// Call when the transport reports the end of the stream: fails if the
    /// peer did not end it with an end-of-stream frame (truncation).
    pub fn at_eof(&self) -> Result<(), SessionError> {
        if self.failed {
            Err(SessionError::Poisoned)
        } else if self.done || self.end_pending {
            Ok(())
        } else {
            Err(SessionError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests;
