"""Check the Airlock web page (services/web) through the balancer in Debian's headless Chromium.

Usage:
    python molecule/resources/page_check.py http://LB_ADDRESS/ --api-key KEY --audio speech.wav \
        --screenshot OUT.png [--expect-backends gpu1,gpu2 [--require-all-backends]]

Run on the control node: it drives /usr/bin/chromium through /usr/bin/chromedriver (Debian's chromium and
chromium-driver packages) and never lets selenium look for or download a driver. The steps, each named in
a failure:

  load page        the page loads and lists the chat models (GET /v1/models) and speech models (/asr/v1/models)
  api key          the key typed into the page makes the model list load (when --api-key is given)
  chat             one message gets a non-empty answer naming the worker (X-Airlock-Backend)
  transcribe file  the --audio file gets a non-empty transcript naming the worker
  record           2 s from Chromium's fake microphone (a beep) are recorded, converted to WAV in the page and
                   transcribed: the text may be empty, the request must succeed and name the worker
  backends         with --expect-backends, every worker seen is one of those listed; with
                   --require-all-backends, more transcriptions are sent until each was seen
  narrow screen    at 390 px wide the page does not scroll sideways
  screenshot       saved, decoded (PNG, stdlib zlib) and required not to be blank, the answer and transcript
                   regions included

Any text in the page's error banner fails the step it appears in. A JSON summary goes to stdout (also on
failure, with "ok": false and the step); the failure itself goes to stderr; the exit status is 0 only when
every step passed. The microphone needs a secure context: for an http:// address that is not localhost,
Chromium is told to treat that origin as secure (--unsafely-treat-insecure-origin-as-secure), as a person
on plain HTTP would have to.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# selenium must never fetch a driver or a browser (the network is air-gapped): no Selenium Manager.
os.environ["SE_OFFLINE"] = "true"
os.environ["SE_AVOID_STATS"] = "true"
# selenium talks to chromedriver on localhost: never through an http_proxy from the environment.
for _var in ("no_proxy", "NO_PROXY"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "localhost,127.0.0.1,::1"]))

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.command import Command  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
]
PAGE_IDS = ["api-key", "model", "prompt", "send", "chat-log", "audio-file", "transcribe", "record", "transcript",
            "error"]
WIDTH = 1280
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

JS_ERROR = """
const e = document.getElementById('error');
if (!e || e.hidden) return '';
const parts = [e.querySelector('strong'), e.querySelector('.message')].filter(Boolean);
return (parts.length ? parts.map(p => p.textContent).join('') : e.textContent).trim();
"""
JS_LAST_ANSWER = """
const all = document.querySelectorAll('#chat-log .answer');
const a = all[all.length - 1];
if (!a) return null;
const q = (s) => { const n = a.querySelector(s); return n ? n.textContent : ''; };
return {count: all.length, state: a.dataset.state || '', text: q('.text'), backend: q('.backend'),
        meta: q('.meta')};
"""
JS_TRANSCRIPT = """
const t = document.getElementById('transcript');
const q = (s) => { const n = t.querySelector(s); return n ? n.textContent : ''; };
return {seq: Number(t.dataset.seq || 0), state: t.dataset.state || '', source: t.dataset.source || '',
        text: q('.text'), backend: q('.backend'), meta: q('.meta')};
"""


class CheckFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


class Page:
    """The browser session, with the step being run (named in every failure)."""

    def __init__(self, driver: webdriver.Chrome, timeout: float) -> None:
        self.driver = driver
        self.timeout = timeout
        self.step = "start chromium"

    def fail(self, message: str) -> CheckFailed:
        console = self.console_errors()
        if console:
            message += "\n  browser console: " + "\n  browser console: ".join(console[-5:])
        return CheckFailed(self.step, message)

    def console_errors(self) -> list[str]:
        try:
            entries = self.driver.execute(Command.GET_LOG, {"type": "browser"})["value"]
        except WebDriverException:
            return []
        return [str(e.get("message", "")).split("\n")[0][:300] for e in entries if e.get("level") == "SEVERE"]

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def error_text(self) -> str:
        return str(self.js(JS_ERROR) or "")

    def no_error(self) -> None:
        text = self.error_text()
        if text:
            raise self.fail(f"the page shows an error: {text}")

    def wait(self, what: str, script: str, *args: Any, timeout: float | None = None,
             errors_fail: bool = True) -> Any:
        """Poll `script` until it returns something truthy; the page's error banner fails at once
        unless `errors_fail` is false (an error that is expected at this step, such as a 401 before the key)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if errors_fail:
                self.no_error()
            if time.monotonic() > deadline:
                raise self.fail(f"timed out after {timeout or self.timeout:.0f} s waiting for {what}")
            time.sleep(0.2)

    def by_id(self, element_id: str) -> Any:
        return self.driver.find_element(By.ID, element_id)


