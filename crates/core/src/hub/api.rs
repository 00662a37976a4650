//! The hub's HTTP API, the two calls a model load needs: the file listing of a revision
//! (`GET /api/models/{repo}/revision/{rev}?blobs=true` → commit, names, sizes, hashes) and a
//! file's bytes (`GET /{repo}/resolve/{commit}/{file}`, with `Range` to resume). Failures
//! become ModelLoadErrors naming the repository (and file); transient ones are `retryable`.

use std::time::Duration;

use serde_json::Value;
use ureq::config::RedirectAuthHeaders;
use ureq::http::Response;
use ureq::{Agent, Body};

use super::cache::valid_blob_name;
use super::repo_id::{is_commit_hash, safe_file};
use super::settings::HubSettings;
use crate::error::{EngineError, EngineResult};

/// One file of a revision, as the listing describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteFile {
    pub name: String,
    pub size: u64,
    /// The cache's blob name: the LFS sha256, else the git blob id.
    pub blob: String,
    /// Present for LFS files: the content's sha256 (equal to `blob`).
    pub sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

pub struct HubClient {
    agent: Agent,
    endpoint: String,
    token: Option<String>,
}

/// Listings of very large repositories stay far below this.
const LISTING_LIMIT: u64 = 64 * 1024 * 1024;

impl HubClient {
    pub fn new(settings: &HubSettings) -> Self {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(20)))
            // A stalled transfer fails (and is resumable) instead of hanging the load.
            .timeout_per_read(Some(Duration::from_secs(60)))
            // The token goes to the hub only, never to the CDN a file download redirects to.
            .redirect_auth_headers(RedirectAuthHeaders::SameHost)
            .user_agent(format!("mlx-serving/{}", env!("CARGO_PKG_VERSION")))
            .build();
        HubClient { agent: config.into(), endpoint: settings.endpoint.clone(), token: settings.token.clone() }
    }

    fn get(&self, url: &str, range_from: u64) -> Result<Response<Body>, ureq::Error> {
        let mut req = self.agent.get(url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if range_from > 0 {
            req = req.header("Range", format!("bytes={range_from}-"));
        }
        req.call()
    }

    /// The commit `rev` resolves to and its files.
    pub fn repo_info(&self, repo: &str, rev: &str) -> EngineResult<RepoInfo> {
        let url = format!("{}/api/models/{}/revision/{}?blobs=true", self.endpoint, encode_path(repo), encode(rev));
        let mut resp = self.get(&url, 0).map_err(|e| self.unreachable(repo, &e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.status_error(&resp, repo, rev, None));
        }
        let body = resp.body_mut().with_config().limit(LISTING_LIMIT).read_to_vec().map_err(|e| self.unreachable(repo, &e))?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| bad_listing(repo, &format!("not JSON: {e}")))?;
        parse_listing(repo, &json)
    }

    /// Starts reading `file` of `commit` at byte `from`.
    pub fn open_file(&self, repo: &str, commit: &str, file: &str, from: u64) -> EngineResult<Response<Body>> {
        let url = format!("{}/{}/resolve/{}/{}", self.endpoint, encode_path(repo), commit, encode_path(file));
        let resp = self.get(&url, from).map_err(|e| self.unreachable(repo, &e).with_detail("file", file))?;
        match resp.status().as_u16() {
            200 | 206 | 416 => Ok(resp),
            _ => Err(self.status_error(&resp, repo, commit, Some(file))),
        }
    }

    /// A transport failure: DNS, refused connection, TLS, timeout.
    pub fn unreachable(&self, repo: &str, e: &ureq::Error) -> EngineError {
        EngineError::model_load(format!(
            "cannot download model '{repo}': the Hugging Face hub at {} could not be reached ({e}); \
             it is not in the local cache either",
            self.endpoint
        ))
        .with_detail("model", repo)
        .retryable(true)
    }

    fn status_error(&self, resp: &Response<Body>, repo: &str, rev: &str, file: Option<&str>) -> EngineError {
        let status = resp.status().as_u16();
        let header = |k: &str| resp.headers().get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let code = header("x-error-code");
        let what = match file {
            Some(f) => format!("file '{f}' of model '{repo}'"),
            None => format!("model '{repo}'"),
        };
        // Without a token the hub answers 401 for repositories that do not exist (not to reveal
        // private ones), so its error code decides between "missing" and "refused".
        let message = match (code.as_str(), status) {
            ("RevisionNotFound", _) => format!("revision '{rev}' of model '{repo}' not found on the Hugging Face hub"),
            ("EntryNotFound", _) => format!("{what} not found on the Hugging Face hub (revision {rev})"),
            ("GatedRepo", _) | (_, 403) => format!(
                "access to {what} was refused by the Hugging Face hub (HTTP {status}): it is gated or private; \
                 accept its terms and set HF_TOKEN to a token with access"
            ),
            ("RepoNotFound", _) | (_, 404) | (_, 401) => {
                let hint = if self.token.is_none() { " (if it is private, set HF_TOKEN)" } else { "" };
                format!("{what} not found on the Hugging Face hub{hint}")
            }
            _ => format!("the Hugging Face hub answered HTTP {status} for {what}"),
        };
        let mut e = EngineError::model_load(message).with_detail("model", repo).with_detail("status", status);
        if let Some(f) = file {
            e = e.with_detail("file", f);
        }
        e.retryable(status == 429 || status >= 500)
    }
}

