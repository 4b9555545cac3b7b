//! Server-sent events read from an upstream: bytes in, the `data` of each
//! event out, whatever the network's chunk boundaries (a line may arrive in
//! pieces, a piece may hold many lines). Lines are bounded.

/// Longest line accepted from an upstream, bytes.
pub const MAX_LINE: usize = 256 * 1024;

/// Why the stream is not server-sent events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line longer than [`MAX_LINE`].
    LineTooLong,
    /// An event's data is not UTF-8.
    NotUtf8,
}

/// Splits a byte stream into events' `data` fields (spec: WHATWG server-sent events).
#[derive(Debug, Default)]
pub struct SseReader {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseReader {
    /// A reader at the start of a stream.
    pub fn new() -> SseReader {
        SseReader::default()
    }

    /// Feeds bytes; returns the data of every event they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= MAX_LINE {
                    return Err(SseError::LineTooLong);
                }
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                // A blank line dispatches the event.
                if let Some(d) = self.data.take() {
                    out.push(d);
                }
                continue;
            }
            let text = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            let (field, value) = match text.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (text, String::new()),
            };
            if field == "data" {
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&value);
                    }
                    None => self.data = Some(value),
                }
            }
            // `event`, `id`, `retry` and comments (an empty field name) carry nothing we use.
        }
        Ok(out)
    }

    /// The data of an event the stream ended without a blank line after.
    pub fn finish(&mut self) -> Option<String> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let _ = self.feed(&line);
            let _ = self.feed(b"\n");
        }
        self.data.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_whole_whatever_the_chunking() {
        let stream = b": comment\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: one\ndata: two\n\ndata:[DONE]\n\n";
        let mut whole = SseReader::new();
        let all = whole.feed(stream).unwrap();
        assert_eq!(all, vec!["{\"a\":1}", "one\ntwo", "[DONE]"]);
        let mut bytewise = SseReader::new();
        let mut got = Vec::new();
        for b in stream.iter() {
            got.extend(bytewise.feed(&[*b]).unwrap());
        }
        assert_eq!(got, all);
        let mut tail = SseReader::new();
        assert!(tail.feed(b"data: last").unwrap().is_empty());
        assert_eq!(tail.finish().as_deref(), Some("last"));
        assert_eq!(SseReader::new().feed(&vec![b'x'; MAX_LINE + 1]), Err(SseError::LineTooLong));
        assert_eq!(SseReader::new().feed(b"data: \xff\n"), Err(SseError::NotUtf8));
    }
}
