//! Length-delimited framing of a byte stream into frames.
//!
//! Both handshake messages and encrypted stream frames start with a 16-bit
//! big-endian length. The splitter holds at most one partial frame, so a peer
//! cannot make it buffer more than `header + max_body` bytes.

use core::fmt;

/// Handshake frame: `len u16 || body`.
pub const HANDSHAKE_HEADER_LEN: usize = 2;
/// Encrypted stream frame: `len u16 || stream_id u32 || counter u32 || ciphertext`.
pub const STREAM_HEADER_LEN: usize = 10;

/// Why a byte stream cannot be split into frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A length below the minimum for this frame type.
    TooShort { len: usize, min: usize },
    /// A length above the configured maximum.
    TooLong { len: usize, max: usize },
    /// An earlier error left the stream unframeable.
    Poisoned,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooShort { len, min } => write!(f, "frame length {len} below minimum {min}"),
            FrameError::TooLong { len, max } => write!(f, "frame length {len} above maximum {max}"),
            FrameError::Poisoned => write!(f, "framing failed earlier"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits a byte stream into whole frames (header included).
#[derive(Debug)]
pub struct FrameSplitter {
    header_len: usize,
    min_body: usize,
    max_body: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl FrameSplitter {
    /// For handshake messages: body 1..=65535 bytes.
    pub fn handshake() -> Self {
        FrameSplitter {
            header_len: HANDSHAKE_HEADER_LEN,
            min_body: 1,
            max_body: u16::MAX as usize,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// For encrypted frames: ciphertext of 17 (flags byte + tag) to `max_ciphertext` bytes.
    pub fn stream(max_ciphertext: usize) -> Self {
        FrameSplitter {
            header_len: STREAM_HEADER_LEN,
            min_body: 17,
            max_body: max_ciphertext.min(u16::MAX as usize),
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Consumes bytes from `input` until one frame is complete and returns it,
    /// or returns `None` when `input` is used up first. Call again with the
    /// rest of `input` until it is empty. After an error every call fails
    /// the same way: the byte stream cannot be resynchronised.
    pub fn next_frame(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        if self.failed {
            return Err(FrameError::Poisoned);
        }
        let r = self.next_inner(input);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn next_inner(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() < 2 {
            let take = (2 - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            *input = &input[take..];
            if self.buf.len() < 2 {
                return Ok(None);
            }
            let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
            if len < self.min_body {
                return Err(FrameError::TooShort { len, min: self.min_body });
            }
            if len > self.max_body {
                return Err(FrameError::TooLong { len, max: self.max_body });
            }
            // One allocation per frame, sized now that the length is known (bounded by max_body).
            self.buf.reserve_exact(self.header_len + len - self.buf.len());
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        let total = self.header_len + len;
        let take = (total - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(core::mem::take(&mut self.buf)))
    }

    /// Whether a partial frame is buffered (a stream ending now is truncated).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// Prefixes a handshake message with its length (callers keep bodies
/// within 65535 bytes: see `handshake::write`).
pub(crate) fn handshake_frame(body: &[u8]) -> Vec<u8> {
    debug_assert!(body.len() <= u16::MAX as usize);
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_arbitrary_boundaries() {
        let mut wire = handshake_frame(b"hello");
        wire.extend(handshake_frame(b"w"));
        for cut in 0..wire.len() {
            let mut s = FrameSplitter::handshake();
            let mut frames = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                let mut input = part;
                while let Some(f) = s.next_frame(&mut input).unwrap() {
                    frames.push(f);
                }
                assert!(input.is_empty());
            }
            assert_eq!(frames, vec![handshake_frame(b"hello"), handshake_frame(b"w")]);
        }
    }

    #[test]
    fn refuses_bad_lengths() {
        let mut s = FrameSplitter::handshake();
        assert_eq!(s.next_frame(&mut &[0u8, 0][..]), Err(FrameError::TooShort { len: 0, min: 1 }));
        let mut s = FrameSplitter::stream(1000);
        assert_eq!(s.next_frame(&mut &[0x03u8, 0xe9][..]), Err(FrameError::TooLong { len: 1001, max: 1000 }));
        let mut s = FrameSplitter::stream(1000);
        assert_eq!(s.next_frame(&mut &[0u8, 16][..]), Err(FrameError::TooShort { len: 16, min: 17 }));
        // No resynchronisation after an error.
        assert_eq!(s.next_frame(&mut &[0u8, 20, 1, 2][..]), Err(FrameError::Poisoned));
    }
}
