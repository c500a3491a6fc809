//! Progress bars for long work (model downloads, loading, writing checkpoints, long prefills, MCP
//! servers' long calls), drawn as cargo and pip draw theirs: on stderr, only when stderr is a
//! terminal, and never once a command has asked for machine-readable output (`quiet`). The library
//! reports through callbacks; this module turns each kind of report into a bar.

use super::printer::printable;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use qwen3_agent::engine::{PREFILL_STEP, PrefillProgress};
use qwen3_agent::model::hub::Download;
use qwen3_agent::tools::mcp::{ProgressReport, ProgressSink};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// The MCP calls' bars, drawn together so a line printed meanwhile goes above them (`above_bars`).
static MCP_BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(target()));

/// Set by commands whose output is for programs (`--json`): then no bar is drawn in this process.
static QUIET: AtomicBool = AtomicBool::new(false);

/// No bars for the rest of this process.
pub fn quiet() {
    QUIET.store(true, Ordering::Relaxed);
}

/// stderr where bars may be drawn, else nowhere.
fn target() -> ProgressDrawTarget {
    if !QUIET.load(Ordering::Relaxed) && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar with `template` and `message`, hidden unless it may be drawn; first drawn at its first
/// report, and cleared when finished or dropped, so a failure's message is not left under a stale bar.
fn bar(template: &str, message: String) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .expect("the bar templates are valid")
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(0), target())
        .with_style(style)
        .with_message(message)
        .with_finish(ProgressFinish::AndClear)
}

/// For `load_decoder`'s steps (each layer after its repacking, then the embedding and lm_head).
pub fn loading(dir: &Path) -> impl FnMut(usize, usize) + use<> {
    let bar = bar(
        "loading {msg} [{bar:30}] {percent:>3}% ({elapsed})",
        dir.display().to_string(),
    );
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

/// For `write_safetensors`' bytes (`synth`, `quantize`).
pub fn writing(dir: &Path) -> impl Fn(u64, u64) {
    let bar = bar(
        "writing {msg} [{bar:30}] {bytes}/{total_bytes} ({eta} left)",
        dir.display().to_string(),
    );
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }
}

/// For hub downloads: one bar per file, its bytes and total.
pub fn downloading() -> impl FnMut(Download) {
    let bar = bar(
        "downloading {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({eta} left)",
        String::new(),
    );
    let mut file = String::new();
    move |report: Download| {
        if report.file != file || report.done == 0 {
            file = report.file.to_string();
            bar.reset();
            bar.set_message(file.clone());
            bar.set_length(report.total);
        }
        bar.set_position(report.done);
    }
}

/// For `Engine::set_prefill_progress`: a bar for prefills longer than one step (shorter ones take
/// well under a second), cleared when the prompt is in, before any text streams.
pub fn prefilling() -> PrefillProgress {
    let mut current: Option<ProgressBar> = None;
    Box::new(move |done, total| {
        if done == 0 && total > PREFILL_STEP {
            let new = bar(
                "prefill [{bar:30}] {pos}/{len} prompt tokens ({eta} left)",
                String::new(),
            );
            new.set_length(total as u64);
            current = Some(new);
        }
        if let Some(bar) = &current {
            bar.set_position(done as u64);
        }
        if done == total {
            current = None;
        }
    })
}

/// Runs `print` with the MCP calls' bars lifted, so its lines land above them, not through them.
pub fn above_bars<T>(print: impl FnOnce() -> T) -> T {
    MCP_BARS.suspend(print)
}

/// For MCP servers' progress reports: one bar per request in flight (its server, its progress out of
/// the total, or a spinner when the server gives none, and its message), gone when the request ends.
pub fn mcp_calls() -> ProgressSink {
    let bars = Mutex::new(McpBars::default());
    Arc::new(move |report: ProgressReport| {
        bars.lock()
            .unwrap_or_else(|e| e.into_inner())
            .report(report)
    })
}

/// Steps of a bar whose total the server gives (its progress need not be whole numbers).
const BAR_STEPS: u64 = 1000;

/// The bars of the requests in flight, by server and progress token.
#[derive(Default)]
struct McpBars {
    bars: HashMap<(String, String), ProgressBar>,
}

impl McpBars {
    fn report(&mut self, report: ProgressReport) {
        match report {
            ProgressReport::Step {
                server,
                token,
                progress,
                total,
                message,
            } => {
                let bar = self.bars.entry((server.clone(), token)).or_insert_with(|| {
                    let template = match total {
                        Some(_) => "{msg} [{bar:30}] {percent:>3}% ({elapsed})",
                        None => "{spinner} {msg} ({elapsed})",
                    };
                    MCP_BARS.add(bar(template, String::new()))
                });
                // The message first: a redraw is rate-limited, and the position's must show it.
                let amount = match total {
                    Some(total) => format!("{progress}/{total}"),
                    None => progress.to_string(),
                };
                let message = message.map(|m| format!(": {m}")).unwrap_or_default();
                let line = format!("[{server}] {amount}{message}");
                bar.set_message(printable(&line).into_owned());
                match total {
                    Some(total) if total > 0.0 => {
                        bar.set_length(BAR_STEPS);
                        let done = (progress / total).clamp(0.0, 1.0);
                        bar.set_position((done * BAR_STEPS as f64).round() as u64);
                    }
                    _ => bar.tick(),
                }
            }
            ProgressReport::Done { server, token } => {
                if let Some(bar) = self.bars.remove(&(server, token)) {
                    MCP_BARS.remove(&bar);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(token: &str, progress: f64, total: Option<f64>) -> ProgressReport {
        ProgressReport::Step {
            server: "srv".into(),
            token: token.into(),
            progress,
            total,
            message: Some("working\u{1b}[2J".into()),
        }
    }

    #[test]
    fn each_request_has_a_bar_that_follows_its_reports_until_it_ends() {
        let mut bars = McpBars::default();
        bars.report(step("1", 1.0, Some(4.0)));
        bars.report(step("2", 7.0, None));
        bars.report(step("1", 3.0, Some(4.0)));
        assert_eq!(bars.bars.len(), 2);
        let first = &bars.bars[&("srv".to_string(), "1".to_string())];
        assert_eq!((first.position(), first.length()), (750, Some(BAR_STEPS)));
        assert_eq!(first.message(), "[srv] 3/4: working\\u{1b}[2J");
        let second = &bars.bars[&("srv".to_string(), "2".to_string())];
        assert_eq!(second.message(), "[srv] 7: working\\u{1b}[2J");
        bars.report(ProgressReport::Done {
            server: "srv".into(),
            token: "1".into(),
        });
        assert_eq!(bars.bars.len(), 1);
        bars.report(ProgressReport::Done {
            server: "other".into(),
            token: "2".into(),
        });
        assert_eq!(
            bars.bars.len(),
            1,
            "another server's request is another bar"
        );
    }
}