@contextlib.contextmanager
def running(page: Page, step: str) -> Iterator[None]:
    page.step = step
    page.console_errors()   # chromedriver hands each log entry out once: a failure shows only its own step's
    try:
        yield
    except CheckFailed:
        raise
    except WebDriverException as e:
        raise page.fail(f"browser error: {(e.msg or str(e)).strip()}") from e


def start_browser(origin: str, profile: Path, window: tuple[int, int]) -> webdriver.Chrome:
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).is_file():
            raise CheckFailed("start chromium", f"{tool} is missing: apt-get install chromium chromium-driver")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    host = urllib.parse.urlsplit(origin).hostname or ""
    if origin.startswith("http://") and host not in ("localhost", "127.0.0.1", "::1"):
        # getUserMedia needs a secure context; a person on plain HTTP cannot record either.
        options.add_argument(f"--unsafely-treat-insecure-origin-as-secure={origin}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    try:
        return webdriver.Chrome(service=service, options=options)
    except WebDriverException as e:
        raise CheckFailed("start chromium", f"could not start {CHROMIUM}: {(e.msg or str(e)).strip()}") from e


# ------------------------------------------------------------------------------------------- the steps


def load_page(page: Page, url: str, *, key_expected: bool) -> None:
    """Open the page and wait for its first model-list load. With a key to type, that load may answer 401
    (and an older load may show it while a newer one is still running): not a failure at this step."""
    page.driver.get(url)
    page.wait("the page to run its script", "return document.body && document.body.dataset.modelLoads",
              errors_fail=not key_expected)
    title = page.driver.title
    missing = [i for i in PAGE_IDS if not page.js("return !!document.getElementById(arguments[0])", i)]
    if "Airlock" not in title or missing:
        raise page.fail(f"this is not the Airlock page (title {title!r}, missing elements: {missing})")


def set_api_key(page: Page, key: str) -> None:
    loads = int(page.js("return Number(document.body.dataset.modelLoads || 0)"))
    stored = page.js("return localStorage.getItem('airlock.apiKey') || ''")
    field = page.by_id("api-key")
    field.clear()
    field.send_keys(key + Keys.ENTER)
    if stored != key:
        page.wait("the model list to load again with the key",
                  "return Number(document.body.dataset.modelLoads || 0) > arguments[0]", loads)


def models_loaded(page: Page, *, with_key: bool) -> dict[str, Any]:
    state = page.js("return document.body.dataset.models")
    if state != "loaded":
        hint = "" if with_key else " (does the fleet need --api-key?)"
        raise page.fail(f"GET /v1/models failed: {page.error_text() or state}{hint}")
    page.no_error()
    page.wait("the speech model list", "return ['loaded', 'error'].includes("
              "document.getElementById('asr-models-status').dataset.state)")
    info: dict[str, Any] = page.js("""
        const s = (id) => document.getElementById(id);
        const b = (id) => { const n = s(id).querySelector('.backend'); return n ? n.textContent : ''; };
        return {ready: document.body.dataset.ready || '', models: [...s('model').options].map(o => o.value),
                models_backend: b('models-status'), asr_state: s('asr-models-status').dataset.state,
                asr_status: s('asr-models-status').textContent, asr_models_backend: b('asr-models-status')};
    """)
    if info["ready"] != "1":
        raise page.fail("the page did not set data-ready after loading the models")
    if info["asr_state"] != "loaded":
        raise page.fail(f"GET /asr/v1/models failed: {info['asr_status'].strip()}")
    return info


def chat(page: Page, model: str | None, prompt: str, max_tokens: int | None) -> dict[str, Any]:
    if model:
        options = page.js("return [...document.getElementById('model').options].map(o => o.value)")
        if model not in options:
            raise page.fail(f"model {model!r} is not served; the page lists {options}")
        page.js("const s = document.getElementById('model'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('change'))", model)
    if max_tokens is not None:
        field = page.by_id("max-tokens")
        field.clear()
        field.send_keys(str(max_tokens))
    before = page.js(JS_LAST_ANSWER)
    count = before["count"] if before else 0
    page.by_id("prompt").send_keys(prompt)
    started = time.monotonic()
    page.by_id("send").click()
    answer: dict[str, Any] = page.wait(
        "the chat answer", f"const a = (() => {{ {JS_LAST_ANSWER} }})();"
        "return a && a.count > arguments[0] && ['done', 'error', 'stopped'].includes(a.state) ? a : null", count)
    page.no_error()
    if answer["state"] != "done":
        raise page.fail(f"the answer ended as {answer['state']!r}: {answer['meta'].strip()}")
    if not answer["text"].strip():
        raise page.fail(f"the answer is empty ({answer['meta'].strip()})")
    if answer["backend"] in ("", "?"):
        raise page.fail("the answer names no worker: the response had no X-Airlock-Backend header")
    answer["seconds"] = round(time.monotonic() - started, 2)
    return answer


def wait_transcript(page: Page, seq: int, what: str, *, allow_empty: bool) -> dict[str, Any]:
    result: dict[str, Any] = page.wait(
        what, f"const t = (() => {{ {JS_TRANSCRIPT} }})(); return t.seq > arguments[0] ? t : null", seq)
    page.no_error()
    if result["state"] != "done":
        raise page.fail(f"the transcription ended as {result['state']!r}: {result['meta'].strip()}")
    if result["backend"] in ("", "?"):
        raise page.fail("the transcript names no worker: the response had no X-Airlock-Backend header")
    if not allow_empty and not result["text"].strip():
        raise page.fail(f"the transcript is empty ({result['meta'].strip()})")
    return result


def transcribe_file(page: Page, audio: Path) -> dict[str, Any]:
    seq = int(page.js(JS_TRANSCRIPT)["seq"])
    page.by_id("audio-file").send_keys(str(audio))
    page.by_id("transcribe").click()
    return wait_transcript(page, seq, "the transcript of the uploaded file", allow_empty=False)


def record(page: Page, record_seconds: float) -> dict[str, Any]:
    button = page.by_id("record")
    if not button.is_enabled():
        raise page.fail(f"the record button is disabled: {page.by_id('record-status').text}")
    seq = int(page.js(JS_TRANSCRIPT)["seq"])
    button.click()
    page.wait("the recording to start",
              "return document.getElementById('record').getAttribute('aria-pressed') === 'true'", timeout=20)
    time.sleep(record_seconds)
    button.click()
    result = wait_transcript(page, seq, "the transcript of the recording", allow_empty=True)
    result["status"] = page.by_id("record-status").text
    return result


def narrow_screen(page: Page) -> dict[str, int]:
    page.driver.set_window_size(390, 844)
    try:
        sizes: dict[str, int] = page.wait("the narrow layout", """
            return window.innerWidth < 600 ? {inner: window.innerWidth,
                scroll: document.documentElement.scrollWidth} : null""", timeout=10)
        if sizes["scroll"] > sizes["inner"] + 1:
            raise page.fail(f"at {sizes['inner']} px wide the page is {sizes['scroll']} px wide (scrolls sideways)")
        return sizes
    finally:
        page.driver.set_window_size(WIDTH, 1000)


def screenshot(page: Page, path: Path) -> dict[str, Any]:
    for _ in range(3):   # the whole page in the viewport (the window is a little taller than its viewport)
        inner, height = page.js("return [window.innerHeight, document.documentElement.scrollHeight]")
        if inner >= height or inner >= 3000:
            break
        size = page.driver.get_window_size()
        page.driver.set_window_size(WIDTH, min(size["height"] + height - inner, 3200))
    page.js("window.scrollTo(0, 0)")
    time.sleep(0.5)
    regions: dict[str, list[float]] = page.js("""
        const r = (sel) => { const n = document.querySelector(sel); if (!n) return null;
            const b = n.getBoundingClientRect(), d = window.devicePixelRatio || 1;
            return [b.left * d, b.top * d, b.right * d, b.bottom * d]; };
        const answers = document.querySelectorAll('#chat-log .answer');
        const out = {transcript: r('#transcript')};
        if (answers.length) { const b = answers[answers.length - 1].getBoundingClientRect(),
            d = window.devicePixelRatio || 1; out.answer = [b.left * d, b.top * d, b.right * d, b.bottom * d]; }
        return out;""")
    if not page.driver.save_screenshot(str(path)):
        raise page.fail(f"could not write {path}")
    try:
        return check_png(path, {k: v for k, v in regions.items() if v})
    except ValueError as e:
        raise page.fail(f"{path}: {e}") from e


# ------------------------------------------------------------------------------------------- PNG, stdlib only


def read_png(path: Path) -> tuple[int, int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced PNG into rows of pixels: (width, height, bytes per pixel, rows)."""
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, header, idat = len(PNG_SIGNATURE), b"", []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length] or b"\0\0\0\0")
        if len(body) != length or zlib.crc32(kind + body) != crc:
            raise ValueError(f"chunk {kind!r} at byte {pos} is cut short or fails its CRC")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if len(header) != 13 or not idat:
        raise ValueError("no IHDR or no IDAT chunk")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError(f"image data is {len(raw)} bytes, expected {height * (stride + 1)}")
    return width, height, channels, unfilter(raw, height, stride, channels)


def unfilter(raw: bytes, height: int, stride: int, bpp: int) -> list[bytes]:
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:        # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:      # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:      # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:      # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif kind != 0:
            raise ValueError(f"row {y} has unknown filter type {kind}")
        rows.append(bytes(line))
        prev = line
    return rows


def check_png(path: Path, regions: dict[str, list[float]]) -> dict[str, Any]:
    """Require a screenshot that is not blank: many colours, content off the background, text in each region."""
    width, height, bpp, rows = read_png(path)
    counts = collections.Counter(row[i:i + bpp] for row in rows for i in range(0, width * bpp, bpp))
    background, bg_count = counts.most_common(1)[0]
    content = 1 - bg_count / (width * height)
    if len(counts) < 16 or content < 0.02:
        raise ValueError(f"looks blank: {len(counts)} colours, {content:.1%} of it off the background")
    checked = {}
    for name, (left, top, right, bottom) in regions.items():
        x0, y0 = max(0, int(left)), max(0, int(top))
        x1, y1 = min(width, int(right)), min(height, int(bottom))
        if x1 - x0 < 4 or y1 - y0 < 4:
            raise ValueError(f"the {name} is not inside the {width}x{height} screenshot")
        region = collections.Counter(rows[y][x * bpp:(x + 1) * bpp] for y in range(y0, y1) for x in range(x0, x1))
        own_bg = region.most_common(1)[0][1]
        ink = 1 - own_bg / ((x1 - x0) * (y1 - y0))
        if len(region) < 3 or ink < 0.005:
            raise ValueError(f"the {name} region ({x0},{y0})-({x1},{y1}) is blank ({len(region)} colours)")
        checked[name] = {"box": [x0, y0, x1, y1], "colours": len(region)}
    return {"path": str(path), "width": width, "height": height, "colours": len(counts),
            "content": round(content, 3), "background": "#" + background[:3].hex(), "regions": checked}


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("url", help="the balancer's address, e.g. http://10.89.0.10/")
    ap.add_argument("--api-key", default="", help="typed into the page's API key field (Bearer on every call)")
    ap.add_argument("--audio", type=Path, required=True, help="a speech file to upload (WAV, FLAC, OGG)")
    ap.add_argument("--screenshot", type=Path, required=True, help="where to save the PNG screenshot")
    ap.add_argument("--expect-backends", default="", help="comma-separated worker names X-Airlock-Backend may give")
    ap.add_argument("--require-all-backends", action="store_true",
                    help="with --expect-backends: send transcriptions until each worker answered once")
    ap.add_argument("--model", help="chat model to pick (default: the page's first)")
    ap.add_argument("--prompt", default="Say hello to the air-gapped network.")
    ap.add_argument("--max-tokens", type=int, help="override the page's max tokens")
    ap.add_argument("--record-seconds", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds each step may wait (default 120)")
    args = ap.parse_args(argv)
    if not args.audio.is_file():
        ap.error(f"--audio {args.audio}: no such file")
    if args.require_all_backends and not args.expect_backends:
        ap.error("--require-all-backends needs --expect-backends")
    return args


def run_checks(page: Page, args: argparse.Namespace, summary: dict[str, Any]) -> None:
    url: str = args.url
    expected = [b.strip() for b in args.expect_backends.split(",") if b.strip()]
    seen: dict[str, str] = {}
    with running(page, "load page"):
        load_page(page, url, key_expected=bool(args.api_key))
        if not args.api_key:
            info = models_loaded(page, with_key=False)
    if args.api_key:
        with running(page, "api key"):   # a 401 before the key is typed is expected: the step starts here
            set_api_key(page, args.api_key)
            info = models_loaded(page, with_key=True)
        summary["models"] = info["models"]
        seen["models"], seen["asr_models"] = info["models_backend"], info["asr_models_backend"]
    with running(page, "chat"):
        answer = chat(page, args.model, args.prompt, args.max_tokens)
        seen["chat"] = answer["backend"]
        summary["chat"] = {"answer_chars": len(answer["text"]), "answer": answer["text"][:200],
                           "backend": answer["backend"], "seconds": answer["seconds"], "meta": answer["meta"]}
    with running(page, "transcribe file"):
        result = transcribe_file(page, args.audio.resolve())
        seen["transcribe"] = result["backend"]
        summary["transcript"] = {"text": result["text"], "backend": result["backend"], "meta": result["meta"]}
    with running(page, "record"):
        result = record(page, args.record_seconds)
        seen["record"] = result["backend"]
        summary["recording"] = {"text": result["text"], "backend": result["backend"], "status": result["status"]}
    with running(page, "backends"):
        if expected:
            for n in range(3 * len(expected) + 1):
                stray = {k: v for k, v in seen.items() if v and v not in expected}
                if stray:
                    raise page.fail(f"answers came from workers not in --expect-backends {expected}: {stray}")
                if not args.require_all_backends or set(expected) <= set(seen.values()) or n == 3 * len(expected):
                    break
                seen[f"transcribe_{n + 2}"] = transcribe_file(page, args.audio.resolve())["backend"]
            unseen = [b for b in expected if b not in seen.values()]
            if args.require_all_backends and unseen:
                raise page.fail(f"no answer came from {unseen} in {len(seen)} requests ({seen})")
            summary["backends_unseen"] = unseen
        summary["backends"] = sorted({v for v in seen.values() if v})
        summary["backends_by_step"] = seen
    with running(page, "narrow screen"):
        summary["narrow"] = narrow_screen(page)
        page.no_error()
    with running(page, "screenshot"):
        summary["screenshot"] = screenshot(page, args.screenshot)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary: dict[str, Any] = {"url": args.url, "ok": False}
    parts = urllib.parse.urlsplit(args.url)
    origin = f"{parts.scheme}://{parts.netloc}"
    workdir = Path(tempfile.mkdtemp(prefix="page_check-"))
    page: Page | None = None
    try:
        driver = start_browser(origin, workdir / "profile", (WIDTH, 1000))
        page = Page(driver, args.timeout)
        summary["browser"] = driver.capabilities.get("browserVersion", "")
        run_checks(page, args, summary)
        summary["ok"] = True
    except CheckFailed as e:
        summary.update(step=e.step, error=e.message)
        print(f"page_check: FAILED at step '{e.step}': {e.message}", file=sys.stderr)
        if page is not None:   # a screenshot of the failure, not checked
            with contextlib.suppress(WebDriverException, OSError):
                if page.driver.save_screenshot(str(args.screenshot)):
                    summary["screenshot"] = {"path": str(args.screenshot), "of": "the failure"}
    finally:
        if page is not None:
            with contextlib.suppress(WebDriverException):
                page.driver.quit()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
