#!/usr/bin/env python3
"""WonderQ's soak test (issue 12), run by `scripts/soak`: 64 concurrent clients (by default) sending, receiving,
acking and misbehaving against one server for `--duration` seconds (600 by default), then a drain, then the
verdicts: every confirmed message acked once or still stored, no two leases of a message at once, late acks
refused, every garbage request a 4xx, no 5xx, flat memory, the server alive. scripts/soak_checks.py says exactly
what each check demands; docs/soak.md how to run this and read its report.

This module owns the run: it starts the server (`wonderq serve` on 127.0.0.1, port 0, durable in a temporary data
directory, or `--memory`), or soaks a running one (`--url`, with `--pid` to watch its memory); creates the soak's
queues; starts the worker processes (scripts/soak_clients.py, the clients spread over them, many trio tasks
each); samples the server's resident memory (VmRSS from /proc/<pid>/status) and CPU every `--sample-interval`
seconds; after the drain reads what the queues still hold (peek), the server's own count of 5xx replies
(/metrics) and its log; stops the server (SIGTERM: it must exit 0) and judges. A human summary goes to stdout, the
whole report to `--report` (JSON). Exit status 0 only if every check passed. Usage:

    scripts/soak [--duration 600] [--clients 64] [--workers 4] [--memory] [--report soak.json]
    scripts/soak --mix producer=12,consumer=14,garbage=8 ...   # shares of the behaviours (weights)
    scripts/soak --url http://127.0.0.1:3000 --pid 1234 --token T  # a running server (auth on: a token that
                                                                   # may send, receive, admin and monitor)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from bench_brokers import Server, listening_url
from soak_checks import MEMORY_SLACK_MIB, MEMORY_TOLERANCE, Check, Failure, History, MemorySample, add_rows, judge
from soak_clients import KINDS, WorkerSpec, uid_of

from wonderq.client import Client, WonderQClientError

SCRIPTS = Path(__file__).resolve().parent
DEFAULT_MIX = {  # weights of the behaviours: with 64 clients, these are the counts
    "producer": 12,
    "consumer": 14,
    "late_acker": 4,
    "nacker": 4,
    "stream_consumer": 8,
    "dropper": 6,
    "garbage": 8,
    "staller": 4,
    "slow_reader": 4,
}
START_DELAY = 3.0  # seconds between starting the workers and the load (their imports, first connections)
WORKER_GRACE = 60.0  # seconds past the drain's end a worker gets to finish before it is stopped by its pid
PROGRESS_EVERY = 10.0  # seconds between progress lines on stderr
STATUS_LINE = re.compile(r"^wonderq_http_request_duration_seconds_count\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
STATUS_LABEL = re.compile(r'status="(\d+)"')
LOG_LEVEL = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) ")  # the text log: "date time LEVEL logger: message"
STARTED = time.monotonic()


def progress(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {text}", file=sys.stderr, flush=True)


# ---- the plan ----


def parse_mix(text: str | None) -> dict[str, float]:
    if not text:
        return dict(DEFAULT_MIX)
    mix = dict.fromkeys(KINDS, 0.0)
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in mix:
            raise argparse.ArgumentTypeError(f"unknown behaviour {kind!r}: one of {', '.join(KINDS)}")
        mix[kind.strip()] = float(weight)
    return mix


def plan_clients(clients: int, mix: dict[str, float]) -> list[str]:
    """The behaviour of each client, numbered: shares of `clients` by weight, by largest remainder."""
    total = sum(weight for weight in mix.values() if weight > 0)
    if total <= 0:
        raise ValueError("the mix gives no behaviour a weight")
    exact = {kind: clients * weight / total for kind, weight in mix.items() if weight > 0}
    counts = {kind: int(share) for kind, share in exact.items()}
    for kind in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: clients - sum(counts.values())]:
        counts[kind] += 1
    return [kind for kind in KINDS for _ in range(counts.get(kind, 0))]


# ---- the server ----


def start_server(args: argparse.Namespace, workdir: Path) -> tuple[Server, str]:
    """`wonderq serve` on 127.0.0.1, port 0, durable in `workdir/data` (or in memory); its log in workdir."""
    command = [sys.executable, "-m", "wonderq", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--memory"] if args.memory else ["--data-dir", str(workdir / "data")]
    command += ["--body-timeout", str(args.body_timeout), *args.server_arg]
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server("wonderq", process, log)
    return server, listening_url(server)


def resident_kib(pid: int) -> int | None:
    """VmRSS of `pid` in KiB; None once it is gone."""
    try:
        found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds `pid` has used; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_counts(http: httpx.Client) -> Counter[int] | None:
    """Requests the server has answered, by status, from /metrics; None if it could not be read."""
    try:
        reply = http.get("/metrics")
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    counts: Counter[int] = Counter()
    for line in reply.text.splitlines():
        found = STATUS_LINE.match(line)
        if found:
            status = STATUS_LABEL.search(found.group("labels"))
            if status:
                counts[int(status.group(1))] += int(float(found.group("value")))
    return counts


def log_errors(log: Path) -> list[str]:
    """The error-level records of the server's text log (each with the first line of its traceback)."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text(errors="replace").splitlines():
        level = LOG_LEVEL.match(line)
        # An error record, or a traceback printed outside the log (a crash): the log's own are indented.
        if (level and level.group("level") in ("ERROR", "CRITICAL")) or line.startswith("Traceback"):
            found.append(line[:400])
    return found


