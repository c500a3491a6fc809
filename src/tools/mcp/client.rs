//! Our side of a connection (rmcp's `ClientHandler`): what we declare to servers and how we answer what
//! they send us. Declared: roots (the directories the user gave), elicitation (form mode, answered
//! at once as `elicitation` says, or by the person when one is there, who can also be sent to a URL)
//! and, where the agent's model can answer and the server's entry allows it, sampling (see
//! `sampling`). Log messages at warning or above and progress reports become notices, rate-limited,
//! and progress also goes to the front end's sink (a bar); the tool-list-change flag is set when the
//! server says so.
//!
//! Roots, sampling and logging are deprecated by the 2026-07-28 spec but are what 2025-era servers
//! (the reference TypeScript SDK's among them) use; rmcp marks them deprecated.
#![expect(deprecated, reason = "roots and logging are what 2025-era servers use")]

use super::elicitation::{self, Answer, Person};
use super::logging;
use super::progress::{self, ProgressSink};
use super::sampling::Sampler;
use super::stderr::Limiter;
use crate::config::{ElicitationSpec, LogLevel};
use crate::tools::Notices;
use anyhow::{Context, Result};
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, ElicitationCapability, ErrorData, FormElicitationCapability,
    Implementation, InputRequest, InputRequests, InputResponses, ListRootsResult,
    LoggingMessageNotificationParam, ProgressNotificationParam, ResourceUpdatedNotificationParam,
    Root, RootsCapabilities, SamplingCapability, UrlElicitationCapability,
};
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext};
use rmcp::{ClientHandler, RoleClient};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Longest log or progress text kept in a notice; the rest is cut.
const MAX_NOTICE_CHARS: usize = 500;

/// What `roots/list` answers: made once per run by [`roots`], shared by every connection.
#[derive(Clone, Debug, Default)]
pub(super) struct Roots(Arc<Vec<Root>>);

/// Who answers a server's requests and who hears its progress.
#[derive(Clone, Default)]
pub(super) struct Answering {
    /// How requests for input are answered when no person is asked.
    pub elicitation: Arc<ElicitationSpec>,
    /// The person asked instead, when one is there; URL requests are declared only then.
    pub person: Option<Person>,
    /// Where sampling requests go; `None`: sampling is not declared and requests are refused.
    pub sampler: Option<Arc<Sampler>>,
    /// Where progress reports go besides the notices.
    pub progress: Option<ProgressSink>,
}

/// The handler of one server's connection. Clones share the flag, the roots and the limiter.
#[derive(Clone)]
pub(super) struct Client {
    server: String,
    /// Set when the server says its tool list changed.
    tools_changed: Arc<AtomicBool>,
    roots: Roots,
    notices: Notices,
    limiter: Arc<Mutex<Limiter>>,
    answering: Answering,
    /// The entry's `log_level`: the lowest level shown as a notice (see `logging`).
    log_level: Option<LogLevel>,
}

impl Client {
    pub fn new(
        server: &str,
        tools_changed: Arc<AtomicBool>,
        roots: Roots,
        notices: Notices,
        answering: Answering,
        log_level: Option<LogLevel>,
    ) -> Self {
        Client {
            server: server.to_string(),
            tools_changed,
            roots,
            notices,
            limiter: Arc::new(Mutex::new(Limiter::new(Instant::now(), "notifications"))),
            answering,
            log_level,
        }
    }

    /// Server text as a notice: one line (control characters, terminal escapes included, become
    /// spaces), cut to `MAX_NOTICE_CHARS`, rate-limited like stderr lines.
    fn notice(&self, text: &str) {
        let mut line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_NOTICE_CHARS + 1)
            .collect();
        if line.chars().count() > MAX_NOTICE_CHARS {
            line = line.chars().take(MAX_NOTICE_CHARS).collect::<String>() + " …";
        }
        let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        limiter.offer(Instant::now(), &self.notices, &self.server, line.trim());
    }

    /// The answer to a request for input (a request of its own, or one of a 2026-07-28
    /// input_required result's): the person's when one is there (asked on a blocking thread, as long
    /// as they take), else the agent file's at once; the user is told what was asked and answered.
    pub async fn elicit(&self, request: &ElicitRequestParams) -> ElicitResult {
        let asked = elicitation::question(&self.server, request);
        let (answer, notice) = match (&self.answering.person, asked) {
            (Some(person), Some(question)) => {
                let (person, shown) = (person.clone(), question.clone());
                let answer = tokio::task::spawn_blocking(move || person(&shown))
                    .await
                    .unwrap_or(Answer::Cancel);
                elicitation::answered(&question, answer)
            }
            _ => elicitation::answer(&self.answering.elicitation, request),
        };
        self.notice(&notice);
        answer
    }

    /// Where this server's progress reports go besides the notices, if anywhere.
    pub fn progress(&self) -> Option<&ProgressSink> {
        self.answering.progress.as_ref()
    }

    /// What `roots/list` answers.
    pub fn root_list(&self) -> ListRootsResult {
        ListRootsResult::new(self.roots.0.to_vec())
    }

    /// The agent's model's answer to a sampling request (see `sampling`), or the refusal: the server's
    /// entry says `sampling: false`, or no model answers here.
    pub async fn sample(
        &self,
        params: &CreateMessageRequestParams,
    ) -> Result<CreateMessageResult, ErrorData> {
        match &self.answering.sampler {
            Some(sampler) => {
                sampler
                    .answer(&self.server, params, &|text| self.notice(text))
                    .await
            }
            None => {
                self.notice("sampling refused: not enabled for this server");
                Err(ErrorData::invalid_request(
                    "this client does not answer sampling requests from this server",
                    None,
                ))
            }
        }
    }

    /// The answers to a 2026-07-28 input_required result's requests, by their keys; one that fails
    /// fails the whole call.
    pub async fn answer_all(&self, requests: InputRequests) -> Result<InputResponses, ErrorData> {
        let mut answers = InputResponses::new();
        for (key, request) in requests {
            let answer = match request {
                InputRequest::Elicitation(request) => {
                    serde_json::to_value(self.elicit(&request.params).await)
                }
                InputRequest::ListRoots(_) => serde_json::to_value(self.root_list()),
                InputRequest::CreateMessage(request) => {
                    serde_json::to_value(self.sample(&request.params).await?)
                }
                _ => {
                    return Err(ErrorData::invalid_request(
                        "the server asked this client for input of a kind it does not know",
                        None,
                    ));
                }
            };
            let answer = answer.map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            answers.insert(key, answer);
        }
        Ok(answers)
    }

    fn capabilities(&self) -> ClientCapabilities {
        let mut roots = RootsCapabilities::default();
        roots.list_changed = Some(true);
        let mut elicitation = ElicitationCapability::new();
        elicitation.form = Some(FormElicitationCapability::new());
        if self.answering.person.is_some() {
            elicitation.url = Some(UrlElicitationCapability::new());
        }
        let mut capabilities = ClientCapabilities::default();
        capabilities.roots = Some(roots);
        capabilities.elicitation = Some(elicitation);
        if self.answering.sampler.is_some() {
            capabilities.sampling = Some(SamplingCapability::default());
        }
        capabilities
    }
}

