//! Which decode rows run stacked (`generation::batch_kv`): one `BatchKv` per model with at
//! least two plain decode rows. A row joins when it starts decoding beside another row of the
//! same model and stays until its stream ends; its cache then comes back out so the ended stream
//! can hand it to the prompt-prefix cache as before.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::error::EngineError;
use crate::generation::batch_kv::BatchKv;
use crate::generation::stream::GenerationStream;
use crate::services::model_lifecycle::LoadedModel;

#[derive(Default)]
pub struct DecodeBatches {
    groups: Vec<(Rc<LoadedModel>, BatchKv)>,
    /// Names batch samples (`DeviceSample::group`); 0 is never used.
    samples: u64,
}

impl DecodeBatches {
    /// A fresh batch-sample id.
    pub fn next_group(&mut self) -> u64 {
        self.samples += 1;
        self.samples
    }

    pub fn get_mut(&mut self, model: &Rc<LoadedModel>) -> Option<&mut BatchKv> {
        self.groups.iter_mut().find(|(m, _)| Rc::ptr_eq(m, model)).map(|(_, b)| b)
    }

    /// The stream's slot when its row is stacked.
    pub fn slot_of(&self, s: &GenerationStream) -> Option<usize> {
        let model = s.model();
        self.groups.iter().find(|(m, _)| Rc::ptr_eq(m, &model)).and_then(|(_, b)| b.slot_of(s.id()))
    }

    /// Stacks the plain decode rows that are not stacked yet, per model, when the model's
    /// batch would then hold at least two rows. A row whose cache cannot be stacked stays as it
    /// is. Streams whose admission failed are removed, ended with the error.
    pub fn admit(&mut self, streams: &mut VecDeque<GenerationStream>) {
        let mut failed = Vec::new();
        let mut models: Vec<Rc<LoadedModel>> = Vec::new();
        for s in streams.iter() {
            let m = s.model();
            if s.is_plain_decode() && m.model.supports_stacked_decode() && !models.iter().any(|x| Rc::ptr_eq(x, &m)) {
                models.push(m);
            }
        }
        for model in models {
            let resident = self.get_mut(&model).map_or(0, |b| b.rows());
            let joining: Vec<usize> = (0..streams.len())
                .filter(|&i| {
                    let s = &streams[i];
                    s.is_plain_decode() && Rc::ptr_eq(&s.model(), &model) && self.slot_of(s).is_none()
                })
                .collect();
            if joining.is_empty() || resident + joining.len() < 2 {
                continue;
            }
            if self.get_mut(&model).is_none() {
                self.groups.push((model.clone(), BatchKv::default()));
            }
            let batch = self.get_mut(&model).expect("just added");
            for i in joining {
                let s = &mut streams[i];
                let cache = s.take_cache();
                match batch.admit(s.id(), cache) {
                    Ok(Ok(_slot)) => {}
                    Ok(Err(cache)) => s.restore_cache(cache),
                    Err(e) => {
                        s.fail(EngineError::generation(format!("could not stack the decode row: {}", e.what())));
                        failed.push(s.id().to_string());
                    }
                }
            }
        }
        if !failed.is_empty() {
            streams.retain(|s| !failed.iter().any(|id| id == s.id()));
        }
        self.drop_empty();
    }

    /// Takes ended streams' rows out, giving each its cache back (for prompt-prefix reuse).
    pub fn release(&mut self, ended: &mut [GenerationStream]) {
        for s in ended.iter_mut() {
            let model = s.model();
            let Some(batch) = self.get_mut(&model) else { continue };
            let Some(slot) = batch.slot_of(s.id()) else { continue };
            match batch.evict(slot, true) {
                Ok(Some(cache)) => s.restore_cache(cache),
                // Without its cache the stream is simply not reused.
                _ => s.restore_cache(Vec::new()),
            }
        }
        self.drop_empty();
    }

    /// Drops the rows of streams that are no longer active (failed, unloaded, shut down).
    pub fn reconcile(&mut self, streams: &VecDeque<GenerationStream>) {
        for (_, batch) in &mut self.groups {
            let gone: Vec<String> = batch.owners().iter().filter(|o| !streams.iter().any(|s| s.id() == o.as_str())).cloned().collect();
            for owner in gone {
                if let Some(slot) = batch.slot_of(&owner) {
                    if batch.evict(slot, false).is_err() {
                        // The buffers are in an unknown state: start over (the rows' streams
                        // are gone, and the remaining rows fail on their next pass).
                        *batch = BatchKv::default();
                        break;
                    }
                }
            }
        }
        self.drop_empty();
    }

    fn drop_empty(&mut self) {
        self.groups.retain(|(_, b)| b.rows() > 0);
    }
}
