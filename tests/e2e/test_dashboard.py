"""The web dashboard, driven in a real browser (Debian's chromium through Playwright) while a simulated-task
program runs through the real lab: the frontier gains dots without a reload, an experiment page shows its diff
and its log as it grows, the agents and slots views show live state. Then what it must refuse: a request without
its token (off loopback), a foreign Host on loopback, a path outside the program, markup in what agents wrote,
and any write to the ledger.

Screenshots of each main view go to $RESEARCHORG_SCREENSHOTS (default: the test's temporary directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from researchorg import Program
from researchorg.dashboard import open_dashboard
from researchorg.ledger.sql import SqlLedger
from researchorg.task import find_task
from researchorg.world.git import Git

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                "(.ci/run installs it: apt-get install chromium)")

# a harness that trains for about 1.5 s, printing as it goes, then measures as the simulated task does
SLOW = '''import runpy, sys, time
for step in range(8):
    print(f"step {step}/8", flush=True)
    time.sleep(0.2)
runpy.run_path("harness.py", run_name="__main__")
'''
ORG = '''name = "live"
[rigor]
noise_runs = 2
[[roles]]
name = "researcher"
count = 3
backend = "simulated"
idea_quality = 0.5
think_seconds = 0.3
[[processes]]
kind = "merge"
[[processes]]
kind = "verify"
runs = 1
[[processes]]
kind = "standup"
every_experiments = 4
'''


def slow_task(tmp: Path) -> Path:
    task = tmp / "slow-task"
    shutil.copytree(find_task("simulated"), task)
    (task / "slow.py").write_text(SLOW)
    text = (task / "task.toml").read_text()
    text = text.replace('command = "python harness.py"', 'command = "python slow.py"')
    text = text.replace('protected = ["harness.py", "landscape.toml"]', 'protected = ["harness.py", "landscape.toml", '
                        '"slow.py"]')
    (task / "task.toml").write_text(text)
    return task


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    # the page's Content Security Policy forbids evaluating strings, which Playwright's waits do: bypassed here,
    # so that the markup tests show the page escapes on its own (the policy is checked on the headers)
    context = browser.new_context(viewport={"width": 1300, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(str(err)))
    yield page
    context.close()


def shots() -> Path:
    default = Path(os.environ.get("TMPDIR", "/tmp")) / "researchorg-shots"
    where = Path(os.environ.get("RESEARCHORG_SCREENSHOTS") or default)
    where.mkdir(parents=True, exist_ok=True)
    return where


def ready(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#view[data-ready='1']", timeout=15_000)


def at(url: str, path: str) -> str:
    """`path` of the dashboard whose printed address is `url` (http://host:port/?token=...), with its token."""
    base, token = url.split("?token=")
    return f"{base}{path}{'&' if '?' in path else '?'}token={token}"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A program running through the real lab with its dashboard (`run --dashboard`); its URL."""
    tmp = tmp_path_factory.mktemp("live")
    (tmp / "org.toml").write_text(ORG)
    program = Program.init(tmp / "program", str(slow_task(tmp)), org_file=tmp / "org.toml")
    proc = subprocess.Popen([sys.executable, "-m", "researchorg", "run", str(program.root), "--slots", "2",
                             "--max-experiments", "30", "--dashboard", "--dashboard-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [proc.stdout.readline() for _ in range(1)]
    while not (match := re.search(r"dashboard: (http://\S+)", lines[-1])) and lines[-1] and len(lines) < 20:
        lines.append(proc.stdout.readline())
    assert match, "".join(lines)
    yield match.group(1), program, proc
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)


def test_frontier_gains_dots_without_a_reload(live, page):
    url, _, proc = live
    ready(page, url + "#/frontier")
    page.evaluate("window.__same_page = true")
    chart = page.locator("#frontier-chart")
    before = int(chart.get_attribute("data-points") or 0)
    page.wait_for_function(f"Number(document.querySelector('#frontier-chart').dataset.points) > {before}",
                           timeout=30_000)
    assert page.evaluate("window.__same_page") is True  # updated in place, never reloaded
    assert proc.poll() is None and page.errors == []
    page.screenshot(path=shots() / "frontier.png")


def test_an_experiment_page_shows_its_diff_and_its_log_as_it_grows(live, page):
    url, program, _ = live
    deadline = time.monotonic() + 30
    running = None
    while running is None and time.monotonic() < deadline:  # a proposal that has just started training
        rows = json.loads(get(at(url, "api/experiments?status=running&kind=proposal"))[1])["rows"]
        running = next((r for r in rows if r["slot"]), None)
        time.sleep(0.1)
    assert running is not None, "no proposal was seen running"
    ready(page, url + f"#/experiment/{running['id']}")
    page.wait_for_function("document.querySelector('#log').textContent.includes('step')", timeout=10_000)
    assert "IDEA_" in page.locator("#diff").inner_text()  # the change against its parent
    # the log grows on the page while it trains, to the metric the harness prints at the end
    page.wait_for_function("document.querySelector('#log').textContent.includes('loss:')", timeout=20_000)
    text = page.locator("#log").inner_text()
    assert text.index("step 0/8") < text.index("loss:")
    # and its status moves on the page once it is decided (a borderline one waits for its re-runs)
    page.wait_for_function("document.querySelector('#status').textContent !== 'running'", timeout=45_000)
    page.screenshot(path=shots() / "experiment.png", full_page=True)
    assert page.errors == []


def test_agents_and_slots_show_live_state(live, page):
    url, program, proc = live
    ready(page, url + "#/agents")
    states = page.locator("[data-state]")
    assert states.count() >= 3
    page.wait_for_function("[...document.querySelectorAll('[data-state]')].some(b => b.dataset.state === 'running')",
                           timeout=20_000)
    page.screenshot(path=shots() / "agents.png")
    ready(page, url + "#/slots")
    before = int(page.locator("#slots-timeline").get_attribute("data-runs") or 0)
    page.wait_for_function(f"Number(document.querySelector('#slots-timeline').dataset.runs) > {before}",
                           timeout=30_000)
    assert page.locator("#slots-table tbody tr").count() == 2
    page.screenshot(path=shots() / "slots.png")
    ready(page, url + "#/messages")
    page.wait_for_function("document.querySelectorAll('#feed .msg').length > 0", timeout=30_000)
    page.screenshot(path=shots() / "messages.png")
    for view in ("experiments", "main"):
        ready(page, url + f"#/{view}")
        page.screenshot(path=shots() / f"{view}.png")
    assert page.errors == []


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_the_run_finishes_with_its_dashboard_and_the_dashboard_stops(live):
    url, program, proc = live
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert program.ledger.count() >= 30
    with pytest.raises(OSError):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(at(url, "api/overview"), timeout=2)


# ---- what it refuses ------------------------------------------------------------------------------------
HOSTILE = '<img src=x onerror="window.__pwned=1">'
SCRIPT = '<script>window.__pwned=2</script>'


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A finished program whose agents wrote markup everywhere: a description, a hypothesis, a diff, a log, a
    message; and a row whose log path points outside the program."""
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "org.toml").write_text(ORG.replace("count = 3", "count = 1"))
    program = Program.init(tmp / "program", "simulated", org_file=tmp / "org.toml")
    subprocess.run([sys.executable, "-m", "researchorg", "run", str(program.root), "--max-experiments", "6"],
                   check=True, capture_output=True)
    ledger = program.ledger
    e = ledger.experiments()[-1]
    bad = ledger.start_experiment(e.agent, e.parent_commit, e.commit, diff=f"+{SCRIPT}\n-{HOSTILE}\n",
                                  description=HOSTILE, hypothesis=SCRIPT, proposal={}, seed=99,
                                  log_dir=program.logs_dir)
    Path(bad.log_path).write_text(f"{SCRIPT}\n{HOSTILE}\nloss: 1.0\n")
    ledger.finish_experiment(bad.id, "crash", reason=HOSTILE)
    outside = ledger.start_experiment(e.agent, e.parent_commit, e.commit, diff="", description="outside",
                                      hypothesis="", proposal={}, seed=98, log_dir=None)
    ledger.finish_experiment(outside.id, "crash", reason="x")
    ledger.engine.dispose()
    import sqlite3

    with sqlite3.connect(program.state_dir / "ledger.db") as db:  # as if a log path led out of the program
        db.execute("UPDATE experiments SET log_path = ? WHERE id = ?", (str(tmp / "secret.txt"), outside.id))
    (tmp / "secret.txt").write_text("the secret outside the program\n")
    ledger.send("researcher-1", None, "note", f"{SCRIPT} and {HOSTILE}", experiment_id=bad.id)
    # a commit of bytes that are not UTF-8 and of a file larger than a page shows
    work = tmp / "big"
    program.git("worktree", "add", "-q", "--detach", str(work), e.commit)
    (work / "binary-ish.txt").write_bytes(b"caf\xe9 \xff\xfe not UTF-8\n")
    (work / "huge.txt").write_text("line of a generated file\n" * 60_000)
    big_commit = Git(work).commit_all("a large change")
    big = ledger.start_experiment(e.agent, e.commit, big_commit, diff="", description="large", hypothesis="",
                                  proposal={}, seed=97, log_dir=None)
    ledger.finish_experiment(big.id, "discard")
    ledger.close()
    board = open_dashboard(program.root, "127.0.0.1", 0).start()
    yield board.url, program, bad.id, outside.id, big.id
    board.stop()


