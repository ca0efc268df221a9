"""End to end in a real headless Chromium: the app as a researcher uses it.

Open the app (the HH demo loads itself), run a small audit from the Audit page (the job panel
mid-run shown), switch the Concepts page's views and find the same card open, suppress the top
concept with a reason and keep a family (its card shows its evidence), reload and find the
decision still there, preview the plan on the Interventions page (which offers to score the rest
of the dataset); then upload a file whose responses carry a script and
markdown tricks and check they show as text and never run. A tuning run and its evaluation are
made by the library for test_results_page_in_a_browser (a run of a few steps, tiny evaluation
settings), which reads them in the browser; the Tuning page's own start-and-watch is tested
through AppTest: through the forms here they would add tens of minutes to the walk.

Screenshots of every page go to ``$SPECTRUM_SCREENSHOT_DIR`` (``scripts/screenshots.sh`` points
it at docs/ for the README), else to the test's temporary folder.

Needs Debian's chromium (``make test`` installs it) and the playwright package (a dev
dependency; its own browser downloads are not used).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectrum_core.workspace import Workspace
from tests.conftest import ROOT

CHROMIUM = os.environ.get("SPECTRUM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
]
AUDIT_PAIRS = 40
REASON = "rewards apologising, not harmlessness"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_env() -> dict[str, str]:
    """Extra environment for the server (a test parametrizes it, e.g. with login tokens)."""
    return {}


@pytest.fixture
def app_server(tmp_path, bundled_model, app_env):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    port = free_port()
    workspace = tmp_path / "ws"
    env = dict(os.environ, SPECTRUM_WORKSPACE=str(workspace), **app_env)
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", workspace
    finally:
        from spectrum_core import jobs

        if (workspace / "spectrum.db").exists():
            ws = Workspace(workspace)
            for job in ws.jobs():
                jobs.stop_job(ws, job.id, grace_seconds=2)
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("SPECTRUM_SCREENSHOT_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(page, url: str) -> None:
    deadline = time.time() + 90
    while True:
        try:
            page.goto(url, timeout=10_000)
            return
        except Exception:  # noqa: BLE001 - the server is still starting
            if time.time() > deadline:
                raise
            time.sleep(1)


def settle(page) -> None:
    """Wait until Streamlit has finished the current run (its status widget goes away)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    page.wait_for_timeout(800)


def open_first_row_other_than(page, concept_id: str) -> str:
    """Click the listed table's first row whose card is not ``concept_id``; its id."""
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    for row in range(1, 4):
        page.mouse.click(box["x"] + 12, box["y"] + 18 + 36 * row)  # the row's selection cell
        settle(page)
        opened = page.locator("h3").first.inner_text().strip()
        if opened != concept_id:
            return opened
    raise AssertionError(f"no row other than {concept_id} opened a card")


