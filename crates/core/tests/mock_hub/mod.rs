//! A Hugging Face hub stand-in on 127.0.0.1 for the hub tests: serves model folders with the
//! hub's HTTP layout — `GET /api/models/{repo}/revision/{rev}?blobs=true` (commit, sizes, git
//! blob ids, LFS sha256) and `GET /{repo}/resolve/{commit}/{file}` (LFS files through a relative
//! redirect, as the hub sends them to its CDN; `Range: bytes=N-` answered with 206) — and can
//! cut a transfer mid-file or answer with an error status. Every request is recorded.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

struct File {
    name: String,
    bytes: Arc<Vec<u8>>,
    git_oid: String,
    sha256: Option<String>,
}

struct Repo {
    commit: String,
    files: Vec<File>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    requests: Vec<Request>,
    /// file name → send only this many body bytes of the next transfer, then close.
    cuts: HashMap<String, usize>,
    /// answer every listing request with this status
    listing_status: Option<u16>,
    /// file names whose next transfer trickles (64 KiB every 20 ms)
    slow: Vec<String>,
}

pub struct MockHub {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl MockHub {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(conn) = conn {
                    let st = st.clone();
                    std::thread::spawn(move || serve(conn, &st));
                }
            }
        });
        MockHub { url: format!("http://127.0.0.1:{port}"), state, stop, port }
    }

    /// Serves the root files of `dir` as repository `repo`; `*.safetensors` are LFS files.
    pub fn add_repo(&self, repo: &str, dir: &Path, commit: &str) {
        let mut files = vec![];
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let mut git = Sha1::new();
            git.update(format!("blob {}\0", bytes.len()).as_bytes());
            git.update(&bytes);
            let sha256 = name.ends_with(".safetensors").then(|| hex(&Sha256::digest(&bytes)));
            files.push(File { name, git_oid: hex(&git.finalize()), sha256, bytes: Arc::new(bytes) });
        }
        self.state.lock().unwrap().repos.insert(repo.to_owned(), Repo { commit: commit.to_owned(), files });
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// The next transfer of `file` sends `after` body bytes (with the full Content-Length) and
    /// then drops the connection.
    pub fn cut_next(&self, file: &str, after: usize) {
        self.state.lock().unwrap().cuts.insert(file.to_owned(), after);
    }

    /// The next transfer of `file` sends 64 KiB every 20 ms (time to act mid-download).
    pub fn slow_next(&self, file: &str) {
        self.state.lock().unwrap().slow.push(file.to_owned());
    }

    pub fn set_listing_status(&self, status: Option<u16>) {
        self.state.lock().unwrap().listing_status = status;
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_owned()),
                "authorization" => authorization = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut st = state.lock().unwrap();
    st.requests.push(Request { path: target.clone(), range: range.clone(), authorization });
    let path = target.split('?').next().unwrap_or("").to_owned();
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let reply = listing(&st, rest);
        drop(st);
        return respond(&mut conn, reply.0, &reply.1, reply.2.as_bytes(), "application/json", None);
    }
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let file = st.repos.values().flat_map(|r| r.files.iter()).find(|f| f.sha256.as_deref() == Some(sha));
        let Some(file) = file else { return respond(&mut conn, 404, &[], b"", "text/plain", None) };
        let (bytes, name) = (file.bytes.clone(), file.name.clone());
        let cut = st.cuts.remove(&name);
        let slow = take_slow(&mut st, &name);
        drop(st);
        return send_file(&mut conn, &bytes, range.as_deref(), cut, slow);
    }
    // /{org}/{name}/resolve/{rev}/{file}
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let found = match parts.as_slice() {
        [org, name, "resolve", rev, file] => st.repos.get(&format!("{org}/{name}")).and_then(|r| {
            (*rev == r.commit || *rev == "main").then(|| r.files.iter().find(|f| f.name == *file)).flatten()
        }),
        _ => None,
    };
    let Some(file) = found else {
        drop(st);
        return respond(&mut conn, 404, &[("X-Error-Code", "EntryNotFound".into())], b"not found", "text/plain", None);
    };
    if let Some(sha) = &file.sha256 {
        let loc = format!("/cdn/{sha}");
        drop(st);
        return respond(&mut conn, 302, &[("Location", loc)], b"", "text/plain", None);
    }
    let (bytes, name) = (file.bytes.clone(), file.name.clone());
    let cut = st.cuts.remove(&name);
    let slow = take_slow(&mut st, &name);
    drop(st);
    send_file(&mut conn, &bytes, range.as_deref(), cut, slow);
}

fn take_slow(st: &mut State, name: &str) -> bool {
    let before = st.slow.len();
    st.slow.retain(|n| n != name);
    st.slow.len() != before
}

fn listing(st: &State, rest: &str) -> (u16, Vec<(&'static str, String)>, String) {
    if let Some(s) = st.listing_status {
        return (s, vec![], format!("{{\"error\": \"status {s}\"}}"));
    }
    let (repo, rev) = rest.split_once("/revision/").unwrap_or((rest, "main"));
    let Some(r) = st.repos.get(repo) else {
        // What the hub answers without a token for a repository that does not exist.
        return (401, vec![("X-Error-Code", "RepoNotFound".into())], "{\"error\": \"Repository not found\"}".into());
    };
    if rev != "main" && rev != r.commit {
        return (404, vec![("X-Error-Code", "RevisionNotFound".into())], "{\"error\": \"Invalid rev id\"}".into());
    }
    let siblings: Vec<_> = r
        .files
        .iter()
        .map(|f| match &f.sha256 {
            Some(sha) => json!({"rfilename": f.name, "blobId": f.git_oid, "size": 134,
                                "lfs": {"sha256": sha, "size": f.bytes.len(), "pointerSize": 134}}),
            None => json!({"rfilename": f.name, "blobId": f.git_oid, "size": f.bytes.len()}),
        })
        .collect();
    (200, vec![], json!({"id": repo, "sha": r.commit, "siblings": siblings}).to_string())
}

fn send_file(conn: &mut TcpStream, bytes: &[u8], range: Option<&str>, cut: Option<usize>, slow: bool) {
    let start = range.and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    match start {
        Some(s) if s >= bytes.len() => respond(conn, 416, &[("Content-Range", format!("bytes */{}", bytes.len()))], b"", "text/plain", None),
        Some(s) => {
            let cr = format!("bytes {s}-{}/{}", bytes.len() - 1, bytes.len());
            respond_body(conn, 206, &[("Content-Range", cr)], &bytes[s..], "application/octet-stream", cut, slow)
        }
        None => respond_body(conn, 200, &[], bytes, "application/octet-stream", cut, slow),
    }
}

fn respond(conn: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8], ctype: &str, cut: Option<usize>) {
    respond_body(conn, status, headers, body, ctype, cut, false)
}

fn respond_body(conn: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8], ctype: &str, cut: Option<usize>, slow: bool) {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Error",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: {ctype}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let n = cut.unwrap_or(body.len()).min(body.len());
    let step = if slow { 64 * 1024 } else { n.max(1) };
    for chunk in body[..n].chunks(step) {
        if conn.write_all(chunk).is_err() {
            return;
        }
        if slow {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}
