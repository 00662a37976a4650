//! Load progress (spec §15 `onProgress` / `model:progress`): the payload type, and the reporter
//! that turns per-chunk byte counts of a multi-file download into a bounded number of events
//! whose `loadedBytes` never decrease and end at `totalBytes`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

/// One `{phase, loadedBytes?, totalBytes?, file?}` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProgress {
    /// `download` | `load` (`convert` is never produced: weights are converted while loading).
    pub phase: &'static str,
    pub loaded_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub file: Option<String>,
}

impl LoadProgress {
    /// The event sent once, right before the weights are read.
    pub fn load() -> Self {
        LoadProgress { phase: "load", loaded_bytes: None, total_bytes: None, file: None }
    }

    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("phase".into(), json!(self.phase));
        if let Some(n) = self.loaded_bytes {
            o.insert("loadedBytes".into(), json!(n));
        }
        if let Some(n) = self.total_bytes {
            o.insert("totalBytes".into(), json!(n));
        }
        if let Some(f) = &self.file {
            o.insert("file".into(), json!(f));
        }
        Value::Object(o)
    }
}

/// Where progress goes (the napi layer forwards it to JS); called from the download thread.
pub type ProgressFn = Arc<dyn Fn(&LoadProgress) + Send + Sync>;

/// Smallest byte step between two events of one file (bounds the event count on big models).
const MIN_STEP: u64 = 256 * 1024;

/// Cumulative download progress over all files one load fetches.
pub struct DownloadReporter<'a> {
    sink: &'a dyn Fn(&LoadProgress),
    total: u64,
    /// Bytes of files already finished.
    done: u64,
    step: u64,
    last_emitted: Option<u64>,
    file: String,
}

impl<'a> DownloadReporter<'a> {
    pub fn new(sink: &'a dyn Fn(&LoadProgress), total: u64) -> Self {
        DownloadReporter { sink, total, done: 0, step: (total / 100).max(MIN_STEP), last_emitted: None, file: String::new() }
    }

    /// A new file starts: one event naming it.
    pub fn start_file(&mut self, name: &str) {
        self.file = name.to_owned();
        let at = self.last_emitted.unwrap_or(0).max(self.done);
        self.emit(at);
    }

    /// `bytes` of the current file are on disk (resumed bytes included). Bytes that a restarted
    /// file re-downloads are not reported twice: events wait until the count passes the last one.
    pub fn file_bytes(&mut self, bytes: u64) {
        let at = self.done + bytes;
        if self.last_emitted.is_none_or(|last| at >= last + self.step) {
            self.emit(at);
        }
    }

    /// The current file is complete with `size` bytes.
    pub fn finish_file(&mut self, size: u64) {
        self.done += size;
        self.emit(self.done);
    }

    fn emit(&mut self, at: u64) {
        let at = at.min(self.total);
        if self.last_emitted.is_some_and(|last| at < last) {
            return;
        }
        self.last_emitted = Some(at);
        (self.sink)(&LoadProgress {
            phase: "download",
            loaded_bytes: Some(at),
            total_bytes: Some(self.total),
            file: Some(self.file.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn collect(f: impl FnOnce(&mut DownloadReporter)) -> Vec<(u64, String)> {
        let seen = RefCell::new(vec![]);
        let sink = |p: &LoadProgress| seen.borrow_mut().push((p.loaded_bytes.unwrap(), p.file.clone().unwrap()));
        let mut r = DownloadReporter::new(&sink, 2_000_000);
        f(&mut r);
        seen.into_inner()
    }

    #[test]
    fn cumulative_monotone_and_bounded() {
        let ev = collect(|r| {
            r.start_file("a");
            for b in (0..=1_000_000).step_by(1000) {
                r.file_bytes(b);
            }
            r.finish_file(1_000_000);
            r.start_file("b");
            r.file_bytes(600_000);
            // restarted from scratch: lower counts are not reported
            r.file_bytes(10);
            r.file_bytes(999_999);
            r.finish_file(1_000_000);
        });
        assert!(ev.windows(2).all(|w| w[0].0 <= w[1].0), "{ev:?}");
        assert_eq!(ev.last().unwrap(), &(2_000_000, "b".to_string()));
        assert!(ev.len() < 20, "throttled: {}", ev.len());
        assert_eq!(ev[0], (0, "a".to_string()));
    }

    #[test]
    fn json_shape() {
        assert_eq!(LoadProgress::load().to_json(), json!({"phase": "load"}));
        let p = LoadProgress { phase: "download", loaded_bytes: Some(1), total_bytes: Some(2), file: Some("x".into()) };
        assert_eq!(p.to_json(), json!({"phase": "download", "loadedBytes": 1, "totalBytes": 2, "file": "x"}));
    }
}