# ---- the run ----


@dataclass
class Run:
    """What the soak measured beside its clients' records."""

    url: str
    pid: int | None
    queues: list[str]
    start_at: float = 0.0  # epoch seconds
    stop_at: float = 0.0
    drain_until: float = 0.0
    drained_at: float | None = None  # epoch seconds when the last worker ended
    timeline: list[dict[str, Any]] = field(default_factory=list)  # one entry per sample
    memory: list[MemorySample] = field(default_factory=list)
    statuses_before: Counter[int] | None = None
    statuses_after: Counter[int] | None = None
    stored: dict[str, str] = field(default_factory=dict)
    stored_states: Counter[str] = field(default_factory=Counter)
    queue_stats: list[dict[str, Any]] = field(default_factory=list)
    alive: bool = False
    exit_code: int | None = None
    worker_exits: list[int | None] = field(default_factory=list)
    cpu_before: float | None = None
    cpu_after: float | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def create_queues(client: Client, queues: list[str], visibility_timeout: float) -> None:
    for queue in queues:
        client.create_queue(queue, visibility_timeout=visibility_timeout)
        client.purge(queue)


def sample(run: Run, client: Client) -> None:
    """One look at the server: memory, CPU, the soak's queues."""
    now = time.time()
    rss = resident_kib(run.pid) if run.pid else None
    entry: dict[str, Any] = {"t": round(now - run.start_at, 2), "rss_kib": rss}
    if run.pid:
        entry["cpu_s"] = cpu_seconds(run.pid)
    try:
        stats = [queue for queue in client.list_queues() if queue["name"] in run.queues]
    except WonderQClientError as error:
        entry["error"] = str(error)
    else:
        for name in ("ready", "leased", "delayed", "sent", "acked", "expired", "released"):
            entry[name] = sum(queue[name] for queue in stats)
        entry["queues"] = {queue["name"]: [queue["ready"], queue["leased"], queue["delayed"]] for queue in stats}
    run.timeline.append(entry)
    if rss is not None and run.start_at <= now <= run.stop_at:
        queued = sum(entry[name] for name in ("ready", "leased", "delayed")) if "ready" in entry else None
        run.memory.append(MemorySample(now - run.start_at, rss, queued))