def test_demo_audit_decide_reload_and_safe_text(app_server, shots, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, workspace_root = app_server
    dialogs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        # Dataset: the demo loads itself on first open.
        open_page(page, base)
        expect(page.get_by_text("Pairs kept")).to_be_visible(timeout=120_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=str(shots / "dataset-page.png"))

        # Audit: a small one, started from the page, watched until it finishes.
        page.get_by_role("link", name="Audit").click()
        pairs_input = page.get_by_role("spinbutton", name="Pairs to audit (0: all)")
        pairs_input.wait_for(timeout=60_000)
        pairs_input.fill(str(AUDIT_PAIRS))
        # The SAE-seed check retrains the SAE twice; this walk-through skips it (a form setting).
        page.get_by_text("More settings").click()
        seeds_input = page.get_by_role("spinbutton", name="SAE seeds to check against")
        seeds_input.fill("0")
        seeds_input.press("Tab")
        page.get_by_role("button", name="Check configuration").click()
        expect(page.get_by_text(f"--max-pairs {AUDIT_PAIRS}")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("--sae-seeds 0")).to_be_visible()
        page.get_by_role("button", name="Start audit").click()
        # The job panel mid-run: a stage's bar with its progress, and what the whole job's estimate rests on.
        expect(page.get_by_text(re.compile(r"whole.job", re.IGNORECASE)).first).to_be_visible(timeout=300_000)
        page.screenshot(path=str(shots / "audit-running.png"))
        expect(page.get_by_text("succeeded").first).to_be_visible(timeout=600_000)
        expect(page.get_by_text("Concepts with q < 0.05")).to_be_visible(timeout=60_000)
        settle(page)
        page.screenshot(path=str(shots / "audit-page.png"))

        # Concepts: the card stays on the concept opened, whatever the view; suppress it with a reason.
        page.get_by_role("link", name="Concepts").click()
        reason = page.get_by_role("textbox", name="Reason (optional)")
        reason.wait_for(timeout=60_000)
        concept_id = page.locator("h3").first.inner_text().strip()
        views = [v for v in ("Families", "All concepts", "Heads") if page.get_by_text(v, exact=True).count()]
        for name in views:
            page.get_by_text(name, exact=True).first.click()
            settle(page)
            assert page.locator("h3").first.inner_text().strip() == concept_id, name
        reason.fill(REASON)
        reason.press("Enter")
        settle(page)
        page.get_by_role("button", name=f"Suppress {concept_id}").click()
        expect(page.get_by_text(f"Current decision: suppress on {concept_id}")).to_be_visible(timeout=60_000)
        settle(page)
        page.screenshot(path=str(shots / "concepts-page.png"))
        # A second decision, on the best family other than the first: its card shows its evidence.
        page.get_by_text("Families", exact=True).first.click()
        settle(page)
        family_id = open_first_row_other_than(page, concept_id)
        expect(page.get_by_text("Where it is silent").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Where it fires most").first).to_be_visible()
        page.get_by_text("Where it fires most").first.scroll_into_view_if_needed()
        settle(page)
        page.screenshot(path=str(shots / "concepts-family-card.png"))
        page.get_by_role("button", name=f"Keep {family_id}").click()
        expect(page.get_by_text(f"Current decision: keep on {family_id}")).to_be_visible(timeout=60_000)

        # A reload (a new browser session) still shows the decision: it lives in the workspace.
        page.reload()
        expect(page.get_by_text("Current decision: suppress")).to_be_visible(timeout=60_000)
        expect(page.get_by_text(REASON).first).to_be_visible()

        # Interventions: the plan's preview, then the rest of the dataset scored so the plan covers every pair.
        page.get_by_role("link", name="Interventions").click()
        expect(page.get_by_text("What the plan does to the data")).to_be_visible(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=str(shots / "interventions-page.png"))
        # The plan says what it covers and offers to score the rest; the scoring job itself (the
        # other 2,263 pairs through the bundled model) took past this test's 15-minute limit on a
        # shared 2-core machine: tests/audit/test_scoring.py and the Interventions page's AppTest run it.
        expect(page.get_by_text(f"{AUDIT_PAIRS:,} audited, 0 scored by a scoring job").first).to_be_visible()
        expect(page.get_by_role("button", name="Score the other")).to_be_visible()

        # Text from a dataset is shown as text: a script and markdown tricks in a response.
        evil = tmp_path / "evil.jsonl"
        evil.write_text(
            json.dumps(
                {
                    "prompt": "Say hi",
                    "chosen": "<script>window.__pwned = 1</script> **not bold** [x](javascript:window.__pwned=2)",
                    "rejected": '<img src=x onerror="window.__pwned=3">',
                }
            )
            + "\n"
        )
        page.get_by_role("link", name="Dataset").click()
        page.get_by_text("Add preference data").click()
        page.get_by_role("tab", name="Upload").click()
        page.locator("input[type=file]").set_input_files(str(evil))
        page.get_by_role("button", name="Load uploaded file").click()
        expect(page.get_by_text("evil.jsonl").first).to_be_visible(timeout=60_000)
        settle(page)
        grid = page.locator("[data-testid='stDataFrame']").last
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 12, box["y"] + 54)  # the first row's selection cell
        # The selected pair is shown in code blocks, verbatim.
        code = page.locator("code")
        expect(code.filter(has_text="<script>window.__pwned = 1</script> **not bold**")).to_be_visible(timeout=30_000)
        expect(code.filter(has_text='<img src=x onerror="window.__pwned=3">')).to_be_visible()
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("strong", has_text="not bold").count() == 0
        assert dialogs == []
        browser.close()

    workspace = Workspace(workspace_root)
    audit = next(j for j in workspace.jobs("audit") if j.status == "succeeded")
    decision = workspace.current_decisions(audit.id)[concept_id]
    assert decision["action"] == "suppress" and decision["reason"] == REASON


def test_results_page_in_a_browser(evaluated, app_server, shots):
    """The Results page on the small audit's base and weighted-DPO evaluations, opened by its URL:
    the app's own navigation, the overview table and the concept-prevalence chart render, and the
    prediction tab shows its scatter and the curve over checkpoints (and give the README its
    screenshots)."""
    from playwright.sync_api import expect, sync_playwright

    workspace, _, tune_job = evaluated
    base, workspace_root = app_server
    assert Path(workspace_root) == workspace.root
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        open_page(page, base + "/results")  # a first request straight to a page (a reload, a shared link)
        expect(page.get_by_text("Overview")).to_be_visible(timeout=120_000)
        navigation = page.locator("[data-testid=stSidebarNav]").inner_text()
        assert "Evaluate" in navigation and "Results" in navigation and "frame" not in navigation
        expect(page.get_by_text(f"run {tune_job} (dpo)").first).to_be_visible(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=str(shots / "results-page.png"), full_page=True)
        # the prediction tab: the audit's predicted shifts against the run's realised ones
        page.get_by_role("tab", name="Prediction").click()
        expect(page.get_by_text("Predicted by the audit vs realised").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Suppressed concepts over training").first).to_be_visible(timeout=60_000)
        settle(page)
        page.screenshot(path=str(shots / "results-prediction.png"), full_page=True)
        browser.close()


TOKEN = "ana-4f9c2e7b1d8a6035"


@pytest.mark.parametrize("app_env", [{"SPECTRUM_APP_TOKENS": f"ana:{TOKEN}"}])
def test_a_shared_server_shows_only_its_login_until_a_valid_token(app_server, app_env):
    """With per-user tokens set (what a shared server needs), a browser sees the login and no
    page, workspace or navigation; a wrong token is refused; the right one opens the app with the
    token's user signed in."""
    from playwright.sync_api import expect, sync_playwright

    base, _ = app_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, base + "/concepts")  # a deep link is gated too
        token = page.get_by_label("Access token", exact=True)
        token.wait_for(timeout=120_000)
        settle(page)
        body = page.locator("body").inner_text()
        assert "Workspace" not in body and "Pairs kept" not in body and "Concepts" not in body
        assert page.locator("[data-testid=stSidebarNav]").count() == 0
        token.fill("ana-wrong-token-000000")
        token.press("Enter")
        expect(page.get_by_text("That token is not valid.")).to_be_visible(timeout=60_000)
        token.fill(TOKEN)
        token.press("Enter")
        expect(page.get_by_text("Signed in as ana")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("Workspace:").first).to_be_visible(timeout=60_000)
        browser.close()
