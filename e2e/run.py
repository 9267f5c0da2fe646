"""Browser end-to-end test: onboard HA, add the integration, use it without YAML.

Run through ``scripts/e2e`` (which installs Chromium and Playwright first). Starts
``scripts/develop`` (simulator + Home Assistant) on free ports with a fresh config
directory, then drives Debian's Chromium with Playwright like a person would:

1. onboarding: create the owner user in the form; no repair issue is raised;
2. save an automation on ``frequenz_dispatch_started`` as the automation
   editor does (it loads only if configuration.yaml includes automations.yaml);
3. Settings -> Devices & services -> Add integration -> "Frequenz Dispatch",
   fill in the simulator's URL, API key and microgrid id, submit, see the
   "Name and assign" dialog for the new device;
4. automation editor: Add trigger -> Device -> "Microgrid 1" -> "A dispatch
   started", type "Battery charge (BATTERY_CHARGE)"; action: a persistent
   notification; saved through the editor's Save dialog;
5. create a BATTERY_CHARGE dispatch starting in ~25 s through the simulator
   with the upstream client, open its binary sensor from the device page,
   wait until the dialog shows "Running" and both automations have fired;
6. the device page's Related card lists the editor-made automation;
7. Calendar panel (list view): the run reads "Battery charge"; its event
   dialog names the raw type and the dispatch id;
8. Activity (logbook): "Battery charge (dispatch N) started, until HH:MM"
   with an icon;
9. Developer tools -> Actions, UI mode: ``frequenz_dispatch.create_dispatch``
   filled in the form (microgrid, type, start date and time, target), the
   response names the new dispatch, which the simulator and HA then have;
   ``frequenz_dispatch.delete_dispatch`` removes it from both; still no
   repair issue;
10. integration page -> "Add payload sensor": ``power_kw`` of Battery charge
   dispatches on BATTERY targets, as power in kW; the sensor's dialog shows
   the sample battery charge's -50 kW while it runs.

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
from typing import Any
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


def automation_fired_for(page: Page, message: str) -> bool:
    """Whether an automation created a notification with this message."""
    return bool(
        page.evaluate(
            """async (message) => {
                const hass = document.querySelector("home-assistant").hass;
                const result = await hass.callWS({
                    type: "persistent_notification/get"
                });
                return result.some((n) => n.message === message);
            }""",
            message,
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


UI_AUTOMATION = "E2E UI device trigger"
UI_MESSAGE = "UI device trigger"
"""The notification the editor-made automation creates: this, then the id."""


def message_box(page: Page) -> Locator:
    """The notification action's message field in the automation editor."""
    return page.locator(
        "ha-settings-row", has_text="Message body of the notification"
    ).get_by_role("textbox")


def fill_message(page: Page, text: str) -> None:
    """Enter the notification's message, and check that the field shows it.

    HA 2026.11 edits the field in its template editor (CodeMirror): typing
    key by key there opens template completions and, once focus slips, HA's
    one-key shortcuts (``e``: search, ``a``: Assist), so the text goes in as
    one input, as a paste does. The action's form renders again while its
    field descriptions arrive; on a slow machine text entered before that is
    lost, so the field is checked after a pause and filled again if needed.
    """
    box = message_box(page)
    for _ in range(5):
        expect(box).to_be_editable()
        page.wait_for_timeout(500)  # let the form settle
        box.fill(text)
        page.wait_for_timeout(1000)  # the editor reports changes after a pause
        shown = box.evaluate("(e) => ('value' in e ? e.value : e.innerText)")
        if str(shown).strip() == text:
            return
    raise AssertionError(f"the message field does not keep {text!r}")


def saved_config(page: Page, automation_id: str) -> dict[str, Any]:
    """The automation's config as Home Assistant saved it (automations.yaml)."""
    saved = page.evaluate(
        """async (id) => {
            const hass = document.querySelector("home-assistant").hass;
            return await hass.callApi("GET", `config/automation/config/${id}`);
        }""",
        automation_id,
    )
    return dict(saved)


def saved_message(config: dict[str, Any]) -> object:
    """The message of the config's first action (None if it has none)."""
    actions = config.get("actions") or config.get("action") or []
    data = actions[0].get("data", {}) if actions else {}
    return data.get("message")


