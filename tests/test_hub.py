"""How the zoo fails when the Hub refuses or cannot be reached: the real huggingface_hub client against the Hub of
tests/hub_server.py, a closed port, and a socket that never answers. No model is built: every case fails (or
succeeds) on the small files, so the module runs in seconds."""
from __future__ import annotations

import json
import socket
import time

import pytest
import torch
from hub_server import TOKEN, HubServer, Repo, point_client_at
from safetensors.torch import save_file

from rmp_zoo.zoo import HubUnavailableError, ZooEntry, load, push
from rmp_zoo.zoo.errors import HubAccessError
from rmp_zoo.zoo.folder import CONFIG, LOAD_FILES, METRICS, WEIGHTS
from rmp_zoo.zoo.hub import download
from rmp_zoo.zoo.registry import ZOO

FAST = 10.0  # seconds: an unreachable Hub must be reported well within this (it used to take ~24 s, or minutes)
WITHOUT_HUB = r"HF_HUB_OFFLINE.*'local-dir:PATH'.*\$RMP_ZOO_HOME"


pytestmark = pytest.mark.usefixtures("isolated_zoo")


@pytest.fixture
def entry(monkeypatch) -> ZooEntry:
    """A registry model pinned to a Hub commit, with nothing of it on disk."""
    entry = ZooEntry("tiny-pinned", "resnet20", "synthetic", "python train.py recipe=smoke", "none",
                     "rmp-zoo/tiny-pinned", revision="a" * 40, sha256={f: "0" * 64 for f in LOAD_FILES})
    monkeypatch.setitem(ZOO, entry.name, entry)
    return entry


@pytest.fixture
def zoo_folder(tmp_path):
    """The smallest folder that passes push()'s checks (it is refused before any model is read)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / CONFIG).write_text("{}")
    (folder / METRICS).write_text("{}")
    save_file({"w": torch.zeros(1)}, folder / WEIGHTS)
    return folder


def add_repo(hub: HubServer, repo_id: str, **access) -> Repo:
    repo = Repo(**access)
    hub.repos[repo_id] = repo
    hub.new_commit(repo, "main", {CONFIG: json.dumps({"name": repo_id}).encode()})
    return repo


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- refused: 401 / 403 ------------------------------------------------------------------------------------------

def test_gated_repo_without_token_says_log_in_and_request_access(hub, monkeypatch):
    add_repo(hub, "org/gated", gated=True)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubAccessError, match=rf"\(401\): request access at {hub.url}/org/gated.*`hf auth login`"):
        load("hf-hub:org/gated")


def test_gated_repo_not_granted_says_request_access_then_works(hub):
    repo = add_repo(hub, "org/gated", gated=True)
    with pytest.raises(HubAccessError, match=rf"gated.*not authorised.*\(403\).*request access at {hub.url}/org/gated"):
        load("hf-hub:org/gated")
    repo.readers.add(TOKEN)  # the owner grants access
    assert (download("org/gated", (CONFIG,)) / CONFIG).is_file()


def test_private_repo_without_token_needs_authentication(hub, monkeypatch):
    add_repo(hub, "org/private", private=True)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubAccessError, match=r"needs authentication \(401\).*no token.*`hf auth login`.*HF_TOKEN"):
        load("hf-hub:org/private")


def test_token_the_hub_rejects_is_named(hub, monkeypatch):
    add_repo(hub, "org/public")
    monkeypatch.setenv("HF_TOKEN", "hf_expired")
    with pytest.raises(HubAccessError, match=r"did not accept your token \(401.*`hf auth login`.*HF_TOKEN"):
        load("hf-hub:org/public")


def test_token_without_access_to_the_repo_is_forbidden(hub):
    add_repo(hub, "org/scoped", forbidden={TOKEN})
    with pytest.raises(HubAccessError, match=r"not authorised for this repo \(403\).*HF_TOKEN.*read access"):
        load("hf-hub:org/scoped")


def test_push_needs_a_write_token(hub, zoo_folder, monkeypatch):
    hub.read_only.add(TOKEN)
    with pytest.raises(HubAccessError, match=r"\(403\).*write access"):
        push(zoo_folder, "org/tiny")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubAccessError, match=r"needs authentication \(401\).*write access"):
        push(zoo_folder, "org/tiny")
    assert "org/tiny" not in hub.repos


# --- unreachable, and offline ------------------------------------------------------------------------------------

def test_refused_connections_fail_fast_and_name_the_ways_around(entry, tmp_path, monkeypatch):
    point_client_at(f"http://127.0.0.1:{closed_port()}", tmp_path / "hf_home", monkeypatch)
    start = time.monotonic()
    with pytest.raises(HubUnavailableError, match=rf"could not reach the Hub.*retry.*{WITHOUT_HUB}"):
        load(entry.name)  # huggingface_hub alone retries for ~24 s
    assert time.monotonic() - start < FAST


def test_hub_that_never_answers_fails_after_the_timeout(entry, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)  # as HF_HUB_ETAG_TIMEOUT=1 does; the default is 5 s
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts connections; nobody answers them
        point_client_at(f"http://127.0.0.1:{silent.getsockname()[1]}", tmp_path / "hf_home", monkeypatch)
        start = time.monotonic()
        with pytest.raises(HubUnavailableError, match=rf"HF_HUB_ETAG_TIMEOUT \(now 1 s\).*{WITHOUT_HUB}"):
            load(entry.name)  # huggingface_hub alone waits 10 s, then retries for minutes
        assert time.monotonic() - start < FAST


def test_offline_mode_with_nothing_cached_names_the_ways_around(hub, entry, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # huggingface_hub read the variable at import
    with pytest.raises(HubUnavailableError, match=rf"not in the local cache.*{WITHOUT_HUB}") as info:
        load(entry.name)
    assert not isinstance(info.value, HubAccessError)
    assert hub.requests == []


def test_cached_files_need_no_reachability_check(hub):
    add_repo(hub, "org/public")
    folder = download("org/public", (CONFIG,))
    heads = [r for r in hub.requests if r[0] == "HEAD"]
    assert len(heads) == 2  # the quick check, then huggingface_hub's own
    commit = folder.name
    hub.stop()
    assert download("org/public", (CONFIG,), revision=commit) == folder  # pinned and cached: no request at all
