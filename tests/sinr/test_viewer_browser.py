"""The range-map viewer's page in a real headless Chromium (Debian's chromium + chromedriver,
driven by Selenium; nothing downloads a browser): the page loads, a search shows a map, the
threshold slider changes the shown cells, the toggles draw the true range and the observations,
and the comparison panel works. Saves a screenshot (`VIEWER_SCREENSHOT=path` keeps it; with
`VIEWER_RUN` / `VIEWER_COMPARE` it shows those runs instead of the test's runs: see
`make viewer-screenshot`).

Outside CI a machine without chromium skips this test; in CI (CI=true) a missing browser fails it.
"""
import os
import shutil
import time

import numpy as np
import pytest

from sinr_jax.viewer import Api, Limits, RunSource, make_server, serve_in_thread
from sinr_jax.viewer.server import missing_assets

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TIMEOUT = 60


def _require_browser():
  missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER))
             if path is None]
  if missing_assets():
    missing.append("the viewer's vendored libraries (make viewer-assets)")
  if missing:
    why = f"missing {', '.join(missing)}: `make browser viewer-assets` installs them"
    if IN_CI:
      pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def viewer_url(viewer_runs):
  _require_browser()
  run = os.environ.get("VIEWER_RUN")
  paths = [run, os.environ.get("VIEWER_COMPARE")] if run else viewer_runs
  runs = {name: RunSource(p) for name, p in zip("ab", paths) if p}
  res = 4 if run else 2
  server = make_server(Api(runs, Limits(default_res=res, min_res=1, max_res=5)), "127.0.0.1", 0)
  serve_in_thread(server)
  host, port = server.server_address[:2]
  yield f"http://{host}:{port}/", runs
  server.shutdown()
  server.server_close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
  _require_browser()
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--window-size=1500,950",
              f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):
    options.add_argument(arg)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
  drv.set_page_load_timeout(TIMEOUT)
  yield drv
  drv.quit()


def wait_for(drv, script, timeout=TIMEOUT):
  """Polls a JavaScript expression until it is truthy (an error, e.g. while the page reloads,
  counts as not yet); returns its value."""
  deadline = time.monotonic() + timeout
  while True:
    value = drv.execute_script(f"try {{ return {script}; }} catch (e) {{ return null; }}")
    if value:
      return value
    if time.monotonic() > deadline:
      raise AssertionError(f"timed out waiting for: {script}")
    time.sleep(0.1)


def panel(drv, run, key):
  return drv.execute_script(f"return document.querySelector('.panel[data-run={run}]')"
                            f".dataset.{key}")


def paths(drv, run, pane="overlay"):
  return drv.execute_script(f"return document.querySelectorAll('.panel[data-run={run}] "
                            f".leaflet-{pane}-pane path').length")


