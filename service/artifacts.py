"""Where model files live: shared storage every node reads, and a local cache per node.

Web replicas and workers share nothing but the database and the broker, so a model uploaded through
one replica must be servable by every other.  The shared copy is in the database by default
(``model_artifacts``), or in a directory every node mounts when ``FRUGAL_MODEL_STORE_URL`` is
``file:///path`` (a network file system or a mounted object-store bucket).  onnxruntime loads from a
file, so each node keeps a content-addressed copy in ``FRUGAL_DATA_DIR/models`` as a cache: it is
filled on first use and can be deleted at any time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.orm import Session

from service.errors import ServiceUnavailable
from service.settings import Settings
from service.store import artifacts as artifact_store


def cache_path(settings: Settings, digest: str) -> Path:
    """This node's cached copy of the file with SHA-256 ``digest``."""
    return settings.models_dir / digest[:2] / f"{digest}.onnx"


def _shared_dir(settings: Settings) -> Path | None:
    if not settings.model_store_url:
        return None
    return Path(urlparse(settings.model_store_url).path)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def save(session: Session, settings: Settings, digest: str, data: bytes) -> Path:
    """Put a newly registered file in shared storage (inside the caller's unit of work, so a failed
    registration leaves nothing behind in the database) and in this node's cache."""
    shared = _shared_dir(settings)
    if shared is None:
        artifact_store.put(session, digest, data)
    elif not (shared / digest[:2] / f"{digest}.onnx").exists():
        _write_atomically(shared / digest[:2] / f"{digest}.onnx", data)
    path = cache_path(settings, digest)
    if not path.exists():
        _write_atomically(path, data)
    return path


def local_path(session: Session, settings: Settings, digest: str) -> Path:
    """A local file with the model's bytes, fetched from shared storage into the cache if missing."""
    path = cache_path(settings, digest)
    if path.exists():
        return path
    shared = _shared_dir(settings)
    if shared is None:
        data = artifact_store.get(session, digest)
    else:
        source = shared / digest[:2] / f"{digest}.onnx"
        data = source.read_bytes() if source.exists() else None
    if data is None:
        raise ServiceUnavailable(
            f"the model file {digest[:12]} is not in shared storage ({settings.model_store_url or 'the database'}); "
            "run 'frugal models sync' on the node that registered it")
    _write_atomically(path, data)
    return path


def sync(session: Session, settings: Settings) -> tuple[list[str], list[str]]:
    """Copy files this node has in its cache but shared storage lacks (models registered before
    revision 0006 kept their file only on the node that received them).  (copied, still missing)."""
    copied, missing = [], []
    if _shared_dir(settings) is not None:
        return copied, missing
    for digest in artifact_store.digests_without_artifact(session):
        path = cache_path(settings, digest)
        if path.exists():
            artifact_store.put(session, digest, path.read_bytes())
            copied.append(digest)
        else:
            missing.append(digest)
    return copied, missing
