"""Model loading and a bounded inference queue that never runs the model on the event loop.

- :class:`Recognizer` owns one ``funasr.AutoModel`` (SenseVoiceSmall, optional FSMN-VAD), loaded from local
  directories with ``disable_update=True`` so it never touches the network. It cuts audio into speech
  segments with the VAD (or fixed chunks without one) and transcribes them, optionally in length buckets.
- A backend runs recognizers off the event loop: one dedicated thread (``workers == 1``; the choice for a GPU)
  or that many worker processes (``workers > 1``; on a CPU host funasr's VAD and glue are Python holding the
  GIL, so only processes use more than one core).
- :class:`Engine` admits at most ``max_queue + workers * batch_size`` requests; one more gets
  :class:`~services.asr.errors.Overloaded` (503 + Retry-After) at once instead of a queue without bound.
  With ``batch_size > 1`` each worker gathers the requests that arrive within ``batch_window_ms``.

funasr and torch are imported inside the recognizer only, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.asr.errors import APIError, EngineUnavailable, Overloaded

log = logging.getLogger("services.asr.engine")

RATE = 16000
MIN_SEGMENT_SAMPLES = 400  # 25 ms: one fbank frame; shorter VAD slivers are dropped
_TAG = re.compile(r"<\|([^|]*)\|>")
_LANG_TAGS = {"zh", "en", "yue", "ja", "ko", "nospeech"}


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Options:
    language: str = "auto"
    use_itn: bool = True


@dataclass(frozen=True)
class RecognizerConfig:
    """What a worker needs to build its recognizer; plain data, so it crosses into a worker process."""

    model_dir: str
    vad_dir: str | None
    device: str = "cpu"
    threads: int = 1
    chunk_seconds: float = 30.0
    batch_size: int = 1
    bucket_ratio: float = 1.0
    dither: float = 0.0


def clean_text(raw: str) -> tuple[str, str | None]:
    """SenseVoice writes ``<|en|><|NEUTRAL|><|Speech|><|woitn|>text``: strip the tags, keep the language."""
    lang = next((t for t in _TAG.findall(raw) if t in _LANG_TAGS), None)
    return " ".join(_TAG.sub(" ", raw).split()), lang


def buckets(lengths: Sequence[int], max_size: int, ratio: float) -> list[list[int]]:
    """Indices grouped by length: at most ``max_size`` each, longest <= ``ratio`` x shortest within a group.

    Batched SenseVoice pads every input to the longest in the batch, and padding changes some output tokens;
    grouping similar lengths keeps that padding small (``ratio == 1.0``: only equal lengths share a batch).
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        if g is not None and len(g) < max_size and lengths[i] <= lengths[g[0]] * ratio:
            g.append(i)
        else:
            groups.append([i])
    return groups


