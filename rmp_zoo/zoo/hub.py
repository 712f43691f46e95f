"""Talking to the Hugging Face Hub: fetch files into huggingface_hub's cache and check them, publish a folder.

All HTTP goes through huggingface_hub, so HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN work as
they do for every other Hub library. With a pinned commit and the files cached, nothing touches the network.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from huggingface_hub import CommitInfo, HfApi, constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                    OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

from .errors import HubUnavailableError, IncompleteFolderError, IntegrityError, ModelNotFoundError, ZooError
from .folder import CARD, LOAD_FILES, check_file, library_version, require_files

LIBRARY = "rmp_zoo"
# What a failed transfer raises besides the typed errors: OSError, and the HTTP library's own base error, which is
# what HfHubHTTPError derives from (httpx2's in huggingface_hub 2.x, requests' in older versions).
TRANSFER_ERRORS = (OSError, *HfHubHTTPError.__bases__)


def download(repo_id: str, files: tuple[str, ...], revision: str | None = None,
             sha256: Mapping[str, str] | None = None) -> Path:
    """Fetch ``files`` of ``repo_id`` at ``revision`` through the cache and return the snapshot folder.

    Each file is checked before it is used: against ``sha256`` where the registry pins one, else by parsing it.
    A file that fails is removed from the cache, so that a retry downloads it afresh.
    """
    if not files:
        raise ValueError("download() needs at least one file name")
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


def _evict(path: Path) -> None:
    """Remove a cached file: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def hub_error(err: Exception, repo_id: str, revision: str | None, filename: str | None = None) -> ZooError:
    """Turn a huggingface_hub error into one that says what to do about it."""
    where = f"{repo_id}@{revision or 'main'}"
    if isinstance(err, RevisionNotFoundError):
        return ModelNotFoundError(f"revision {revision!r} does not exist in Hub repo {repo_id} at "
                                  f"{constants.ENDPOINT}; check the revision (a branch, tag or commit id).")
    if isinstance(err, RepositoryNotFoundError):
        return ModelNotFoundError(f"Hub repo {repo_id} not found at {constants.ENDPOINT}. Check the repo id; a "
                                  "private repo also needs a token (HF_TOKEN or `hf auth login`).")
    if constants.HF_HUB_OFFLINE or isinstance(err, OfflineModeIsEnabled):
        return HubUnavailableError(f"{where}: {filename} is not in the local cache ({constants.HF_HUB_CACHE}) and "
                                   "HF_HUB_OFFLINE=1 forbids downloading it. Unset HF_HUB_OFFLINE to download it, "
                                   "or fetch it on a machine online with `rmp-zoo download` and copy the cache "
                                   "(or the folder, into $RMP_ZOO_HOME/NAME).")
    if isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError):
        return IncompleteFolderError(f"{where} has no {filename}: it is not a complete zoo folder (needs "
                                     f"{', '.join(LOAD_FILES)}). Publish one with `rmp-zoo export` + `rmp-zoo push`.")
    if isinstance(err, HfHubHTTPError) and err.response is not None and err.response.status_code in (401, 403):
        return HubUnavailableError(f"{where}: the Hub at {constants.ENDPOINT} refused access "
                                   f"({err.response.status_code}); set HF_TOKEN to a token with access to it.")
    if isinstance(err, LocalEntryNotFoundError):  # no answer, and nothing cached to fall back on
        return HubUnavailableError(f"could not reach the Hub at {constants.ENDPOINT} for {where} ({filename}), and "
                                   f"it is not in the local cache: {err.__cause__ or err}. Check the connection (and "
                                   "HF_ENDPOINT or proxy settings) and retry, or set HF_HUB_OFFLINE=1 to use cached "
                                   "files only.")
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

