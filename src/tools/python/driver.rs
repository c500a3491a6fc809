//! The cell driver: Python defined once per session that runs each cell in `__main__`, keeps the
//! final expression's repr, trims tracebacks to the cell's frames and saves the figures left open
//! as `/.qwen3-agent/figure-N.png`; and its report, `/.qwen3-agent/status.json`.
//!
//! The driver runs inside the guest, so a cell can change anything it uses (`json.dump`, `open`,
//! the driver itself): its report is untrusted data. It is read through `GuestDir::read_file`
//! (a regular file, size-capped), parsed against a strict schema, and says only whether the cell
//! raised and what its value's repr was. Nothing in it is a path or anything else the host acts
//! on: figures are found by listing the dir (`figures.rs`).

use super::guest_fs::GuestDir;
use serde::Deserialize;

/// Where the guest sees the private io dir.
pub const PRIVATE_GUEST: &str = "/.qwen3-agent";
const STATUS_FILE: &str = "status.json";

/// Defines `__qwen3_agent_cell(src, limit)` in builtins; `limit` cuts the repr it reports. The
/// driver gets its own globals and binds `dumps` once, so a cell that rebinds `open` or other
/// names in `__main__` (`from os import *` does) or patches `json` cannot break the report by
/// accident; a cell that means to can still replace the driver, which is why the host trusts
/// nothing the report says.
pub const DEFINE: &str = r#"
exec(compile(r"""
import ast, sys, traceback
from json import dumps

def cell(src, limit):
    main = sys.modules["__main__"].__dict__
    status = {"status": "ok", "result": None}
    try:
        tree = ast.parse(src, "<cell>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<cell>", "exec"), main)
        if last is not None:
            value = eval(compile(last, "<cell>", "eval"), main)
            if value is not None:
                main["_"] = value
                status["result"] = repr(value)[:limit + 1]
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        status["status"] = "error"
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != "<cell>":
            tb = tb.tb_next
        sys.stderr.write("".join(traceback.format_exception(type(e), e, tb)))
    finally:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            for n, num in enumerate(plt.get_fignums()):
                try:
                    plt.figure(num).savefig(f"/.qwen3-agent/figure-{n}.png", format="png")
                except Exception as e:
                    sys.stderr.write(f"could not save figure {num}: {e}\n")
            plt.close("all")
        sys.stdout.flush()
        sys.stderr.flush()
        with open("/.qwen3-agent/status.json", "w") as f:
            f.write(dumps(status))

import builtins
builtins.__qwen3_agent_cell = cell
""", "<driver>", "exec"), {})
"#;

/// The Python that runs `code` as one cell, reporting at most `limit` bytes of its value.
pub fn call(code: &str, limit: usize) -> String {
    let literal = serde_json::to_string(code).expect("strings serialize");
    format!("__qwen3_agent_cell({literal}, {limit})")
}

/// What the driver reports; any other shape is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub status: Outcome,
    pub result: Option<String>,
}

/// Whether the cell raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Error,
}

impl Report {
    /// The value's repr cut to `limit` bytes (on a char boundary), and whether it was cut.
    pub fn value(self, limit: usize) -> (Option<String>, bool) {
        match self.result {
            Some(mut text) if text.len() > limit => {
                text.truncate(text.floor_char_boundary(limit));
                text.push_str("... [value truncated]");
                (Some(text), true)
            }
            other => (other, false),
        }
    }
}

/// The report of the cell that just ran, or why there is none usable (for the cell's stderr; the
/// cell then counts as failed). `limit` is the repr limit the cell ran with.
pub fn read_report(private: &GuestDir, limit: usize) -> Result<Report, String> {
    // JSON escapes a char in at most 12 bytes (a surrogate pair); the rest is a few fields.
    let cap = 4096u64.saturating_add((limit as u64).saturating_mul(12));
    let why = match private.read_file(STATUS_FILE, cap) {
        Ok(Some(bytes)) => match serde_json::from_slice::<Report>(&bytes) {
            Ok(report) => return Ok(report),
            Err(e) => format!("its status report is malformed ({e})"),
        },
        Ok(None) => "it left no status report".to_string(),
        Err(refused) => format!("its status report was refused: {refused}"),
    };
    Err(format!(
        "the sandbox cannot tell how this cell ended: {why}. It counts as failed (a cell that \
         replaces the sandbox's cell driver, or what it uses, breaks this report)\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::{GuestDir, Outcome, STATUS_FILE, read_report};

    fn report_of(bytes: &[u8]) -> Result<super::Report, String> {
        let dir = GuestDir::create("driver-test-").unwrap();
        std::fs::write(dir.path().join(STATUS_FILE), bytes).unwrap();
        read_report(&dir, 100)
    }

    #[test]
    fn a_well_formed_report_is_read_and_its_value_capped() {
        let report = report_of(br#"{"status": "ok", "result": "[1, 2]"}"#).unwrap();
        assert_eq!(report.status, Outcome::Ok);
        assert_eq!(report.value(100), (Some("[1, 2]".into()), false));
        let long = format!(r#"{{"status": "error", "result": "{}"}}"#, "é".repeat(60));
        let (value, cut) = report_of(long.as_bytes()).unwrap().value(101);
        assert_eq!(
            (value.unwrap(), cut),
            (format!("{}... [value truncated]", "é".repeat(50)), true)
        );
    }

    #[test]
    fn forged_or_broken_reports_are_refused_with_a_reason() {
        for (bytes, reason) in [
            (
                &br#"{"status": "ok", "result": null, "figures": ["/etc/passwd"]}"#[..],
                "unknown field `figures`",
            ),
            (br#"{"status": "fine"}"#, "unknown variant"),
            (br#"{"status": "ok", "result": 3}"#, "invalid type"),
            (b"\xff\xfe garbage", "malformed"),
            (br#"{"result": "x"}"#, "missing field `status`"),
        ] {
            let err = report_of(bytes).unwrap_err();
            assert!(err.contains(reason), "{err}");
        }
        let huge = format!(r#"{{"status": "ok", "result": "{}"}}"#, "x".repeat(10_000));
        assert!(report_of(huge.as_bytes()).unwrap_err().contains("limit"));
        let dir = GuestDir::create("driver-test-").unwrap();
        assert!(
            read_report(&dir, 100)
                .unwrap_err()
                .contains("no status report")
        );
    }
}