def saved_with_message(
    page: Page, automation_id: str, text: str, clock: Stopwatch
) -> dict[str, Any]:
    """Wait until the saved config holds the message; fill and save again if not.

    A person who saw the field empty after saving would type it again.
    """
    for attempt in range(3):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            config = saved_config(page, automation_id)
            if saved_message(config) == text:
                return config
            page.wait_for_timeout(500)
        clock.step(
            f"the saved action has no message yet ({config.get('actions')});"
            f" typing it again (attempt {attempt + 2})"
        )
        fill_message(page, text)
        page.get_by_role("button", name="Save", exact=True).first.click()
    raise AssertionError(
        f"the editor saved no message: {saved_config(page, automation_id)}"
    )


def make_ui_automation(page: Page, base_url: str, clock: Stopwatch) -> str:
    """Build an automation from the device trigger in the automation editor.

    When: Device -> "Microgrid <id>" -> "A dispatch started", type Battery
    charge; then: a persistent notification. Saved through the editor's Save
    dialog.

    Returns:
        The microgrid's device id (from the saved trigger).

    """
    page.goto(f"{base_url}/config/automation/edit/new")
    page.get_by_role("button", name=re.compile(r"^Add trigger")).first.click()
    page.get_by_placeholder("Search").fill("Device")
    page.get_by_text("Triggers when something happens to a device").click()
    page.get_by_text("Select a device", exact=True).click()
    page.get_by_text(f"Microgrid {MICROGRID_ID}", exact=True).last.click()
    # The trigger list (strings.json: device_automation.trigger_type).
    page.get_by_text(re.compile(r"^(A dispatch started|No triggers)$")).last.click()
    page.get_by_role("option", name="A dispatch started", exact=True).click()
    page.get_by_text("Dispatch type (empty: any type)").click()
    page.get_by_role("option", name="Battery charge (BATTERY_CHARGE)").click()
    expect(page.get_by_text("BATTERY_CHARGE", exact=True).first).to_be_visible()
    page.wait_for_timeout(500)
    shot(page, "04-automation-editor-device-trigger.png", clock)
    page.get_by_role("button", name=re.compile(r"^Add action")).first.click()
    page.get_by_placeholder("Search").fill("persistent notification")
    page.get_by_text(
        "Shows a persistent notification on the notifications panel"
    ).click()
    text = f"{UI_MESSAGE} {{{{ trigger.event.data.dispatch_id }}}}"
    fill_message(page, text)
    page.get_by_role("button", name="Save", exact=True).first.click()
    field(page, "Name").fill(UI_AUTOMATION)
    page.locator("ha-dialog-automation-save").get_by_role(
        "button", name="Save", exact=True
    ).click()
    page.wait_for_url(re.compile(r"/config/automation/edit/(?!new$)[^/]+$"))
    automation_id = page.url.rsplit("/", 1)[1]
    saved = saved_with_message(page, automation_id, text, clock)
    trigger = saved["triggers"][0]
    expected = {
        "trigger": "device",
        "domain": "frequenz_dispatch",
        "type": "started",
        "dispatch_type": "BATTERY_CHARGE",
    }
    if {k: trigger.get(k) for k in expected} != expected:
        raise AssertionError(f"the editor saved another trigger: {trigger}")
    clock.step(
        f"saved {UI_AUTOMATION!r} from the editor: {trigger},"
        f" message {saved_message(saved)!r}"
    )
    return str(trigger["device_id"])


def check_related(page: Page, base_url: str, device_id: str, clock: Stopwatch) -> None:
    """The device page's Related card lists the editor-made automation."""
    page.goto(f"{base_url}/config/devices/device/{device_id}")
    related = page.locator("ha-card", has_text="Related")
    expect(related.get_by_text(UI_AUTOMATION, exact=True)).to_be_visible()
    page.wait_for_timeout(1000)
    shot(page, "08-device-related-automation.png", clock)
    clock.step(f"the device's Related card lists {UI_AUTOMATION!r}")