def run_workers(args: argparse.Namespace, run: Run, workdir: Path) -> list[Path]:
    """Start the workers, sample while they run, stop any that overstay (by pid). Returns their events files."""
    kinds = plan_clients(args.clients, parse_mix(args.mix))
    run.start_at = time.time() + START_DELAY
    run.stop_at = run.start_at + args.duration
    run.drain_until = run.stop_at + args.drain_timeout
    processes: list[subprocess.Popen[bytes]] = []
    events = []
    logs = []
    for number in range(args.workers):
        spec = WorkerSpec(
            worker=number,
            url=run.url,
            token=args.token,
            queues=run.queues,
            clients=[(kind, index) for index, kind in enumerate(kinds) if index % args.workers == number],
            seed=args.seed + number,
            start_at=run.start_at,
            stop_at=run.stop_at,
            drain_until=run.drain_until,
            events=str(workdir / f"worker-{number}.events"),
            visibility_timeout=args.visibility_timeout,
            late_visibility_timeout=args.late_visibility_timeout,
            max_backlog=args.max_backlog,
            body_timeout=args.body_timeout,
        )
        spec_path = workdir / f"worker-{number}.json"
        spec.dump(spec_path)
        events.append(Path(spec.events))
        log = workdir / f"worker-{number}.log"
        logs.append(log)
        with log.open("wb") as out:
            command = [sys.executable, str(SCRIPTS / "soak_clients.py"), str(spec_path)]
            processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    counts = Counter(kinds)
    progress(
        f"{args.clients} clients in {args.workers} workers ({', '.join(f'{k} {n}' for k, n in counts.items())});"
        f" load for {args.duration:g} s, then a drain of at most {args.drain_timeout:g} s"
    )
    try:
        with Client(run.url, token=args.token, timeout=30) as client:
            next_sample = run.start_at
            next_progress = run.start_at + PROGRESS_EVERY
            while any(process.poll() is None for process in processes):
                now = time.time()
                if now >= next_sample:
                    sample(run, client)
                    next_sample += args.sample_interval
                if now >= next_progress:
                    next_progress += PROGRESS_EVERY
                    report_progress(run, now)
                if now > run.drain_until + WORKER_GRACE:
                    progress("workers overstayed the drain: stopping them")
                    break
                time.sleep(0.1)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
    run.drained_at = time.time()
    run.worker_exits = [process.returncode for process in processes]
    for number, (code, log) in enumerate(zip(run.worker_exits, logs, strict=True)):
        if code != 0:
            progress(f"worker {number} exited {code}; its log ends with:\n{log.read_text(errors='replace')[-3000:]}")
    return events


def report_progress(run: Run, now: float) -> None:
    last = run.timeline[-1] if run.timeline else {}
    phase = "load" if now < run.stop_at else "drain"
    rss = last.get("rss_kib")
    memory = f"rss {rss / 1024:.1f} MiB, " if rss else ""
    progress(
        f"{phase} {now - run.start_at:6.0f} s: {memory}queues {last.get('ready', '?')} ready,"
        f" {last.get('leased', '?')} leased, {last.get('delayed', '?')} delayed; sent {last.get('sent', '?')},"
        f" acked {last.get('acked', '?')}, expired {last.get('expired', '?')}, released {last.get('released', '?')}"
    )


def read_stored(client: Client, run: Run) -> None:
    """What the soak's queues hold at the end: id -> uid, and how many in each state."""
    for queue in run.queues:
        after: str | None = None
        while True:
            page = client.peek(queue, limit=1000, after=after)
            for message in page.messages:
                run.stored[message.id] = uid_of(message.body)
                run.stored_states[message.state] += 1
            after = page.next_after
            if after is None:
                break
    run.queue_stats = [queue for queue in client.list_queues() if queue["name"] in run.queues]


def finish(args: argparse.Namespace, run: Run, server: Server | None) -> None:
    """After the workers: what is stored, the server's counts, whether it lives; then stop it (if ours)."""
    with (
        Client(run.url, token=args.token, timeout=60) as client,
        httpx.Client(
            base_url=run.url, timeout=60, headers={"authorization": f"Bearer {args.token}"} if args.token else {}
        ) as http,
    ):
        try:
            read_stored(client, run)
        except WonderQClientError as error:
            progress(f"could not read what the queues hold: {error}")
        run.statuses_after = status_counts(http)
        process_alive = server is None or server.process.poll() is None
        try:
            healthy = http.get("/health").status_code == 200
        except httpx.HTTPError:
            healthy = False
        run.alive = process_alive and healthy
        if run.pid:
            run.cpu_after = cpu_seconds(run.pid)
        if args.url:  # a server that is not ours: leave it as it was
            for queue in run.queues:
                try:
                    client.delete_queue(queue)
                except WonderQClientError as error:
                    progress(f"could not delete {queue}: {error}")
    run.load_after = os.getloadavg()
    if server is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            run.exit_code = server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.stop()
            run.exit_code = server.process.returncode
    elif server is not None:
        run.exit_code = server.process.returncode


