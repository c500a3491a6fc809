//! Server-sent events read as the WHATWG spec says (lines end in LF, CR or CRLF; `:` starts a comment;
//! `data:` lines of one event are joined with `\n`; one space after the colon is dropped; an event cut
//! off by the end of the stream is discarded), over any `BufRead`, with every line and event bounded
//! so a hostile or broken server cannot make us buffer without limit. Only the data is kept: the
//! OpenAI stream uses neither `event:` nor `id:` nor `retry:`.

use anyhow::{Result, bail};
use std::io::{BufRead, ErrorKind};

/// The most bytes one event's data may hold (a chunk of an OpenAI stream is a few hundred bytes; a
/// server that sends a whole long answer in one chunk still fits).
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// Reads events from a byte stream.
pub struct SseReader<R> {
    reader: R,
    line: Vec<u8>,
    data: Vec<u8>,
    /// The last line ended with CR: an LF that follows belongs to it.
    after_cr: bool,
    at_start: bool,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(reader: R) -> Self {
        SseReader {
            reader,
            line: Vec::new(),
            data: Vec::new(),
            after_cr: false,
            at_start: true,
        }
    }

    /// The next event's data, or `None` at the end of the stream. Bytes that are not UTF-8 are
    /// replaced (U+FFFD), as the spec decodes the stream.
    pub fn next_data(&mut self) -> Result<Option<String>> {
        while self.read_line()? {
            if let Some(data) = self.take_line()? {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// Reads up to the next line end into `self.line`; false at the end of the stream.
    fn read_line(&mut self) -> Result<bool> {
        self.line.clear();
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if buf.is_empty() {
                return Ok(false);
            }
            if self.at_start {
                self.at_start = false;
                if buf.starts_with(b"\xEF\xBB\xBF") {
                    self.reader.consume(3);
                    continue;
                }
            }
            if std::mem::take(&mut self.after_cr) && buf[0] == b'\n' {
                self.reader.consume(1);
                continue;
            }
            let end = buf.iter().position(|&b| b == b'\n' || b == b'\r');
            let take = end.unwrap_or(buf.len());
            if self.line.len() + take > MAX_EVENT_BYTES {
                bail!(
                    "the server sent a stream line longer than {} MiB",
                    MAX_EVENT_BYTES >> 20
                );
            }
            self.line.extend_from_slice(&buf[..take]);
            match end {
                Some(i) => {
                    self.after_cr = buf[i] == b'\r';
                    self.reader.consume(i + 1);
                    return Ok(true);
                }
                None => self.reader.consume(take),
            }
        }
    }

    /// Applies one line; an empty line ends an event, whose data is returned if it had any.
    fn take_line(&mut self) -> Result<Option<String>> {
        if self.line.is_empty() {
            if self.data.is_empty() {
                return Ok(None);
            }
            self.data.pop(); // the `\n` after the last data line
            let data = String::from_utf8_lossy(&self.data).into_owned();
            self.data.clear();
            return Ok(Some(data));
        }
        if self.line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match self.line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &self.line[i + 1..];
                (&self.line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&self.line[..], &[][..]),
        };
        if field == b"data" {
            if self.data.len() + value.len() >= MAX_EVENT_BYTES {
                bail!(
                    "the server sent a stream event larger than {} MiB",
                    MAX_EVENT_BYTES >> 20
                );
            }
            self.data.extend_from_slice(value);
            self.data.push(b'\n');
        }
        Ok(None)
    }
}

impl<R: BufRead> Iterator for SseReader<R> {
    type Item = Result<String>;
    fn next(&mut self) -> Option<Result<String>> {
        self.next_data().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(bytes: &[u8]) -> Vec<String> {
        SseReader::new(bytes).map(|e| e.unwrap()).collect()
    }

    #[test]
    fn follows_the_spec() {
        // Multi-line data, comments, no space after the colon, other fields, a final cut-off event.
        let body = b": keep-alive\ndata: first\ndata:second\nevent: x\nid: 7\n\ndata\n\ndata: {\"a\": 1}\n\ndata: cut";
        assert_eq!(events(body), ["first\nsecond", "", "{\"a\": 1}"]);
        // CRLF and CR line ends give the same events, also when a CRLF is split between reads.
        let lf = b"data: a\ndata:  b\n\ndata: c\n\n";
        let crlf = b"data: a\r\ndata:  b\r\n\r\ndata: c\r\n\r\n";
        let cr = b"data: a\rdata:  b\r\rdata: c\r\r";
        assert_eq!(events(lf), ["a\n b", "c"]);
        assert_eq!(events(crlf), events(lf));
        assert_eq!(events(cr), events(lf));
        let split = std::io::BufReader::with_capacity(1, &crlf[..]);
        let got: Vec<String> = SseReader::new(split).map(|e| e.unwrap()).collect();
        assert_eq!(got, events(lf));
        // A byte-order mark at the start is not part of the first field name.
        assert_eq!(events(b"\xEF\xBB\xBFdata: x\n\n"), ["x"]);
        // Lines without data, and events without data, yield nothing.
        assert!(events(b"\n\n:c\n\nevent: e\n\n").is_empty());
    }

    #[test]
    fn refuses_unbounded_lines_and_events() {
        let long_line = vec![b'a'; MAX_EVENT_BYTES + 1];
        let err = SseReader::new(&long_line[..]).next().unwrap().unwrap_err();
        assert!(err.to_string().contains("line longer"), "{err}");
        let mut many = Vec::new();
        for _ in 0..(MAX_EVENT_BYTES / (1 << 20) + 1) {
            many.extend_from_slice(b"data: ");
            many.extend(std::iter::repeat_n(b'b', 1 << 20));
            many.push(b'\n');
        }
        many.push(b'\n');
        let err = SseReader::new(&many[..])
            .find_map(|e| e.err())
            .expect("an error");
        assert!(err.to_string().contains("event larger"), "{err}");
    }

    proptest! {
        #[test]
        fn any_bytes_end_in_events_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut total = 0;
            for event in SseReader::new(&bytes[..]) {
                let data = event.unwrap();
                total += data.len();
            }
            // Data comes from the input: never more than it (replacement characters aside).
            prop_assert!(total <= 3 * bytes.len());
        }

        #[test]
        fn line_ends_and_read_sizes_do_not_change_events(
            lines in proptest::collection::vec("[a-z :]{0,12}", 0..20),
            end in 0usize..3,
            capacity in 1usize..8,
        ) {
            let mut lf = Vec::new();
            let mut other = Vec::new();
            for line in &lines {
                lf.extend_from_slice(line.as_bytes());
                lf.push(b'\n');
                other.extend_from_slice(line.as_bytes());
                other.extend_from_slice([&b"\n"[..], b"\r", b"\r\n"][end]);
            }
            let small = std::io::BufReader::with_capacity(capacity, &other[..]);
            let got: Vec<String> = SseReader::new(small).map(|e| e.unwrap()).collect();
            prop_assert_eq!(got, events(&lf));
        }
    }
}
