//! A CallToolResult as text for a text-only model: text blocks joined, `structuredContent` when there is
//! no text, embedded text resources included, images, audio and binary resources saved to files and
//! referenced by path, `isError` kept, long output cut with a note.
//!
//! Saved files never overwrite each other, however many calls save at once: each name is claimed with
//! an exclusive create (a counter picks the next name when one is taken), never checked and then
//! written. Names are made only of safe characters, whatever the server called its MIME type.

use super::McpSettings;
use crate::tools::ToolOutput;
use anyhow::Result;
use base64::Engine as _;
use serde_json::Value as Json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Maps a result (its wire JSON) for the model; `server` names the saved files.
pub(super) fn to_output(result: &Json, settings: &McpSettings, server: &str) -> ToolOutput {
    let mut parts = Vec::new();
    let mut files = Vec::new();
    let blocks = result["content"].as_array().into_iter().flatten();
    for (index, block) in blocks.enumerate() {
        let mut save = |kind: &str, mime: &str, data: &str, label: String| {
            let stem = format!("{}-{index}", safe_name(server));
            match save_blob(&settings.output_dir, &stem, mime, data) {
                Ok(path) => {
                    let path = path.display().to_string();
                    parts.push(format!("[{label} saved to {path}]"));
                    files.push(path);
                }
                Err(e) => parts.push(format!("[a {mime} {kind} could not be saved: {e}]")),
            }
        };
        let mime = |value: &Json| {
            value["mimeType"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_string()
        };
        match block["type"].as_str() {
            Some("text") => parts.push(block["text"].as_str().unwrap_or_default().to_string()),
            Some(kind @ ("image" | "audio")) => save(
                kind,
                &mime(block),
                block["data"].as_str().unwrap_or_default(),
                kind.to_string(),
            ),
            Some("resource") => {
                let resource = &block["resource"];
                if let Some(text) = resource["text"].as_str() {
                    parts.push(text.to_string());
                } else if let Some(blob) = resource["blob"].as_str() {
                    let uri = resource["uri"].as_str().unwrap_or_default();
                    save("resource", &mime(resource), blob, format!("resource {uri}"));
                }
            }
            Some("resource_link") => parts.push(format!(
                "[resource link: {}]",
                block["uri"].as_str().unwrap_or_default()
            )),
            _ => {}
        }
    }
    if parts.is_empty()
        && let Some(structured) = result.get("structuredContent").filter(|v| !v.is_null())
    {
        parts.push(serde_json::to_string_pretty(structured).unwrap_or_default());
    }
    ToolOutput {
        text: cap(parts.join("\n"), settings.max_output_chars),
        is_error: result["isError"].as_bool().unwrap_or(false),
        files,
    }
}

/// Cuts `text` to `max_chars` characters with a note saying how much there was.
fn cap(text: String, max_chars: usize) -> String {
    let Some((end, _)) = text.char_indices().nth(max_chars) else {
        return text;
    };
    let total = text.chars().count();
    format!(
        "{}\n[output cut: the tool returned {total} characters; only the first {max_chars} are shown]",
        &text[..end]
    )
}

/// Decodes base64 `data` into a new file `{stem}-{millis}.{ext}` (or `...-{millis}-{n}.{ext}` when
/// that is taken) under `dir`.
fn save_blob(dir: &Path, stem: &str, mime: &str, data: &str) -> Result<PathBuf> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
    std::fs::create_dir_all(dir)?;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let extension = extension(mime);
    for n in 0..10_000 {
        let name = match n {
            0 => format!("{stem}-{millis}.{extension}"),
            n => format!("{stem}-{millis}-{n}.{extension}"),
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(&bytes)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("no free file name for {stem} in {}", dir.display())
}

/// The file extension for a MIME type (`image/svg+xml` -> `svg`), `bin` when it gives none usable.
fn extension(mime: &str) -> String {
    let subtype = mime.split('/').nth(1).unwrap_or_default();
    let subtype = subtype.split(['+', ';']).next().unwrap_or_default().trim();
    if !subtype.is_empty()
        && subtype.len() <= 16
        && subtype.chars().all(|c| c.is_ascii_alphanumeric())
    {
        subtype.to_ascii_lowercase()
    } else {
        "bin".into()
    }
}

/// A server name as a file name part: anything but ASCII letters, digits, `_` and `-` becomes `_`.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    fn settings(dir: &Path) -> McpSettings {
        McpSettings {
            connect_timeout: std::time::Duration::from_secs(1),
            call_timeout: std::time::Duration::from_secs(1),
            max_output_chars: 10,
            max_message_bytes: 1 << 20,
            output_dir: dir.to_path_buf(),
            notices: Default::default(),
            forward_stderr: false,
            roots: Vec::new(),
            elicitation: Default::default(),
            person: None,
            progress: None,
            sampling: None,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qwen3-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn blobs_saved_at_once_get_distinct_files_with_their_own_bytes() {
        let dir = temp_dir("blobs");
        let paths: Vec<(PathBuf, Vec<u8>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..32u8)
                .map(|i| {
                    let dir = &dir;
                    scope.spawn(move || {
                        let bytes = vec![i; 1000];
                        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
                        (save_blob(dir, "srv-0", "image/png", &data).unwrap(), bytes)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: HashSet<_> = paths.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(distinct.len(), 32);
        for (path, bytes) in &paths {
            assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_names_and_mime_types_stay_inside_the_output_dir() {
        let dir = temp_dir("hostile");
        let result =
            json!({"content": [{"type": "image", "mimeType": "image/../../x", "data": "aGk="}]});
        let output = to_output(&result, &settings(&dir), "../../etc");
        assert_eq!(output.files.len(), 1, "{output:?}");
        let path = Path::new(&output.files[0]);
        assert_eq!(path.parent(), Some(dir.as_path()));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("______etc-0-") && name.ends_with(".bin"),
            "{name}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn text_structured_content_errors_and_the_cap() {
        let dir = temp_dir("map");
        let settings = settings(&dir);
        let text =
            json!({"content": [{"type": "text", "text": "héllo wörld, long"}], "isError": true});
        let output = to_output(&text, &settings, "s");
        assert!(output.is_error);
        assert_eq!(
            output.text,
            "héllo wörl\n[output cut: the tool returned 17 characters; only the first 10 are shown]"
        );
        let wide = McpSettings {
            max_output_chars: 100,
            ..settings
        };
        let structured = json!({"content": [], "structuredContent": {"a": 1}});
        assert_eq!(to_output(&structured, &wide, "s").text, "{\n  \"a\": 1\n}");
        let link = json!({"content": [{"type": "resource_link", "uri": "file:///x"}]});
        assert_eq!(
            to_output(&link, &wide, "s").text,
            "[resource link: file:///x]"
        );
    }

    #[test]
    fn extensions_come_from_the_mime_subtype() {
        assert_eq!(extension("image/svg+xml"), "svg");
        assert_eq!(extension("audio/wav; codecs=1"), "wav");
        assert_eq!(extension("nonsense"), "bin");
        assert_eq!(extension("image/p.n.g"), "bin");
    }
}
