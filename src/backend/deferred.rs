//! A backend made the first time it is needed. `tools AGENT --call` declares sampling to the agent's
//! MCP servers, so their requests are answered by the agent's model, but loads (or downloads) that
//! model only when one of them asks: calling a tool that never samples costs no model.

use super::{Backend, BackendRequest, BackendResponse, ContextUse, TextRequest};
use crate::chat::ParseEvent;
use crate::engine::SamplingParams;
use anyhow::{Result, anyhow};
use std::cell::{Cell, OnceCell};

type Make = Box<dyn FnOnce() -> Result<Box<dyn Backend>>>;

/// A backend built by its maker on first use: the first request, or the first question about the
/// model's defaults (they are the model's own). A failure to build is the error of every request.
pub struct Deferred {
    make: Cell<Option<Make>>,
    built: OnceCell<Result<Box<dyn Backend>, String>>,
}

impl Deferred {
    pub fn new(make: impl FnOnce() -> Result<Box<dyn Backend>> + 'static) -> Self {
        Deferred {
            make: Cell::new(Some(Box::new(make))),
            built: OnceCell::new(),
        }
    }

    fn built(&self) -> &Result<Box<dyn Backend>, String> {
        self.built.get_or_init(|| match self.make.take() {
            Some(make) => make().map_err(|e| format!("{e:#}")),
            None => Err("the backend's maker ran once and failed".into()),
        })
    }

    fn backend(&self) -> Result<&dyn Backend> {
        match self.built() {
            Ok(backend) => Ok(backend.as_ref()),
            Err(error) => Err(anyhow!("{error}")),
        }
    }

    fn backend_mut(&mut self) -> Result<&mut dyn Backend> {
        self.built();
        match self.built.get_mut() {
            Some(Ok(backend)) => Ok(backend.as_mut()),
            Some(Err(error)) => Err(anyhow!("{error}")),
            None => Err(anyhow!("the backend was not built")),
        }
    }
}

impl Backend for Deferred {
    fn complete(
        &mut self,
        request: &BackendRequest,
        on_event: &mut dyn FnMut(&ParseEvent),
    ) -> Result<BackendResponse> {
        self.backend_mut()?.complete(request, on_event)
    }

    fn measure(&self, request: &BackendRequest) -> Result<Option<ContextUse>> {
        self.backend()?.measure(request)
    }

    fn complete_text(
        &mut self,
        request: &TextRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<BackendResponse> {
        self.backend_mut()?.complete_text(request, on_text)
    }

    fn measure_text(&self, prompt: &str) -> Result<Option<ContextUse>> {
        self.backend()?.measure_text(prompt)
    }

    fn reports_logprobs(&self) -> bool {
        self.backend()
            .is_ok_and(|backend| backend.reports_logprobs())
    }

    /// The built backend's defaults; Qwen3's recommended ones when it cannot be built (its requests
    /// then fail with the reason).
    fn default_sampling(&self, thinking: bool) -> SamplingParams {
        match self.backend() {
            Ok(backend) => backend.default_sampling(thinking),
            Err(_) => SamplingParams::for_mode(thinking),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ScriptedBackend;
    use crate::chat::ChatTemplate;
    use std::rc::Rc;
    use std::sync::atomic::AtomicBool;

    fn tokenizer_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer")
    }

    fn ask(backend: &mut dyn Backend) -> Result<String> {
        let interrupt = AtomicBool::new(false);
        let request = BackendRequest {
            messages: &[crate::chat::Message::user("hi".to_string())],
            tools: &[],
            thinking: false,
            sampling: SamplingParams::greedy(),
            max_new_tokens: 8,
            stop: &[],
            interrupt: &interrupt,
            calls: crate::backend::CallParsing::Text,
            format: None,
            logprobs: None,
        };
        Ok(backend.complete(&request, &mut |_| {})?.output.content)
    }

    #[test]
    fn the_backend_is_built_once_on_first_use() {
        let made = Rc::new(Cell::new(0));
        let counted = made.clone();
        let mut deferred = Deferred::new(move || {
            counted.set(counted.get() + 1);
            let template = ChatTemplate::from_model_dir(&tokenizer_dir())?;
            Ok(Box::new(ScriptedBackend::new(
                template,
                vec!["one".into(), "two".into()],
            )))
        });
        assert_eq!(made.get(), 0, "nothing is built before it is needed");
        assert_eq!(ask(&mut deferred).unwrap(), "one");
        assert_eq!(ask(&mut deferred).unwrap(), "two");
        assert_eq!(made.get(), 1);
    }

    #[test]
    fn a_backend_that_cannot_be_built_fails_every_request_with_the_reason() {
        let mut deferred = Deferred::new(|| Err(anyhow!("model.path: no such directory")));
        assert_eq!(
            deferred.default_sampling(false),
            SamplingParams::for_mode(false)
        );
        for _ in 0..2 {
            let error = ask(&mut deferred).unwrap_err().to_string();
            assert_eq!(error, "model.path: no such directory");
        }
    }
}
