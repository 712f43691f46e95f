"""Talking to the Hugging Face Hub: fetch files into huggingface_hub's cache and check them, publish a folder.

All HTTP goes through huggingface_hub, so HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE, HF_HUB_ETAG_TIMEOUT and
HF_TOKEN work as they do for every other Hub library. With a pinned commit and the files cached, nothing touches the
network.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from huggingface_hub import (CommitInfo, HfApi, constants, get_hf_file_metadata, get_token, hf_hub_download,
                             hf_hub_url, try_to_load_from_cache)
from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                    OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

from .errors import (HubAccessError, HubUnavailableError, IncompleteFolderError, IntegrityError, ModelNotFoundError,
                     ZooError)
from .folder import CARD, LOAD_FILES, check_file, library_version, require_files

LIBRARY = "rmp_zoo"
# What a failed transfer raises besides the typed errors: OSError, and the HTTP library's own base error, which is
# what HfHubHTTPError derives from (httpx2's in huggingface_hub 2.x, requests' in older versions).
TRANSFER_ERRORS = (OSError, *HfHubHTTPError.__bases__)
# Seconds an uncached download waits for the Hub's first answer. huggingface_hub would wait HF_HUB_ETAG_TIMEOUT
# (10 s), then retry with backoff: ~24 s when connections are refused, minutes when they hang. A user who sets
# HF_HUB_ETAG_TIMEOUT gets that value here too.
REACH_TIMEOUT = 5.0
# How to use a model with no Hub at all; ends the messages of unreachable and offline downloads.
WITHOUT_HUB = ("load a copy of the model's folder with 'local-dir:PATH' (a registry model is also found in "
               "$RMP_ZOO_HOME/NAME), or copy the huggingface_hub cache from a machine where `rmp-zoo download NAME` "
               "ran.")


def download(repo_id: str, files: tuple[str, ...], revision: str | None = None,
             sha256: Mapping[str, str] | None = None) -> Path:
    """Fetch ``files`` of ``repo_id`` at ``revision`` through the cache and return the snapshot folder.

    Each file is checked before it is used: against ``sha256`` where the registry pins one, else by parsing it.
    A file that fails is removed from the cache, so that a retry downloads it afresh.
    """
    if not files:
        raise ValueError("download() needs at least one file name")
    missing = [f for f in files if not isinstance(try_to_load_from_cache(repo_id, f, revision=revision), str)]
    if missing and not constants.HF_HUB_OFFLINE:
        _reach(repo_id, missing[0], revision)
    for name in files:
        try:
            path = Path(hf_hub_download(repo_id, name, revision=revision, library_name=LIBRARY,
                                        library_version=library_version()))
        except TRANSFER_ERRORS as err:
            raise hub_error(err, repo_id, revision, name) from err
        try:
            check_file(path, (sha256 or {}).get(name))
        except (IntegrityError, IncompleteFolderError) as err:
            _evict(path)
            raise type(err)(f"{repo_id}@{revision or 'main'}: {err} The bad copy was removed from the cache; retry "
                            "to download it again.") from None
    return path.parent


def is_cached(repo_id: str, revision: str | None, files: tuple[str, ...] = LOAD_FILES) -> bool:
    """Whether all ``files`` are in the local cache at ``revision`` (no network)."""
    return all(isinstance(try_to_load_from_cache(repo_id, f, revision=revision), str) for f in files)


def _reach_timeout() -> float:
    """How long the first request of an uncached download may wait: HF_HUB_ETAG_TIMEOUT if set, else REACH_TIMEOUT."""
    etag_timeout = constants.HF_HUB_ETAG_TIMEOUT
    return float(etag_timeout) if etag_timeout != constants.DEFAULT_ETAG_TIMEOUT else REACH_TIMEOUT


def _reach(repo_id: str, filename: str, revision: str | None) -> None:
    """Ask the Hub once, without retries, for ``filename``'s metadata: fail in seconds when it cannot be reached.

    huggingface_hub retries a download whose first request got no answer, and only then gives up (see
    REACH_TIMEOUT); this one request, before the download, costs a round trip. Refusals (401, 403, 404) are raised
    here too; answers that huggingface_hub retries (408, 429, 5xx) are left to its retries.
    """
    timeout = _reach_timeout()
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=timeout,
                             library_name=LIBRARY, library_version=library_version())
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status is not None and (status in (408, 429) or status >= 500):
            return
        raise hub_error(err, repo_id, revision, filename) from err
    except TRANSFER_ERRORS as err:
        raise HubUnavailableError(_unreachable(repo_id, revision, filename, f"{type(err).__name__}: {err}",
                                               timeout)) from err


def _unreachable(repo_id: str, revision: str | None, filename: str | None, reason: object,
                 timeout: float | None = None) -> str:
    waited = f"; on a slow connection raise HF_HUB_ETAG_TIMEOUT (now {timeout:g} s)" if timeout else ""
    return (f"could not reach the Hub at {constants.ENDPOINT} for {repo_id}@{revision or 'main'} ({reason}), and "
            f"{filename} is not in the local cache. Check the connection (and HF_ENDPOINT or proxy settings) and "
            f"retry{waited}. Without the Hub, set HF_HUB_OFFLINE=1 to use only cached files, or " + WITHOUT_HUB)


def _access_error(err: HfHubHTTPError, status: int | None, repo_id: str, revision: str | None,
                  publishing: bool) -> HubAccessError:
    """The Hub refused: say whether a token is missing, not accepted or not authorised, and how to fix that."""
    hub, where = constants.ENDPOINT, f"{repo_id}@{revision or 'main'}"
    login = "`hf auth login` (or set HF_TOKEN)"
    need = "write access" if publishing else "read access"
    if isinstance(err, GatedRepoError):
        ask = f"request access at {hub}/{repo_id}"
        if status == 401 or get_token() is None:
            return HubAccessError(f"{repo_id} is a gated repo on {hub} and no token was sent (401): {ask}, then log "
                                  f"in with {login} as the account that was granted access.")
        return HubAccessError(f"{repo_id} is a gated repo on {hub} and the account of your token is not authorised "
                              f"for it (403): {ask} and retry once it is granted. A fine-grained token also needs "
                              "the permission to read the gated repos you can access.")
    if status == 401 and get_token() is None:
        what = "publishing needs a token" if publishing else "the repo is private or gated, or does not exist"
        return HubAccessError(f"{where}: the Hub at {hub} needs authentication (401) and no token is set: {what}. "
                              f"Log in with {login}, using a token with {need} (make one at {hub}/settings/tokens).")
    if status == 401:
        return HubAccessError(f"{where}: the Hub at {hub} did not accept your token (401: invalid, expired or "
                              f"revoked). Make a new one at {hub}/settings/tokens and log in with {login}.")
    return HubAccessError(f"{where}: the Hub at {hub} accepted your token but its account is not authorised for this "
                          f"repo (403). Log in with {login}, using a token with {need} to it; a fine-grained token "
                          "must list this repo. For a repo you do not own, ask its owner for access.")


def _evict(path: Path) -> None:
    """Remove a cached file: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def hub_error(err: Exception, repo_id: str, revision: str | None, filename: str | None = None) -> ZooError:
    """Turn a huggingface_hub error into one that says what to do about it (``filename`` None: publishing)."""
    where = f"{repo_id}@{revision or 'main'}"
    if isinstance(err, LocalEntryNotFoundError) and isinstance(err.__cause__, HfHubHTTPError):
        err = err.__cause__  # hf_hub_download wraps a refusal (403) it could not fall back from
    status = err.response.status_code if isinstance(err, HfHubHTTPError) and err.response is not None else None
    if isinstance(err, GatedRepoError) or status in (401, 403):
        return _access_error(err, status, repo_id, revision, publishing=filename is None)
    if isinstance(err, RevisionNotFoundError):
        return ModelNotFoundError(f"revision {revision!r} does not exist in Hub repo {repo_id} at "
                                  f"{constants.ENDPOINT}; check the revision (a branch, tag or commit id).")
    if isinstance(err, RepositoryNotFoundError):
        return ModelNotFoundError(f"Hub repo {repo_id} not found at {constants.ENDPOINT}. Check the repo id; a "
                                  "private repo also needs a token that can read it (`hf auth login` or HF_TOKEN).")
    if constants.HF_HUB_OFFLINE or isinstance(err, OfflineModeIsEnabled):
        return HubUnavailableError(f"{where}: {filename} is not in the local cache ({constants.HF_HUB_CACHE}) and "
                                   "HF_HUB_OFFLINE=1 forbids downloading it. Unset HF_HUB_OFFLINE to download it, or "
                                   + WITHOUT_HUB)
    if isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError):
        return IncompleteFolderError(f"{where} has no {filename}: it is not a complete zoo folder (needs "
                                     f"{', '.join(LOAD_FILES)}). Publish one with `rmp-zoo export` + `rmp-zoo push`.")
    if isinstance(err, LocalEntryNotFoundError):  # no answer, and nothing cached to fall back on
        return HubUnavailableError(_unreachable(repo_id, revision, filename, err.__cause__ or err))
    if filename is None:
        return HubUnavailableError(f"publishing to {where} at {constants.ENDPOINT} failed: {err}. Retry; a push is "
                                   "one commit, so nothing was half-published.")
    return HubUnavailableError(f"downloading {filename} of {where} from {constants.ENDPOINT} failed: {err}. Retry; "
                               "the download resumes where it stopped.")


def push(folder: str | Path, repo_id: str, revision: str | None = None, *, force: bool = False,
         private: bool = False, commit_message: str | None = None) -> tuple[CommitInfo, bool]:
    """Publish a zoo folder as one commit; returns the commit and whether the Hub's existing card was kept.

    An existing ``README.md`` on the Hub is left alone unless ``force``: someone may have edited it there.
    """
    folder = Path(folder)
    require_files(folder, LOAD_FILES)
    for name in LOAD_FILES:
        check_file(folder / name)
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, constants.DEFAULT_REVISION):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        keep_card = (folder / CARD).is_file() and not force and api.file_exists(repo_id, CARD, revision=revision)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                 commit_message=commit_message or f"Upload {folder.name} with {LIBRARY}",
                                 ignore_patterns=[CARD, ".*"] if keep_card else [".*"])
    except TRANSFER_ERRORS as err:
        raise hub_error(err, repo_id, revision) from err
    return info, keep_card