def history_of(
    args: argparse.Namespace, run: Run, events: list[Path], log: Path | None
) -> tuple[History, Counter[str]]:
    history = History(duration=args.duration)
    counters: Counter[str] = Counter()
    for path in events:
        if path.exists():
            with path.open("rb") as rows:
                add_rows(history, (orjson.loads(line) for line in rows if line.strip()), counters)
    history.stored = run.stored
    if run.statuses_before is not None and run.statuses_after is not None:
        history.server_5xx = sum(
            count - run.statuses_before.get(status, 0) for status, count in run.statuses_after.items() if status >= 500
        )
    history.server_errors = log_errors(log) if log else []
    history.log_read = log is not None
    history.memory = run.memory
    history.memory_measured = run.pid is not None
    history.alive = run.alive
    history.exit_code = run.exit_code
    for number, code in enumerate(run.worker_exits):
        if code != 0:
            history.failures.append(Failure(f"worker {number}", "exit", None, f"exit status {code}"))
    return history, counters


# ---- the report ----


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(SCRIPTS), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(
    args: argparse.Namespace, run: Run, history: History, counters: Counter[str], checks: list[Check]
) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    if run.statuses_before is not None and run.statuses_after is not None:
        for status, count in sorted(run.statuses_after.items()):
            delta = count - run.statuses_before.get(status, 0)
            if delta:
                statuses[str(status)] = delta
    load_seconds = run.stop_at - run.start_at
    cpu = None
    if run.cpu_before is not None and run.cpu_after is not None and run.drained_at:
        cpu = (run.cpu_after - run.cpu_before) / max(1e-9, run.drained_at - run.start_at)
    return {
        "passed": all(check.passed for check in checks),
        "checks": [check.as_json() for check in checks],
        "config": {
            "duration_s": args.duration,
            "clients": args.clients,
            "workers": args.workers,
            "mix": dict(sorted(Counter(plan_clients(args.clients, parse_mix(args.mix))).items())),
            "server": args.url or ("memory" if args.memory else "durable (temporary data directory, sync=full)"),
            "server_args": args.server_arg,
            "queues": run.queues,
            "visibility_timeout_s": args.visibility_timeout,
            "late_visibility_timeout_s": args.late_visibility_timeout,
            "max_backlog": args.max_backlog,
            "body_timeout_s": args.body_timeout,
            "sample_interval_s": args.sample_interval,
            "memory_tolerance": args.memory_tolerance,
            "memory_slack_mib": args.memory_slack_mib,
            "seed": args.seed,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": run.load_before,
            "load_average_after": run.load_after,
            "commit": git_commit(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(run.start_at)),
        },
        "totals": {
            "load_seconds": load_seconds,
            "drain_seconds": round((run.drained_at or run.stop_at) - run.stop_at, 1),
            "attempted_sends": len(history.attempted),
            "confirmed": len(history.confirmed),
            "confirmed_per_second": round(len(history.confirmed) / max(1e-9, load_seconds), 1),
            "deliveries": len(history.deliveries),
            "settles": dict(Counter(f"{s.kind} {s.outcome}" for s in history.settles)),
            "stored_at_end": len(run.stored),
            "stored_states": dict(run.stored_states),
            "rate_limited": history.rate_limited,
            "server_statuses": statuses,
            "server_cpu_share": None if cpu is None else round(cpu, 3),
            "counters": dict(sorted(counters.items())),
            "probes_by_case": probes_by_case(history),
        },
        "queues_at_end": run.queue_stats,
        "timeline": run.timeline,
    }


def probes_by_case(history: History) -> dict[str, dict[str, int]]:
    found: dict[str, Counter[str]] = {}
    for probe in history.probes:
        found.setdefault(probe.case, Counter())["none" if probe.status is None else str(probe.status)] += probe.count
    return {case: dict(sorted(statuses.items())) for case, statuses in sorted(found.items())}


