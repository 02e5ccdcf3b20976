"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
from quart.typing import TestClientProtocol as Client

from tests.helpers import make_core, running_actor, settings
from wonderq.actor import ActorHandle
from wonderq.config import Settings
from wonderq.ticker import run_ticker
from wonderq.web import create_app


@pytest.fixture
def app_settings() -> Settings:
    return settings()


@pytest.fixture
async def handle() -> AsyncIterator[ActorHandle]:
    async with running_actor() as (actor_handle, _):
        yield actor_handle


@pytest.fixture
async def client(app_settings: Settings) -> AsyncIterator[Client]:
    """The app in-process (no sockets) with its actor and ticker, on the test's trio clock."""
    async with running_actor(make_core(app_settings.limits())) as (actor_handle, _), trio.open_nursery() as nursery:
        nursery.start_soon(partial(run_ticker, actor_handle, interval=app_settings.tick_interval))
        app = create_app(actor_handle, app_settings)
        async with app.test_app() as test_app:
            yield test_app.test_client()
        nursery.cancel_scope.cancel()