def test_markup_that_agents_wrote_is_shown_as_text_and_never_runs(hostile, page):
    url, _, bad, _, _ = hostile
    for view in ("experiments", f"experiment/{bad}", "messages", "frontier"):
        ready(page, url + f"#/{view}")
        page.wait_for_timeout(200)
        assert page.evaluate("window.__pwned") is None, view
        assert page.locator("#view img").count() == 0 and page.locator("#view script").count() == 0
    ready(page, url + f"#/experiment/{bad}")
    page.wait_for_function("document.querySelector('#log').textContent.includes('loss')")
    shown = page.locator("#view").inner_text()
    assert HOSTILE in shown and SCRIPT in shown  # literally, in the title, hypothesis, reason, diff and log
    assert page.evaluate("window.__pwned") is None and page.errors == []
    ready(page, url + "#/messages")
    assert SCRIPT in page.locator("#feed").inner_text()


def test_nothing_outside_the_program_is_served(hostile):
    url, program, _, outside, _ = hostile
    for path in ("static/../../../../etc/passwd", "static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "static/..%2f..%2f..%2fpyproject.toml", "static/%2e%2e/app.py", "..%2f..%2fetc%2fpasswd",
                 "static//etc/passwd", "api/experiments/..%2f..%2fetc/log"):
        status, body, _ = get(at(url, path))
        assert status in (400, 404, 422), (path, status)
        assert "root:" not in body and "import" not in body
    status, body, _ = get(at(url, f"api/experiments/{outside}/log"))
    assert status == 200 and json.loads(body)["text"] == "" and "secret" not in body
    status, body, _ = get(at(url, f"api/experiments/{outside}"))
    assert json.loads(body)["has_log"] is False


