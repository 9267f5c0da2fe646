"""Kill test: SIGKILL a real Home Assistant again and again, count runs' events.

    scripts/kill_test [--kills 30] [--seed 1] [--transition-seconds 2]

Not part of the suite (issue 14). Runs with `.venv-ha`'s Python (Home
Assistant 2026.11.0, as `scripts/develop`); `scripts/kill_test` is the wrapper.

1. Provisioning: `scripts/develop --configured` in a fresh config directory
   on free ports (owner user, onboarding, the config entry for the simulator,
   a long-lived token), with a lean configuration.yaml (no recorder); then
   stopped cleanly.
2. The simulator (`python -m dispatch_sim`, empty seed) on that port for the
   whole test. Once Home Assistant is first up, one-shot dispatches are
   created through its gRPC API (the upstream client) `--lead-seconds` ahead
   of their start: one starts every `--transition-seconds`, each running
   `--run-seconds`, until the last restart.
3. `hass` is started, and once it has started (`homeassistant_started` seen
   by the listener) it is killed with SIGKILL after a random 5-20 s
   (`--min-uptime`, `--max-uptime`), then started again: `--kills` times.
   The delays come from `random.Random(--seed)`.
4. A last clean run lasts until every dispatch has ended (plus
   `--final-seconds`); Home Assistant is then stopped with SIGTERM.

A websocket client outlives the kills: it reconnects to each new `hass` as
soon as its HTTP server answers (early in the bootstrap), authenticates with
the long-lived token, subscribes to `frequenz_dispatch_started`,
`frequenz_dispatch_stopped` and `homeassistant_started`, and records every
event. The integration holds its events until Home Assistant has started, so
a client that saw `homeassistant_started` missed nothing of that process;
a process whose start it did not see is reported (its figures are not
reliable). An event fired in the last milliseconds before a kill may still
be in Home Assistant's send buffer and never arrive.

A run is keyed by the event's `run_id` when present, else by
(`dispatch_id`, `window_start`). A downtime lasts from a kill to the next
`homeassistant_started` (events found at load are sent then); a run lying
entirely in one gets no events, as documented. Exit code: 0 when every run
outside the downtimes got exactly one `started` and one `stopped` and every
start was observed, 1 otherwise, 2 when the harness itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
import contextlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
import itertools
import json
import math
import os
from pathlib import Path
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp
from frequenz.client.common.microgrid import MicrogridId
from frequenz.client.dispatch import DispatchApiClient
from frequenz.client.dispatch.types import TargetIds

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-ha"
API_KEY = "kill-test-key"
MICROGRID_ID = 1
DISPATCH_TYPE = "KILL_TEST"
EVENT_STARTED = "frequenz_dispatch_started"
EVENT_STOPPED = "frequenz_dispatch_stopped"
EVENT_HA_STARTED = "homeassistant_started"
START_TIMEOUT_S = 180.0
"""How long one `hass` may take from spawn to `homeassistant_started`."""

CONFIGURATION_YAML = """\
# Kill test (scripts/kill_test.py): no recorder, nothing but what is needed.
homeassistant:
  name: Kill test
  unit_system: metric
  time_zone: UTC
  country: DE
  currency: EUR
  language: en
frontend:
config:
logger:
  default: warning
  logs:
    custom_components.frequenz_dispatch: info