def check_calendar(
    page: Page, base_url: str, dispatch_id: int, clock: Stopwatch
) -> None:
    """The Calendar panel shows the run as "Battery charge"."""
    page.goto(f"{base_url}/calendar")
    expect(
        page.get_by_text(f"Microgrid {MICROGRID_ID} Dispatches", exact=True)
    ).to_be_visible()
    page.get_by_role("button", name="List (7 days)").click()
    events = page.get_by_text("Battery charge", exact=True)
    expect(events.first).to_be_visible()
    page.wait_for_timeout(500)
    shot(page, "09-calendar-list.png", clock)
    # The seed has a Battery charge too: open each until ours shows.
    mine = page.get_by_text(f"Dispatch ID: {dispatch_id}")
    for index in range(events.count()):
        events.nth(index).click()
        with contextlib.suppress(AssertionError):
            expect(mine).to_be_visible(timeout=3_000)
            break
        page.keyboard.press("Escape")
    else:
        raise AssertionError(f"no calendar event of dispatch {dispatch_id}")
    expect(page.get_by_text("Type: BATTERY_CHARGE").first).to_be_visible()
    page.wait_for_timeout(500)
    shot(page, "10-calendar-event.png", clock)
    page.keyboard.press("Escape")
    clock.step(f"the calendar shows dispatch {dispatch_id} as 'Battery charge'")


def check_logbook(
    page: Page, base_url: str, dispatch_id: int, clock: Stopwatch
) -> None:
    """The logbook reads "Battery charge (dispatch N) started, until HH:MM"."""
    page.goto(f"{base_url}/logbook")
    entry = (
        page.locator("ha-logbook-entry")
        .filter(has_text=f"Battery charge (dispatch {dispatch_id})")
        .filter(has_text=re.compile(r"started, until \d\d:\d\d"))
    )
    expect(entry.first).to_be_visible()
    icon = entry.first.locator("ha-state-icon, ha-icon, ha-svg-icon").first
    expect(icon).to_be_visible()
    entry.first.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    shot(page, "11-logbook.png", clock)
    line = " ".join(
        entry.first.evaluate("(e) => (e.shadowRoot ?? e).textContent").split()
    )
    clock.step(f"logbook: {line!r}")


def pick_action(page: Page, action: str, description: str) -> None:
    """Developer tools -> Actions: choose this action; wait for its form."""
    current = page.get_by_text(re.compile(r"^frequenz_dispatch\.\w+$"))
    if current.count():
        current.first.click()
    else:
        page.get_by_text("Action", exact=True).first.click()
    page.get_by_placeholder(re.compile("Search")).fill(action.split(".")[1])
    page.get_by_text(action, exact=True).last.click()
    expect(page.get_by_text(description, exact=True)).to_be_visible()


def pick_microgrid(page: Page) -> None:
    """Choose the microgrid in the form's config entry field."""
    row = page.locator("ha-settings-row", has_text="The Frequenz Dispatch entry")
    row.get_by_text("Integration").first.click()
    page.get_by_text(f"Microgrid {MICROGRID_ID}", exact=True).last.click()
    expect(row.get_by_text(f"Microgrid {MICROGRID_ID}", exact=True)).to_be_visible()


def type_into(box: Locator, value: str) -> None:
    """Type into a spin button as a person does (the field reacts on change)."""
    box.click()
    box.press("Control+a")
    box.press_sequentially(value)
    box.press("Tab")


def dispatch_starts(server_url: str) -> dict[int, tuple[str, datetime]]:
    """The simulator's dispatches for the microgrid: id -> (type, start time)."""

    async def starts() -> dict[int, tuple[str, datetime]]:
        found: dict[int, tuple[str, datetime]] = {}
        async with DispatchApiClient(server_url=server_url, auth_key=API_KEY) as api:
            async for batch in api.list(MicrogridId(MICROGRID_ID)):
                found.update((int(d.id), (d.type, d.start_time)) for d in batch)
        return found

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, starts()).result(timeout=60)


def dispatch_ids(server_url: str) -> set[int]:
    """The ids of the dispatches the simulator holds for the microgrid."""
    return set(dispatch_starts(server_url))