def summary(document: dict[str, Any]) -> str:
    totals, config = document["totals"], document["config"]
    lines = [
        "",
        f"WonderQ soak: {config['clients']} clients in {config['workers']} workers for {config['duration_s']:g} s"
        f" against {config['server']} (commit {document['machine']['commit']})",
        f"  load average {document['machine']['load_average_before'][0]:.2f} before,"
        f" {document['machine']['load_average_after'][0]:.2f} after, on {document['machine']['cpus']} CPUs",
        f"  {totals['confirmed']:,} messages confirmed ({totals['confirmed_per_second']:,.1f}/s),"
        f" {totals['deliveries']:,} deliveries seen, {totals['stored_at_end']:,} stored at the end"
        f" (drain {totals['drain_seconds']} s)",
        "  settles: " + ", ".join(f"{name} {count:,}" for name, count in sorted(totals["settles"].items())),
        "  server replies: " + ", ".join(f"{status} {count:,}" for status, count in totals["server_statuses"].items()),
    ]
    if totals["server_cpu_share"] is not None:
        lines.append(f"  server CPU: {totals['server_cpu_share'] * 100:.0f}% of a core on average")
    lines.append("")
    for check in document["checks"]:
        lines.append(f"  {'PASS' if check['passed'] else 'FAIL'} {check['name']}: {check['summary']}")
        lines += [f"       - {example}" for example in check["examples"]]
    lines.append("")
    lines.append("PASSED" if document["passed"] else "FAILED")
    return "\n".join(lines)


# ---- main ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes the clients are spread over")
    parser.add_argument("--mix", help=f"behaviour weights, e.g. producer=12,garbage=8 (default {DEFAULT_MIX})")
    parser.add_argument("--memory", action="store_true", help="start the server with --memory (default: durable)")
    parser.add_argument("--url", help="soak this running server instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, to watch its memory")
    parser.add_argument("--token", default=os.environ.get("WONDERQ_TOKEN"), help="bearer token [env WONDERQ_TOKEN]")
    parser.add_argument("--queues", type=int, default=4, help="queues the clients share (default 4)")
    parser.add_argument("--visibility-timeout", type=float, default=5.0, help="seconds; the consumers' leases")
    parser.add_argument("--late-visibility-timeout", type=float, default=1.0, help="seconds; the late ackers'")
    parser.add_argument("--max-backlog", type=int, default=2000, help="queued messages above which producers wait")
    parser.add_argument("--body-timeout", type=float, default=30.0, help="the server's BODY_TIMEOUT, seconds")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="seconds the drain may take at most")
    parser.add_argument("--sample-interval", type=float, default=2.0, help="seconds between memory samples")
    parser.add_argument("--memory-tolerance", type=float, default=MEMORY_TOLERANCE, help="growth allowed, fraction")
    parser.add_argument("--memory-slack-mib", type=float, default=MEMORY_SLACK_MIB, help="growth allowed anyway, MiB")
    parser.add_argument("--server-arg", action="append", default=[], help="an extra `wonderq serve` argument")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", type=Path, help="write the whole report here (JSON)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, events, data)")
    args = parser.parse_args(argv)
    if args.pid and not args.url:
        parser.error("--pid goes with --url (a server the soak starts is watched anyway)")
    if args.duration <= 0 or args.clients < 1 or args.workers < 1:
        parser.error("--duration, --clients and --workers must be positive")
    args.workers = min(args.workers, args.clients)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="wonderq-soak-"))
    server: Server | None = None
    try:
        if args.url:
            url, pid = args.url.rstrip("/"), args.pid
            prefix = f"soak-{os.getpid()}-"
        else:
            server, url = start_server(args, workdir)
            pid, prefix = server.pid, "soak-"
            progress(f"server pid {pid} at {url} ({'memory' if args.memory else 'durable'}), work directory {workdir}")
        run = Run(url=url, pid=pid, queues=[f"{prefix}{number}" for number in range(args.queues)])
        run.load_before = os.getloadavg()
        with (
            Client(url, token=args.token, timeout=30) as client,
            httpx.Client(
                base_url=url, timeout=30, headers={"authorization": f"Bearer {args.token}"} if args.token else {}
            ) as http,
        ):
            create_queues(client, run.queues, args.visibility_timeout)
            run.statuses_before = status_counts(http)
        run.cpu_before = cpu_seconds(pid) if pid else None
        events = run_workers(args, run, workdir)
        progress("load and drain over: reading what the queues hold, the server's counts and its log")
        finish(args, run, server)
        history, counters = history_of(args, run, events, server.log if server else None)
        checks = judge(history, args.memory_tolerance, args.memory_slack_mib)
        document = report(args, run, history, counters, checks)
        print(summary(document))
        if args.report:
            args.report.write_text(json.dumps(document, indent=1, default=str) + "\n")
            print(f"report: {args.report}")
        return 0 if document["passed"] else 1
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
