"""Shared test builders: a core with deterministic ids and receipts, an actor on trio's (mock) clock, an app."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import trio

from wonderq.actor import Actor, ActorHandle
from wonderq.clock import WallClock
from wonderq.config import Settings
from wonderq.core import Core, Limits
from wonderq.ids import TimeOrderedIds
from wonderq.model import Payload
from wonderq.principals import new_token

TEST_RESERVE_BYTES = 1024 * 1024  # a durable test server's disk reserve: the default 64 MiB would be written each time
EPOCH = 1_800_000_000.0  # wall-clock seconds the tests' trio clock 0 maps to


def limits(**overrides: Any) -> Limits:
    values: dict[str, Any] = {
        "max_message_bytes": 1024,
        "max_batch": 10,
        "default_visibility_timeout": 30.0,
    }
    values.update(overrides)
    return Limits(**values)


def make_core(base: Limits | None = None, **overrides: Any) -> Core:
    """A core with ids from the send time (deterministic for a given `now`) and receipts t1, t2, ..."""
    tokens = itertools.count(1)
    chosen = replace(base, **overrides) if base else limits(**overrides)
    return Core(limits=chosen, new_id=TimeOrderedIds(), new_token=lambda: f"t{next(tokens)}")


def text(value: str) -> Payload:
    return Payload(value.encode(), "text/plain")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "memory": True,
        "host": "127.0.0.1",
        "port": 0,
        "max_message_bytes": 1024,
        "max_batch": 10,
        "max_request_bytes": 64 * 1024,
        "reserve_bytes": TEST_RESERVE_BYTES,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


T = TypeVar("T")


async def inline(call: Callable[[], T]) -> T:
    """Run a journal call in the actor's own task: on a virtual clock a real thread would let time jump."""
    await trio.lowlevel.checkpoint()
    return call()


@asynccontextmanager
async def running_actor(core: Core | None = None) -> AsyncIterator[tuple[ActorHandle, Actor]]:
    """An actor (and nothing else: no ticker) running on the test's trio clock, cancelled on exit."""
    actor = Actor(core or make_core(), WallClock(offset=EPOCH - trio.current_time()))
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        yield actor.handle, actor
        nursery.cancel_scope.cancel()


def write_auth_file(
    path: Path, grants: dict[str, dict[str, list[str]]], sqs_keys: dict[str, tuple[str, str]] | None = None
) -> dict[str, str]:
    """An auth file at `path` with a principal per entry of `grants` (name -> {queue pattern: [permissions]}),
    each with a fresh token (and the SQS key of `sqs_keys`, name -> (access key id, secret), if any). Returns each
    principal's token."""
    tokens: dict[str, str] = {}
    lines: list[str] = []
    for name, permissions in grants.items():
        token, token_hash = new_token()
        tokens[name] = token
        lines += ["[[principals]]", f"name = {json.dumps(name)}", f"token_hashes = [{json.dumps(token_hash)}]"]
        if sqs_keys and name in sqs_keys:
            key_id, secret = sqs_keys[name]
            lines += [f"sqs_access_key_id = {json.dumps(key_id)}", f"sqs_secret_access_key = {json.dumps(secret)}"]
        lines.append("[principals.permissions]")
        lines += [f"{json.dumps(pattern)} = {json.dumps(given)}" for pattern, given in permissions.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return tokens
