"""Browser plumbing for the dashboard: a loopback Streamlit server, Chromium, page helpers."""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_SCRIPT = REPO_ROOT / "streamlit_app.py"
HOST = "127.0.0.1"

# Debian's Chromium: Playwright's own browser download is never used.
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1440, "height": 900}
# Full-page screenshots grow the viewport to the content, up to this height in pixels.
MAX_SCREENSHOT_HEIGHT = 12_000

SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 10.0
HEALTH_POLL_S = 0.25
# The first visit loads the ONNX sessions and compiles the page scripts.
FIRST_LOAD_TIMEOUT_MS = 180_000
PAGE_TIMEOUT_MS = 90_000
ACTION_TIMEOUT_MS = 45_000
# The app counts as idle once it has reported "not running" for this long.
IDLE_SETTLE_MS = 400
POLL_MS = 25

# Selectors of Streamlit 1.67's DOM (its data-testid attributes).
MAIN = '[data-testid="stMain"]'
TITLE = f"{MAIN} h1"
EXCEPTION = '[data-testid="stException"]'
ERROR_ALERT = '[data-testid="stAlertContentError"]'
NAV_LINK = '[data-testid="stSidebarNavLink"]'
# Streamlit 1.67 renders a slider thumb as a native range input; older versions as role=slider.
SLIDER_THUMB = (
    f'{MAIN} [data-testid="stSlider"] input[type="range"], '
    f'{MAIN} [data-testid="stSlider"] [role="slider"]'
)
IMAGES = f'{MAIN} [data-testid="stImage"] img'
FILE_INPUT = f'{MAIN} input[type="file"]'
DOWNLOAD_BUTTON = f'{MAIN} [data-testid="stDownloadButton"] button'
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')

# True once the script has finished, nothing is waiting to be replaced and no placeholder or
# spinner is left (elements still arrive for a moment after the "notRunning" state).
IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.dataset.testScriptState === "notRunning"
    && app.dataset.testConnectionState === "CONNECTED"
    && !document.querySelector('[data-stale="true"], [data-testid="stSkeleton"]')
    && !document.querySelector('[data-testid="stSpinner"]');
}"""
# Sources of the images in the main area, in page order.
IMAGE_SOURCES_JS = """(sel) => Array.from(document.querySelectorAll(sel)).map(img => img.src)"""
# True when the images in the main area differ from `before` and have finished loading.
IMAGES_CHANGED_JS = """([sel, before]) => {
  const imgs = Array.from(document.querySelectorAll(sel));
  const now = imgs.map(img => img.src);
  const changed = now.length !== before.length || now.some((src, i) => src !== before[i]);
  return changed && imgs.every(img => img.complete && img.naturalWidth > 0);
}"""
# Height of the app's content, whichever element scrolls.
CONTENT_HEIGHT_JS = """() => Math.max(
  document.documentElement.scrollHeight,
  ...['stMain', 'stAppViewContainer', 'stMainBlockContainer', 'stSidebarContent'].map(id => {
    const el = document.querySelector(`[data-testid="${id}"]`);
    return el ? el.scrollHeight : 0;
  }))"""
# Whether every image on the page has loaded (for screenshots).
IMAGES_LOADED_JS = """() => Array.from(document.images).every(img => img.complete)"""
# Whether every image has loaded and every Plotly chart has drawn its plot (its SVG).
RENDERED_JS = """() => Array.from(document.images).every(img => img.complete)
  && Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
       .every(chart => !!chart.querySelector('.main-svg'))"""


@dataclass(frozen=True)
class AppPage:
    """One page of the app's navigation.

    Attributes:
        file: The page script, relative to the app's folder (e.g. ``pages/sample.py``).
        title: The title in the sidebar navigation.
        default: Whether it is the page served at ``/``.
    """

    file: str
    title: str
    default: bool = False

    @property
    def name(self) -> str:
        """The script's stem (e.g. ``sample``), used for screenshot names."""
        return Path(self.file).stem

    @property
    def url_path(self) -> str:
        """The path Streamlit serves the page at: ``""`` for the default page, else the stem."""
        return "" if self.default else self.name


