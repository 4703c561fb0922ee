"""Resolve Hub ids to files: a local folder, the offline mirror, or the Hugging Face Hub itself.

The code keeps the real ids (``Qwen/Qwen2.5-0.5B-Instruct``, ``shibing624/medical``). When the
environment variable ``HARNESS_HUB_MIRROR`` names a folder laid out like the Hub
(``ORG/NAME/...`` for models, ``datasets/ORG/NAME/...`` for datasets), ids resolve there instead
and nothing is fetched.
"""
from __future__ import annotations

import os
from pathlib import Path

MIRROR_ENV = "HARNESS_HUB_MIRROR"
PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent


def mirror_root() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser().resolve() if value else None


def _local(path_or_id: str) -> Path | None:
    """A path given directly, relative to the working directory or to the repository."""
    for candidate in (Path(path_or_id).expanduser(), REPO_ROOT / path_or_id):
        if candidate.exists():
            return candidate.resolve()
    return None


def resolve_model(hub_id: str) -> str:
    """Return a local folder for ``hub_id`` when one exists (given path, mirror), else the id itself."""
    local = _local(hub_id)
    if local is not None:
        return str(local)
    mirror = mirror_root()
    if mirror is not None:
        return str(mirror / hub_id)
    return hub_id


def hub_host() -> str:
    """The host huggingface_hub talks to (``HF_ENDPOINT``, a company mirror, or huggingface.co)."""
    from urllib.parse import urlparse

    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def go_offline_unless_reachable() -> bool:
    """Tell huggingface_hub (and datasets) to stay offline when the Hub's host does not even resolve (the
    CI, the GPU machine): otherwise each request retries with backoff for ~25 s and logs a warning per try
    before the one-line error a refused run must be. Returns whether the Hub was found unreachable. Only
    this process and its children see the switch; a reachable Hub changes nothing."""
    import socket

    try:
        socket.getaddrinfo(hub_host(), 443)
        return False
    except OSError:
        pass
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")  # already imported: its flag was read then
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    return True


def resolve_dataset_file(hub_id: str, filename: str) -> Path:
    """Local path of ``filename`` inside dataset ``hub_id``, downloading it when no mirror is set."""
    mirror = mirror_root()
    if mirror is not None:
        return mirror / "datasets" / hub_id / filename
    offline = go_offline_unless_reachable()
    from huggingface_hub import hf_hub_download  # imported lazily: only Hub runs need it

    try:
        return Path(hf_hub_download(repo_id=hub_id, filename=filename, repo_type="dataset"))
    except Exception as err:  # unknown repo or file, no network, bad id: one line naming both
        from harness.config.schema import ConfigError

        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        where = f"{hub_host()} unreachable and not in the local cache" if offline else f"{type(err).__name__}: {reason}"
        raise ConfigError(f"dataset.hub_id: cannot fetch {filename!r} of dataset {hub_id!r} from the Hub ({where}; "
                          f"set {MIRROR_ENV} to an offline mirror or use dataset.path)") from None
