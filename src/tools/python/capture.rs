//! The guest's stdout and stderr: kept up to a byte limit per cell, so a cell that writes
//! gigabytes costs the host that limit in memory and a counter, never more.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Output captured up to a byte limit; later bytes are counted and dropped, never refused (a
/// refused write would become an OSError inside the guest).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<CaptureBuf>>);

#[derive(Default)]
struct CaptureBuf {
    bytes: Vec<u8>,
    limit: usize,
    dropped: usize,
}

impl Capture {
    pub fn new(limit: usize) -> Self {
        Capture(Arc::new(Mutex::new(CaptureBuf {
            limit,
            ..Default::default()
        })))
    }

    /// The text so far (with a note when cut) and whether it was cut; clears the buffer.
    pub fn take(&self) -> (String, bool) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::from_utf8_lossy(&buf.bytes).into_owned();
        let cut = buf.dropped > 0;
        if cut {
            text.push_str(&format!(
                "\n[output truncated: {} more bytes not shown]\n",
                buf.dropped
            ));
        }
        buf.bytes.clear();
        buf.dropped = 0;
        (text, cut)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = buf.limit.saturating_sub(buf.bytes.len()).min(data.len());
        buf.bytes.extend_from_slice(&data[..room]);
        buf.dropped = buf.dropped.saturating_add(data.len() - room);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::Capture;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use tokio::io::AsyncWrite;

    #[test]
    fn gigabytes_written_keep_only_the_limit_in_memory() {
        let capture = Capture::new(1000);
        let chunk = vec![b'x'; 1 << 20];
        let mut writer = capture.clone();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..2048 {
            let written = Pin::new(&mut writer).poll_write(&mut cx, &chunk);
            assert!(matches!(written, Poll::Ready(Ok(n)) if n == chunk.len()));
        }
        assert!(capture.0.lock().unwrap().bytes.capacity() < 1 << 20);
        let (text, cut) = capture.take();
        assert!(cut);
        assert_eq!(
            text,
            format!(
                "{}\n[output truncated: {} more bytes not shown]\n",
                "x".repeat(1000),
                (2048usize << 20) - 1000
            )
        );
        assert_eq!(capture.take(), (String::new(), false));
    }
}
