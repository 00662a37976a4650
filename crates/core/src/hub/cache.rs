//! The standard Hugging Face cache layout, shared with the Python `huggingface_hub`:
//!
//! ```text
//! <cache>/models--org--name/blobs/<etag>            file contents, named by LFS sha256 / git oid
//! <cache>/models--org--name/blobs/<etag>.incomplete a download in progress (resumed with Range)
//! <cache>/models--org--name/refs/<revision>         the commit a branch/tag resolved to
//! <cache>/models--org--name/snapshots/<commit>/<f>  relative symlink to ../../blobs/<etag>
//! <cache>/.locks/models--org--name/<etag>.lock      one writer per blob (flock)
//! ```
//! A blob appears only by an atomic rename after verification, so a present blob is complete.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::repo_id::is_commit_hash;

pub struct RepoCache {
    root: PathBuf,
    locks: PathBuf,
}

/// LFS blobs are named by sha256 (64 hex), others by their git oid (40 hex): anything else from
/// a server is refused rather than joined into a path.
pub fn valid_blob_name(blob: &str) -> bool {
    matches!(blob.len(), 40 | 64) && blob.bytes().all(|b| b.is_ascii_hexdigit())
}

impl RepoCache {
    pub fn new(cache_dir: &Path, repo: &str) -> Self {
        let folder = format!("models--{}", repo.replace('/', "--"));
        RepoCache { root: cache_dir.join(&folder), locks: cache_dir.join(".locks").join(folder) }
    }

    pub fn blob_path(&self, blob: &str) -> PathBuf {
        self.root.join("blobs").join(blob)
    }

    pub fn incomplete_path(&self, blob: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{blob}.incomplete"))
    }

    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    /// Takes the exclusive lock of one blob (blocks while another thread or process holds it);
    /// released when the returned file is dropped.
    pub fn lock_blob(&self, blob: &str) -> io::Result<File> {
        fs::create_dir_all(&self.locks)?;
        let f = File::options().create(true).truncate(false).write(true).open(self.locks.join(format!("{blob}.lock")))?;
        f.lock()?;
        Ok(f)
    }

    /// The commit a revision stands for in the cache: a commit hash with a snapshot folder is
    /// itself; a branch or tag is what `refs/<rev>` says.
    pub fn cached_commit(&self, rev: &str) -> Option<String> {
        if is_commit_hash(rev) {
            return self.snapshot_dir(rev).is_dir().then(|| rev.to_owned());
        }
        let commit = fs::read_to_string(self.root.join("refs").join(rev)).ok()?;
        let commit = commit.trim();
        is_commit_hash(commit).then(|| commit.to_owned())
    }

    /// Records `refs/<rev>` → `commit` (atomically: write then rename).
    pub fn write_ref(&self, rev: &str, commit: &str) -> io::Result<()> {
        let path = self.root.join("refs").join(rev);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = temp_sibling(&path);
        fs::write(&tmp, commit)?;
        fs::rename(&tmp, &path)
    }

    /// `snapshots/<commit>/<file>` → `../../blobs/<blob>` (a relative link, so the cache folder
    /// can move). Made under a temporary name and renamed over any existing entry, so concurrent
    /// loads of one model never see a missing or half-made link.
    pub fn link(&self, commit: &str, file: &str, blob: &str) -> io::Result<PathBuf> {
        let dst = self.snapshot_dir(commit).join(file);
        let dir = dst.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)?;
        let depth = file.split('/').count() + 1; // up from <file>'s folder to the repo folder
        let target = Path::new(&"../".repeat(depth)).join("blobs").join(blob);
        let tmp = temp_sibling(&dst);
        make_link(&target, &tmp, &self.blob_path(blob))?;
        fs::rename(&tmp, &dst).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })?;
        Ok(dst)
    }
}

/// A name beside `path` unique to this process and call (dot-prefixed: never taken for a file).
fn temp_sibling(path: &Path) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(unix)]
fn make_link(target: &Path, dst: &Path, _blob: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, dst)
}

/// Where symlinks are unavailable the file is copied, as huggingface_hub does on Windows.
#[cfg(not(unix))]
fn make_link(_target: &Path, dst: &Path, blob: &Path) -> io::Result<()> {
    fs::copy(blob, dst).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mlx-serving-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn layout_refs_and_links() {
        let dir = tmp("layout");
        let c = RepoCache::new(&dir, "org/name");
        let blob = "a".repeat(64);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(c.blob_path(&blob), dir.join("models--org--name/blobs").join(&blob));
        assert_eq!(c.cached_commit("main"), None);
        c.write_ref("main", commit).unwrap();
        c.write_ref("refs/pr/1", commit).unwrap();
        assert_eq!(c.cached_commit("main").as_deref(), Some(commit));
        assert_eq!(c.cached_commit("refs/pr/1").as_deref(), Some(commit));
        assert_eq!(c.cached_commit(commit), None, "no snapshot folder yet");
        fs::create_dir_all(c.blob_path(&blob).parent().unwrap()).unwrap();
        fs::write(c.blob_path(&blob), b"hello").unwrap();
        let p = c.link(commit, "config.json", &blob).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert_eq!(fs::read_link(&p).unwrap(), Path::new("../../blobs").join(&blob));
        let nested = c.link(commit, "sub/x.json", &blob).unwrap();
        assert_eq!(fs::read(nested).unwrap(), b"hello");
        c.link(commit, "config.json", &blob).unwrap(); // replacing is fine
        assert_eq!(c.cached_commit(commit).as_deref(), Some(commit));
        let _lock = c.lock_blob(&blob).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn blob_names() {
        assert!(valid_blob_name(&"0".repeat(40)));
        assert!(valid_blob_name(&"f".repeat(64)));
        assert!(!valid_blob_name("../../etc/passwd"));
        assert!(!valid_blob_name(&"g".repeat(40)));
    }
}
