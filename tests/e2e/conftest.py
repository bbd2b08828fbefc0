"""Fixtures of the end-to-end tests (the stacks themselves are in tests/conftest.py)."""

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client of one test's own."""
    async with aiohttp.ClientSession() as client:
        yield client
