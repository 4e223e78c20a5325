"""Looks at a pipeline's runs in the MLflow UI with a real browser (headless Chromium).

Starts `mlflow ui` on loopback over a tracking store, then
  1. opens the experiment's runs in chart view with the pipeline run expanded, so its stage
     runs share the charts (test/mAP bars, val/mAP curves), and
  2. opens the compare page of the stage runs,
saves a screenshot of each and checks that every stage run and its test mAP appear.

    python scripts/ui_check.py [--tracking-uri sqlite:///mlflow.db] [--run PIPELINE_RUN_ID] [--out ui-shots]

Needs Debian's Chromium (`apt-get install chromium`) and Playwright's Python package
(`pip install playwright`); Playwright drives the system browser, nothing is downloaded.
Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow

CHROMIUM = "/usr/bin/chromium"
# No background traffic: this machine's closed network refuses it, many times a start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(uri: str, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: mlflow ui starts job workers of its own
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"mlflow ui did not answer on port {port} within 90 s")


def pipeline_runs(client: mlflow.MlflowClient, run_id: str | None):
    """The pipeline run (the newest finished one unless given) and its stage runs."""
    if run_id is None:
        found = mlflow.search_runs(
            search_all_experiments=True,
            filter_string="tags.`psl.stage` = 'pipeline' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
        if not found:
            raise SystemExit("no finished pipeline run in this tracking store; run `psl pipeline` first")
        run_id = found[0].info.run_id
    parent = client.get_run(run_id)
    children = [client.get_run(r) for r in parent.data.tags.get("psl.children", "").split(",") if r]
    return parent, children


def check(condition: bool, message: str, failures: list[str]) -> None:
    print(("ok    " if condition else "FAIL  ") + message)
    if not condition:
        failures.append(message)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    parser.add_argument("--run", default=None, help="pipeline run id (default: the newest finished one)")
    parser.add_argument("--out", type=Path, default=Path("ui-shots"), help="folder for the screenshots")
    args = parser.parse_args()
    if args.tracking_uri:
        mlflow.set_tracking_uri(args.tracking_uri)
    uri = mlflow.get_tracking_uri()
    client = mlflow.MlflowClient()
    parent, children = pipeline_runs(client, args.run)
    experiment = parent.info.experiment_id
    nested = [r for r in children if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    scored = {r.info.run_name: r.data.metrics["test/mAP"] for r in children if "test/mAP" in r.data.metrics}
    print(
        f"pipeline run {parent.info.run_id} ({parent.info.run_name}): {len(children)} stage runs, {len(nested)} of them nested"
    )
    if not any("test/mAP" in r.data.metrics for r in nested):
        raise SystemExit(
            f"pipeline run {parent.info.run_id} reused all its training stages, which are nested under the "
            "pipeline runs that trained them: pass --run with one of those"
        )
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    port = free_port()
    server = start_ui(uri, port)
    base = f"http://127.0.0.1:{port}/#"
    failures: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1400})

            try:
                # 1. Chart view, the pipeline run expanded: its stage runs on shared charts.
                page.goto(f"{base}/experiments/{experiment}/runs?compareRunsMode=CHART")
                name_cell = page.locator(".ag-cell", has=page.locator(f"a[href$='/runs/{parent.info.run_id}']"))
                name_cell.wait_for(timeout=30_000)
                if nested:
                    name_cell.locator("button").first.click()  # expand: the stage runs are nested
                for run in nested:
                    page.locator(f"a[href$='/runs/{run.info.run_id}']").first.wait_for(timeout=15_000)
                page.get_by_placeholder("Search metric charts").fill("/mAP")  # the charts that compare the runs
                page.locator("text=test/mAP >> visible=true").first.wait_for(timeout=15_000)
                page.wait_for_timeout(2000)  # let the charts finish drawing
                page.screenshot(path=args.out / "runs-chart-view.png")
                text = page.inner_text("body")
                for run in nested:
                    check(run.info.run_name in text, f"chart view lists {run.info.run_name}", failures)
                for metric in ("test/mAP", "val/mAP"):
                    check(metric in text, f"chart view has a {metric} chart", failures)

                # 2. The compare page of the trained runs: params and metrics side by side.
                ids = urllib.parse.quote(json.dumps([r.info.run_id for r in children if "test/mAP" in r.data.metrics]))
                page.set_viewport_size({"width": 1600, "height": 3000})
                page.goto(f"{base}/compare-runs?runs={ids}&experiments={urllib.parse.quote(json.dumps([experiment]))}")
                page.locator("text=test/mAP >> visible=true").first.wait_for(timeout=30_000)
                page.locator("text=test/mAP").first.scroll_into_view_if_needed()  # the metrics table scrolls
                page.wait_for_timeout(1500)
                page.screenshot(path=args.out / "compare-runs.png", full_page=True)
                text = page.inner_text("body")
                for name, value in scored.items():
                    check(name in text, f"compare page shows {name}", failures)
                    check(_shown(value, text), f"compare page shows test/mAP {value:.4f} of {name}", failures)
            except Exception:
                page.screenshot(path=args.out / "failure.png")  # what the browser saw when it failed
                print(f"the browser's view at the failure: {args.out / 'failure.png'}")
                raise
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    print(f"screenshots in {args.out}/")
    return 1 if failures else 0


def _shown(value: float, text: str) -> bool:
    """The UI rounds metrics for display; any rounding to 3 or more digits counts."""
    return any(f"{value:.{d}f}".rstrip("0") in text for d in range(3, 8))


if __name__ == "__main__":
    sys.exit(main())
