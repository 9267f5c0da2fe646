"""Browser end-to-end test: onboard HA, add the integration, watch a dispatch run.

Run through ``scripts/e2e`` (which installs Chromium and Playwright first). Starts
``scripts/develop`` (simulator + Home Assistant) on free ports with a fresh config
directory, then drives Debian's Chromium with Playwright like a person would:

1. onboarding: create the owner user in the form; no repair issue is raised;
2. save an automation on ``frequenz_dispatch_started`` as the automation
   editor does (it loads only if configuration.yaml includes automations.yaml);
3. Settings -> Devices & services -> Add integration -> "Frequenz Dispatch",
   fill in the simulator's URL, API key and microgrid id, submit, see the
   "Name and assign" dialog for the new device;
4. create a BATTERY_CHARGE dispatch starting in ~25 s through the simulator
   with the upstream client, open its binary sensor from the device page,
   wait until the dialog shows "Running" and the automation has fired; still
   no repair issue.

Written for the Home Assistant 2026.11 frontend (required fields' labels end
in ``*``, the new device's page opens after the flow).

Screenshots, the develop/HA logs and HA's config directory go to artifacts/e2e/.
Exit code: 0 passed, 1 failed, 77 skipped (no browser).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
import contextlib
from datetime import UTC, datetime, timedelta
import os
from pathlib import Path
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from frequenz.client.common.microgrid import MicrogridId
from frequenz.client.common.microgrid.electrical_components import (
    ElectricalComponentCategory,
)
from frequenz.client.dispatch import DispatchApiClient
from frequenz.client.dispatch.types import TargetCategories
from playwright.sync_api import (
    Locator,
    Page,
    TimeoutError as PlaywrightTimeoutError,
    expect,
    sync_playwright,
)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "e2e-api-key"
MICROGRID_ID = 1
OWNER = ("E2E Owner", "e2e", "e2e-password")
DISPATCH_LEAD = timedelta(seconds=25)
"""How long after its creation the test's dispatch starts."""

SKIPPED = 77


class Stopwatch:
    """Print each step with the seconds since the start."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def step(self, message: str) -> None:
        """Print one progress line."""
        print(f"e2e: [{time.monotonic() - self.start:6.1f}s] {message}", flush=True)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` every 0.5 s until it is true; raise after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


@contextlib.contextmanager
def running_develop(
    config_dir: Path, ha_port: int, sim_port: int, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``scripts/develop`` (simulator + HA) and stop it afterwards."""
    env = {
        **os.environ,
        "HA_CONFIG": str(config_dir),
        "HA_PORT": str(ha_port),
        "HA_HOST": "127.0.0.1",
        "DISPATCH_SIM_PORT": str(sim_port),
        "DISPATCH_API_KEY": API_KEY,
        "MICROGRID_ID": str(MICROGRID_ID),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "develop")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, see below
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # its trap stops HA and the sim
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def wait_for_home_assistant(
    proc: subprocess.Popen[bytes], base_url: str, log_path: Path
) -> None:
    """Wait until HA's frontend answers (or scripts/develop gave up)."""

    def ready() -> bool:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"scripts/develop exited ({proc.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(f"{base_url}/manifest.json", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    wait_until("Home Assistant's frontend", ready, timeout=240)


def create_dispatch(server_url: str, start: datetime) -> tuple[int, datetime]:
    """Create a BATTERY_CHARGE dispatch with the upstream client.

    Returns:
        Its id and start time (the service rounds to seconds).

    """

    async def create() -> tuple[int, datetime]:
        async with DispatchApiClient(server_url=server_url, auth_key=API_KEY) as api:
            dispatch = await api.create(
                MicrogridId(MICROGRID_ID),
                "BATTERY_CHARGE",
                start,
                timedelta(minutes=10),
                TargetCategories(ElectricalComponentCategory.BATTERY),
                payload={"power_kw": -25, "source": "e2e"},
            )
        return int(dispatch.id), dispatch.start_time

    # Playwright's sync API owns this thread's event loop: use another thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, create()).result(timeout=60)


def shot(page: Page, name: str, clock: Stopwatch) -> None:
    """Save a screenshot to artifacts/e2e/<name>."""
    page.screenshot(path=ARTIFACTS / name, animations="disabled")
    clock.step(f"screenshot {ARTIFACTS.relative_to(ROOT) / name}")


def field(page: Page, label: str) -> Locator:
    """The form field with this label (HA 2026.11 marks required ones with ``*``)."""
    name = re.compile(rf"^{re.escape(label)}\s*\*?$")
    return page.get_by_role("textbox", name=name).or_(
        page.get_by_role("spinbutton", name=name)
    )


def fill_form(page: Page, values: dict[str, str]) -> None:
    """Fill the fields with these labels, and check that each holds its value."""
    for label in values:
        expect(field(page, label)).to_be_editable()
    for _ in range(3):
        for label, value in values.items():
            field(page, label).fill(value)
        if all(
            field(page, label).input_value() == value for label, value in values.items()
        ):
            return
    raise AssertionError(f"could not fill the form fields {list(values)}")