def test_on_loopback_it_answers_only_requests_addressed_to_loopback_and_with_its_token(hostile):
    url, *_ = hostile
    status, _, headers = get(url)
    assert status == 200 and "script-src 'self'" in headers["content-security-policy"]
    assert get(at(url, "api/overview"))[0] == 200
    assert get(at(url, "api/overview"), {"Host": "localhost"})[0] == 200
    assert get(at(url, "api/overview"), {"Host": "[::1]"})[0] == 200
    for host in ("evil.example:8765", "localhost.evil.example", "127.0.0.1.nip.io", ""):  # DNS rebinding
        status, body, _ = get(at(url, "api/overview"), {"Host": host})
        assert status == 403 and "loopback" in body, host
    # an agent's coding CLI shares this machine's loopback: without the token it reads nothing, even
    # addressing the dashboard by its loopback name
    base = url.split("?")[0]
    for path in ("", "api/overview", "api/messages", "api/experiments/1", "api/experiments/1/log", "static/app.js",
                 "api/stream"):
        status, body, _ = get(base + path, {"Host": "127.0.0.1"})
        assert status == 401 and "token" in body, path
        assert get(base + path + "?token=wrong")[0] == 401


def test_beyond_loopback_every_request_needs_its_token(hostile):
    _, program, _, _, _ = hostile
    board = open_dashboard(program.root, "0.0.0.0", 0).start()
    try:
        token = board.url.split("token=")[1]
        base = board.url.split("?")[0].replace("0.0.0.0", "127.0.0.1")
        for path in ("", "api/overview", "api/experiments", "static/app.js", "api/stream"):
            status, body, _ = get(base + path, {"Host": "lab.example:1234"})
            assert status == 401 and "token" in body, path
            assert get(base + path + ("&" if "?" in path else "?") + "token=wrong")[0] == 401
        assert get(base + "api/overview", {"Authorization": f"Bearer {token}", "Host": "lab.example"})[0] == 200
        status, _, headers = get(base + f"?token={token}")
        port = base.rstrip("/").rsplit(":", 1)[1]
        assert status == 200 and f"researchorg_token_{port}=" in headers.get("set-cookie", "")
        assert "httponly" in headers["set-cookie"].lower()
        assert get(base + "api/overview", {"Cookie": f"researchorg_token_{port}={token}"})[0] == 200
    finally:
        board.stop()