def start_apart(server_url: str, wanted: datetime) -> datetime:
    """`wanted`, or later: 10 s apart from any seeded BATTERY_CHARGE start.

    The seed (dispatch_sim/sample_seed.json) has a BATTERY_CHARGE starting a
    minute after the simulator; the editor-made automation runs in "single"
    mode, so two starts in one moment could drop the test's run.
    """
    for dispatch_type, start in sorted(
        dispatch_starts(server_url).values(), key=lambda item: item[1]
    ):
        if dispatch_type == "BATTERY_CHARGE" and abs(start - wanted) < timedelta(
            seconds=10
        ):
            wanted = start + timedelta(seconds=10)
    return wanted


def entity_of_dispatch(page: Page, dispatch_id: int) -> str | None:
    """The entity HA shows for this dispatch (attribute dispatch_id), if any."""
    entity_id = page.evaluate(
        """(id) => {
            const states = document.querySelector("home-assistant").hass.states;
            return Object.keys(states).find(
                (e) => e.startsWith("binary_sensor.")
                    && states[e].attributes.dispatch_id === id
            ) ?? null;
        }""",
        dispatch_id,
    )
    return None if entity_id is None else str(entity_id)


def actions_create_and_delete(
    page: Page, base_url: str, sim_url: str, clock: Stopwatch
) -> None:
    """Developer tools -> Actions: create a dispatch in the form, then delete it."""
    page.set_viewport_size({"width": 1280, "height": 2000})  # form and response
    try:
        page.goto(f"{base_url}/developer-tools/action")
        dispatch_id = action_create(page, sim_url, clock)
        action_delete(page, sim_url, dispatch_id, clock)
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})


def action_create(page: Page, sim_url: str, clock: Stopwatch) -> int:
    """create_dispatch from the UI form; returns the new dispatch's id."""
    pick_action(
        page,
        "frequenz_dispatch.create_dispatch",
        "Creates a dispatch on the microgrid's Dispatch API and returns it.",
    )
    pick_microgrid(page)
    type_row = page.locator("ha-settings-row", has_text="The dispatch type")
    type_row.locator("ha-selector").click()
    page.get_by_role("option", name="PEAK_SHAVING", exact=True).click()
    # HA's time zone is UTC (config/configuration.yaml); en-US: 12-hour clock.
    when = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0)
    start_row = page.locator("ha-settings-row", has_text="When the (first) run starts")
    start_row.get_by_role("textbox").click()
    day = page.get_by_role("button", name=f"{when:%B} {when.day}", exact=True)
    if when.month != datetime.now(UTC).month:  # two hours later: next month
        page.get_by_role("button", name="Next", exact=True).last.click()
    day.click()
    page.get_by_role("button", name="OK", exact=True).click()
    spins = start_row.get_by_role("spinbutton")
    for index, value in enumerate(
        (str(when.hour % 12 or 12), f"{when.minute:02d}", "00")
    ):
        type_into(spins.nth(index), value)
    half = "AM" if when.hour < 12 else "PM"
    start_row.get_by_text(re.compile(r"^(AM|PM)$")).click()
    page.get_by_role("menuitem", name=half, exact=True).click()
    target_row = page.locator("ha-settings-row", has_text="Component IDs")
    target_row.get_by_role("button", name="Add").click()
    target_row.get_by_role("textbox").last.fill("BATTERY")
    before = dispatch_ids(sim_url)
    page.get_by_role("button", name="Perform action").click()
    created = page.locator(".cm-line").filter(
        has_text=re.compile(r"^dispatch_id: \d+$")
    )
    expect(created).to_have_count(1)
    dispatch_id = int(created.inner_text().split(":")[1])
    expect(
        page.locator(".cm-line").filter(has_text="type: PEAK_SHAVING")
    ).to_have_count(1)
    expect(
        page.locator(".cm-line").filter(
            has_text=f"start_time: '{when:%Y-%m-%dT%H:%M:%S}+00:00'"
        )
    ).to_have_count(1)
    page.wait_for_timeout(500)
    shot(page, "12-actions-create-dispatch.png", clock)
    if dispatch_id in before or dispatch_id not in dispatch_ids(sim_url):
        raise AssertionError(f"dispatch {dispatch_id} is not new on the simulator")
    wait_until(
        f"HA's entity for dispatch {dispatch_id}",
        lambda: entity_of_dispatch(page, dispatch_id) is not None,
        timeout=30,
    )
    clock.step(
        f"create_dispatch from the form: dispatch {dispatch_id} on the simulator"
        f" and {entity_of_dispatch(page, dispatch_id)} in HA"
    )
    return dispatch_id