class Recognizer:
    """One loaded model: VAD segmentation + SenseVoice recognition. Not thread-safe: one caller at a time."""

    def __init__(self, cfg: RecognizerConfig) -> None:
        import torch
        from funasr import AutoModel

        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        kwargs: dict[str, Any] = {
            "model": cfg.model_dir,
            "device": cfg.device,
            "ncpu": cfg.threads,
            "disable_update": True,  # otherwise AutoModel asks the package index for a newer funasr
            "disable_pbar": True,
            "disable_log": True,
            "log_level": "WARNING",
        }
        if cfg.vad_dir:
            kwargs["vad_model"] = cfg.vad_dir
        self.model = AutoModel(**kwargs)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {cfg.device} requested but torch sees no CUDA device")
        self._set_dither(cfg.dither)

    def _set_dither(self, dither: float) -> None:
        """funasr's frontends add random dither (default 1.0) to every call: the same audio then gives different
        tokens from call to call. Set it on the live frontends and on the copies AutoModel restores before
        each call (``_base_kwargs_map``)."""
        m = self.model
        configs = [m.kwargs, m.vad_kwargs, *getattr(m, "_base_kwargs_map", {}).values()]
        for kw in configs:
            fe = kw.get("frontend") if isinstance(kw, dict) else None
            if fe is not None and hasattr(fe, "dither"):
                fe.dither = dither

    def _speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """Sample ranges to recognise: VAD speech segments, or fixed chunks without a VAD."""
        m = self.model
        if m.vad_model is None:
            step = int(self.cfg.chunk_seconds * RATE)
            return [(b, min(b + step, len(audio))) for b in range(0, len(audio), step)]
        m._reset_runtime_configs()
        res = m.inference(audio, model=m.vad_model, kwargs=m.vad_kwargs)
        spans = []
        for beg_ms, end_ms in res[0]["value"] if res else []:
            b, e = max(0, int(beg_ms) * RATE // 1000), min(len(audio), int(end_ms) * RATE // 1000)
            if e - b >= MIN_SEGMENT_SAMPLES:
                spans.append((b, e))
        return spans

    def _recognize(self, pieces: list[np.ndarray], opts: Options) -> list[str]:
        res = self.model.inference(pieces, batch_size=len(pieces), language=opts.language, use_itn=opts.use_itn)
        return [str(r.get("text", "")) for r in res]

    def transcribe(self, items: Sequence[tuple[np.ndarray, Options]]) -> list[Transcript]:
        """Transcribe each (audio, options); segments of similar length are batched when batch_size > 1."""
        seg_audio: list[np.ndarray] = []
        seg_owner: list[tuple[int, int, int]] = []  # (item, begin sample, end sample)
        for k, (audio, _) in enumerate(items):
            for b, e in self._speech_spans(audio):
                seg_audio.append(audio[b:e])
                seg_owner.append((k, b, e))
        texts: list[str] = [""] * len(seg_audio)
        by_opts: dict[Options, list[int]] = {}
        for s, (k, _, _) in enumerate(seg_owner):
            by_opts.setdefault(items[k][1], []).append(s)
        for opts, idx in by_opts.items():
            lengths = [len(seg_audio[s]) for s in idx]
            for group in buckets(lengths, self.cfg.batch_size, self.cfg.bucket_ratio):
                sel = [idx[g] for g in group]
                for s, t in zip(sel, self._recognize([seg_audio[s] for s in sel], opts), strict=True):
                    texts[s] = t
        out = []
        for k, (audio, opts) in enumerate(items):
            segs, langs = [], []
            for s, (owner, b, e) in enumerate(seg_owner):
                if owner != k:
                    continue
                text, lang = clean_text(texts[s])
                segs.append(Segment(start=b / RATE, end=e / RATE, text=text))
                if lang:
                    langs.append(lang)
            language = langs[0] if langs else opts.language
            full = " ".join(s.text for s in segs if s.text)
            out.append(Transcript(text=full, language=language, duration=len(audio) / RATE, segments=tuple(segs)))
        return out

    def warm_up(self) -> None:
        """One real inference through VAD and ASR, so the first request pays no lazy initialisation."""
        rng = np.random.default_rng(0)
        t = np.arange(RATE) / RATE
        audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(RATE)).astype(np.float32)
        self._speech_spans(audio)
        self._recognize([audio], Options())


# ---- backends: where recognizers run ----------------------------------------------------------------------

Items = list[tuple[np.ndarray, Options]]


class Backend(Protocol):
    async def start(self) -> None: ...
    async def run(self, items: Items) -> list[Transcript]: ...
    async def close(self) -> None: ...


class ThreadBackend:
    """One recognizer on one dedicated thread: the model is never touched by two threads at once."""

    def __init__(self, cfg: RecognizerConfig, factory: Callable[[RecognizerConfig], Recognizer] = Recognizer) -> None:
        self.cfg = cfg
        self.factory = factory
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-infer")
        self.rec: Recognizer | None = None

    def _load(self) -> Recognizer:
        rec = self.factory(self.cfg)
        rec.warm_up()
        return rec

    async def start(self) -> None:
        self.rec = await asyncio.get_running_loop().run_in_executor(self.pool, self._load)

    async def run(self, items: Items) -> list[Transcript]:
        assert self.rec is not None
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.rec.transcribe, items)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.pool.shutdown)


_worker_rec: Recognizer | None = None


def _worker_init(cfg: RecognizerConfig) -> None:
    global _worker_rec  # noqa: PLW0603 - one recognizer per worker process
    _worker_rec = Recognizer(cfg)
    _worker_rec.warm_up()


def _worker_run(items: Items) -> list[Transcript]:
    assert _worker_rec is not None
    return _worker_rec.transcribe(items)


def _worker_pid() -> int:
    return os.getpid()


class ProcessBackend:
    """``n`` worker processes, each with its own recognizer (spawned: no forked torch state)."""

    def __init__(self, cfg: RecognizerConfig, n: int) -> None:
        self.cfg = cfg
        self.n = n
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init, initargs=(cfg,)
        )

    async def start(self) -> None:
        # Each process loads and warms up in its initializer; wait until every one has answered.
        loop = asyncio.get_running_loop()
        seen: set[int] = set()
        deadline = time.monotonic() + 600
        while len(seen) < self.n and time.monotonic() < deadline:
            pids = await asyncio.gather(*(loop.run_in_executor(self.pool, _worker_pid) for _ in range(self.n)))
            seen.update(pids)
            if len(seen) < self.n:
                await asyncio.sleep(0.2)
        if len(seen) < self.n:
            raise RuntimeError(f"only {len(seen)} of {self.n} ASR worker processes started")

    async def run(self, items: Items) -> list[Transcript]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, _worker_run, items)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.pool.shutdown)


