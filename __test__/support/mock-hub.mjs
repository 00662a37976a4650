// A Hugging Face hub stand-in on 127.0.0.1 for hub.test.mjs: serves a fixture folder as one
// repository with the hub's HTTP layout — the revision listing with sizes and hashes
// (`/api/models/<repo>/revision/<rev>?blobs=true`) and file downloads
// (`/<repo>/resolve/<rev>/<file>`, honouring `Range: bytes=N-`). Every request is recorded.
import http from 'node:http';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

function sha(algo, ...parts) {
  const h = createHash(algo);
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

export async function startMockHub({ repo, dir, commit }) {
  const files = readdirSync(dir)
    .filter((name) => !name.startsWith('.') && statSync(path.join(dir, name)).isFile())
    .map((name) => {
      const bytes = readFileSync(path.join(dir, name));
      const gitOid = sha('sha1', `blob ${bytes.length}\0`, bytes);
      const lfs = name.endsWith('.safetensors') ? sha('sha256', bytes) : null;
      return { name, bytes, gitOid, lfs };
    });
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push({ url: req.url, range: req.headers.range ?? null });
    const url = new URL(req.url, 'http://x');
    const send = (status, body, headers = {}) => {
      res.writeHead(status, { 'Content-Length': body.length, Connection: 'close', ...headers });
      res.end(body);
    };
    if (url.pathname === `/api/models/${repo}/revision/main`) {
      const siblings = files.map((f) => (f.lfs
        ? { rfilename: f.name, blobId: f.gitOid, size: 134, lfs: { sha256: f.lfs, size: f.bytes.length, pointerSize: 134 } }
        : { rfilename: f.name, blobId: f.gitOid, size: f.bytes.length }));
      return send(200, Buffer.from(JSON.stringify({ id: repo, sha: commit, siblings })), { 'Content-Type': 'application/json' });
    }
    const prefix = `/${repo}/resolve/${commit}/`;
    const file = url.pathname.startsWith(prefix) && files.find((f) => f.name === url.pathname.slice(prefix.length));
    if (!file) return send(404, Buffer.from('not found'), { 'X-Error-Code': 'RepoNotFound' });
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (!m) return send(200, file.bytes);
    const start = Number(m[1]);
    return send(206, file.bytes.subarray(start), {
      'Content-Range': `bytes ${start}-${file.bytes.length - 1}/${file.bytes.length}`,
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    totalBytes: files.reduce((n, f) => n + f.bytes.length, 0),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
