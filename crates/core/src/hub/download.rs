//! Downloads one file of a snapshot into its cache blob: bytes go to `blobs/<etag>.incomplete`
//! (resumed with `Range: bytes=N-` when a previous attempt left one), are checked against the
//! listing's size and hash (LFS sha256, or the git blob id for small files), and only then
//! renamed to `blobs/<etag>`. An interrupted transfer keeps the `.incomplete` file for the next
//! attempt; a partial that turns out wrong after resuming is discarded and fetched once more
//! from the start. So a blob that exists is complete, and a partial is never taken for one.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::api::{HubClient, RemoteFile};
use super::cache::RepoCache;
use super::progress::DownloadReporter;
use crate::error::{EngineError, EngineResult};

const CHUNK: usize = 256 * 1024;

/// What one download needs to know besides the file.
pub struct Fetch<'a> {
    pub client: &'a HubClient,
    pub cache: &'a RepoCache,
    pub repo: &'a str,
    pub commit: &'a str,
    /// True once the engine is shutting down: the transfer stops (the partial is kept).
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

enum Outcome {
    Verified,
    /// Size or hash did not match; `resumed` when the bytes came partly from an earlier attempt.
    Mismatch { resumed: bool },
}

/// The hash the hub's listing gives for a file, computed while writing it.
enum Hasher {
    Lfs(Sha256, String),
    /// git's blob id: sha1 over `blob <size>\0` and the content.
    Git(Sha1, String),
}

impl Hasher {
    fn new(file: &RemoteFile) -> Self {
        match &file.sha256 {
            Some(sha) => Hasher::Lfs(Sha256::new(), sha.clone()),
            None => {
                let mut h = Sha1::new();
                h.update(format!("blob {}\0", file.size).as_bytes());
                Hasher::Git(h, file.blob.clone())
            }
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Lfs(h, _) => h.update(bytes),
            Hasher::Git(h, _) => h.update(bytes),
        }
    }

