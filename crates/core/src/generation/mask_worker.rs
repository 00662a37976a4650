//! Keeps mask computation off the decode path: each constrained stream owns one CPU thread
//! holding its `JsonConstraint`. After a token is sampled the stream hands it over (`commit`);
//! the thread advances the grammar, answers whether the document is finished, and then computes
//! the next mask while the engine thread runs the next forward pass on the device. The stream
//! collects the mask (`take_mask`) only once the logits are ready. Dropping the pipeline closes
//! the token channel, which ends the thread after its current computation.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;

use super::constraint::{JsonConstraint, TokenMask};
use crate::error::{EngineError, EngineResult};

enum Reply {
    /// After a commit: the grammar is complete (no mask follows) or not (a mask follows).
    Committed(EngineResult<bool>),
    Mask(EngineResult<TokenMask>),
}

pub struct MaskPipeline {
    tx: Sender<u32>,
    rx: Receiver<Reply>,
    eos: Vec<u32>,
    finished: bool,
    /// A mask is being computed (or is ready) for the current position.
    mask_pending: bool,
}

impl MaskPipeline {
    /// Starts the thread; it computes the first mask right away (during the prefill).
    pub fn spawn(mut constraint: JsonConstraint) -> EngineResult<Self> {
        let eos = constraint.guidance().eos_ids().to_vec();
        let (tok_tx, tok_rx) = channel::<u32>();
        let (reply_tx, reply_rx) = channel::<Reply>();
        thread::Builder::new()
            .name("mlx-guidance".into())
            .spawn(move || {
                if reply_tx.send(Reply::Mask(constraint.compute_mask())).is_err() {
                    return;
                }
                while let Ok(token) = tok_rx.recv() {
                    let committed = constraint.commit(token).map(|()| constraint.is_finished());
                    let go_on = matches!(committed, Ok(false));
                    if reply_tx.send(Reply::Committed(committed)).is_err() || !go_on {
                        return;
                    }
                    if reply_tx.send(Reply::Mask(constraint.compute_mask())).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| EngineError::generation(format!("Failed to start the structured-output thread: {e}")))?;
        Ok(MaskPipeline { tx: tok_tx, rx: reply_rx, eos, finished: false, mask_pending: true })
    }

    /// The grammar is complete: nothing may be generated any more.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether `token` is one of the grammar's EOS ids.
    pub fn is_eos(&self, token: u32) -> bool {
        self.eos.contains(&token)
    }

    /// Waits for the mask of the current position.
    pub fn take_mask(&mut self) -> EngineResult<TokenMask> {
        if !self.mask_pending {
            return Err(EngineError::generation("structured output: no mask pending"));
        }
        self.mask_pending = false;
        match self.rx.recv() {
            Ok(Reply::Mask(m)) => m,
            Ok(Reply::Committed(_)) => Err(EngineError::generation("structured output: mask thread out of step")),
            Err(_) => Err(EngineError::generation("structured output thread ended unexpectedly")),
        }
    }

    /// Hands the sampled token to the grammar; returns once the grammar has taken it (the next
    /// mask is then computed in the background).
    pub fn commit(&mut self, token: u32) -> EngineResult<()> {
        if self.tx.send(token).is_err() {
            return Err(EngineError::generation("structured output thread ended unexpectedly"));
        }
        match self.rx.recv() {
            Ok(Reply::Committed(Ok(finished))) => {
                self.finished = finished;
                self.mask_pending = !finished;
                Ok(())
            }
            Ok(Reply::Committed(Err(e))) => Err(e),
            Ok(Reply::Mask(_)) => Err(EngineError::generation("structured output: mask thread out of step")),
            Err(_) => Err(EngineError::generation("structured output thread ended unexpectedly")),
        }
    }
}