def action_delete(page: Page, sim_url: str, dispatch_id: int, clock: Stopwatch) -> None:
    """delete_dispatch from the UI form; the dispatch leaves the simulator and HA."""
    pick_action(
        page,
        "frequenz_dispatch.delete_dispatch",
        "Deletes a dispatch; a running one stops.",
    )
    pick_microgrid(page)
    id_row = page.locator("ha-settings-row", has_text="The ID of the dispatch")
    type_into(id_row.get_by_role("spinbutton"), str(dispatch_id))
    page.get_by_role("button", name="Perform action").click()
    wait_until(
        f"dispatch {dispatch_id} to leave the simulator",
        lambda: dispatch_id not in dispatch_ids(sim_url),
        timeout=30,
    )
    wait_until(
        f"HA's entity for dispatch {dispatch_id} to go",
        lambda: entity_of_dispatch(page, dispatch_id) is None,
        timeout=30,
    )
    page.wait_for_timeout(500)
    shot(page, "13-actions-delete-dispatch.png", clock)
    clock.step(f"delete_dispatch from the form: dispatch {dispatch_id} is gone")


def watch_dispatch(
    page: Page,
    base_url: str,
    device_id: str,
    dispatch_id: int,
    start: datetime,
    clock: Stopwatch,
) -> None:
    """Open the dispatch's binary sensor from the device page; wait for Running."""
    page.goto(f"{base_url}/config/devices/device/{device_id}")
    expect(
        page.get_by_text(f"Microgrid {MICROGRID_ID}", exact=True).first
    ).to_be_visible()
    # The readable name (names.py), never the raw type.
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
        shot(page, "05-sensor-not-running.png", clock)
    else:
        clock.step("(already running: no 'not running' screenshot)")
    left = (start - datetime.now(UTC)).total_seconds()
    expect(state).to_have_text("Running", timeout=max(left, 0) * 1000 + 30_000)
    late = (datetime.now(UTC) - start).total_seconds()
    clock.step(f"{entity_name!r} shows Running ({late:.1f}s after its start time)")
    page.wait_for_timeout(1500)  # let the history bar catch up
    shot(page, "06-sensor-running.png", clock)
    page.keyboard.press("Escape")
    wait_until(
        "the UI-saved automation to fire for the dispatch",
        lambda: automation_fired_for(page, str(dispatch_id)),
        timeout=30,
    )
    clock.step("the API-saved automation fired on frequenz_dispatch_started")
    wait_until(
        "the automation made in the editor to fire for the dispatch",
        lambda: automation_fired_for(page, f"{UI_MESSAGE} {dispatch_id}"),
        timeout=30,
    )
    page.goto(f"{base_url}/config/automation/dashboard")
    expect(page.get_by_text("E2E dispatch started", exact=True).first).to_be_visible()
    expect(page.get_by_text(UI_AUTOMATION, exact=True).first).to_be_visible()
    page.wait_for_timeout(1000)
    shot(page, "07-automation-fired.png", clock)
    clock.step("the automation made in the editor fired on its device trigger")


PAYLOAD_SENSOR = "Battery charge power_kw on BATTERY"
"""The payload sensor's name (subentry_flow.py: "<type> <key> on <target>")."""
SAMPLE_POWER_KW = -50
"""The sample battery charge's ``power_kw`` (dispatch_sim/sample_seed.json)."""


def choose(page: Page, label: str, option: str) -> None:
    """Open the dropdown with this label and pick the option with this text."""
    page.get_by_text(re.compile(rf"^{re.escape(label)}\s*\*?$")).first.click()
    page.get_by_text(option, exact=True).last.click()
    value = page.get_by_text(option, exact=True).first
    expect(value).to_be_visible()


