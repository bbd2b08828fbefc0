"""Fixtures of the integration tests: the control plane on each database it supports."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.controlplane import ControlPlane, make_engine


def control_plane_engine(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> AsyncEngine:
    """An engine on a SQLite file of the test's own or on a PostgreSQL schema of its own."""
    if kind == "sqlite":
        return make_engine(f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}")
    url, schema = request.getfixturevalue("pg_url")
    return make_engine(url, {"server_settings": {"search_path": schema}})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def cp(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """A migrated control plane, once on SQLite and once on PostgreSQL."""
    plane = ControlPlane(control_plane_engine(request, request.param, tmp_path))
    await plane.migrate(1)
    yield plane
    await plane.close()
