//! Moving protocol frames over quinn streams: the handshake framing on the
//! handshake stream, and whole messages on encrypted streams.

use agentwire_protocol::session::{FrameSplitter, StreamEvent, StreamReader, StreamWriter};
use quinn::{RecvStream, SendStream};

use super::TransportError;

/// Largest chunk read from QUIC at once.
const READ_CHUNK: usize = 64 * 1024;

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

/// Reads the next whole message of a stream; `None` once the peer ended it.
pub(crate) async fn read_message(
    recv: &mut RecvStream,
    reader: &mut StreamReader,
    pending: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, TransportError> {
    loop {
        let mut input = &pending[..];
        let event = reader.poll(&mut input)?;
        let consumed = pending.len() - input.len();
        pending.drain(..consumed);
        match event {
            Some(StreamEvent::Message(m)) => return Ok(Some(m)),
            Some(StreamEvent::End) => return Ok(None),
            None => {}
        }
        match recv.read_chunk(READ_CHUNK, true).await.map_err(conn_err)? {
            Some(chunk) => pending.extend_from_slice(&chunk.bytes),
            None => {
                // FIN without END_STREAM is a truncated stream (spec §12.9).
                reader.at_eof()?;
                return Ok(None);
            }
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
    let mut out = Vec::with_capacity(message.len() + 64);
    writer.write_message(message, end, &mut out)?;
    send.write_all(&out).await.map_err(conn_err)?;
    if end {
        send.finish().map_err(conn_err)?;
    }
    Ok(())
}
