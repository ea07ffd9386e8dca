"""Pytest plugin: a fresh Hub-compatible server (``tests/hub_server.py``) per test.

Fixture ``hub_server`` (function scope) yields a started :class:`hub_server.HubServer` and points
the unmodified ``huggingface_hub`` / ``datasets`` clients at it for the duration of the test:

* environment (``monkeypatch.setenv``): ``HF_ENDPOINT``, ``HF_TOKEN`` (the server's write token),
  ``HF_HUB_DISABLE_XET=1``, ``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_DATASETS_CACHE`` in ``tmp_path``,
  ``NO_PROXY`` including 127.0.0.1, telemetry and download counts off, offline mode off;
* module constants both libraries read once at import time (``huggingface_hub.constants.ENDPOINT``,
  ``HUGGINGFACE_CO_URL_TEMPLATE``, ``HF_HUB_DISABLE_XET``, cache paths; ``datasets.config.HF_ENDPOINT``,
  ``HUB_DATASETS_URL``, cache paths, ``HF_HUB_OFFLINE``), so it works whether or not those libraries
  were imported before the fixture ran.

Code under test may therefore use ``HfApi()`` without ``endpoint=``/``token=``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.hub import HubServer


def point_clients_at(server: HubServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point huggingface_hub and datasets at ``server``, with caches under ``home``."""
    import datasets.config as ds_config
    import huggingface_hub.constants as hf_constants

    hub_cache, ds_cache = home / "hub", home / "datasets"
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    env = {
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": server.token or "",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_DATASETS_CACHE": str(ds_cache),
        "HF_XET_CACHE": str(home / "xet"),
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HUGGINGFACE_CO_STAGING", "HF_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)

    hub_constants: dict[str, object] = {
        "ENDPOINT": server.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(hf_constants.HF_URL_HOSTS | {"127.0.0.1"}),
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
    }
    for name, constant in hub_constants.items():
        monkeypatch.setattr(hf_constants, name, constant, raising=False)

    datasets_constants: dict[str, object] = {
        "HF_ENDPOINT": server.url,
        "HUB_DATASETS_URL": server.url + "/datasets/{repo_id}/resolve/{revision}/{path}",
        "HF_HUB_OFFLINE": False,
        "HF_DATASETS_OFFLINE": False,
        "HF_UPDATE_DOWNLOAD_COUNTS": False,
        "HF_CACHE_HOME": str(home),
        "HF_DATASETS_CACHE": ds_cache,
        "HF_MODULES_CACHE": home / "modules",
        "DOWNLOADED_DATASETS_PATH": ds_cache / "downloads",
        "EXTRACTED_DATASETS_PATH": ds_cache / "downloads" / "extracted",
    }
    for name, constant in datasets_constants.items():
        monkeypatch.setattr(ds_config, name, constant, raising=False)


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A started Hub-compatible server, with huggingface_hub/datasets pointed at it."""
    server = HubServer().start()
    try:
        point_clients_at(server, tmp_path / "hf-home", monkeypatch)
        yield server
    finally:
        server.stop()
        from huggingface_hub import HfFileSystem

        HfFileSystem.clear_instance_cache()  # instances are keyed by endpoint; drop this test's ones
