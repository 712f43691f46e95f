"""Errors of the zoo. Each message names the fix; the classes let callers (and the CLI) tell the cases apart."""
from __future__ import annotations


class ZooError(RuntimeError):
    """Base class: anything that stops a zoo model from being listed, fetched, loaded or published."""


class ModelNotFoundError(ZooError, LookupError):
    """The name is not in the registry, or a local folder / Hub repo it points to does not exist."""


class NotBuiltError(ZooError):
    """The registry lists the model but no weights have been published for it yet."""


class IncompleteFolderError(ZooError):
    """A zoo folder lacks a file, or a file cannot be parsed as the format requires."""


class IntegrityError(ZooError):
    """A file does not match the sha256 the registry pins (corrupted or truncated download, or another file)."""


class HubUnavailableError(ZooError):
    """The Hub cannot be reached (offline mode, no connection) and the files are not in the local cache."""


class HubAccessError(HubUnavailableError):
    """The Hub answered but refused the files: authentication needed (401: no token, or one it does not accept), or
    not authorised (403, or a gated repo whose access was not granted)."""
