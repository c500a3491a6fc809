//! Progress bars for long work (model downloads, loading, writing checkpoints, long prefills), drawn as
//! cargo and pip draw theirs: on stderr, only when stderr is a terminal, and never once a command has
//! asked for machine-readable output (`quiet`). The library reports through callbacks; this module
//! turns each kind of report into a bar.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use qwen3_agent::engine::{PREFILL_STEP, PrefillProgress};
use qwen3_agent::model::hub::Download;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by commands whose output is for programs (`--json`): then no bar is drawn in this process.
static QUIET: AtomicBool = AtomicBool::new(false);

/// No bars for the rest of this process.
pub fn quiet() {
    QUIET.store(true, Ordering::Relaxed);
}

/// A bar with `template` and `message`, hidden unless it may be drawn; first drawn at its first
/// report, and cleared when finished or dropped, so a failure's message is not left under a stale bar.
fn bar(template: &str, message: String) -> ProgressBar {
    let visible = !QUIET.load(Ordering::Relaxed) && std::io::stderr().is_terminal();
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let style = ProgressStyle::with_template(template)
        .expect("the bar templates are valid")
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(0), target)
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