def app_pages(app: Path = APP_SCRIPT) -> list[AppPage]:
    """The pages declared by ``st.Page(...)`` calls in the app script, in navigation order.

    Args:
        app: The app script.

    Returns:
        One ``AppPage`` per ``st.Page`` call with a literal file name.
    """
    tree = ast.parse(Path(app).read_text(encoding="utf-8"))
    found: list[tuple[int, int, AppPage]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "Page" or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        keywords = {
            kw.arg: kw.value.value for kw in node.keywords if isinstance(kw.value, ast.Constant)
        }
        title = keywords.get("title") or Path(first.value).stem.replace("_", " ").capitalize()
        page = AppPage(first.value, str(title), bool(keywords.get("default", False)))
        found.append((node.lineno, node.col_offset, page))
    return [page for _, _, page in sorted(found, key=lambda item: item[:2])]


def missing_pages(app: Path = APP_SCRIPT) -> list[str]:
    """Page scripts named by the app that do not exist yet."""
    root = Path(app).resolve().parent
    return [p.file for p in app_pages(app) if not (root / p.file).is_file()]


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux ``/proc``)."""
    seen, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        todo += _children(current)
    return seen


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants, from ``/proc/<pid>/status`` (VmRSS)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


class StreamlitServer:
    """``streamlit run`` on the loopback interface as a subprocess, ready once healthy.

    Use as a context manager::

        with StreamlitServer() as server:
            page.goto(server.url("sample"))
    """

    def __init__(
        self,
        app: Path = APP_SCRIPT,
        *,
        cwd: Path = REPO_ROOT,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Prepare (not start) a server.

        Args:
            app: The app script.
            cwd: Working folder (its ``.streamlit/config.toml`` applies).
            port: The port; a free one by default.
            env: Extra environment variables for the server.
        """
        self.app = Path(app)
        self.cwd = Path(cwd)
        self.port = port or free_port()
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (lives as long as the server)
            prefix="streamlit-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self.process is None:
            raise RuntimeError("The Streamlit server is not running.")
        return self.process.pid

    def url(self, path: str = "") -> str:
        """The address of a path on this server (``""`` is the default page)."""
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's combined stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> StreamlitServer:
        """Start the server and wait until ``/_stcore/health`` answers ``ok``.

        Raises:
            RuntimeError: The server exited or did not become healthy in time (with its log).
        """
        env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **self.env}
        command = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(self.app),
            "--server.address",
            HOST,
            "--server.port",
            str(self.port),
            "--server.headless",
            "true",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            process = self.process
            if process.poll() is not None:
                log = self.log_tail()
                self.stop()
                raise RuntimeError(f"streamlit exited with status {process.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(self.url("_stcore/health"), timeout=2) as response:
                    if response.status == 200 and response.read().strip() == b"ok":
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(HEALTH_POLL_S)
        log = self.log_tail()
        self.stop()
        raise RuntimeError(f"streamlit was not healthy after {timeout_s:.0f} s:\n{log}")

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, then SIGKILL) and delete its log."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        self._log.close()
        self.log_path.unlink(missing_ok=True)

    def rss_bytes(self) -> int:
        """Resident memory of the server and its children."""
        return rss_bytes(self.pid)

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_options() -> dict[str, Any]:
    """Keyword arguments of ``chromium.launch`` (sync or async API) for Debian's Chromium."""
    return {"executable_path": CHROMIUM_PATH, "args": list(CHROMIUM_ARGS), "headless": True}


def chromium_available() -> bool:
    """Whether Debian's Chromium is installed where the tests expect it."""
    return Path(CHROMIUM_PATH).is_file() and os.access(CHROMIUM_PATH, os.X_OK)


def fake_cell_png(path: Path, *, parasitized: bool = True, size: int = 120) -> Path:
    """Draw a fake stained red blood cell (pink disc on black, purple dot if parasitized).

    Args:
        path: Where to write the PNG.
        parasitized: Draw the parasite.
        size: Width and height in pixels.

    Returns:
        ``path``.
    """
    img = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    margin = size // 12
    draw.ellipse((margin, margin, size - margin, size - margin), fill=(214, 140, 150))
    if parasitized:
        centre, radius = size * 0.45, size * 0.12
        draw.ellipse(
            (centre - radius, centre - radius, centre + radius, centre + radius),
            fill=(110, 40, 150),
        )
    img.save(path, format="PNG")
    return path


# Page helpers for Playwright's synchronous API.
def wait_for_idle(page: Any, timeout_ms: float = ACTION_TIMEOUT_MS) -> None:
    """Wait until the script has finished its run and nothing on the page is stale."""
    deadline = time.monotonic() + timeout_ms / 1000
    idle_since: float | None = None
    while True:
        now = time.monotonic()
        if page.evaluate(IDLE_JS):
            idle_since = idle_since or now
            if now - idle_since >= IDLE_SETTLE_MS / 1000:
                return
        else:
            idle_since = None
        if now > deadline:
            raise TimeoutError(f"The app was still running after {timeout_ms / 1000:.0f} s.")
        page.wait_for_timeout(POLL_MS)