    fn matches(self) -> bool {
        let (got, want) = match self {
            Hasher::Lfs(h, want) => (hex(&h.finalize()), want),
            Hasher::Git(h, want) => (hex(&h.finalize()), want),
        };
        got == want
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Fetch<'_> {
    /// Makes `blobs/<etag>` hold the verified bytes of `file`.
    pub fn blob(&self, file: &RemoteFile, reporter: &mut DownloadReporter) -> EngineResult<()> {
        reporter.start_file(&file.name);
        let blob = self.cache.blob_path(&file.blob);
        if !blob_ok(&blob, file.size) {
            let _lock = self.cache.lock_blob(&file.blob).map_err(|e| self.io_error(file, e))?;
            // Another thread or process may have finished it while this one waited.
            if !blob_ok(&blob, file.size) {
                self.fetch_locked(file, &blob, reporter)?;
            }
        }
        reporter.finish_file(file.size);
        Ok(())
    }

    fn fetch_locked(&self, file: &RemoteFile, blob: &Path, reporter: &mut DownloadReporter) -> EngineResult<()> {
        let partial = self.cache.incomplete_path(&file.blob);
        if let Some(dir) = partial.parent() {
            fs::create_dir_all(dir).map_err(|e| self.io_error(file, e))?;
        }
        let mut outcome = self.attempt(file, &partial, reporter)?;
        if let Outcome::Mismatch { resumed: true } = outcome {
            // The earlier bytes were wrong (or belong to other content): start over once.
            let _ = fs::remove_file(&partial);
            outcome = self.attempt(file, &partial, reporter)?;
        }
        match outcome {
            Outcome::Verified => fs::rename(&partial, blob).map_err(|e| self.io_error(file, e)),
            Outcome::Mismatch { .. } => {
                let _ = fs::remove_file(&partial);
                Err(self.error(file, format!(
                    "file '{}' of model '{}' failed verification after download: its size or hash does not match \
                     the hub's listing; the download was discarded",
                    file.name, self.repo
                ))
                .retryable(true))
            }
        }
    }

    /// One transfer into `partial`, resuming after the bytes already there.
    fn attempt(&self, file: &RemoteFile, partial: &Path, reporter: &mut DownloadReporter) -> EngineResult<Outcome> {
        let mut out = File::options().read(true).write(true).create(true).truncate(false).open(partial).map_err(|e| self.io_error(file, e))?;
        let mut have = out.metadata().map_err(|e| self.io_error(file, e))?.len();
        if have > file.size {
            out.set_len(0).map_err(|e| self.io_error(file, e))?;
            have = 0;
        }
        let mut hasher = Hasher::new(file);
        if have > 0 {
            hash_prefix(&mut out, have, &mut hasher).map_err(|e| self.io_error(file, e))?;
        }
        let resumed = have > 0;
        if have < file.size {
            let resp = self.client.open_file(self.repo, self.commit, &file.name, have)?;
            let status = resp.status().as_u16();
            let range_start = content_range_start(resp.headers().get("content-range").and_then(|v| v.to_str().ok()));
            if have > 0 && (status == 416 || (status == 206 && range_start != Some(have))) {
                return Ok(Outcome::Mismatch { resumed });
            }
            if status == 200 && have > 0 {
                // The server ignored the Range: take the whole body from the start.
                out.set_len(0).map_err(|e| self.io_error(file, e))?;
                hasher = Hasher::new(file);
                have = 0;
            }
            out.seek(SeekFrom::Start(have)).map_err(|e| self.io_error(file, e))?;
            let mut body = resp.into_body().into_reader();
            match self.copy(&mut body, &mut out, &mut hasher, have, file, reporter)? {
                Some(end) => have = end,
                None => return Ok(Outcome::Mismatch { resumed }),
            }
        }
        out.sync_all().map_err(|e| self.io_error(file, e))?;
        Ok(if have == file.size && hasher.matches() { Outcome::Verified } else { Outcome::Mismatch { resumed } })
    }

    /// Streams the body to the partial file; `None` when the server sends more than the size.
    fn copy(
        &self,
        body: &mut impl Read,
        out: &mut File,
        hasher: &mut Hasher,
        start: u64,
        file: &RemoteFile,
        reporter: &mut DownloadReporter,
    ) -> EngineResult<Option<u64>> {
        let mut buf = vec![0u8; CHUNK];
        let mut at = start;
        loop {
            if (self.cancelled)() {
                let _ = out.sync_all();
                return Err(EngineError::runtime(format!(
                    "download of model '{}' stopped: the engine is shutting down (the partial file is kept)",
                    self.repo
                ))
                .with_detail("model", self.repo));
            }
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.interrupted(file, at, &e.to_string(), out)),
            };
            if at + n as u64 > file.size {
                return Ok(None);
            }
            out.write_all(&buf[..n]).map_err(|e| self.io_error(file, e))?;
            hasher.update(&buf[..n]);
            at += n as u64;
            reporter.file_bytes(at);
        }
        if at < file.size {
            return Err(self.interrupted(file, at, "the connection closed early", out));
        }
        Ok(Some(at))
    }

    fn interrupted(&self, file: &RemoteFile, at: u64, why: &str, out: &mut File) -> EngineError {
        let _ = out.sync_all();
        self.error(file, format!(
            "download of file '{}' of model '{}' was interrupted after {at} of {} bytes ({why}); \
             the partial file is kept and the next load resumes it",
            file.name, self.repo, file.size
        ))
        .with_detail("loadedBytes", at)
        .with_detail("totalBytes", file.size)
        .retryable(true)
    }

    fn io_error(&self, file: &RemoteFile, e: std::io::Error) -> EngineError {
        self.error(file, format!("cannot write file '{}' of model '{}' into the Hugging Face cache: {e}", file.name, self.repo))
    }

    fn error(&self, file: &RemoteFile, message: String) -> EngineError {
        EngineError::model_load(message).with_detail("model", self.repo).with_detail("file", file.name.as_str())
    }
}

/// A blob is trusted when it exists with the listed size (it was renamed there after its hash
/// was checked, by us or by huggingface_hub).
fn blob_ok(blob: &Path, size: u64) -> bool {
    fs::metadata(blob).is_ok_and(|m| m.is_file() && m.len() == size)
}

fn hash_prefix(f: &mut File, len: u64, hasher: &mut Hasher) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = f.read(&mut buf[..CHUNK.min(left as usize)])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "partial file shrank"));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// `bytes 100-199/200` → 100.
fn content_range_start(v: Option<&str>) -> Option<u64> {
    v?.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_id_and_sha256() {
        // `git hash-object` of "hello\n" and its sha256.
        let f = RemoteFile { name: "x".into(), size: 6, blob: "ce013625030ba8dba906f756967f9e9ca394464a".into(), sha256: None };
        let mut h = Hasher::new(&f);
        h.update(b"hello\n");
        assert!(h.matches());
        let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03".to_string();
        let f = RemoteFile { name: "x".into(), size: 6, blob: sha.clone(), sha256: Some(sha) };
        let mut h = Hasher::new(&f);
        h.update(b"hello\n");
        assert!(h.matches());
        let mut h = Hasher::new(&f);
        h.update(b"hellO\n");
        assert!(!h.matches());
    }

    #[test]
    fn content_range() {
        assert_eq!(content_range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(content_range_start(Some("bytes */200")), None);
        assert_eq!(content_range_start(None), None);
    }
}
