"""A small Hugging Face Hub on 127.0.0.1 for tests: the real huggingface_hub client talks to it over HTTP.

It keeps model repos in memory (commits of whole file trees, branches pointing at commits) and answers the
requests listed in ``shared/HUB.md``. Tests can count requests, serve corrupted bytes for a file, stop it to play an
unreachable Hub, and make repos private or gated to get the Hub's 401 / 403 answers (see ``HubServer.access``).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


TOKEN = "hf_dummy_token"  # the token point_client_at gives the client; the server accepts it


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data``, which the Hub sends as the ETag of small files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit oid -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    private: bool = False
    gated: bool = False
    readers: set[str] = field(default_factory=set)  # tokens that may read it when private, or were granted it if gated
    forbidden: set[str] = field(default_factory=set)  # tokens answered 403 (say, fine-grained ones without this repo)

    def resolve(self, revision: str) -> str | None:
        """Commit oid of a branch name or a commit oid; None when neither."""
        return self.refs.get(revision) or (revision if revision in self.commits else None)


class HubServer:
    """In-memory Hub; use as a context manager, point HF_ENDPOINT at ``url``."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self.corrupt: dict[tuple[str, str], bytes] = {}  # (repo_id, path) -> bytes served instead of the file
        self.cut: dict[tuple[str, str], int] = {}  # (repo_id, path) -> bytes sent before the connection drops
        self.tokens: set[str] = {TOKEN}  # tokens it accepts; any other is answered 401
        self.read_only: set[str] = set()  # accepted tokens that may not publish (403)
        self._lock = threading.Lock()
        self._commit_counter = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # A short poll interval: stop() returns in 0.05 s rather than the default 0.5 s, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Shut down and free the port: further requests fail to connect, as with an unreachable Hub."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(revision)]

    def access(self, repo_id: str, token: str | None) -> tuple[int, str | None, str] | None:
        """None if ``token`` (None: no token sent) may read ``repo_id``, else the Hub's refusal: (status,
        X-Error-Code, X-Error-Message), with the codes and messages that huggingface_hub classifies."""
        repo = self.repos[repo_id]
        if token is not None and token not in self.tokens:
            return 401, None, "Invalid credentials in Authorization header"
        if token in repo.forbidden:
            return 403, None, f"Your token does not have access to {repo_id}"
        if repo.private and token not in repo.readers:  # the Hub does not tell a private repo from a missing one
            return (401 if token is None else 404), "RepoNotFound", f"Repository {repo_id} not found"
        if repo.gated and token not in repo.readers:
            if token is None:
                return 401, "GatedRepo", (f"Access to model {repo_id} is restricted. You must have access to it and "
                                          "be authenticated to access it. Please log in.")
            return 403, "GatedRepo", (f"Access to model {repo_id} is restricted and you are not in the authorized "
                                      f"list. Visit {self.url}/{repo_id} to ask for access.")
        return None

    def write_access(self, token: str | None) -> tuple[int, str | None, str] | None:
        """None if ``token`` may publish, else the Hub's refusal."""
        if token is None or token not in self.tokens:
            return 401, None, "Invalid credentials in Authorization header"
        if token in self.read_only:
            return 403, None, "You don't have the rights to create a model under this namespace"
        return None

    def new_commit(self, repo: Repo, branch: str, files: dict[str, bytes]) -> str:
        with self._lock:
            self._commit_counter += 1
            oid = hashlib.sha1(f"commit {self._commit_counter}".encode()).hexdigest()
            repo.commits[oid] = files
            repo.refs[branch] = oid
        return oid


