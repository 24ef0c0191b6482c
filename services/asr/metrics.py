"""Prometheus metrics, one registry per app (so several apps can live in one process, as in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "asr_requests", "HTTP requests to the API routes", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "asr_request_duration_seconds", "Request latency, upload to response", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.audio_seconds = Counter("asr_audio_seconds", "Seconds of audio transcribed", registry=r)
        self.queue_depth = Gauge("asr_queue_depth", "Requests waiting for a worker", registry=r)
        self.in_progress = Gauge("asr_requests_in_progress", "Requests admitted and not finished", registry=r)
        self.rejections = Counter("asr_rejected", "Requests refused with 503 because the queue was full", registry=r)
        self.batch_size = Histogram(
            "asr_batch_size", "Requests per inference batch", buckets=(1, 2, 4, 8, 16, 32), registry=r
        )
        self.inference = Histogram(
            "asr_inference_seconds", "Time per inference batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "asr_queue_wait_seconds", "Time a request waited in the queue", buckets=LATENCY_BUCKETS, registry=r
        )

    # EngineHooks
    def queue_changed(self, waiting: int, pending: int) -> None:
        self.queue_depth.set(waiting)
        self.in_progress.set(pending)

    def batch_done(self, size: int, seconds: float, queue_waits: list[float]) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        for w in queue_waits:
            self.queue_wait.observe(w)

    def rejected(self) -> None:
        self.rejections.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
