//! Several backends answering at once (`serve --parallel`, `eval --parallel`) from one definition. A
//! local model on the CPU is loaded once and its passes batched across them (`engine::batch`); a
//! remote server gets a client per backend; a GPU model or a scripted replay can only be one backend
//! (one decoder on the device; a script answers in order), so the pool then holds one.

use super::assemble::{AssembleEvent, AssembleOptions, LocalModel, build_backend};
use crate::backend::Backend;
use crate::config::{BackendKind, ResolvedAgent};
use crate::engine::batch::{BatchOptions, Batcher};
use crate::model::{Device, load::cuda_available};
use anyhow::Result;
use std::sync::Arc;

/// Backends a pool makes when the caller does not say: a few sequences batch well on a CPU
/// (decoding reads the weights once per pass for all of them) without much memory for their caches.
pub const DEFAULT_PARALLEL: usize = 4;

/// Makes the backends of one definition; each thread calls `backend` for its own (backends are not
/// `Send`: they are built where they run).
pub struct BackendPool {
    definition: ResolvedAgent,
    options: AssembleOptions,
    shared: Option<(LocalModel, Arc<Batcher>)>,
    size: usize,
}

impl BackendPool {
    /// A pool of up to `parallel` backends (None: `DEFAULT_PARALLEL` where the model can be shared,
    /// else one, without a notice); a local CPU model is loaded here.
    pub fn new(
        definition: ResolvedAgent,
        options: AssembleOptions,
        parallel: Option<usize>,
    ) -> Result<Self> {
        let asked = parallel;
        let parallel = parallel.unwrap_or(DEFAULT_PARALLEL);
        let model = &definition.agent.model;
        let on_cpu = match model.device {
            Device::Cpu => true,
            Device::Cuda => false,
            Device::Auto => !cuda_available(),
        };
        let (shared, size) = match model.backend {
            BackendKind::Local if on_cpu && parallel > 1 => {
                let local = LocalModel::resolve(&definition, &options)?;
                let (model, context) =
                    crate::model::load_cpu_model(&local.dir, &local.load, |done, total| {
                        local.report_loading(&options, done, total)
                    })?;
                let batching = BatchOptions::for_memory(&model, context, parallel);
                (Some((local, Batcher::start(model, batching)?)), parallel)
            }
            BackendKind::Openai => (None, parallel.max(1)),
            BackendKind::Local | BackendKind::Scripted => (None, 1),
        };
        if asked.is_some_and(|asked| size < asked) {
            let why = match model.backend {
                BackendKind::Scripted => "a scripted backend answers in its script's order",
                _ => "the GPU engine decodes one sequence at a time",
            };
            (options.on_event)(AssembleEvent::Notice(&format!(
                "answering one request at a time, not {parallel}: {why}"
            )));
        }
        Ok(BackendPool {
            definition,
            options,
            shared,
            size,
        })
    }

    /// How many backends may answer at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The shared model's batcher, when backends share one (its stats are the server's metrics).
    pub fn batcher(&self) -> Option<&Arc<Batcher>> {
        self.shared.as_ref().map(|(_, batcher)| batcher)
    }

    /// One more backend: a sequence of the shared model, or one built from the definition (a model
    /// that cannot be shared is loaded by the first call).
    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        match &self.shared {
            Some((local, batcher)) => Ok(Box::new(local.backend(
                Box::new(batcher.sequence()),
                &self.definition,
                &self.options,
            ))),
            None => build_backend(&self.definition, &self.options),
        }
    }

    pub fn definition(&self) -> &ResolvedAgent {
        &self.definition
    }

    pub fn options(&self) -> &AssembleOptions {
        &self.options
    }
}
