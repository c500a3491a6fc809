//! The HTTP exchange on its own thread, so the caller never blocks on the network for long: it waits
//! for the body's bytes in short slices, checking the interrupt flag between them, and gives up when
//! the server has sent nothing for the read timeout. Blocking reqwest reads cannot be cancelled; a
//! thread left behind learns that nobody listens (`Wanted`) and stops before any retry and at its
//! next read, which the request's own timeout bounds.

use anyhow::Result;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// How often a waiting reader looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(50);

/// Body chunks in flight between the thread and the reader (each at most `READ_BYTES`).
const CHANNEL_CHUNKS: usize = 16;
const READ_BYTES: usize = 16 << 10;

/// What the thread sends: body bytes, or why there will be none.
type Chunk = io::Result<Vec<u8>>;

/// Whether the reader still waits for the body: false once it is dropped (interrupt, timeout, error).
#[derive(Clone)]
pub struct Wanted(Arc<AtomicBool>);

impl Wanted {
    pub fn get(&self) -> bool {
        !self.0.load(Ordering::Relaxed)
    }
}

/// Starts `open` (which sends the request and returns the response body; it should give up when
/// its `Wanted` turns false) on a thread and returns a reader of the body. Errors of `open` arrive as
/// the reader's first error.
pub fn spawn<F, B>(open: F, interrupt: &AtomicBool, read_timeout: Duration) -> BodyReader<'_>
where
    F: FnOnce(Wanted) -> Result<B> + Send + 'static,
    B: Read + 'static,
{
    let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
    let abandoned = Arc::new(AtomicBool::new(false));
    let wanted = Wanted(abandoned.clone());
    std::thread::spawn(move || pump(open, wanted, tx));
    BodyReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
        interrupt,
        read_timeout,
        abandoned,
    }
}

fn pump<F, B>(open: F, wanted: Wanted, tx: SyncSender<Chunk>)
where
    F: FnOnce(Wanted) -> Result<B>,
    B: Read,
{
    let mut body = match open(wanted) {
        Ok(body) => body,
        Err(e) => {
            let _ = tx.send(Err(io::Error::other(format!("{e:#}"))));
            return;
        }
    };
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let chunk = match body.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => Ok(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let failed = chunk.is_err();
        if tx.send(chunk).is_err() || failed {
            return;
        }
    }
}

/// The response body as `Read`. An interrupt reads as the end of the body (the caller keeps what
/// came); a silence longer than the read timeout is an error of kind `TimedOut` that says so.
pub struct BodyReader<'a> {
    rx: Receiver<Chunk>,
    chunk: Vec<u8>,
    pos: usize,
    interrupt: &'a AtomicBool,
    read_timeout: Duration,
    abandoned: Arc<AtomicBool>,
}

impl Drop for BodyReader<'_> {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            match self.wait()? {
                Some(chunk) => (self.chunk, self.pos) = (chunk, 0),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl BodyReader<'_> {
    /// The next chunk; `None` at the end of the body or on an interrupt.
    fn wait(&mut self) -> io::Result<Option<Vec<u8>>> {
        let started = Instant::now();
        loop {
            if self.interrupt.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let left = self.read_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the server sent nothing for {:.0} s (model.read_timeout); it may be stalled or \
                         overloaded — raise read_timeout if its prefill is that slow",
                        self.read_timeout.as_secs_f64()
                    ),
                ));
            }
            match self.rx.recv_timeout(left.min(POLL)) {
                Ok(Ok(chunk)) => return Ok(Some(chunk)),
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that sends `first`, then blocks until `release` is set.
    struct Stalling {
        first: Option<Vec<u8>>,
        release: std::sync::Arc<AtomicBool>,
    }

    impl Read for Stalling {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(first) = self.first.take() {
                buf[..first.len()].copy_from_slice(&first);
                return Ok(first.len());
            }
            while !self.release.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(0)
        }
    }

    fn stalling() -> (Stalling, std::sync::Arc<AtomicBool>) {
        let release = std::sync::Arc::new(AtomicBool::new(false));
        let body = Stalling {
            first: Some(b"hello".to_vec()),
            release: release.clone(),
        };
        (body, release)
    }

    #[test]
    fn a_silent_server_times_out_with_a_clear_error() {
        let (body, release) = stalling();
        let interrupt = AtomicBool::new(false);
        let mut reader = spawn(move |_| Ok(body), &interrupt, Duration::from_millis(200));
        let mut text = Vec::new();
        let err = reader.read_to_end(&mut text).unwrap_err();
        assert_eq!(text, b"hello");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("read_timeout"), "{err}");
        release.store(true, Ordering::Relaxed);
    }

    #[test]
    fn an_interrupt_ends_the_body_while_waiting() {
        let (body, release) = stalling();
        let interrupt = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let mut reader = spawn(move |_| Ok(body), &interrupt, Duration::from_secs(600));
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                interrupt.store(true, Ordering::Relaxed);
            });
            let mut text = Vec::new();
            reader.read_to_end(&mut text).unwrap();
            assert_eq!(text, b"hello");
        });
        release.store(true, Ordering::Relaxed);
    }

    #[test]
    fn request_errors_arrive_as_the_first_read_error() {
        let interrupt = AtomicBool::new(false);
        let mut reader = spawn(
            |_| -> Result<&'static [u8]> { anyhow::bail!("answered 400: bad model") },
            &interrupt,
            Duration::from_secs(5),
        );
        let err = reader.read(&mut [0; 8]).unwrap_err();
        assert!(err.to_string().contains("bad model"), "{err}");
    }

    #[test]
    fn the_thread_learns_when_nobody_listens() {
        let interrupt = AtomicBool::new(false);
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let reader = spawn(
            move |wanted: Wanted| -> Result<&'static [u8]> {
                while wanted.get() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                seen_tx.send(()).unwrap();
                anyhow::bail!("abandoned")
            },
            &interrupt,
            Duration::from_secs(5),
        );
        drop(reader);
        seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