/// The directories as `file://` roots named after their last component; each must exist (they are
/// made absolute and resolved, so a server sees the real place).
pub(super) fn roots(dirs: &[PathBuf]) -> Result<Roots> {
    let roots = dirs
        .iter()
        .map(|dir| {
            let real = std::fs::canonicalize(dir).with_context(|| {
                format!(
                    "the root {} is not a directory that exists: fix the path in roots:",
                    dir.display()
                )
            })?;
            let uri = reqwest::Url::from_directory_path(&real).map_err(|()| {
                anyhow::anyhow!("the root {} cannot be written as a URI", real.display())
            })?;
            let name = real
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| real.display().to_string());
            Ok(Root::new(uri.to_string()).with_name(name))
        })
        .collect::<Result<_>>()?;
    Ok(Roots(Arc::new(roots)))
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.capabilities(),
            Implementation::new("qwen3-agent", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.sample(&params).await
    }

    fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> impl Future<Output = Result<ListRootsResult, ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(Ok(self.root_list()))
    }

    /// Answered by the person, or at once from the agent file's `elicitation:` (see `elicit`).
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(self.elicit(&request).await)
    }

    fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        if logging::shown(params.level, self.log_level) {
            let level = serde_json::to_value(params.level).unwrap_or_default();
            let data = match &params.data {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let logger = params.logger.map(|l| format!(" {l}:")).unwrap_or_default();
            self.notice(&format!(
                "{}{logger} {data}",
                level.as_str().unwrap_or("log")
            ));
        }
        std::future::ready(())
    }

    fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        let amount = match params.total {
            Some(total) => format!("{}/{total}", params.progress),
            None => params.progress.to_string(),
        };
        if let Some(sink) = self.progress() {
            sink(progress::step(&self.server, &params));
        }
        let message = params.message.map(|m| format!(": {m}")).unwrap_or_default();
        self.notice(&format!("progress {amount}{message}"));
        std::future::ready(())
    }

    /// A resource the model read (and we subscribed to) changed: the user is told, as the model
    /// can read it again.
    fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.notice(&format!(
            "resource updated: {} ({}-read_resource reads it again)",
            params.uri, self.server
        ));
        std::future::ready(())
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.tools_changed.store(true, Ordering::Relaxed);
        std::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_absolute_file_uris_of_existing_directories() {
        let dir = std::env::temp_dir().join(format!("qwen3-agent-roots {}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let roots = roots(std::slice::from_ref(&dir)).unwrap().0;
        assert!(roots[0].uri.starts_with("file:///"), "{}", roots[0].uri);
        assert!(
            roots[0].uri.contains("%20"),
            "spaces are escaped: {}",
            roots[0].uri
        );
        let back = reqwest::Url::parse(&roots[0].uri).unwrap().to_file_path();
        assert_eq!(back.unwrap(), std::fs::canonicalize(&dir).unwrap());
        let missing = super::roots(&[dir.join("missing")]).unwrap_err();
        assert!(format!("{missing:#}").contains("roots:"), "{missing:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn server_text_in_notices_is_one_short_line() {
        let notices = Notices::default();
        let client = Client::new(
            "srv",
            Default::default(),
            Default::default(),
            notices.clone(),
            Answering::default(),
            None,
        );
        client.notice(&format!("evil\x1b[2J\nline {}", "x".repeat(2000)));
        let got = notices.drain();
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("[srv] evil [2J line x"), "{}", got[0]);
        assert!(!got[0].chars().any(char::is_control));
        assert!(got[0].chars().count() < MAX_NOTICE_CHARS + 20);
    }
}
