"""One crash round: producers and consumers run against a real server on a data directory, the server is killed
with SIGKILL at a random moment (or stopped with SIGTERM, gracefully, with the same work in flight), restarted on
the same directory, and what it recovered is checked against what its clients were told. Used by
tests/test_durability.py (a few rounds) and scripts/crash_test.py (many).

What must hold after every kill or stop:
* every message whose send got 201 is there, unless an ack of it was attempted;
* no message whose ack got 204 is there;
* nothing is there that no one sent, and nothing is there twice;
* every lease a consumer was handed (and did not try to settle) survived: still leased, its receipt still acks;
* the store passes SQLite's integrity check.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.servers import server_process
from wonderq.store import DB_NAME

QUEUES = ("crash-a", "crash-b")
LONG_LEASE = 120.0  # seconds: outlives the restart, so the lease must survive it


@dataclass
class Ledger:
    """What the clients know for sure, and what they merely tried."""

    attempted: dict[str, str] = field(default_factory=dict)  # body -> queue, for every send tried
    confirmed: dict[str, str] = field(default_factory=dict)  # id -> body, sends answered 201
    ack_attempted: set[str] = field(default_factory=set)  # ids whose ack (or release) was tried
    acked: set[str] = field(default_factory=set)  # ids whose ack was answered 204
    held: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (queue, receipt): long leases kept


@dataclass
class RoundResult:
    seed: int
    killed_after: float  # seconds of load before the SIGKILL
    confirmed: int
    acked: int
    held: int
    recovered: int
    problems: list[str]


async def _producer(http: httpx.AsyncClient, ledger: Ledger, rng: random.Random, name: str) -> None:
    for number in range(1_000_000):
        queue = rng.choice(QUEUES)
        bodies = [f"{name}-{number}-{i}" for i in range(rng.randint(1, 20))]  # unique: name has the seed
        for body in bodies:
            ledger.attempted[body] = queue
        if len(bodies) == 1:
            reply = await http.post(
                f"/v1/queues/{queue}/messages", content=bodies[0], headers={"content-type": "text/plain"}
            )
            ids = [reply.json()["id"]] if reply.status_code == 201 else []
        else:
            entries = [{"body": body, "content_type": "text/plain"} for body in bodies]
            reply = await http.post(f"/v1/queues/{queue}/messages/batch", json={"messages": entries})
            ids = reply.json()["ids"] if reply.status_code == 201 else []
        if reply.status_code == 503:
            return  # a graceful stop has begun: this send was refused, and nothing of it stored
        assert reply.status_code == 201, reply.text
        ledger.confirmed.update(zip(ids, bodies, strict=True))


async def _consumer(http: httpx.AsyncClient, ledger: Ledger, rng: random.Random) -> None:
    while True:
        queue = rng.choice(QUEUES)
        lease_for = rng.choice([0.5, LONG_LEASE])
        wait = rng.choice([0, 0, 0.5])  # some long polls: a graceful stop answers them empty
        reply = await http.post(
            f"/v1/queues/{queue}/receive", json={"max": 5, "visibility_timeout": lease_for, "wait": wait}
        )
        if reply.status_code == 503:
            return  # a graceful stop has begun
        assert reply.status_code in (200, 404), reply.text  # 404: the queue is not created yet
        for message in reply.json().get("messages", []):
            choice = rng.random()
            if choice < 0.6:
                ledger.ack_attempted.add(message["id"])
                path = f"/v1/queues/{queue}/messages/{message['id']}"
                acked = await http.delete(path, params={"receipt": message["receipt"]})
                if acked.status_code == 204:
                    ledger.acked.add(message["id"])
            elif choice < 0.7:
                ledger.ack_attempted.add(message["id"])  # a release changes its state too
                await http.patch(
                    f"/v1/queues/{queue}/messages/{message['id']}",
                    json={"receipt": message["receipt"], "visibility_timeout": 0},
                )
            elif lease_for == LONG_LEASE:
                ledger.held[message["id"]] = (queue, message["receipt"])


async def _load_until_killed(
    url: str, pid: int, ledger: Ledger, seed: int, kill_after: float, signum: signal.Signals
) -> None:
    rng = random.Random(seed + 1)

    async def run(task: Any, *args: Any) -> None:
        with contextlib.suppress(httpx.TransportError, ValueError):  # ends when the server dies under it
            await task(*args)

    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http, trio.open_nursery() as nursery:
            for number in range(3):
                name = f"s{seed}-p{number}"
                nursery.start_soon(run, _producer, http, ledger, random.Random(rng.random()), name)
            for _ in range(3):
                nursery.start_soon(run, _consumer, http, ledger, random.Random(rng.random()))
            await trio.sleep(kill_after)
            os.kill(pid, signum)  # the workers' next requests fail (or are refused with 503), and they end


def _recovered(url: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=url, timeout=30) as http:
        for queue in QUEUES:
            after: str | None = None
            while True:
                params = {"limit": "1000", **({"after": after} if after else {})}
                reply = http.get(f"/v1/queues/{queue}/messages", params=params)
                if reply.status_code == 404:
                    break
                page = reply.json()
                for message in page["messages"]:
                    if message["id"] in found:
                        found[message["id"]]["twice"] = True
                    found[message["id"]] = {**message, "queue": queue}
                after = page["next_after"]
                if after is None:
                    break
    return found


def check(ledger: Ledger, found: dict[str, dict[str, Any]], url: str) -> list[str]:
    problems = []
    for message_id, body in ledger.confirmed.items():
        if message_id not in found and message_id not in ledger.ack_attempted:
            problems.append(f"lost: {message_id} ({body}) was confirmed with 201 and never acked")
    for message_id in ledger.acked:
        if message_id in found:
            problems.append(f"resurrected: {message_id} was acked with 204 and is back")
    bodies: dict[str, str] = {}
    for message_id, message in found.items():
        if message.get("twice"):
            problems.append(f"duplicate id: {message_id}")
        body = message["body"]
        if body not in ledger.attempted:
            problems.append(f"phantom: {message_id} has a body no one sent: {body!r}")
        elif body in bodies:
            problems.append(f"duplicate: {body!r} is stored as {bodies[body]} and {message_id}")
        bodies[body] = message_id
        if message_id in ledger.confirmed and ledger.confirmed[message_id] != body:
            problems.append(f"corrupt: {message_id} holds {body!r}, sent as {ledger.confirmed[message_id]!r}")
    with httpx.Client(base_url=url, timeout=30) as http:
        for message_id, (queue, receipt) in ledger.held.items():
            if message_id in ledger.ack_attempted:
                continue
            state = found.get(message_id, {}).get("state")
            if state != "leased":
                problems.append(f"lease lost: {message_id} was leased for {LONG_LEASE:g} s and is {state}")
                continue
            reply = http.delete(f"/v1/queues/{queue}/messages/{message_id}", params={"receipt": receipt})
            if reply.status_code != 204:
                problems.append(f"receipt lost: {message_id}'s receipt got {reply.status_code} after the restart")
    return problems


def integrity(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / DB_NAME) as db:
        return "; ".join(str(row[0]) for row in db.execute("PRAGMA integrity_check"))


def crash_round(data_dir: Path, seed: int, sync: str = "full", signum: signal.Signals = signal.SIGKILL) -> RoundResult:
    """Load, SIGKILL (or `signum`), check the file, restart, check the contents. `data_dir` may hold earlier
    rounds' data. After a SIGTERM the server must also have exited 0, within its graceful timeout."""
    rng = random.Random(seed)
    kill_after = rng.uniform(0.3, 2.0)
    ledger = Ledger()
    args = ("--data-dir", str(data_dir), "--sync", sync, "--tick-interval", "0.05")
    with server_process(*args) as server:
        trio.run(_load_until_killed, server.url, server.process.pid, ledger, seed, kill_after, signum)
        code = server.process.wait(timeout=15)
    problems = []
    if signum == signal.SIGTERM and code != 0:
        problems.append(f"the server exited {code} on SIGTERM with work in flight")
    checked = integrity(data_dir)
    if checked != "ok":
        problems.append(f"integrity check after the kill: {checked}")
    with server_process(*args) as server:
        found = _recovered(server.url)
        problems += check(ledger, found, server.url)
        # Leave an empty store for the next round: purge what is left, then stop cleanly.
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for queue in QUEUES:
                http.post(f"/v1/queues/{queue}/purge")
        code = server.stop(signal.SIGTERM)
        if code != 0:
            problems.append(f"the restarted server exited {code} on SIGTERM")
    return RoundResult(
        seed=seed,
        killed_after=kill_after,
        confirmed=len(ledger.confirmed),
        acked=len(ledger.acked),
        held=len(ledger.held),
        recovered=len(found),
        problems=problems,
    )
