"""JupyterLab in a real browser: notebook 06 (the rollout viewer, comparing the smoke study's
teacher and default student) and notebook 05 (the figures) opened in JupyterLab, run with
Run > Run All Cells, and driven through headless Chromium (Debian's, via Playwright's sync API).

06: press Render (with another seed), then Play: the frame changes; the slider moved by the
keyboard moves the reward marker to the step's column (read from the trace image's pixels) and
the step table's highlighted row. 05: every figure renders as an image of real size.
Screenshots go to runs/browser/ (git-ignored).

The notebooks are parameterized copies (papermill prepare_only) pointing at the session's smoke
study (tests/conftest.py) and writing into temporary folders, so neither the study nor the
checkout changes. JupyterLab's settings, workspaces, runtime and data folders are temporary too.
The server runs in its own process group; its kernels are shut down through the REST API, then
the group is terminated, and no process it started may survive.

Chromium comes from `bash scripts/setup.sh --browser` (scripts/test.sh runs it). Without it the
test skips, except under CI=true, where it fails.
"""
import base64
import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("TDMPC_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "runs" / "browser"
IN_CI = os.environ.get("CI", "").lower() == "true"
# Generous upper bounds for waiting on a shared 2-core machine; reaching one is a failure with
# the last state seen, never a measurement.
SERVER_WAIT_S = 120
RUN_ALL_WAIT_S = 420
UI_WAIT_S = 120


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser test must run; scripts/setup.sh --browser installs it)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(what: str, probe, timeout: float = UI_WAIT_S, every: float = 0.25):
    """probe() until it returns something truthy; fail naming `what` and the last value otherwise."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as e:  # a revoked blob URL or a detached node: look again
            last = f"{type(e).__name__}: {e}"
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"gave up waiting for {what}; last seen: {str(last)[:300]}")


# ---------------------------------------------------------------------------- the server
class Lab:
    """A JupyterLab server on 127.0.0.1 (free port, random token) in its own session, serving `root`."""

    def __init__(self, root: Path, home: Path):
        import psutil

        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        settings = home / "settings"
        # No news prompt (it would cover the page); every cell in the DOM, also off-screen ones.
        for plugin, values in (("@jupyterlab/apputils-extension/notification",
                                {"fetchNews": "false", "checkForUpdates": False}),
                               ("@jupyterlab/notebook-extension/tracker", {"windowingMode": "none"})):
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
               "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa"),
               # the kernel 'python3' of this interpreter (its venv), before any user-wide one
               "JUPYTER_PATH": os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"),
                                                os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep)}
        self.log_path = home / "jupyterlab.log"
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--ServerApp.token={self.token}",
               f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={home / 'workspaces'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # JupyterLab refuses root without it
            cmd.append("--allow-root")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.family: set[int] = set()
        self._psutil = psutil
        _poll("JupyterLab to answer /api/status", self._ready, timeout=SERVER_WAIT_S)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return self.api("GET", "/api/status") is not None
        except OSError:
            return False

    def api(self, method: str, path: str):
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else {}

    def url(self, path: str) -> str:
        return f"{self.base}{path}{'&' if '?' in path else '?'}token={self.token}"

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.is_file() else ""

    def remember_children(self) -> None:
        """Note every process under the server (kernels included), to check they all end."""
        try:
            self.family |= {p.pid for p in self._psutil.Process(self.proc.pid).children(recursive=True)}
        except self._psutil.NoSuchProcess:
            pass

    def stop(self) -> list[int]:
        """Shut the kernels down, terminate the server's process group (kill it if it lingers),
        then kill anything it started that is still alive; returns the pids that had to be killed."""
        self.remember_children()
        if self.proc.poll() is None:
            try:
                for kernel in self.api("GET", "/api/kernels"):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}")
            except OSError:
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        killed, deadline = [], time.monotonic() + 20
        while True:
            alive = [pid for pid in self.family if self._alive(pid)]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for pid in alive:
            try:
                self._psutil.Process(pid).kill()
                killed.append(pid)
            except self._psutil.NoSuchProcess:
                pass
        return killed

    def _alive(self, pid: int) -> bool:
        try:
            return self._psutil.Process(pid).status() != self._psutil.STATUS_ZOMBIE
        except self._psutil.NoSuchProcess:
            return False


# ---------------------------------------------------------------------------- the page
def _open_notebook(page, lab: Lab, name: str, workspace: str) -> None:
    """Open `name` in its own workspace (no layout restored from another notebook) and wait for
    its kernel: the status bar reads '... | Idle' only once the kernel has started."""
    page.goto(lab.url(f"/lab/workspaces/{workspace}/tree/{name}"))
    page.locator(".jp-NotebookPanel").first.wait_for(timeout=UI_WAIT_S * 1000)
    _poll(f"{name}: its kernel to be idle",
          lambda: "Idle" in (page.locator("#jp-main-statusbar").inner_text() or ""))
    lab.remember_children()


def _run_all(page) -> None:
    """Run > Run All Cells, through the menu as a person would."""
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('#jp-mainmenu-run [data-command="runmenu:run-all"]').click()


def _wait_for_text(page, pattern: str, what: str, timeout: float = RUN_ALL_WAIT_S) -> None:
    """Wait for output text matching `pattern`; a traceback in the notebook fails at once."""
    regex = re.compile(pattern)

    def probe():
        errors = [e for e in page.locator(".jp-OutputArea-output").all_inner_texts()
                  if "Traceback" in e or re.search(r"^\w+Error: ", e, re.M)]
        if errors:
            pytest.fail(f"{what}: a cell failed:\n{errors[0][-2000:]}")
        return regex.search(page.locator(".jp-Notebook").inner_text())
    _poll(what, probe, timeout=timeout, every=1.0)


_FETCH_IMAGE = """async (sel) => {
    const img = document.querySelector(sel);
    if (!img || !img.src) return null;
    const buf = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let s = '';
    for (let i = 0; i < buf.length; i += 8192) s += String.fromCharCode(...buf.subarray(i, i + 8192));
    return btoa(s);
}"""


def _image(page, selector: str) -> bytes | None:
    """The bytes behind an <img> (ipywidgets show images as blob: URLs, fetched in the page)."""
    data = page.evaluate(_FETCH_IMAGE, selector)
    return base64.b64decode(data) if data else None


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _slider_value(page) -> int:
    return int(page.locator(".tdmpc-slider .widget-readout").inner_text().strip())


# ---------------------------------------------------------------------------- the test
@pytest.fixture(scope="module")
def lab_notebooks(smoke_study, tmp_path_factory):
    """Copies of 06 and 05 with their parameters set (papermill prepare_only) for a copy of the
    session's smoke study (they write their results into it), figures into a temporary folder;
    (lab root, figures folder)."""
    import shutil

    import papermill as pm

    from tdmpc_lib.study.execution import NOTEBOOK_DIR

    study_dir, report = smoke_study
    assert report["failed"] == [], report["failed"]
    root = tmp_path_factory.mktemp("lab")
    figures = root / "out" / "figures"
    lab_study = shutil.copytree(study_dir, root / "study")
    for name, overrides in (("06_rollout_viewer", {}), ("05_results", {"figures_dir": str(figures)})):
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(root / f"{name}.ipynb"), prepare_only=True,
                            parameters={"profile": "smoke", "study_dir": str(lab_study), "overrides": overrides},
                            kernel_name="python3", progress_bar=False)
    return root, figures


def test_jupyterlab_viewer_and_results_in_a_browser(lab_notebooks, tmp_path):
    if not Path(CHROMIUM).is_file():
        _missing(f"no Chromium at {CHROMIUM} (bash scripts/setup.sh --browser installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    pytest.importorskip("psutil")  # Lab watches the processes it starts with it

    from tdmpc_lib.study import plots, profiles
    from tdmpc_lib.render import Comparison, marker_column, reward_traces

    root, figures_dir = lab_notebooks
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    vc = profiles.SMOKE.viewer
    # The marker's column for each step: the trace's x axis depends only on the number of steps
    # and the width (tests/test_viewer.py checks that), not on the rewards.
    expected_x = reward_traces([np.zeros(vc.steps)] * 2, 2 * vc.width + Comparison.GAP)[1]

    lab = Lab(root, tmp_path / "jupyter")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
                # ---- 06: run all, then Render, Play, and the slider
                _open_notebook(page, lab, "06_rollout_viewer.ipynb", "viewer")
                _run_all(page)
                _wait_for_text(page, r"results written to", "06 to run to its end")
                lab.remember_children()
                viewer = page.locator(".tdmpc-viewer")
                viewer.scroll_into_view_if_needed()
                assert page.locator(".tdmpc-frame-b").is_visible()  # the comparison is on by default
                assert "lockstep" in page.locator(".tdmpc-status").inner_text()
                viewer.screenshot(path=str(SHOTS / "06_after_run_all.png"))

                page.locator(".tdmpc-seed input").fill("2")
                page.locator(".tdmpc-seed input").press("Enter")
                page.locator(".tdmpc-render").click()
                _poll("Render to show the rollout of seed 2",
                      lambda: re.search(r"seed 2, .* return A", page.locator(".tdmpc-status").inner_text()))
                _poll("the slider to be back at frame 0 with the whole rollout",
                      lambda: _slider_value(page) == 0 and page.locator(".tdmpc-table .current").count() == 1)
                first = _poll("frame 0's image", lambda: _image(page, ".tdmpc-frame-a"))
                first_b = _poll("frame 0's image of B", lambda: _image(page, ".tdmpc-frame-b"))
                assert np.array_equal(_pixels(first), _pixels(first_b))  # lockstep: one initial state

                page.locator(".tdmpc-play button").first.click()  # Play
                changed = _poll("Play to change the frame",
                                lambda: (lambda png: png if png and png != first else None)(
                                    _image(page, ".tdmpc-frame-a")))
                assert _pixels(changed).shape == _pixels(first).shape
                _poll("Play to reach the last frame", lambda: _slider_value(page) == vc.steps)
                viewer.screenshot(path=str(SHOTS / "06_after_play.png"))

                # ---- the marker and the table follow the slider (keyboard on the slider's handle)
                handle = page.locator(".tdmpc-slider .noUi-handle")
                for keys, step in ((["Home"], 0), (["ArrowRight"] * 5, 5), (["End"], vc.steps)):
                    handle.focus()
                    for key in keys:
                        handle.press(key)
                    _poll(f"the slider at {step}", lambda: _slider_value(page) == step)
                    r_i = min(step, vc.steps - 1)  # the last frame marks the last reward
                    want = int(expected_x[r_i])
                    _poll(f"the marker at column {want} (step {r_i})",
                          lambda: marker_column(_pixels(_image(page, ".tdmpc-trace"))) == want)
                    _poll(f"the table's highlighted row at step {r_i}",
                          lambda: page.locator(".tdmpc-table tr.current").get_attribute("data-step") == str(r_i))
                    assert page.locator(".tdmpc-readout").inner_text().startswith(f"frame {step}/{vc.steps}")
                viewer.screenshot(path=str(SHOTS / "06_slider_at_end.png"))

                # ---- 05: the figures render
                page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
                _open_notebook(page, lab, "05_results.ipynb", "results")
                _run_all(page)
                names = plots.figures_for(profiles.SMOKE)
                _wait_for_text(page, re.escape(str(figures_dir)) + r"/\w+\.png", "05 to list its figures")
                sizes = _poll(f"{len(names)} figures to load", lambda: (lambda s: s if len(s) >= len(names) else None)(
                    page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output img')]
                                         .filter(i => i.complete).map(i => [i.naturalWidth, i.naturalHeight])""")))
                assert all(w >= 300 and h >= 200 for w, h in sizes), sizes
                assert sorted(p.stem for p in figures_dir.glob("*.png")) == sorted(names)
                imgs = page.locator(".jp-OutputArea-output img")
                for k in range(imgs.count()):
                    assert imgs.nth(k).is_visible()
                imgs.last.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / "05_figures.png"))
                imgs.first.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / "05_figures_first.png"))
            finally:
                browser.close()
    finally:
        killed = lab.stop()
    assert lab.proc.returncode is not None
    assert not killed, f"JupyterLab left {len(killed)} process(es) behind (killed now): {killed}"
    assert len(list(SHOTS.glob("*.png"))) == 5