def add_payload_sensor(page: Page, base_url: str, clock: Stopwatch) -> None:
    """Integration page -> "Add payload sensor": the battery charge's power_kw.

    On BATTERY targets, as power in kW, the smallest value while several run
    (the sample charges at -50 kW, this test's own dispatch at -25 kW).
    """
    page.goto(f"{base_url}/config/integrations/integration/frequenz_dispatch")
    page.get_by_role("button", name="Add payload sensor").click()
    expect(page.get_by_text("Add a payload sensor", exact=True)).to_be_visible()
    choose(page, "Dispatch type", "Battery charge (BATTERY_CHARGE)")
    fill_form(page, {"Payload key": "power_kw", "Target (optional)": "BATTERY"})
    choose(page, "Kind of value", "Power")
    fill_form(page, {"Unit": "kW"})
    choose(page, "When several dispatches run", "The smallest value")
    page.wait_for_timeout(500)
    shot(page, "14-payload-sensor-form.png", clock)
    page.get_by_role("button", name="Submit").click()
    expect(
        page.get_by_text(f"Created configuration for {PAYLOAD_SENSOR}.", exact=True)
    ).to_be_visible()
    page.get_by_role("button", name="Finish").click()
    # The subentry is listed on the integration page, under the microgrid.
    expect(page.get_by_text(PAYLOAD_SENSOR, exact=True).first).to_be_visible()
    clock.step(f"added the payload sensor {PAYLOAD_SENSOR!r} from the integration page")


def check_payload_sensor(
    page: Page, base_url: str, device_id: str, clock: Stopwatch
) -> None:
    """The device page shows the sample battery charge's power as the sensor's state."""
    page.goto(f"{base_url}/config/devices/device/{device_id}")
    page.get_by_text(re.compile(rf"{re.escape(PAYLOAD_SENSOR)}\s*$")).first.click()
    dialog = page.locator("ha-more-info-dialog")
    expect(dialog.get_by_text(PAYLOAD_SENSOR, exact=True).first).to_be_visible()
    # The sample starts a minute after the simulator: wait for it if needed.
    state = dialog.locator("state-card-content").first
    shown = re.compile(rf"{SAMPLE_POWER_KW}(\.0+)?\s*kW")
    expect(state).to_contain_text(shown, timeout=90_000)
    page.wait_for_timeout(1000)
    shot(page, "15-payload-sensor-value.png", clock)
    page.keyboard.press("Escape")
    clock.step(f"{PAYLOAD_SENSOR!r} shows the sample's {SAMPLE_POWER_KW} kW")


def run_steps(page: Page, base_url: str, sim_url: str, clock: Stopwatch) -> None:
    """The test's steps, in order, in one browser page."""
    onboard(page, base_url, clock)
    check_no_repairs(page, clock)
    save_automation(page, clock)
    add_integration(page, sim_url, clock)
    device_id = make_ui_automation(page, base_url, clock)
    wanted = start_apart(sim_url, datetime.now(UTC) + DISPATCH_LEAD)
    dispatch_id, start = create_dispatch(sim_url, wanted)
    clock.step(f"created dispatch {dispatch_id}, starting {start:%H:%M:%S}")
    watch_dispatch(page, base_url, device_id, dispatch_id, start, clock)
    check_related(page, base_url, device_id, clock)
    check_calendar(page, base_url, dispatch_id, clock)
    check_logbook(page, base_url, dispatch_id, clock)
    actions_create_and_delete(page, base_url, sim_url, clock)
    add_payload_sensor(page, base_url, clock)
    check_payload_sensor(page, base_url, device_id, clock)
    check_no_repairs(page, clock)


def main() -> int:
    """Run the test; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chromium",
        default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        help="Chromium binary (default: $CHROMIUM or /usr/bin/chromium)",
    )
    parser.add_argument("--headed", action="store_true", help="show the browser")
    parser.add_argument(
        "--cpu-slowdown",
        type=float,
        default=float(os.environ.get("E2E_CPU_SLOWDOWN", "1")),
        metavar="N",
        help="run the page's scripts N times slower, as on a slow machine"
        " (Chromium's CPU throttling; default: $E2E_CPU_SLOWDOWN or 1)",
    )
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
            if args.cpu_slowdown > 1:
                cdp = context.new_cdp_session(page)
                cdp.send("Emulation.setCPUThrottlingRate", {"rate": args.cpu_slowdown})
                clock.step(f"page scripts run {args.cpu_slowdown:g}x slower")
            try:
                run_steps(page, base_url, sim_url, clock)
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
