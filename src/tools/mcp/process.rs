//! stdio servers as child processes, which must never outlive us.
//!
//! Each server runs in its own process group, so the wrappers users configure (uvx, npx, shell scripts)
//! and the grandchildren they start end with it, and a Ctrl-C at the terminal is ours to handle, not
//! theirs. Every live group is on a process-wide list that `kill_all_servers` ends with SIGKILL at
//! once, from any thread (such as signal-hook's handler thread, src/cli/signals.rs), whatever the servers
//! do with SIGTERM or EOF; after it no server starts again in this process. On Linux each server also
//! gets SIGKILL when the thread that started it ends (`PR_SET_PDEATHSIG`): a backstop for when we are
//! killed ourselves (it reaches the server, not its grandchildren). That thread is a worker of the MCP
//! runtime, which lives until the last server is stopped.
//!
//! A group is only signalled while its leader is unreaped (a zombie at worst), so its id cannot have
//! been reused: it leaves the list under the list's lock before the leader is reaped.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a stopped server may take to exit on its own after its stdin closed (it may still be
/// reading a `notifications/cancelled`, or cleaning up) before its group is killed.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The live process groups, and whether `kill_all_servers` ran (then none may start).
struct Groups {
    live: Vec<i32>,
    shutting_down: bool,
}

static GROUPS: Mutex<Groups> = Mutex::new(Groups {
    live: Vec::new(),
    shutting_down: false,
});

fn groups() -> std::sync::MutexGuard<'static, Groups> {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ends every MCP server's process group at once (SIGKILL: servers that ignore SIGTERM or stdin closing
/// end too) and refuses to start servers from then on. Never blocks beyond a short lock, so it may be
/// called from any thread, e.g. the signal handler's thread, and more than once; not from inside an actual
/// signal handler (the lock is not async-signal-safe).
pub fn kill_all_servers() {
    let mut groups = groups();
    groups.shutting_down = true;
    for group in groups.live.drain(..) {
        kill_group(group);
    }
}

fn kill_group(group: i32) {
    #[cfg(unix)]
    // SAFETY: kill(2) on a process group we created and whose leader we have not reaped.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = group;
}

/// A running stdio server: the child (kept so its exit is reaped, no zombie) and its process group.
pub(super) struct ServerProcess {
    child: tokio::process::Child,
    group: i32,
}

/// What to run and how.
pub(super) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub environment: BTreeMap<OsString, OsString>,
    pub cwd: Option<PathBuf>,
}

impl ServerProcess {
    /// Starts the server with piped stdio. Call it on a worker of the MCP runtime (see the module doc).
    pub(super) fn spawn(launch: Launch) -> Result<ServerProcess> {
        if groups().shutting_down {
            bail!("not starting an MCP server: the program is ending");
        }
        let mut cmd = tokio::process::Command::new(&launch.program);
        cmd.args(&launch.args)
            .env_clear()
            .envs(&launch.environment)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &launch.cwd {
            cmd.current_dir(dir);
        }
        #[cfg(unix)]
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: only async-signal-safe calls (prctl, getppid, kill, getpid) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    // We may have died before prctl took effect: then nobody would send the signal.
                    if libc::getppid() != parent {
                        libc::kill(libc::getpid(), libc::SIGKILL);
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot run {:?} (is it installed and on PATH?)",
                launch.program
            )
        })?;
        let Some(pid) = child.id() else {
            bail!("the server exited as it started");
        };
        let process = ServerProcess {
            child,
            group: pid as i32,
        };
        let mut groups = groups();
        if groups.shutting_down {
            kill_group(process.group);
            bail!("not starting an MCP server: the program is ending");
        }
        groups.live.push(process.group);
        Ok(process)
    }

    /// The pipes rmcp talks over and the stderr to drain; taken once, right after `spawn`.
    pub(super) fn take_pipes(
        &mut self,
    ) -> Option<(
        tokio::process::ChildStdout,
        tokio::process::ChildStdin,
        tokio::process::ChildStderr,
    )> {
        Some((
            self.child.stdout.take()?,
            self.child.stdin.take()?,
            self.child.stderr.take()?,
        ))
    }

    /// Stops the server once our end of its stdin is closed: it gets `STOP_GRACE` to exit on its own,
    /// then its group is killed (grandchildren included) and it is reaped.
    pub(super) async fn stop(mut self) {
        let deadline = Instant::now() + STOP_GRACE;
        while !self.exited() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.end_group();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
    }

    /// Kills the group if it is still on the live list (`kill_all_servers` may have ended it already).
    fn end_group(&self) {
        let mut groups = groups();
        if let Some(at) = groups.live.iter().position(|g| *g == self.group) {
            groups.live.swap_remove(at);
            kill_group(self.group);
        }
    }

    /// Whether the leader exited, without reaping it (so its group id stays ours until `stop` kills it).
    #[cfg(target_os = "linux")]
    fn exited(&self) -> bool {
        // SAFETY: waitid(2) with WNOWAIT only reads the child's state into a zeroed siginfo_t.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            libc::waitid(libc::P_PID, self.group as libc::id_t, &mut info, flags) == 0
                && info.si_pid() != 0
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn exited(&self) -> bool {
        false
    }
}

/// A server dropped without `stop` (a failed start, a panic) still takes its group with it; the
/// runtime reaps the leader (`kill_on_drop`).
impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.end_group();
    }
}

/// A bare command name found on PATH runs as is; otherwise one of our own servers (`mcp-time`, ...)
/// installed beside this executable is used, so agents can name them without a PATH setup.
pub(super) fn resolve_command(command: &str) -> PathBuf {
    let bare = !command.contains(std::path::MAIN_SEPARATOR) && !command.contains('/');
    let on_path = || {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
    };
    let sibling = || {
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join(command)))
            .filter(|path| path.is_file())
    };
    if bare
        && !on_path()
        && let Some(sibling) = sibling()
    {
        return sibling;
    }
    Path::new(command).into()
}