def test_a_large_change_that_is_not_utf8_is_shown_cut_and_replaced(hostile):
    url, _, _, _, big = hostile
    status, body, _ = get(at(url, f"api/experiments/{big}"))
    assert status == 200
    against_main = json.loads(body)["diff_main"]
    assert against_main["cut"] is True and len(against_main["text"]) <= 512 * 1024  # git's output cut at 512 KB
    assert "caf\ufffd" in against_main["text"]  # the byte that is not UTF-8, replaced


def test_the_dashboard_never_writes_the_ledger(hostile):
    url, program, bad, _, _ = hostile
    db = program.state_dir / "ledger.db"
    files = sorted(program.state_dir.glob("ledger.db*"))

    def digest() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists()}

    before = digest()
    for path in ("api/overview", "api/frontier", "api/experiments?q=idea&sort=metric", f"api/experiments/{bad}",
                 f"api/experiments/{bad}/log", "api/agents", "api/slots", "api/messages", "api/main", "api/knobs"):
        assert get(at(url, path))[0] == 200, path
    assert digest() == before
    reader = SqlLedger(db, reader=True)
    with pytest.raises(Exception, match="nothing can be recorded: opened to read only"):
        reader.log_event("forged")
    reader.close()


def test_a_tuner_program_shows_its_knobs(tmp_path, page):
    (tmp_path / "org.toml").write_text('name = "t"\n[rigor]\nnoise_runs = 0\n[[roles]]\nname = "tuner"\n'
                                       'backend = "tuner"\n')
    program = Program.init(tmp_path / "program", "simulated", org_file=tmp_path / "org.toml")
    subprocess.run([sys.executable, "-m", "researchorg", "run", str(program.root), "--max-experiments", "12"],
                   check=True, capture_output=True)
    board = open_dashboard(program.root, "127.0.0.1", 0).start()
    try:
        ready(page, board.url + "#/knobs")
        assert int(page.locator("#parallel").get_attribute("data-lines")) >= 8
        assert page.locator("#importance tbody tr").count() >= 1
        page.screenshot(path=shots() / "knobs.png")
        assert page.errors == []
    finally:
        board.stop()


def test_a_bench_output_shows_its_curves_table_and_paired_tests(tmp_path, page):
    spec = tmp_path / "bench.toml"
    spec.write_text('name = "tiny"\ntask = "simulated"\nrepeats = 2\n[compute]\nslots = 2\nexperiments = 30\n'
                    '[[orgs]]\nfile = "a.toml"\n[[orgs]]\nfile = "b.toml"\n')
    for name, policy in (("a", "greedy"), ("b", "noise-aware")):
        (tmp_path / f"{name}.toml").write_text(f'name = "{name}"\npolicy = "{policy}"\n[[roles]]\nname = "r"\n'
                                               'count = 2\nbackend = "simulated"\n[[processes]]\nkind = "merge"\n')
    subprocess.run([sys.executable, "-m", "researchorg", "bench", str(spec), "--out", str(tmp_path / "out")],
                   check=True, capture_output=True)
    board = open_dashboard(tmp_path / "out", "127.0.0.1", 0).start()
    try:
        ready(page, board.url)
        assert page.locator("#view").get_attribute("data-view") == "bench"
        assert page.locator("#bench-curves").get_attribute("data-orgs") == "2"
        assert "a - b" in page.locator("#view").inner_text()
        assert page.locator("#bench-summary tbody tr").count() == 2  # a row per org
        page.screenshot(path=shots() / "bench.png", full_page=True)
        assert page.errors == []
    finally:
        board.stop()
