#!/usr/bin/env python3
"""`ctstream view` in a real headless browser (Chromium and its driver from Debian's
packages, driven by Selenium): the page loads with no console errors, the scans table
shows every scan with its thumbnail and sorts, a scan's three views draw and scroll
(mouse wheel and keys), overlays toggle, a click in the nodule table moves the views to
the nodule's slice, a click in a view moves the others to that point, the window presets
change the picture, and the run's curves draw. A screenshot of each state goes to --out.

    python3 tools/view/browser_test.py --bin target/release/ctstream --out target/view-screenshots

Without --demo it makes one: `ctstream demo --small` (a store of synthetic scans, a short
training run, a prediction and its evaluation) in a temporary folder. Exits 1 naming the
first check that failed; prints a JSON summary of what it saw.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def start_viewer(binary, demo):
    cmd = [binary, "view", os.path.join(demo, "store"), "--port", "0"]
    cmd += ["--run", os.path.join(demo, "run"), "--pred", os.path.join(demo, "pred")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"http://\S+/", line)
    if not m:
        proc.kill()
        raise AssertionError(f"ctstream view printed {line!r}; stderr: {proc.stderr.read()}")
    return proc, m.group(0)


def browser(chromedriver, chromium):
    opts = webdriver.ChromeOptions()
    if chromium:
        opts.binary_location = chromium
    for a in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1700,1000",
        "--no-first-run",
        "--disable-extensions",
    ]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver: Selenium Manager never looks for one on the network.
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)


def caption(d, plane):
    return d.find_element(By.CSS_SELECTOR, f'figure.view[data-plane="{plane}"] figcaption').text


def index(d, plane):
    m = re.match(rf"{plane} (\d+) / (\d+)", caption(d, plane))
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def canvas_digest(d, plane):
    return d.execute_script(
        "const c = document.querySelector(`figure.view[data-plane='${arguments[0]}'] canvas`);"
        "return c.toDataURL().length + ':' + c.toDataURL().slice(-64);",
        plane,
    )


def store_rows(d):
    return json.loads(d.execute_script("return JSON.stringify(window.ctview.rows)"))


def wait_drawn(d, plane, i):
    WebDriverWait(d, 30).until(lambda d: index(d, plane)[0] == i)


def run(args):
    seen = {}
    out = args.out
    os.makedirs(out, exist_ok=True)
    proc, url = start_viewer(args.bin, args.demo)
    d = browser(args.chromedriver, args.chromium)
    try:
        d.get(url)
        WebDriverWait(d, 60).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
        )
        store = json.loads(d.execute_script("return JSON.stringify(window.ctview.store)"))
        rows = d.find_elements(By.CSS_SELECTOR, "#scans tbody tr")
        check(
            len(rows) == store["scans"], f"scans table: {len(rows)} rows for {store['scans']} scans"
        )
        WebDriverWait(d, 60).until(
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('#scans img')].every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        seen["scans"] = len(rows)
        d.save_screenshot(os.path.join(out, "1-scans.png"))

        # Sorting by a column, both ways.
        th = d.find_element(By.CSS_SELECTOR, '#scans th[data-key="lung_ml"]')
        th.click()
        th.click()
        values = [
            float(r.find_elements(By.TAG_NAME, "td")[4].text or "nan")
            for r in d.find_elements(By.CSS_SELECTOR, "#scans tbody tr")
        ]
        check(values == sorted(values, reverse=True), f"lung volumes sorted down: {values}")
        seen["sorted_lung_ml"] = values

        # One scan (one with a probability map, as the demo's held-out scan): the three views draw.
        series = d.execute_async_script("""
            const done = arguments[arguments.length - 1];
            (async () => {
              for (const r of window.ctview.rows) {
                const s = await (await fetch(`/api/scans/${encodeURIComponent(r.series_id)}`)).json();
                if (s.probability) return r.series_id;
              }
              return window.ctview.rows[0].series_id;
            })().then(done);""")
        d.find_element(By.CSS_SELECTOR, f'#scans tbody tr[data-series="{series}"]').click()
        for plane in ["axial", "coronal", "sagittal"]:
            WebDriverWait(d, 30).until(lambda d, p=plane: index(d, p)[0] is not None)
        z0, nz = index(d, "axial")
        seen["series"], seen["axial_start"] = series, [z0, nz]
        d.save_screenshot(os.path.join(out, "2-scan.png"))

        # Scrolling: the wheel over the axial view, then the keys.
        axial = d.find_element(By.CSS_SELECTOR, 'figure.view[data-plane="axial"] canvas')
        step = -1 if z0 + 3 > nz else 1
        for _ in range(3):
            ActionChains(d).scroll_from_origin(
                ScrollOrigin.from_element(axial), 0, 100 * step
            ).perform()
            time.sleep(0.05)
        wait_drawn(d, "axial", z0 + 3 * step)
        ActionChains(d).move_to_element(axial).perform()
        ActionChains(d).send_keys(Keys.ARROW_DOWN if step < 0 else Keys.ARROW_UP).perform()
        wait_drawn(d, "axial", z0 + 2 * step)
        seen["axial_after_scroll"] = index(d, "axial")[0]

        # Overlays: the lung mask off changes the picture; on again restores it.
        before = canvas_digest(d, "coronal")
        box = d.find_element(By.CSS_SELECTOR, 'input[data-overlay="label:lungs"]')
        check(box.is_selected(), "the lung overlay is on at first")
        box.click()
        WebDriverWait(d, 10).until(lambda d: canvas_digest(d, "coronal") != before)
        d.save_screenshot(os.path.join(out, "3-lungs-off.png"))
        box.click()
        WebDriverWait(d, 10).until(lambda d: canvas_digest(d, "coronal") == before)
        seen["overlays"] = d.execute_script("return [...window.ctview.overlays]")
        # The probability map's overlay: there, on, and off when unticked.
        prob = d.find_elements(By.CSS_SELECTOR, 'input[data-overlay="probability"]')
        check(prob and prob[0].is_selected(), f"{series}: the probability overlay, on")
        prob[0].click()
        WebDriverWait(d, 10).until(
            lambda d: "probability" not in d.execute_script("return [...window.ctview.overlays]")
        )
        prob[0].click()

        # The window presets change the picture.
        d.find_element(By.CSS_SELECTOR, 'button.preset[data-width="400"]').click()
        WebDriverWait(d, 10).until(lambda d: canvas_digest(d, "coronal") != before)
        check("width 400" in d.find_element(By.ID, "window-text").text, "mediastinum window shown")
        d.find_element(By.CSS_SELECTOR, 'button.preset[data-width="1500"]').click()

        # A click in the nodule table moves every view to the nodule.
        nodules = json.loads(d.execute_script("return JSON.stringify(window.ctview.scan.nodules)"))
        check(nodules, f"{series} has nodules")
        last = nodules[-1]
        d.find_elements(By.CSS_SELECTOR, "#nodules tbody tr")[-1].click()
        z, y, x = (round(v) for v in last["voxel_zyx"])
        for plane, i in [("axial", z), ("coronal", y), ("sagittal", x)]:
            wait_drawn(d, plane, i)
        seen["nodule_jump"] = [z, y, x]
        d.save_screenshot(os.path.join(out, "4-nodule.png"))

        # A click in the axial view moves the coronal and sagittal views to that point.
        ActionChains(d).move_to_element_with_offset(
            axial, -axial.size["width"] // 4, 0
        ).click().perform()
        WebDriverWait(d, 10).until(lambda d: index(d, "sagittal")[0] != x)
        seen["click_point"] = d.execute_script("return window.ctview.point")

        # The findings table lists the prediction's findings of this scan.
        seen["findings"] = len(d.find_elements(By.CSS_SELECTOR, "#findings tbody tr"))

        # The run: its curves and the FROC.
        d.find_element(By.ID, "tab-run").click()
        WebDriverWait(d, 10).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#charts figure")) > 0
        )
        charts = [
            f.get_attribute("data-chart")
            for f in d.find_elements(By.CSS_SELECTOR, "#charts figure")
        ]
        check(any(c.startswith("FROC") for c in charts), f"a FROC chart among {charts}")
        check(any(c.startswith("train:") for c in charts), f"training curves among {charts}")
        seen["charts"] = charts
        d.save_screenshot(os.path.join(out, "5-run.png"))

        # Back to the scans: filtered by a word, then by a numeric column.
        d.find_element(By.ID, "tab-scans").click()
        box = d.find_element(By.ID, "filter")
        box.send_keys(series[-6:])
        WebDriverWait(d, 10).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#scans tbody tr")) == 1
        )
        box.clear()
        cut = sorted(values)[1] - 0.5  # the lung volumes shown are rounded to ml
        box.send_keys(f"lung_ml>={cut}")
        want = sum(1 for r in store_rows(d) if r["lung_ml"] is not None and r["lung_ml"] >= cut)
        WebDriverWait(d, 10).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#scans tbody tr")) == want
        )
        seen["numeric_filter"] = [f"lung_ml>={cut}", want]

        errors = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        check(not errors, f"console errors: {errors}")
        seen["console_errors"] = 0
        seen["status_line"] = d.find_element(By.ID, "status").text
        check(seen["status_line"] == "", f"the page reported {seen['status_line']!r}")
    finally:
        d.quit()
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("ctstream view did not stop on SIGINT") from None
    check(proc.returncode == 0, f"ctstream view exited {proc.returncode}: {proc.stderr.read()}")
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the ctstream binary")
    ap.add_argument(
        "--demo", help="a `ctstream demo` output folder [default: make one with --small]"
    )
    ap.add_argument("--out", required=True, help="folder for the screenshots")
    ap.add_argument(
        "--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver"
    )
    ap.add_argument("--chromium", default=shutil.which("chromium"))
    args = ap.parse_args()
    tmp = None
    if not args.demo:
        tmp = tempfile.mkdtemp(prefix="ctstream-view-")
        args.demo = os.path.join(tmp, "demo")
        t = time.time()
        subprocess.run(
            [args.bin, "demo", "--small", "--train-steps", "20", "--quiet", "--out", args.demo],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"browser_test: ctstream demo --small in {time.time() - t:.0f} s", file=sys.stderr)
    try:
        seen = run(args)
    except AssertionError as e:
        print(f"browser_test: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(seen))
    print(f"browser_test: passed; screenshots in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
