"""The dashboard on a long ledger: each view's first load in a real browser, on a 10,000-experiment program.

    python benchmarks/dashboard.py [--experiments 10000] [--quick]

Builds a program with the simulated task (`Program.init`), runs an org of 16 simulated researchers with merges,
verification and a standup for N experiments in the simulated world (virtual time), writes that ledger into the
program (SQLite), and serves it with `researchorg dashboard`'s server. Each view is then opened in a fresh
browser page (Debian's chromium through Playwright) with the server's view cache emptied, and timed from the
navigation to the view drawn: what a person waits for when opening it the first time. Each view is
opened three times so (each a first load: a new page, the server's cache emptied) and the median reported,
since one load on a shared 2-core machine can take twice as long as the next.

    dashboard_start_seconds:             the server's first read of the ledger (every experiment)
    dashboard_page_seconds_<view>:       a view's first load (target at most 1.0)
    dashboard_page_seconds_max:          the slowest of them
    frontier_points:                     dots the frontier drew

Without chromium it times each view's API call instead (and says so). The quick mode (CI) uses 1,000
experiments.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from researchorg import Landscape, Limits, OrgSpec, Program, Runtime, SimWorld, SqlLedger
from researchorg.dashboard import open_dashboard

VIEWS = ["frontier", "experiments", "experiment", "agents", "slots", "messages", "main"]
API = {"frontier": "api/frontier", "experiments": "api/experiments", "agents": "api/agents", "slots": "api/slots",
       "messages": "api/messages", "main": "api/main"}


def build(root: Path, experiments: int) -> Path:
    """A program whose ledger holds `experiments` runs of a simulated org."""
    org = OrgSpec(name="long", roles=[{"name": "researcher", "count": 16, "backend": "simulated",
                                       "idea_quality": 0.3, "think_seconds": 60}],
                  processes=[{"kind": "merge"}, {"kind": "verify", "runs": 2},
                             {"kind": "standup", "every_experiments": 50}])
    org_file = root.parent / "org.toml"
    org_file.write_text('name = "long"\n[[roles]]\nname = "researcher"\nbackend = "simulated"\n')
    program = Program.init(root, "simulated", org_file=org_file)
    world = SimWorld(Landscape(seed=0, n_ideas=400), org)
    Runtime(world, slots=world.default_slots(16)).run(Limits(max_experiments=experiments))
    db = program.state_dir / "ledger.db"
    program.ledger.close()
    for path in program.state_dir.glob("ledger.db*"):
        path.unlink()
    stored = SqlLedger(db)
    stored.copy_from(world.ledger)
    stored.close()
    return program.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 experiments (CI)")
    args = parser.parse_args()
    n = 1000 if args.quick else args.experiments
    with tempfile.TemporaryDirectory(prefix="researchorg-dashboard-") as tmp:
        root = build(Path(tmp) / "program", n)
        started = time.perf_counter()
        board = open_dashboard(root, "127.0.0.1", 0).start()
        start_seconds = time.perf_counter() - started
        source = board.source
        print(f"experiments: {source.overview()['experiments']}")
        print(f"dashboard_start_seconds: {start_seconds:.3f}")
        middle = source.experiments(limit=1, offset=n // 2)["rows"][0]["id"]
        times: dict[str, float] = {}
        try:
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            if Path(chromium).exists():
                times, points = _browser(board.url, source, chromium, middle)
                print(f"frontier_points: {points}")
            else:
                print("no chromium here: timing the API calls alone (apt-get install chromium for the pages)")
                times = _api(board.url, source, middle)
        finally:
            board.stop()
        for view, seconds in times.items():
            print(f"dashboard_page_seconds_{view}: {seconds:.3f}")
        print(f"dashboard_page_seconds_max: {max(times.values()):.3f}")


def _browser(url: str, source, chromium: str, middle: int) -> tuple[dict[str, float], int]:
    from playwright.sync_api import sync_playwright

    times, points = {}, 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(url + "#/main")  # the browser itself started, and the static files cached, as a person's is
        page.wait_for_selector("#view[data-ready='1']")
        for view in VIEWS:
            loads = []
            for _ in range(3):
                page.close()
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                source._cache.clear()  # the server computes the view anew, as at its first load
                route = f"experiment/{middle}" if view == "experiment" else view
                started = time.perf_counter()
                page.goto(url + f"#/{route}")
                page.wait_for_selector("#view[data-ready='1']", timeout=60_000)
                loads.append(time.perf_counter() - started)
            times[view] = statistics.median(loads)
            if view == "frontier":
                points = int(page.locator("#frontier-chart").get_attribute("data-points"))
        browser.close()
    return times, points


def _api(url: str, source, middle: int) -> dict[str, float]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    times = {}
    for view in VIEWS:
        source._cache.clear()
        path = f"api/experiments/{middle}" if view == "experiment" else API[view]
        started = time.perf_counter()
        base, token = url.split("?token=")
        with opener.open(f"{base}{path}?token={token}", timeout=60) as response:
            response.read()
        times[view] = time.perf_counter() - started
    return times


if __name__ == "__main__":
    main()
