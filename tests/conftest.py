from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hubs import hf_hub, ms_hub  # noqa: F401 (fixtures shared by every test module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("AIRLOCK_NO_NETWORK") == "1":
        skip = pytest.mark.skip(reason="AIRLOCK_NO_NETWORK=1: the package index is not reachable")
        for item in items:
            if "network" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("AIRLOCK_CACHE", str(d))
    return d


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from packager.signing import write_keypair

    return write_keypair(tmp_path_factory.mktemp("keys") / "test")

