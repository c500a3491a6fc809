//! Model locations: a local directory, or a Hugging Face hub id (`Qwen/Qwen3-8B-AWQ`) resolved through
//! the standard hub cache (HF_HOME / HF_HUB_CACHE are honoured; HF_HUB_OFFLINE=1 uses the cache only).

use anyhow::{Context, Result, bail};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, CacheRepo};
use std::path::{Path, PathBuf};

/// Files a model directory may hold besides the weights.
const OPTIONAL_FILES: [&str; 4] = [
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
];

/// Whether `text` names a hub repository rather than a path: `owner/name`, each part made of ASCII
/// letters, digits, `-`, `_` and `.` and not starting with `.` or `-` (so `./x`, `../x`, `/x`, `x` and
/// `a/b/c` are paths). A local directory of that name still wins: callers check it first.
pub fn is_hub_id(text: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['.', '-'])
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(text.split_once('/'), Some((owner, name)) if part(owner) && part(name))
}

/// Where a hub download stands: `done` of the `total` bytes of `file` (reported as bytes arrive).
#[derive(Debug, Clone, Copy)]
pub struct Download<'a> {
    pub file: &'a str,
    pub done: u64,
    pub total: u64,
}

/// The local directory for `spec`, downloading into the hub cache if needed (silently: see
/// `resolve_model_dir_reporting`). A path that is not a directory is reported as missing, never tried
/// as a hub id unless it has a hub id's shape.
pub fn resolve_model_dir(spec: &Path) -> Result<PathBuf> {
    resolve_model_dir_reporting(spec, &mut |_| {})
}

/// `resolve_model_dir`, reporting every file it downloads to `progress` (an 8B checkpoint is 5.7 GB).
pub fn resolve_model_dir_reporting(
    spec: &Path,
    progress: &mut dyn FnMut(Download),
) -> Result<PathBuf> {
    if spec.is_dir() {
        return Ok(spec.to_path_buf());
    }
    if spec.exists() {
        bail!(
            "{} is a file, not a model directory (the directory holding config.json and the weights)",
            spec.display()
        );
    }
    let id = match spec.to_str() {
        Some(id) if is_hub_id(id) => id,
        _ => bail!(
            "the model directory {} does not exist (a relative model.path is relative to the agent file; \
             a hub id looks like Qwen/Qwen3-8B-AWQ)",
            spec.display()
        ),
    };
    let offline =
        std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if let Some(dir) = from_cache(id)? {
        return Ok(dir);
    }
    if offline {
        bail!(
            "{id} is not in the hub cache ({}) and HF_HUB_OFFLINE is set: download it first, or point at a \
             local model directory",
            Cache::from_env().path().display()
        );
    }
    download(id, progress).with_context(|| {
        format!(
            "{id} is not a local directory, and cannot be fetched from the Hugging Face hub. If this machine \
             is offline, download the model elsewhere (huggingface-cli download {id} --local-dir DIR), copy \
             DIR here and pass DIR instead"
        )
    })
}

/// The cached snapshot directory, if config.json and every weight file are there.
fn from_cache(id: &str) -> Result<Option<PathBuf>> {
    let repo = Cache::from_env().model(id.to_string());
    let Some(config) = repo.get("config.json") else {
        return Ok(None);
    };
    let dir = config
        .parent()
        .context("cached config.json has no directory")?
        .to_path_buf();
    let complete = match repo.get("model.safetensors.index.json") {
        Some(index) => shard_names(&index)?.iter().all(|f| repo.get(f).is_some()),
        None => repo.get("model.safetensors").is_some(),
    };
    Ok(complete.then_some(dir))
}

fn download(id: &str, progress: &mut dyn FnMut(Download)) -> Result<PathBuf> {
    let api = ApiBuilder::from_env().with_progress(false).build()?;
    let mut repo = Files {
        api: api.model(id.to_string()),
        cache: Cache::from_env().model(id.to_string()),
        progress,
    };
    let config = repo.get("config.json")?;
    for file in OPTIONAL_FILES {
        let _ = repo.get(file);
    }
    match repo.get("model.safetensors.index.json") {
        Ok(index) => {
            for shard in shard_names(&index)? {
                repo.get(&shard)?;
            }
        }
        Err(_) => {
            repo.get("model.safetensors")?;
        }
    }
    Ok(config
        .parent()
        .context("downloaded config.json has no directory")?
        .to_path_buf())
}

/// A hub repository's files: from the cache when there, else downloaded with progress reports.
struct Files<'a> {
    api: ApiRepo,
    cache: CacheRepo,
    progress: &'a mut dyn FnMut(Download),
}

impl Files<'_> {
    fn get(&mut self, file: &str) -> Result<PathBuf, ApiError> {
        if let Some(path) = self.cache.get(file) {
            return Ok(path);
        }
        let reporter = Reporter {
            file,
            done: 0,
            total: 0,
            progress: &mut *self.progress,
        };
        self.api.download_with_progress(file, reporter)
    }
}

/// hf-hub's download callbacks turned into `Download` reports.
struct Reporter<'a, 'b> {
    file: &'a str,
    done: u64,
    total: u64,
    progress: &'b mut dyn FnMut(Download),
}

impl Reporter<'_, '_> {
    fn report(&mut self) {
        (self.progress)(Download {
            file: self.file,
            done: self.done,
            total: self.total,
        });
    }
}

impl hf_hub::api::Progress for Reporter<'_, '_> {
    fn init(&mut self, size: usize, _filename: &str) {
        (self.done, self.total) = (0, size as u64);
        self.report();
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        self.report();
    }

    fn finish(&mut self) {
        self.done = self.total;
        self.report();
    }
}

fn shard_names(index: &Path) -> Result<Vec<String>> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(index)?)?;
    let mut names: Vec<String> = json["weight_map"]
        .as_object()
        .context("model.safetensors.index.json has no weight_map")?
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_owner_slash_name_and_nothing_else() {
        for id in ["Qwen/Qwen3-8B-AWQ", "models/qwen3", "a_b/c.d-e"] {
            assert!(is_hub_id(id), "{id}");
        }
        for path in [
            "./Qwen/Qwen3",
            "../models/x",
            "/abs/x",
            "model",
            "a/b/c",
            "a/",
            "/a",
            ".hidden/x",
            "a/../b",
            "a b/c",
            "",
        ] {
            assert!(!is_hub_id(path), "{path}");
        }
    }

    #[test]
    fn a_missing_relative_directory_is_reported_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        for spec in [
            dir.path().join("absent"),
            PathBuf::from("./absent-model-dir"),
        ] {
            let err = resolve_model_dir(&spec).unwrap_err().to_string();
            assert!(
                err.contains("does not exist") && err.contains(&spec.display().to_string()),
                "{err}"
            );
        }
        let file = dir.path().join("config.json");
        std::fs::write(&file, "{}").unwrap();
        assert!(
            resolve_model_dir(&file)
                .unwrap_err()
                .to_string()
                .contains("is a file")
        );
    }
}