def rendered_at(page: Any, timeout_ms: float = ACTION_TIMEOUT_MS) -> float:
    """Wait until the page has finished rendering; when it did, on ``time.perf_counter``'s clock.

    Finished means idle (see ``wait_for_idle``) with every image loaded and every chart drawn.
    The returned time is the first poll of the idle spell that lasted ``IDLE_SETTLE_MS``, so
    the settling wait itself is not counted.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    idle_since: float | None = None
    while True:
        now = time.perf_counter()
        if page.evaluate(IDLE_JS) and page.evaluate(RENDERED_JS):
            idle_since = idle_since or now
            if now - idle_since >= IDLE_SETTLE_MS / 1000:
                return idle_since
        else:
            idle_since = None
        if time.monotonic() > deadline:
            raise TimeoutError(f"The page was still rendering after {timeout_ms / 1000:.0f} s.")
        page.wait_for_timeout(POLL_MS)


def click_nav_and_time(page: Any, app_page: AppPage, timeout_ms: float = PAGE_TIMEOUT_MS) -> float:
    """Click a page's sidebar link; seconds until that page has finished rendering.

    The clock starts at the click and stops when the new page's title is shown and the page is
    idle with its images loaded (``rendered_at``).
    """
    previous = page.inner_text(TITLE).strip()
    link = page.locator(NAV_LINK, has_text=app_page.title).first
    start = time.perf_counter()
    link.click()
    page.wait_for_function(
        "([sel, old]) => { const t = document.querySelector(sel);"
        " return !!t && t.innerText.trim() !== old; }",
        arg=[TITLE, previous],
        timeout=timeout_ms,
        polling=POLL_MS,
    )
    return rendered_at(page, timeout_ms) - start


def open_page(page: Any, server: StreamlitServer, app_page: AppPage, timeout_ms: float) -> str:
    """Open a page by its URL path, wait for its title and the end of its run.

    Returns:
        The text of the page's title (its ``h1``).
    """
    page.goto(server.url(app_page.url_path), wait_until="domcontentloaded", timeout=timeout_ms)
    page.wait_for_selector(TITLE, state="visible", timeout=timeout_ms)
    wait_for_idle(page, timeout_ms)
    return page.inner_text(TITLE).strip()


def page_problems(page: Any) -> list[str]:
    """What a user would see as a failure: exception boxes, error alerts, traceback text."""
    problems = [f"exception box: {t.strip()}" for t in page.locator(EXCEPTION).all_inner_texts()]
    problems += [f"error alert: {t.strip()}" for t in page.locator(ERROR_ALERT).all_inner_texts()]
    body = page.inner_text("body")
    problems += [f"traceback text ({m!r})" for m in TRACEBACK_MARKERS if m in body]
    return problems


def image_sources(page: Any) -> list[str]:
    """The ``src`` of every image in the main area, in page order."""
    return page.evaluate(IMAGE_SOURCES_JS, IMAGES)


def wait_for_new_images(page: Any, before: list[str], timeout_ms: float = ACTION_TIMEOUT_MS):
    """Wait until the main area's images differ from ``before`` and have loaded."""
    page.wait_for_function(IMAGES_CHANGED_JS, arg=[IMAGES, before], timeout=timeout_ms, polling=10)


def slider_key(thumb: Any) -> str:
    """The arrow key that moves a slider thumb away from its nearer end."""
    value = float(thumb.get_attribute("aria-valuenow") or thumb.get_attribute("value") or 0)
    high = float(thumb.get_attribute("aria-valuemax") or thumb.get_attribute("max") or 0)
    return "ArrowLeft" if value >= high else "ArrowRight"


def move_slider_and_time(page: Any, thumb: Any, key: str, timeout_ms: float) -> float:
    """Press an arrow key on a focused slider thumb; seconds until the images change.

    The clock starts at the key press and stops when every new image has loaded.
    """
    before = image_sources(page)
    thumb.focus()
    start = time.perf_counter()
    thumb.press(key)
    wait_for_new_images(page, before, timeout_ms)
    elapsed = time.perf_counter() - start
    wait_for_idle(page, timeout_ms)
    return elapsed


def screenshot_full_page(page: Any, path: Path) -> Path:
    """A screenshot of the whole app, growing the viewport so inner scroll areas fit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or VIEWPORT
    height = min(MAX_SCREENSHOT_HEIGHT, max(original["height"], page.evaluate(CONTENT_HEIGHT_JS)))
    page.set_viewport_size({"width": original["width"], "height": int(height)})
    try:
        with contextlib.suppress(Exception):
            page.wait_for_function(IMAGES_LOADED_JS, timeout=5_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(original)
    return path


@contextlib.contextmanager
def chromium(playwright: Any) -> Iterator[Any]:
    """Debian's Chromium through Playwright's synchronous API, closed on exit."""
    browser = playwright.chromium.launch(**launch_options())
    try:
        yield browser
    finally:
        browser.close()