# ---- the engine: admission, queue, batching ---------------------------------------------------------------


@dataclass
class _Job:
    audio: np.ndarray
    opts: Options
    future: asyncio.Future[Transcript]
    enqueued: float = field(default_factory=time.perf_counter)


class EngineHooks(Protocol):
    """What the engine reports (implemented by :class:`services.asr.metrics.Metrics`)."""

    def queue_changed(self, waiting: int, pending: int) -> None: ...
    def batch_done(self, size: int, seconds: float, queue_waits: list[float]) -> None: ...
    def rejected(self) -> None: ...


class Engine:
    def __init__(
        self,
        backend: Backend,
        *,
        workers: int = 1,
        max_queue: int = 32,
        batch_size: int = 1,
        batch_window_ms: float = 5.0,
        retry_after_s: int = 1,
        hooks: EngineHooks | None = None,
    ) -> None:
        self.backend = backend
        self.workers = workers
        self.batch_size = batch_size
        self.batch_window = batch_window_ms / 1000
        self.retry_after_s = retry_after_s
        self.capacity = max_queue + workers * batch_size
        self.hooks = hooks
        self.pending = 0  # admitted and not finished: waiting, gathered or running
        self.ready = False
        self.draining = False
        self.dead: str | None = None
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        await self.backend.start()
        self._tasks = [asyncio.create_task(self._worker(), name=f"asr-dispatch-{i}") for i in range(self.workers)]
        self.ready = True

    async def close(self, timeout: float = 30.0) -> None:
        """Refuse new work, let admitted requests finish (up to ``timeout``), then stop the workers."""
        self.draining = True
        self.ready = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backend.close()

    def _report(self) -> None:
        if self.hooks:
            self.hooks.queue_changed(self._queue.qsize(), self.pending)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Admission: a place in the engine for one request, or 503 at once when there is none."""
        if self.dead:
            raise EngineUnavailable(f"the inference engine failed: {self.dead}")
        if self.draining or not self.ready:
            raise EngineUnavailable("the server is not ready (starting or shutting down)")
        if self.pending >= self.capacity:
            if self.hooks:
                self.hooks.rejected()
            raise Overloaded(
                f"server busy: {self.pending} requests in progress (limit {self.capacity}); retry later",
                self.retry_after_s,
            )
        self.pending += 1
        self._idle.clear()
        self._report()
        try:
            yield
        finally:
            self.pending -= 1
            if self.pending == 0:
                self._idle.set()
            self._report()

    async def transcribe(self, audio: np.ndarray, opts: Options) -> Transcript:
        """Queue one request (call inside :meth:`slot`) and wait for its transcript."""
        fut: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(audio, opts, fut))
        self._report()
        return await fut

    async def _gather(self) -> list[_Job]:
        first = await self._queue.get()
        batch = [first]
        if self.batch_size > 1:
            deadline = time.perf_counter() + self.batch_window
            # polled rather than wait_for(get()): a timed-out get() could drop a job on Python 3.11
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                await asyncio.sleep(min(left, 0.001))
        return [j for j in batch if not j.future.cancelled()]

    async def _worker(self) -> None:
        while True:
            batch = await self._gather()
            self._report()
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                results = await self.backend.run([(j.audio, j.opts) for j in batch])
            except concurrent.futures.BrokenExecutor as e:
                self.dead = f"worker process died ({e})"
                self.ready = False
                log.error("ASR engine dead: %s", self.dead)
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(EngineUnavailable(self.dead))
                continue
            except Exception as e:  # one failed batch must not stop the worker
                log.exception("inference failed")
                err = APIError(f"inference failed: {type(e).__name__}: {e}", code="inference_error", status=500)
                err.type = "server_error"
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(err)
                continue
            elapsed = time.perf_counter() - t0
            if self.hooks:
                self.hooks.batch_done(len(batch), elapsed, [t0 - j.enqueued for j in batch])
            for j, r in zip(batch, results, strict=True):
                if not j.future.done():
                    j.future.set_result(r)


def build_engine(
    cfg: RecognizerConfig,
    *,
    workers: int,
    max_queue: int,
    batch_window_ms: float,
    retry_after_s: int,
    hooks: EngineHooks | None = None,
) -> Engine:
    backend: Backend = ThreadBackend(cfg) if workers == 1 else ProcessBackend(cfg, workers)
    return Engine(
        backend,
        workers=workers,
        max_queue=max_queue,
        batch_size=cfg.batch_size,
        batch_window_ms=batch_window_ms,
        retry_after_s=retry_after_s,
        hooks=hooks,
    )
