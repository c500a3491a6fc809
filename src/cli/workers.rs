//! Items run on a fixed set of worker threads, as `eval --parallel` and `run` with several runs do:
//! every worker makes its state (an agent, a backend) before any item starts, so a failure there runs
//! nothing and a signal during it exits at once; then each takes the next item until none is left or
//! a signal came.

use super::signals::Signals;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

/// Runs items `0..count` on `threads` workers, each with the state `make` gave it (and, if it gave
/// one, an interrupt flag the signal handler sets); `work(state, i)` runs item i. The results come back
/// in item order, without the items a signal kept from starting. The first failure of `make` is the
/// error, and then no item runs.
pub fn run_on_workers<S, T: Send>(
    threads: usize,
    count: usize,
    signals: &Signals,
    make: impl Fn() -> Result<(S, Option<Arc<AtomicBool>>)> + Sync,
    work: impl Fn(&mut S, usize) -> T + Sync,
) -> Result<Vec<T>> {
    let next = &AtomicUsize::new(0);
    let results: &Mutex<Vec<Option<T>>> = &Mutex::new((0..count).map(|_| None).collect());
    let (make, work) = (&make, &work);
    std::thread::scope(|scope| -> Result<()> {
        let (ready, made) = mpsc::channel::<Result<Option<Arc<AtomicBool>>>>();
        let (starts, workers): (Vec<mpsc::Sender<bool>>, Vec<_>) = (0..threads)
            .map(|_| {
                let (start, go) = mpsc::channel::<bool>();
                let ready = ready.clone();
                let worker = scope.spawn(move || {
                    let mut state = match make() {
                        Ok((state, interrupt)) => {
                            let _ = ready.send(Ok(interrupt));
                            state
                        }
                        Err(error) => return ready.send(Err(error)).unwrap_or(()),
                    };
                    if go.recv() != Ok(true) {
                        return;
                    }
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count || signals.received().is_some() {
                            return;
                        }
                        let result = work(&mut state, i);
                        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                    }
                });
                (start, worker)
            })
            .unzip();
        drop(ready);
        let mut failure = None;
        // One message per worker (each keeps its sender while it waits for the start).
        for message in made.iter().take(threads) {
            match message {
                Ok(Some(interrupt)) => signals.watch(interrupt),
                Ok(None) => {}
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        let go = failure.is_none();
        signals.busy(|| {
            starts.iter().for_each(|start| {
                let _ = start.send(go);
            });
            workers
                .into_iter()
                .for_each(|w| w.join().expect("a worker thread panicked"));
        });
        failure.map_or(Ok(()), Err)
    })?;
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(results.into_iter().flatten().collect())
}