def onboard(page: Page, base_url: str, clock: Stopwatch) -> None:
    """Create the owner user through the onboarding UI."""
    page.goto(f"{base_url}/")
    page.wait_for_url("**/onboarding.html*")
    page.get_by_role("button", name="Create my smart home").click()
    name, username, password = OWNER
    # fill_form waits for the fields and checks what each one holds.
    fill_form(
        page,
        {
            "Name": name,
            "Username": username,
            "Password": password,
            "Confirm password": password,
        },
    )
    create = page.get_by_role("button", name="Create account")
    expect(create).to_be_enabled()
    shot(page, "01-onboarding-user.png", clock)
    create.click()
    # scripts/develop pre-marks location/analytics as done: "All set!" is next.
    page.get_by_role("button", name="Finish").click()
    page.wait_for_url(re.compile(r"/(home|lovelace)(/|$)"))
    expect(page.locator("ha-sidebar")).to_contain_text(name)
    clock.step("onboarded; logged in as the new owner")


def add_integration(page: Page, sim_url: str, clock: Stopwatch) -> None:
    """Settings -> Devices & services -> Add integration -> Frequenz Dispatch."""
    page.locator("ha-sidebar a[href='/config']").click()
    page.wait_for_url("**/config/dashboard")
    page.get_by_text("Devices & services", exact=True).click()
    page.wait_for_url("**/config/integrations/dashboard")
    page.get_by_role("button", name="Add integration").click()
    page.get_by_placeholder("Search for a brand name").fill("Frequenz Dispatch")
    page.get_by_text("Frequenz Dispatch", exact=True).click()
    expect(
        page.get_by_text("Connect to the Frequenz Dispatch API").first
    ).to_be_visible()
    fill_form(
        page,
        {
            "Server URL": sim_url,
            "API key": API_KEY,
            "Microgrid ID": str(MICROGRID_ID),
        },
    )
    shot(page, "02-config-flow-form.png", clock)
    page.get_by_role("button", name="Submit").click()
    # HA 2026.11: a "Name and assign" dialog for the new device.
    expect(page.get_by_text("Name and assign", exact=True)).to_be_visible()
    device_name = page.get_by_role("textbox", name="Device name")
    expect(device_name).to_have_value(f"Microgrid {MICROGRID_ID}")
    shot(page, "03-config-flow-success.png", clock)
    page.get_by_role("button", name=re.compile(r"^(Skip and finish|Finish)$")).click()
    clock.step("config entry created")


AUTOMATION_ID = "e2e_dispatch_started"
AUTOMATION_ENTITY = "automation.e2e_dispatch_started"


def save_automation(page: Page, clock: Stopwatch) -> None:
    """Save an automation on frequenz_dispatch_started as the UI's editor does.

    The editor's Save posts to the config API, which writes automations.yaml
    and reloads; the automation only exists if configuration.yaml includes it.
    """
    page.evaluate(
        """async (id) => {
            const hass = document.querySelector("home-assistant").hass;
            await hass.callApi("POST", `config/automation/config/${id}`, {
                alias: "E2E dispatch started",
                description: "Saved by e2e/run.py like the automation editor",
                triggers: [{
                    trigger: "event",
                    event_type: "frequenz_dispatch_started",
                    event_data: {type: "BATTERY_CHARGE"},
                }],
                conditions: [],
                actions: [{
                    action: "persistent_notification.create",
                    data: {
                        title: "Dispatch started",
                        message: "{{ trigger.event.data.dispatch_id }}",
                    },
                }],
                mode: "queued",
            });
        }""",
        AUTOMATION_ID,
    )
    page.wait_for_function(
        "(e) => document.querySelector('home-assistant').hass.states[e]?.state"
        " === 'on'",
        arg=AUTOMATION_ENTITY,
    )
    clock.step(f"saved an automation in the UI's way: {AUTOMATION_ENTITY} is on")


def automation_fired_for(page: Page, dispatch_id: int) -> bool:
    """Whether the automation created the notification for this dispatch."""
    return bool(
        page.evaluate(
            """async (id) => {
                const hass = document.querySelector("home-assistant").hass;
                const result = await hass.callWS({
                    type: "persistent_notification/get"
                });
                return result.some((n) => n.message === String(id));
            }""",
            dispatch_id,
        )
    )


def check_no_repairs(page: Page, clock: Stopwatch) -> None:
    """The dev configuration raises no repair issue."""
    issues = page.evaluate(
        """async () => {
            const hass = document.querySelector("home-assistant").hass;
            return (await hass.callWS({type: "repairs/list_issues"})).issues;
        }"""
    )
    active = [
        i for i in issues if not i.get("ignored") and not i.get("dismissed_version")
    ]
    if active:
        raise AssertionError(f"repair issues raised: {active}")
    clock.step("no repair issues")