_API_REPO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<action>preupload|commit|branch|revision)/(?P<rev>.+)$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def _handler_for(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/json", cut: int | None = None) -> None:
            self.send_response(status)
            # One request per connection: after stop() no kept-alive connection can still be served.
            self.close_connection = True
            self.send_header("Connection", "close")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body if cut is None else body[:cut])  # announced in full, cut short: a dropped link

        def _json(self, status: int, obj, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers)

        def _not_found(self, code: str, message: str) -> None:
            self._refuse(404, code, message)

        def _refuse(self, status: int, code: str | None, message: str) -> None:
            headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
            self._json(status, {"error": message}, headers)

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization") or ""
            return auth[len("Bearer "):] if auth.startswith("Bearer ") else None

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _path(self) -> str:
            hub.requests.append((self.command, self.path))
            return unquote(urlsplit(self.path).path)

        def do_HEAD(self) -> None:
            self._resolve(self._path())

        def do_GET(self) -> None:
            path = self._path()
            m = _API_REPO.match(path)
            if m and m["action"] == "revision":
                found = self._lookup(m["repo"], m["rev"])
                if found is None:
                    return None
                repo, oid = found
                siblings = [{"rfilename": p} for p in sorted(repo.commits[oid])]
                return self._json(200, {"id": m["repo"], "sha": oid, "siblings": siblings, "private": repo.private})
            self._resolve(path)

        def _lookup(self, repo_id: str, rev: str):
            """The repo and the commit ``rev`` names, or None after answering 401/403/404 as the Hub does."""
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._not_found("RepoNotFound", f"Repository {repo_id} not found")
                return None
            refused = hub.access(repo_id, self._token())
            if refused is not None:
                self._refuse(*refused)
                return None
            oid = repo.resolve(rev)
            if oid is None:
                self._not_found("RevisionNotFound", f"Invalid rev id: {rev}")
                return None
            return repo, oid

        def _resolve(self, path: str) -> None:
            m = _RESOLVE.match(path)
            if m is None:
                return self._not_found("EntryNotFound", f"no route for {path}")
            found = self._lookup(m["repo"], m["rev"])
            if found is None:
                return None
            repo, oid = found
            files = repo.commits[oid]
            if m["path"] not in files:
                return self._not_found("EntryNotFound", f"{m['path']} does not exist at {oid}")
            data = hub.corrupt.get((m["repo"], m["path"]), files[m["path"]])
            self._send(200, data, {"X-Repo-Commit": oid, "ETag": f'"{git_blob_sha1(data)}"'},
                       content_type="application/octet-stream", cut=hub.cut.get((m["repo"], m["path"])))

        def do_POST(self) -> None:
            path, body = self._path(), self._body()
            if path == "/api/validate-yaml":
                return self._json(200, {"errors": [], "warnings": []})
            refused = hub.write_access(self._token())
            if refused is not None:
                return self._refuse(*refused)
            if path == "/api/repos/create":
                req = json.loads(body)
                repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                if repo_id in hub.repos:
                    return self._json(409, {"error": "You already created this model repo", "url": repo_id})
                repo = Repo(private=bool(req.get("private")), readers={self._token()} - {None})
                hub.repos[repo_id] = repo
                hub.new_commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs\n"})
                return self._json(200, {"url": f"{hub.url}/{repo_id}"})
            m = _API_REPO.match(path)
            if m is None:
                return self._not_found("EntryNotFound", f"no route for {path}")
            repo = hub.repos.get(m["repo"])
            if repo is None:
                return self._not_found("RepoNotFound", f"Repository {m['repo']} not found")
            if m["action"] == "branch":
                start = (json.loads(body) if body else {}).get("startingPoint") or "main"
                if m["rev"] in repo.refs:
                    return self._json(409, {"error": f"branch {m['rev']} already exists"})
                repo.refs[m["rev"]] = repo.resolve(start)
                return self._json(200, {})
            if repo.resolve(m["rev"]) is None:
                return self._not_found("RevisionNotFound", f"Invalid rev id: {m['rev']}")
            if m["action"] == "preupload":
                files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                         for f in json.loads(body)["files"]]
                return self._json(200, {"files": files})
            if m["action"] == "commit":
                tree = dict(repo.commits[repo.resolve(m["rev"])])
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        tree[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] == "deletedFile":
                        tree.pop(item["value"]["path"], None)
                oid = hub.new_commit(repo, m["rev"], tree)
                return self._json(200, {"commitUrl": f"{hub.url}/{m['repo']}/commit/{oid}", "commitOid": oid,
                                        "pullRequestUrl": None})
            self._not_found("EntryNotFound", f"no route for {path}")

    return Handler


def point_client_at(url: str, hf_home: Path, monkeypatch) -> None:
    """Send the huggingface_hub client to ``url`` with its cache under ``hf_home``, for one test.

    huggingface_hub reads its environment once, at import, so besides the variables (for subprocesses) the module
    constants are patched too, as huggingface_hub's own tests do.
    """
    from huggingface_hub import constants

    env = {"HF_ENDPOINT": url, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"), "HF_TOKEN": TOKEN,
           "HF_HUB_DISABLE_XET": "1", "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    old_home = constants.HF_HOME
    for name in dir(constants):  # every path under the old HF_HOME (token, caches, ...) moves with it
        value = getattr(constants, name)
        if isinstance(value, str) and value.startswith(old_home):
            monkeypatch.setattr(constants, name, str(hf_home) + value[len(old_home):])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