def test_search_map_slider_toggles_and_comparison(viewer_url, driver, tmp_path):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  url, runs = viewer_url
  driver.get(url)
  wait_for(driver, "document.body.dataset.ready === 'true'")
  assert driver.execute_script("return document.querySelectorAll('.panel').length") == len(runs)
  assert "leaflet-container" in driver.find_element(By.CSS_SELECTOR, ".panel .map").get_attribute(
      "class")

  # Search by name: the first result opens the species in every panel.
  taxa = runs["a"].predictor.taxa
  name = runs["a"].names[int(taxa[len(taxa) // 2])]
  box = driver.find_element(By.ID, "search")
  box.send_keys(name)
  wait_for(driver, "document.querySelector('#results li')")
  first = driver.find_element(By.CSS_SELECTOR, "#results li")
  assert first.get_attribute("data-taxon") == str(taxa[len(taxa) // 2])
  first.click()
  for run in runs:
    wait_for(driver, f"document.querySelector('.panel[data-run={run}]').dataset.state === 'ready'")
  cells = int(panel(driver, "a", "cells"))
  assert cells > 0 and paths(driver, "a") > 0
  assert panel(driver, "a", "taxon") == str(taxa[len(taxa) // 2])
  f1 = float(panel(driver, "a", "threshold"))

  # The slider (keyboard, as a person would) changes the threshold and the shown cells.
  slider = driver.find_element(By.CSS_SELECTOR, ".panel[data-run=a] .threshold")
  slider.send_keys(Keys.END if f1 < 0.5 else Keys.HOME)
  wait_for(driver, f"document.querySelector('.panel[data-run=a]').dataset.threshold != '{f1}'"
                   " && document.querySelector('.panel[data-run=a]').dataset.state === 'ready'")
  moved = float(panel(driver, "a", "threshold"))
  assert moved in (0.01, 0.99)
  assert (int(panel(driver, "a", "numCells")) > cells) == (moved < f1)
  assert int(panel(driver, "a", "numCells")) != cells

  # Toggles: the true range and the training observations.
  driver.find_element(By.ID, "show-truth").click()
  driver.find_element(By.ID, "show-obs").click()
  wait_for(driver, "document.querySelector('.panel[data-run=a]').dataset.truthCells > 0")
  wait_for(driver, "document.querySelector('.panel[data-run=a]').dataset.observations > 0")

  # The comparison panel shows the same species from the other run, with its own threshold.
  if "b" in runs:
    assert panel(driver, "b", "taxon") == str(taxa[len(taxa) // 2])
    assert int(panel(driver, "b", "cells")) > 0 and paths(driver, "b") > 0
    assert float(panel(driver, "b", "threshold")) != moved
    before = driver.execute_script("return window.sinrViewer.panels[1].map.getZoom()")
    driver.find_element(By.CSS_SELECTOR, ".panel[data-run=a] .leaflet-control-zoom-in").click()
    wait_for(driver, f"window.sinrViewer.panels[1].map.getZoom() > {before}")

  # An unknown taxon: the panel says so.
  driver.get(url + "#taxon=999999999")
  driver.refresh()
  wait_for(driver, "document.querySelector('.panel[data-run=a]').dataset.state === 'error'")
  assert "unknown" in driver.find_element(By.CSS_SELECTOR, ".panel[data-run=a] .status").text

  severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and "999999999" not in e["message"]]  # the 404 above is expected
  assert not severe, severe


def test_screenshot(viewer_url, driver, tmp_path):
  """The README's picture: a species, its true range and observations, two runs side by side."""
  from PIL import Image
  url, runs = viewer_url
  taxa = runs["a"].predictor.taxa
  truth = runs["a"].truth
  sizes = [len(truth[1].get(int(t), ())) for t in taxa] if truth else [0] * len(taxa)
  taxon = int(taxa[np.argsort(sizes)[int(len(taxa) * 0.9)]])
  driver.get(url + f"#taxon={taxon}")
  driver.refresh()
  wait_for(driver, "document.body.dataset.ready === 'true'")
  driver.execute_script("document.getElementById('show-truth').click();"
                        "document.getElementById('show-obs').click();")
  for run in runs:
    wait_for(driver, f"document.querySelector('.panel[data-run={run}]').dataset.state === 'ready'")
  wait_for(driver, "document.querySelector('.panel[data-run=a]').dataset.observations")
  time.sleep(0.5)  # let the basemap image settle
  out = os.environ.get("VIEWER_SCREENSHOT") or str(tmp_path / "viewer.png")
  raw = str(tmp_path / "raw.png")
  assert driver.save_screenshot(raw)
  image = Image.open(raw).convert("RGB")
  assert image.size[0] >= 1000
  # Viridis fill of the range cells is on screen (not a blank page).
  pixels = np.asarray(image).reshape(-1, 3).astype(int)
  assert (np.abs(pixels - [0x22, 0xa8, 0x84]).sum(1) < 40).sum() + (
      np.abs(pixels - [0xfd, 0xe7, 0x25]).sum(1) < 40).sum() > 50
  bottom = driver.execute_script(
      "return document.getElementById('panels').getBoundingClientRect().bottom")
  image = image.crop((0, 0, image.size[0], min(image.size[1], int(bottom) + 8)))
  small = image.resize((image.size[0] * 2 // 3, image.size[1] * 2 // 3), Image.LANCZOS)
  small.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