def watch_dispatch(
    page: Page, dispatch_id: int, start: datetime, clock: Stopwatch
) -> None:
    """Open the dispatch's binary sensor from the device page; wait for Running."""
    # HA 2026.11 opens the new device's page after "Skip and finish"; older
    # frontends stay on the integrations dashboard.
    device_page = re.compile(r"/config/devices/device/[^/]+$")
    with contextlib.suppress(PlaywrightTimeoutError):
        page.wait_for_url(device_page, timeout=5_000)
    if not device_page.search(page.url):
        page.get_by_role("link", name="Devices", exact=True).click()
        page.get_by_text(f"Microgrid {MICROGRID_ID}", exact=True).first.click()
        page.wait_for_url(device_page)
    expect(
        page.get_by_text(f"Microgrid {MICROGRID_ID}", exact=True).first
    ).to_be_visible()
    entity_name = f"Battery charge (dispatch {dispatch_id})"
    # The row's text may or may not start with the device name.
    page.get_by_text(re.compile(rf"{re.escape(entity_name)}\s*$")).first.click()
    title = page.locator("ha-more-info-dialog").get_by_text(entity_name, exact=True)
    expect(title.first).to_be_visible()
    state = page.locator("ha-more-info-dialog state-card-content .state")
    expect(state).to_have_text(re.compile(r"^\s*(Not running|Running)\s*$"))
    clock.step(f"opened {entity_name!r}: {state.inner_text().strip()}")
    if state.inner_text().strip() == "Not running":
        with contextlib.suppress(AssertionError):  # nicer screenshot, if quick
            loading = page.get_by_text("Loading state history")
            expect(loading).to_have_count(0, timeout=5_000)
        shot(page, "04-sensor-not-running.png", clock)
    else:
        clock.step("(already running: no 'not running' screenshot)")
    left = (start - datetime.now(UTC)).total_seconds()
    expect(state).to_have_text("Running", timeout=max(left, 0) * 1000 + 30_000)
    late = (datetime.now(UTC) - start).total_seconds()
    clock.step(f"{entity_name!r} shows Running ({late:.1f}s after its start time)")
    page.wait_for_timeout(1500)  # let the history bar catch up
    shot(page, "05-sensor-running.png", clock)
    page.keyboard.press("Escape")
    wait_until(
        "the UI-saved automation to fire for the dispatch",
        lambda: automation_fired_for(page, dispatch_id),
        timeout=30,
    )
    page.goto(page.url.split("/config/")[0] + "/config/automation/dashboard")
    expect(page.get_by_text("E2E dispatch started", exact=True).first).to_be_visible()
    page.wait_for_timeout(1000)
    shot(page, "06-automation-fired.png", clock)
    clock.step("the UI-saved automation fired on frequenz_dispatch_started")


def main() -> int:
    """Run the test; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chromium",
        default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        help="Chromium binary (default: $CHROMIUM or /usr/bin/chromium)",
    )
    parser.add_argument("--headed", action="store_true", help="show the browser")
    args = parser.parse_args()
    if not Path(args.chromium).is_file():
        print(f"SKIPPED: no Chromium at {args.chromium}")
        return SKIPPED

    clock = Stopwatch()
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    config_dir = ARTIFACTS / "ha-config"
    develop_log = ARTIFACTS / "develop.log"
    ha_port, sim_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{ha_port}"
    sim_url = f"grpc://127.0.0.1:{sim_port}?ssl=false"
    chromium_args = [
        a for a in CHROMIUM_ARGS if not (args.headed and a == "--headless")
    ]
    try:
        with (
            running_develop(config_dir, ha_port, sim_port, develop_log) as proc,
            sync_playwright() as playwright,
        ):
            clock.step(f"scripts/develop: HA on {base_url}, simulator on {sim_url}")
            wait_for_home_assistant(proc, base_url, develop_log)
            clock.step("Home Assistant answers")
            browser = playwright.chromium.launch(
                executable_path=args.chromium,
                args=chromium_args,
                headless=not args.headed,
            )
            context = browser.new_context(
                viewport={"width": 1280, "height": 800},
                locale="en-US",
                timezone_id="UTC",
            )
            context.set_default_timeout(30_000)
            expect.set_options(timeout=30_000)
            page = context.new_page()
            try:
                onboard(page, base_url, clock)
                check_no_repairs(page, clock)
                save_automation(page, clock)
                add_integration(page, sim_url, clock)
                dispatch_id, start = create_dispatch(
                    sim_url, datetime.now(UTC) + DISPATCH_LEAD
                )
                clock.step(f"created dispatch {dispatch_id}, starting {start:%H:%M:%S}")
                watch_dispatch(page, dispatch_id, start, clock)
                check_no_repairs(page, clock)
            except Exception:
                with contextlib.suppress(Exception):
                    shot(page, "failure.png", clock)
                raise
            finally:
                browser.close()
    except Exception as err:
        print(f"e2e: FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        print(
            f"e2e: logs: {develop_log}, {config_dir / 'home-assistant.log'}",
            file=sys.stderr,
        )
        print("e2e: 0 passed, 1 failed")
        return 1
    clock.step(f"PASSED; screenshots in {ARTIFACTS.relative_to(ROOT)}/")
    print("e2e: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