fn bad_listing(repo: &str, why: &str) -> EngineError {
    EngineError::model_load(format!("the Hugging Face hub's file listing of model '{repo}' is unusable: {why}"))
        .with_detail("model", repo)
}

/// `{sha, siblings: [{rfilename, size, blobId, lfs?: {sha256, size}}]}` → [`RepoInfo`]. Entries
/// with unsafe names or hashes are refused, never joined into cache paths.
pub fn parse_listing(repo: &str, json: &Value) -> EngineResult<RepoInfo> {
    let commit = json["sha"].as_str().filter(|s| is_commit_hash(s)).ok_or_else(|| bad_listing(repo, "no commit hash"))?;
    let siblings = json["siblings"].as_array().ok_or_else(|| bad_listing(repo, "no file list"))?;
    let mut files = Vec::with_capacity(siblings.len());
    for s in siblings {
        let name = s["rfilename"].as_str().unwrap_or_default();
        if !safe_file(name) {
            return Err(bad_listing(repo, &format!("unsafe file name {name:?}")));
        }
        let lfs_sha = s["lfs"]["sha256"].as_str().map(str::to_ascii_lowercase);
        let size = s["lfs"]["size"].as_u64().or_else(|| s["size"].as_u64());
        let blob = lfs_sha.clone().or_else(|| s["blobId"].as_str().map(str::to_ascii_lowercase));
        let (Some(size), Some(blob)) = (size, blob) else {
            return Err(bad_listing(repo, &format!("no size or hash for '{name}'")));
        };
        if !valid_blob_name(&blob) {
            return Err(bad_listing(repo, &format!("invalid hash for '{name}'")));
        }
        files.push(RemoteFile { name: name.to_owned(), size, blob, sha256: lfs_sha });
    }
    Ok(RepoInfo { commit: commit.to_owned(), files })
}

/// Percent-encodes one URL path segment (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes each segment of a `/`-separated path.
fn encode_path(p: &str) -> String {
    p.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listing() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let lfs = "ab".repeat(32);
        let info = parse_listing(
            "o/n",
            &json!({"sha": sha, "siblings": [
                {"rfilename": "config.json", "size": 10, "blobId": "cd".repeat(20)},
                {"rfilename": "model.safetensors", "size": 134, "blobId": "ef".repeat(20), "lfs": {"sha256": lfs, "size": 99, "pointerSize": 134}},
            ]}),
        )
        .unwrap();
        assert_eq!(info.commit, sha);
        assert_eq!(info.files[0], RemoteFile { name: "config.json".into(), size: 10, blob: "cd".repeat(20), sha256: None });
        assert_eq!(info.files[1], RemoteFile { name: "model.safetensors".into(), size: 99, blob: lfs.clone(), sha256: Some(lfs) });
        for bad in [
            json!({"siblings": []}),
            json!({"sha": sha}),
            json!({"sha": sha, "siblings": [{"rfilename": "../x", "size": 1, "blobId": "cd".repeat(20)}]}),
            json!({"sha": sha, "siblings": [{"rfilename": "x", "blobId": "cd".repeat(20)}]}),
            json!({"sha": sha, "siblings": [{"rfilename": "x", "size": 1, "blobId": "../../etc"}]}),
        ] {
            assert_eq!(parse_listing("o/n", &bad).unwrap_err().code, crate::error::ErrorCode::ModelLoadError, "{bad}");
        }
    }

    #[test]
    fn url_encoding() {
        assert_eq!(encode("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_path("org/my model.gguf"), "org/my%20model.gguf");
        assert_eq!(encode_path("mlx-community/Qwen2.5-0.5B_x~"), "mlx-community/Qwen2.5-0.5B_x~");
    }
}