"""


class HarnessError(RuntimeError):
    """The test could not run (not a finding about the integration)."""


# -- what is recorded ------------------------------------------------------------


@dataclass
class Session:
    """One `hass` process, from spawn to its kill (or final stop)."""

    index: int
    spawned: float
    up: float | None = None
    """When it had started (`homeassistant_started`'s time_fired)."""
    start_seen: bool = False
    """The listener was subscribed before Home Assistant had started."""
    connections: int = 0
    killed: float | None = None
    up_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass(frozen=True)
class Event:
    """One `started` or `stopped` event as received."""

    session: int
    kind: str
    """"started" or "stopped"."""
    dispatch_id: int
    key: str
    fired: float
    data: dict[str, Any]


@dataclass(frozen=True)
class Run:
    """The one run of a one-shot dispatch, as the simulator created it."""

    dispatch_id: int
    start: float
    end: float


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_key(data: dict[str, Any]) -> str:
    """Key of the run an event belongs to: `run_id`, else id and window start."""
    if data.get("run_id") is not None:
        return f"run_id={data['run_id']}"
    return f"{data.get('dispatch_id')}@{data.get('window_start')}"


# -- the websocket client ---------------------------------------------------------


class Listener:
    """Records the events of every `hass` process; reconnects after each kill."""

    def __init__(self, url: str, token: str, sessions: list[Session]) -> None:
        self._url = url
        self._token = token
        self._sessions = sessions
        self.events: list[Event] = []

    async def run(self) -> None:
        """Connect, listen until the connection drops, connect again; forever."""
        async with aiohttp.ClientSession() as http:
            while True:
                session = self._sessions[-1] if self._sessions else None
                if session is None:
                    await asyncio.sleep(0.1)
                    continue
                with contextlib.suppress(
                    aiohttp.ClientError, OSError, TimeoutError, ValueError
                ):
                    await self._listen(http, session)
                await asyncio.sleep(0.1)

    async def _listen(self, http: aiohttp.ClientSession, session: Session) -> None:
        async with http.ws_connect(self._url, autoping=True) as ws:
            await ws.receive_json(timeout=10)  # auth_required
            await ws.send_json({"type": "auth", "access_token": self._token})
            reply = await ws.receive_json(timeout=10)
            if reply.get("type") != "auth_ok":
                raise HarnessError(f"websocket authentication failed: {reply}")
            if self._sessions[-1] is not session:
                return  # a new `hass` came up meanwhile: connect to it afresh
            session.connections += 1
            types = (EVENT_STARTED, EVENT_STOPPED, EVENT_HA_STARTED)
            for msg_id, event_type in enumerate(types, start=1):
                await ws.send_json(
                    {"id": msg_id, "type": "subscribe_events", "event_type": event_type}
                )
            # Handled in order after the subscriptions: if HA is running here
            # and its `homeassistant_started` did not arrive before this
            # answer, the client subscribed too late to see held events.
            config_id = len(types) + 1
            await ws.send_json({"id": config_id, "type": "get_config"})
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                payload = msg.json()
                for item in payload if isinstance(payload, list) else [payload]:
                    self._handle(session, item, config_id)

    def _handle(self, session: Session, msg: dict[str, Any], config_id: int) -> None:
        if msg.get("type") == "result":
            if not msg.get("success"):
                raise HarnessError(f"websocket command failed: {msg}")
            if (
                msg.get("id") == config_id
                and not session.up_event.is_set()
                and msg["result"].get("state") == "RUNNING"
            ):
                session.up = time.time()  # started before we subscribed
                session.up_event.set()
            return
        if msg.get("type") != "event":
            return
        event = msg["event"]
        fired = _timestamp(event["time_fired"])
        if event["event_type"] == EVENT_HA_STARTED:
            session.up = fired
            session.start_seen = True
            session.up_event.set()
            return
        data = event["data"]
        self.events.append(
            Event(
                session=session.index,
                kind=event["event_type"].removeprefix("frequenz_dispatch_"),
                dispatch_id=int(data.get("dispatch_id", -1)),
                key=run_key(data),
                fired=fired,
                data=data,
            )
        )


# -- the dispatches ----------------------------------------------------------------


class Creator:
    """Creates one-shot dispatches through the simulator's gRPC API."""

    def __init__(
        self,
        server_url: str,
        every: float,
        lengths: tuple[int, int],
        lead: float,
        rng: random.Random,
    ) -> None:
        self._server_url = server_url
        self._every = every
        self._lengths = lengths
        self._lead = lead
        self._rng = rng
        self._stop = asyncio.Event()
        self.runs: list[Run] = []

    def stop(self) -> None:
        """Create no more dispatches."""
        self._stop.set()

    async def run(self, first_start: float) -> None:
        """Create dispatch k `lead` seconds before `first_start + k * every`.

        Each runs a random whole number of seconds within `lengths`.
        """
        async with DispatchApiClient(
            server_url=self._server_url, auth_key=API_KEY
        ) as client:
            for index in range(sys.maxsize):
                start = first_start + index * self._every
                with contextlib.suppress(TimeoutError):
                    delay = start - self._lead - time.time()
                    await asyncio.wait_for(self._stop.wait(), max(delay, 0))
                if self._stop.is_set():
                    return
                seconds = self._rng.randint(*self._lengths)
                dispatch = await client.create(
                    MicrogridId(MICROGRID_ID),
                    DISPATCH_TYPE,
                    datetime.fromtimestamp(start, UTC),
                    timedelta(seconds=seconds),
                    TargetIds(1),
                    payload={"index": index},
                )
                begin = dispatch.start_time
                length = dispatch.duration or timedelta(seconds=seconds)
                self.runs.append(
                    Run(
                        int(dispatch.id),
                        begin.timestamp(),
                        (begin + length).timestamp(),
                    )
                )


# -- processes -----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def stop_process(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` s; wait for the exit."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def read_log(log: Path) -> str:
    """A small log file's text (read on the loop: a test harness)."""
    return log.read_text(errors="replace")


async def wait_for_line(
    proc: asyncio.subprocess.Process, log: Path, text: str, limit: float
) -> None:
    """Wait until `log` holds `text`; fail if `proc` exits first."""
    deadline = time.monotonic() + limit
    while text not in read_log(log):
        if proc.returncode is not None or time.monotonic() > deadline:
            tail = read_log(log)[-3000:]
            raise HarnessError(f"{proc.pid} exited or timed out; {log}:\n{tail}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.5)


def write_config(work: Path, config: Path) -> Path:
    """The lean configuration.yaml and an empty seed; return the seed's path."""
    config.mkdir(parents=True)
    (config / "configuration.yaml").write_text(CONFIGURATION_YAML)
    seed = work / "empty-seed.json"
    seed.write_text("[]\n")
    return seed


async def provision(work: Path, config: Path, ha_port: int, sim_port: int) -> str:
    """Onboard HA and add the config entry with `scripts/develop --configured`.

    Returns:
        The long-lived access token it made.

    """
    seed = write_config(work, config)
    log = work / "develop.log"
    env = {
        **os.environ,
        "HA_CONFIG": str(config),
        "HA_HOST": "127.0.0.1",
        "HA_PORT": str(ha_port),
        "DISPATCH_SIM_PORT": str(sim_port),
        "DISPATCH_SIM_SEED": str(seed),
        "DISPATCH_API_KEY": API_KEY,
        "MICROGRID_ID": str(MICROGRID_ID),
    }
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(ROOT / "scripts" / "develop"),
            "--configured",
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await wait_for_line(proc, log, "(ready;", 600)
        finally:
            await stop_process(proc, 60)  # its trap stops HA and the simulator
    return (config / ".dev-token").read_text().strip()


async def start_simulator(work: Path, port: int) -> asyncio.subprocess.Process:
    """The simulator for the whole test (the config entry's URL)."""
    log = work / "dispatch-sim.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(VENV / "bin" / "python"),
            "-m",
            "dispatch_sim",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
            "--microgrid-id",
            str(MICROGRID_ID),
            "--log-level",
            "WARNING",
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    await wait_for_line(proc, log, "dispatch-sim listening on", 60)
    return proc


class Hass:
    """Starts and kills `hass` processes, one `Session` each."""

    def __init__(self, config: Path, log: Path, sessions: list[Session]) -> None:
        self._config = config
        self._log = log
        self._sessions = sessions
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Session:
        """Spawn `hass` and wait until it has started."""
        session = Session(index=len(self._sessions), spawned=time.time())
        self._sessions.append(session)
        with self._log.open("ab") as out:
            out.write(f"\n===== kill test: session {session.index} =====\n".encode())
            out.flush()
            self.proc = proc = await asyncio.create_subprocess_exec(
                str(VENV / "bin" / "hass"),
                "--config",
                str(self._config),
                "--skip-pip",
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        up = asyncio.ensure_future(session.up_event.wait())
        exited = asyncio.ensure_future(proc.wait())
        await asyncio.wait(
            {up, exited}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        up.cancel()
        exited.cancel()
        if not session.up_event.is_set():
            raise HarnessError(
                f"hass (session {session.index}) did not start (see {self._log})"
            )
        return session

    async def kill(self) -> None:
        """SIGKILL the running `hass`."""
        assert self.proc is not None
        self._sessions[-1].killed = time.time()
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        """Stop the running `hass` cleanly (SIGTERM)."""
        if self.proc is not None and self.proc.returncode is None:
            self._sessions[-1].killed = time.time()
            await stop_process(self.proc, 90)


# -- the test ------------------------------------------------------------------------


async def sleep_until(wall: float) -> None:
    """Sleep until the wall clock reads `wall`."""
    await asyncio.sleep(max(wall - time.time(), 0))


async def run_test(
    opts: argparse.Namespace, work: Path
) -> tuple[list[Session], list[Run], list[Event]]:
    """Provision, then kill and restart HA `--kills` times; return what happened."""
    config = work / "config"
    ha_port, sim_port = free_port(), free_port()
    say(f"provisioning Home Assistant in {config} (scripts/develop --configured)")
    token = await provision(work, config, ha_port, sim_port)
    rng = random.Random(f"kills {opts.seed}")
    sessions: list[Session] = []
    listener = Listener(f"ws://127.0.0.1:{ha_port}/api/websocket", token, sessions)
    creator = Creator(
        f"grpc://127.0.0.1:{sim_port}?ssl=false",
        opts.transition_seconds,
        (opts.run_seconds, opts.max_run_seconds),
        opts.lead_seconds,
        random.Random(f"runs {opts.seed}"),
    )
    hass = Hass(config, work / "hass.log", sessions)
    sim = await start_simulator(work, sim_port)
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(listener.run())]
    try:
        session = await hass.start()
        say(
            f"Home Assistant up in {session_startup(session):.1f} s; "
            "creating dispatches"
        )
        tasks.append(asyncio.create_task(creator.run(math.ceil(session.up or 0) + 5)))
        for kill in range(1, opts.kills + 1):
            uptime = rng.uniform(opts.min_uptime, opts.max_uptime)
            await sleep_until((session.up or 0) + uptime)
            await hass.kill()
            session = await hass.start()
            say(
                f"kill {kill}/{opts.kills} after {uptime:.1f} s up; "
                f"restarted in {session_startup(session):.1f} s; "
                f"{len(listener.events)} events so far"
            )
            check_tasks(tasks)
        creator.stop()
        await tasks.pop()
        last_end = max((run.end for run in creator.runs), default=time.time())
        say(f"last clean run: until every dispatch has ended (+{opts.final_seconds} s)")
        await sleep_until(max(last_end, session.up or 0) + opts.final_seconds)
        check_tasks(tasks)
        await hass.stop()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await hass.stop()
        await stop_process(sim, 10)
    return sessions, creator.runs, listener.events


def check_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Raise what a background task raised."""
    for task in tasks:
        if task.done():
            task.result()
            raise HarnessError("a background task ended")


def session_startup(session: Session) -> float:
    """Seconds from spawn to started."""
    return (session.up or session.spawned) - session.spawned


def say(message: str) -> None:
    """One progress line."""
    print(f"kill-test [{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the figures -----------------------------------------------------------------------


@dataclass
class Figures:
    """What the analysis found."""

    runs: int = 0
    keys: int = 0
    complete: int = 0
    started_no_stopped: list[int] = field(default_factory=list)
    stopped_no_started: list[int] = field(default_factory=list)
    dup_started: list[int] = field(default_factory=list)
    dup_stopped: list[int] = field(default_factory=list)
    extra_started: int = 0
    extra_stopped: int = 0
    in_downtime: list[int] = field(default_factory=list)
    in_downtime_with_events: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    split: list[int] = field(default_factory=list)
    unknown_events: int = 0
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    """Per dispatch: how many `started` and `stopped` it got."""

    @property
    def clean(self) -> bool:
        """Whether every run outside the downtimes was reported exactly once."""
        return not (
            self.started_no_stopped
            or self.stopped_no_started
            or self.dup_started
            or self.dup_stopped
            or self.missed
            or self.split
            or self.unknown_events
        )


def downtimes(sessions: list[Session]) -> list[tuple[float, float]]:
    """From each kill to the next start (`homeassistant_started`)."""
    return [
        (before.killed or 0, after.up or 0)
        for before, after in itertools.pairwise(sessions)
    ]


def analyse(runs: list[Run], events: list[Event], sessions: list[Session]) -> Figures:
    """Count the runs' events."""
    figures = Figures(runs=len(runs))
    gaps = downtimes(sessions)
    by_dispatch: dict[int, dict[str, dict[str, int]]] = defaultdict(dict)
    for event in events:
        counts = by_dispatch[event.dispatch_id].setdefault(
            event.key, {"started": 0, "stopped": 0}
        )
        counts[event.kind] += 1
    known = {run.dispatch_id for run in runs}
    figures.unknown_events = sum(
        sum(c.values())
        for d, keys in by_dispatch.items()
        if d not in known
        for c in keys.values()
    )
    for run in runs:
        keys = by_dispatch.get(run.dispatch_id, {})
        figures.keys += len(keys)
        figures.counts[run.dispatch_id] = {
            kind: sum(counts[kind] for counts in keys.values())
            for kind in ("started", "stopped")
        }
        lies_in_downtime = any(a <= run.start and run.end <= b for a, b in gaps)
        if lies_in_downtime:
            figures.in_downtime.append(run.dispatch_id)
            if keys:
                figures.in_downtime_with_events.append(run.dispatch_id)
        elif not keys:
            figures.missed.append(run.dispatch_id)
        if len(keys) > 1:
            figures.split.append(run.dispatch_id)
        for counts in keys.values():
            started, stopped = counts["started"], counts["stopped"]
            if started == 1 and stopped == 1:
                figures.complete += 1
            if started and not stopped:
                figures.started_no_stopped.append(run.dispatch_id)
            if stopped and not started:
                figures.stopped_no_started.append(run.dispatch_id)
            if started > 1:
                figures.dup_started.append(run.dispatch_id)
                figures.extra_started += started - 1
            if stopped > 1:
                figures.dup_stopped.append(run.dispatch_id)
                figures.extra_stopped += stopped - 1
    return figures


def kill_of(run: Run, sessions: list[Session]) -> int | None:
    """The first kill at or after the run's start (the one its defect follows)."""
    for session in sessions[:-1]:
        if session.killed is not None and session.killed >= run.start:
            return session.index + 1
    return None


def listed(values: list[int]) -> str:
    """A count and, when not 0, the first dispatch ids."""
    if not values:
        return "0"
    more = ", ..." if len(values) > 12 else ""
    return f"{len(values)} (dispatches {', '.join(map(str, values[:12]))}{more})"


def report(
    opts: argparse.Namespace,
    sessions: list[Session],
    runs: list[Run],
    events: list[Event],
    elapsed: float,
) -> Figures:
    """Print the figures; return them."""
    figures = analyse(runs, events, sessions)
    startups = [session_startup(s) for s in sessions]
    late = [s.index for s in sessions if not s.start_seen]
    reconnected = [s.index for s in sessions if s.connections > 1]
    keyed = (
        "run_id"
        if any("run_id" in event.data for event in events)
        else "(dispatch_id, window_start)"
    )
    rows = [
        ("total time", f"{elapsed / 60:.1f} min"),
        (
            "HA start (spawn to started)",
            f"median {statistics.median(startups):.1f} s, max {max(startups):.1f} s",
        ),
        ("HA starts the listener missed (sessions)", listed(late)),
        ("websocket reconnects within a session", listed(reconnected)),
        ("started/stopped events received", f"{len(events)}"),
        ("runs (one-shot dispatches)", f"{figures.runs}"),
        (f"run keys seen, by {keyed}", f"{figures.keys}"),
        ("runs with one started and one stopped", f"{figures.complete}"),
        ("runs with started but no stopped", listed(figures.started_no_stopped)),
        ("runs with stopped but no started", listed(figures.stopped_no_started)),
        (
            "runs with duplicated started",
            f"{listed(figures.dup_started)}, {figures.extra_started} extra",
        ),
        (
            "runs with duplicated stopped",
            f"{listed(figures.dup_stopped)}, {figures.extra_stopped} extra",
        ),
        (
            "runs lying entirely in a downtime",
            f"{len(figures.in_downtime)} (none expected, or one pair when the"
            f" restarted entry saw it during HA's boot; "
            f"{len(figures.in_downtime_with_events)} got events)",
        ),
        ("runs without events outside downtimes", listed(figures.missed)),
        ("runs split into several run keys", listed(figures.split)),
        ("events of unknown dispatches", f"{figures.unknown_events}"),
    ]
    print(
        f"\nKill test: {opts.kills} kills (seed {opts.seed}), a dispatch starting "
        f"every {opts.transition_seconds:g} s and running "
        f"{opts.run_seconds}-{opts.max_run_seconds} s, "
        f"{opts.min_uptime:g}-{opts.max_uptime:g} s up before each kill"
    )
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print_per_kill(sessions, runs, events, figures)
    return figures


def print_per_kill(
    sessions: list[Session], runs: list[Run], events: list[Event], figures: Figures
) -> None:
    """One line per kill: uptime, events before it, defects that follow it."""
    run_of = {run.dispatch_id: run for run in runs}
    found: dict[int | None, list[str]] = defaultdict(list)
    kinds = (
        ("started, no stopped", figures.started_no_stopped, "start"),
        ("stopped, no started", figures.stopped_no_started, "start"),
        ("started {started} times", figures.dup_started, "start"),
        ("stopped {stopped} times", figures.dup_stopped, "end"),
        ("no event", figures.missed, "start"),
    )
    for pattern, dispatch_ids, edge in kinds:
        for dispatch_id in dispatch_ids:
            run = run_of[dispatch_id]
            label = pattern.format(**figures.counts[dispatch_id])
            kill = kill_of(run, sessions)
            if kill is None:
                found[None].append(f"{dispatch_id} {label}")
                continue
            killed = sessions[kill - 1].killed or 0
            at = run.start if edge == "start" else run.end
            found[kill].append(
                f"{dispatch_id} {label} (kill {killed - at:+.1f} s after its {edge})"
            )
    per_session: dict[int, int] = defaultdict(int)
    for event in events:
        per_session[event.session] += 1
    print("\n  kill  up (s)  events  defects of the runs around it (dispatch: what)")
    for session in sessions:
        up = (session.killed or 0) - (session.up or 0)
        name = "last" if session is sessions[-1] else f"{session.index + 1:4d}"
        key = None if session is sessions[-1] else session.index + 1
        defects = "; ".join(found.get(key, [])) or "-"
        print(f"  {name}  {up:6.1f}  {per_session[session.index]:6d}  {defects}")
    kills = len(sessions) - 1
    if kills:
        in_kills = sum(per_session[s.index] for s in sessions[:-1])
        print(f"  events per kill (sessions ended by a kill): {in_kills / kills:.1f}")


def save_json(
    path: Path,
    opts: argparse.Namespace,
    sessions: list[Session],
    runs: list[Run],
    events: list[Event],
) -> None:
    """Everything recorded, for a closer look."""
    data = {
        "options": vars(opts),
        "sessions": [
            {k: v for k, v in asdict(s).items() if k != "up_event"} for s in sessions
        ],
        "runs": [asdict(run) for run in runs],
        "events": [asdict(event) for event in events],
    }
    path.write_text(json.dumps(data, indent=1, default=str))


# -- command line ----------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options."""
    parser = argparse.ArgumentParser(
        prog="scripts/kill_test",
        description="SIGKILL a real Home Assistant again and again; "
        "count started/stopped per run.",
    )
    parser.add_argument("--kills", type=int, default=30, help="number of SIGKILLs (30)")
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the kill delays and run lengths (1)",
    )
    parser.add_argument(
        "--transition-seconds",
        type=float,
        default=2.0,
        help="a dispatch starts every this many seconds (2; the API rounds "
        "times to whole seconds)",
    )
    parser.add_argument(
        "--run-seconds",
        type=int,
        help="each dispatch runs a random whole number of seconds, at least this "
        "(default: 1.5 x --transition-seconds: 3) ...",
    )
    parser.add_argument(
        "--max-run-seconds",
        type=int,
        help="... and at most this (default: 6 x --transition-seconds: 12; runs "
        "longer than a restart can outlive a downtime)",
    )
    parser.add_argument(
        "--min-uptime",
        type=float,
        default=5.0,
        help="seconds up before a kill, at least (5)",
    )
    parser.add_argument(
        "--max-uptime", type=float, default=20.0, help="... at most (20)"
    )
    parser.add_argument(
        "--lead-seconds",
        type=float,
        default=20.0,
        help="create each dispatch this long before its start (20)",
    )
    parser.add_argument(
        "--final-seconds",
        type=float,
        default=15.0,
        help="the last clean run lasts this long after the last dispatch ends (15)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="use this (new) directory instead of a temporary one",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directory (config, logs, kill_test.json)",
    )
    parser.add_argument(
        "--json", type=Path, help="also write everything recorded to this file"
    )
    opts = parser.parse_args(argv)
    if opts.run_seconds is None:
        opts.run_seconds = max(round(1.5 * opts.transition_seconds), 1)
    if opts.max_run_seconds is None:
        opts.max_run_seconds = max(round(6 * opts.transition_seconds), opts.run_seconds)
    if not 0 < opts.min_uptime <= opts.max_uptime:
        parser.error("need 0 < --min-uptime <= --max-uptime")
    if not 1 <= opts.run_seconds <= opts.max_run_seconds:
        parser.error("need 1 <= --run-seconds <= --max-run-seconds")
    if opts.kills < 0 or opts.transition_seconds < 1:
        parser.error("need --kills >= 0 and --transition-seconds >= 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    """Run the kill test; 0 clean, 1 defects found, 2 harness failure."""
    opts = parse_args(argv)
    if not (VENV / "bin" / "hass").exists():
        print(
            "kill-test: no .venv-ha; run scripts/setup develop (or scripts/kill_test)",
            file=sys.stderr,
        )
        return 2
    if opts.workdir is not None:
        opts.workdir.mkdir(parents=True)
        work = opts.workdir.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="kill-test-"))
    began = time.monotonic()
    keep = opts.keep or opts.workdir is not None
    try:
        sessions, runs, events = asyncio.run(run_test(opts, work))
    except (HarnessError, OSError) as err:
        print(
            f"kill-test: error: {err}\nkill-test: work directory kept: {work}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"kill-test: interrupted; work directory kept: {work}", file=sys.stderr)
        return 130
    save_json(work / "kill_test.json", opts, sessions, runs, events)
    if opts.json is not None:
        shutil.copyfile(work / "kill_test.json", opts.json)
    figures = report(opts, sessions, runs, events, time.monotonic() - began)
    if keep:
        print(f"\nwork directory: {work} (config/, hass.log, kill_test.json)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    late = any(not s.start_seen or s.connections > 1 for s in sessions)
    return 0 if figures.clean and not late else 1


if __name__ == "__main__":
    sys.exit(main())
