//! A stdio server's stderr: always drained (servers are chatty, and one whose pipe fills up blocks), and
//! forwarded as notices only when asked. Memory stays bounded whatever the server writes: a line is
//! kept up to `MAX_LINE_BYTES` (the rest is skipped, not buffered), and at most `LINES_PER_WINDOW` lines
//! per `WINDOW` become notices; the lines dropped past that are counted and reported as one notice.

use crate::tools::Notices;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest stderr line forwarded; longer lines are cut.
const MAX_LINE_BYTES: usize = 1000;
/// Lines forwarded per window; more are counted and dropped.
const LINES_PER_WINDOW: usize = 20;
const WINDOW: Duration = Duration::from_secs(1);

/// Reads `stderr` to its end; with `forward`, passes its lines to `notices` as `[server] line`.
pub(super) async fn drain(
    server: String,
    stderr: impl AsyncRead + Unpin,
    notices: Notices,
    forward: bool,
) {
    let mut reader = BufReader::new(stderr);
    let mut limiter = Limiter::new(Instant::now(), "stderr lines");
    let mut line = Vec::new();
    while let Ok(available) = reader.fill_buf().await {
        if available.is_empty() {
            break;
        }
        let (chunk, ends_line) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len() + usize::from(ends_line);
        reader.consume(used);
        if ends_line && forward {
            let text = String::from_utf8_lossy(&line);
            limiter.offer(Instant::now(), &notices, &server, text.trim_end());
        }
        if ends_line {
            line.clear();
        }
    }
    if forward {
        if !line.is_empty() {
            let text = String::from_utf8_lossy(&line);
            limiter.offer(Instant::now(), &notices, &server, text.trim_end());
        }
        limiter.flush(&notices, &server);
    }
}

/// Lets `LINES_PER_WINDOW` lines through per `WINDOW` and counts the rest; also bounds the notices
/// made of a server's notifications (`client`).
pub(super) struct Limiter {
    window_start: Instant,
    sent: usize,
    dropped: usize,
    /// What is counted when dropped ("stderr lines").
    what: &'static str,
}

impl Limiter {
    pub fn new(now: Instant, what: &'static str) -> Self {
        Limiter {
            window_start: now,
            sent: 0,
            dropped: 0,
            what,
        }
    }

    /// Queues `[server] line` unless this window's share is used up.
    pub fn offer(&mut self, now: Instant, notices: &Notices, server: &str, line: &str) {
        if now.duration_since(self.window_start) >= WINDOW {
            self.flush(notices, server);
            self.window_start = now;
            self.sent = 0;
        }
        if self.sent < LINES_PER_WINDOW {
            self.sent += 1;
            notices.push(format!("[{server}] {line}"));
        } else {
            self.dropped += 1;
        }
    }

    /// Reports the lines dropped since the last report, if any.
    fn flush(&mut self, notices: &Notices, server: &str) {
        if self.dropped > 0 {
            notices.push(format!(
                "[{server}] ({} more {} dropped)",
                self.dropped, self.what
            ));
            self.dropped = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(input: Vec<u8>, forward: bool) -> Vec<String> {
        let notices = Notices::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(drain(
            "srv".into(),
            std::io::Cursor::new(input),
            notices.clone(),
            forward,
        ));
        notices.drain()
    }

    #[test]
    fn lines_are_forwarded_with_the_server_name_and_cut_when_long() {
        let mut input = b"hello\r\n".to_vec();
        input.extend(vec![b'x'; 100_000]);
        input.extend(b"\nlast without newline");
        let notices = drained(input, true);
        assert_eq!(notices.len(), 3, "{notices:?}");
        assert_eq!(notices[0], "[srv] hello");
        assert_eq!(notices[1], format!("[srv] {}", "x".repeat(MAX_LINE_BYTES)));
        assert_eq!(notices[2], "[srv] last without newline");
    }

    #[test]
    fn a_flood_is_capped_and_the_rest_counted() {
        let input = "line\n".repeat(10_000).into_bytes();
        let notices = drained(input, true);
        let dropped: usize = notices
            .iter()
            .filter_map(|n| {
                n.strip_prefix("[srv] (")?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        let forwarded = notices.iter().filter(|n| *n == "[srv] line").count();
        assert_eq!(forwarded + dropped, 10_000);
        assert!(notices.len() < 1_000, "{} notices", notices.len());
    }

    #[test]
    fn nothing_is_forwarded_unless_asked() {
        assert!(drained(b"noise\n".repeat(100), false).is_empty());
    }

    #[test]
    fn the_limit_starts_over_each_window() {
        let notices = Notices::default();
        let start = Instant::now();
        let mut limiter = Limiter::new(start, "stderr lines");
        for _ in 0..LINES_PER_WINDOW + 5 {
            limiter.offer(start, &notices, "s", "a");
        }
        limiter.offer(start + WINDOW, &notices, "s", "b");
        let got = notices.drain();
        assert_eq!(got.len(), LINES_PER_WINDOW + 2);
        assert_eq!(got[LINES_PER_WINDOW], "[s] (5 more stderr lines dropped)");
        assert_eq!(got[LINES_PER_WINDOW + 1], "[s] b");
    }
}
