"""The FastAPI app: ``build_app(settings)``.

Routes: ``POST /v1/audio/transcriptions`` (OpenAI-compatible), ``POST /recognize/`` (the common hand-written
server's API), ``GET /v1/models``, ``GET /health``, ``GET /ready``, ``GET /metrics``.
When ``AIRLOCK_RELEASE`` is set (the deploy sets it to the release version), every response carries it as
``X-Airlock-Release`` and ``/health`` reports it as ``release``: a rolling upgrade sees which release answers.
The lifespan loads the models once, runs one warm-up inference, and only then does ``/ready`` answer 200; on
shutdown it lets admitted requests finish before the workers stop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.asr import audio as audio_mod
from services.asr.engine import Engine, Options, RecognizerConfig, build_engine
from services.asr.errors import APIError, AuthenticationError, InvalidAudio, NotFound, PayloadTooLarge
from services.asr.formats import RESPONSE_FORMATS, render
from services.asr.metrics import Metrics
from services.asr.settings import LANGUAGES, Settings

log = logging.getLogger("services.asr")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_ROUTES = ("/v1/audio/transcriptions", "/recognize/", "/recognize")
OPEN_ROUTES = ("/health", "/ready", "/metrics")
MULTIPART_SLACK = 64 * 1024  # form fields and part headers around the file
LANGUAGE_NAMES = {"english": "en", "chinese": "zh", "mandarin": "zh", "cantonese": "yue", "japanese": "ja",
                  "korean": "ko"}


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def release_from_env() -> str | None:
    """The release version the deploy runs this service from (AIRLOCK_RELEASE), or None."""
    return os.environ.get("AIRLOCK_RELEASE", "").strip() or None


async def _send_error(send: Send, err: APIError, request_id: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-request-id", request_id.encode()), *extra]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """Pure ASGI middleware in front of the app: request id, API key, upload size, request metrics.

    Auth and size are checked before the body is parsed, so an unauthenticated or oversized upload costs
    nothing. The body of an upload is read here, up to the limit, and replayed to the app. Every response
    carries X-Request-Id, and X-Airlock-Release when the release is known.
    """

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics, release: str | None = None) -> None:
        self.app = app
        self.extra: list[tuple[bytes, bytes]] = [(b"x-airlock-release", release.encode())] if release else []
        self.key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self.max_body = settings.max_upload_bytes + MULTIPART_SLACK
        self.metrics = metrics

    def _authorized(self, scope: Scope) -> bool:
        if self.key is None:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = dict(scope.get("headers", []))
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        measured = path.startswith("/v1/") or path in UPLOAD_ROUTES
        t0 = time.perf_counter()
        status = 500

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode()), *self.extra]
            await send(message)

        try:
            if measured and path not in OPEN_ROUTES and not self._authorized(scope):
                status = 401
                await _send_error(send, AuthenticationError("missing or invalid API key (Authorization: Bearer KEY)"),
                                  request_id, self.extra)
                return
            if path in UPLOAD_ROUTES and scope["method"] == "POST":
                body = await self._read_limited(headers, receive)
                if body is None:
                    status = 413
                    limit = self.max_body - MULTIPART_SLACK
                    await _send_error(send, PayloadTooLarge(f"upload larger than the limit of {limit} bytes",
                                                            code="file_too_large", param="file"), request_id,
                                      self.extra)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_wrapped)
        finally:
            if measured:
                route = path if path in UPLOAD_ROUTES or path == "/v1/models" else "other"
                self.metrics.requests.labels(route, str(status)).inc()
                self.metrics.latency.labels(route).observe(time.perf_counter() - t0)

    async def _read_limited(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _language(value: str | None, default: str) -> str:
    if value is None or not value.strip():
        return default
    v = value.strip().lower()
    v = LANGUAGE_NAMES.get(v, v)
    if v not in LANGUAGES:
        raise APIError(f"unsupported language {value!r}; one of {', '.join(LANGUAGES)}",
                       code="unsupported_language", param="language")
    return v


def _validation_error(exc: RequestValidationError) -> APIError:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query")]
    param = loc[-1] if loc else None
    if first.get("type") == "missing" and param == "file":
        return APIError("missing the audio upload: send multipart/form-data with the file in a field named 'file'",
                        code="missing_file", param="file")
    if first.get("type") == "missing":
        return APIError(f"missing required field {param!r}", code="missing_field", param=param)
    return APIError(f"invalid value for {param!r}: {first.get('msg', 'invalid')}", code="invalid_value", param=param)


def build_app(settings: Settings, *, engine_factory: Callable[[Settings, Metrics], Engine] | None = None,
              release: str | None = None) -> FastAPI:
    """The ASGI app for ``settings``; models load in its lifespan (``engine_factory`` replaces that in tests).
    ``release`` (default: AIRLOCK_RELEASE) is sent as X-Airlock-Release and in /health."""
    metrics = Metrics()
    release = release if release is not None else release_from_env()

    def default_engine(s: Settings, m: Metrics) -> Engine:
        cfg = RecognizerConfig(
            model_dir=str(s.model_dir), vad_dir=str(s.vad_dir) if s.vad_dir else None, device=s.device,
            threads=s.threads, chunk_seconds=s.chunk_seconds, batch_size=s.batch_size,
            bucket_ratio=s.bucket_ratio, dither=s.dither,
        )
        return build_engine(cfg, workers=s.workers, max_queue=s.max_queue, batch_window_ms=s.batch_window_ms,
                            retry_after_s=s.retry_after_s, hooks=m)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = (engine_factory or default_engine)(settings, metrics)
        t0 = time.perf_counter()
        await engine.start()
        log.info("models loaded and warmed up in %.1f s (%s, %d worker(s))", time.perf_counter() - t0,
                 settings.model_dir, settings.workers)
        app.state.engine = engine
        try:
            yield
        finally:
            await engine.close(timeout=settings.shutdown_timeout_s)

    app = FastAPI(title="Airlock ASR", version="1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.release = release
    _add_error_handlers(app)
    _add_routes(app, settings, metrics, release)
    app.add_middleware(Gate, settings=settings, metrics=metrics, release=release)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error leaves as ``{"error": {...}}`` (see :mod:`services.asr.errors`)."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(APIError(str(exc.detail), code=code, status=exc.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        err = APIError(f"internal error: {type(exc).__name__}", code="internal_error", status=500)
        err.type = "server_error"
        return error_response(err)


def _add_routes(app: FastAPI, settings: Settings, metrics: Metrics, release: str | None = None) -> None:
    created = int(time.time())

    def engine_of(request: Request) -> Engine:
        engine: Engine = request.app.state.engine
        return engine

    async def transcribe(request: Request, upload: UploadFile, opts: Options) -> Any:
        data = await upload.read()
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(f"upload is {len(data)} bytes; the limit is {settings.max_upload_bytes}",
                                  code="file_too_large", param="file")
        if not data:
            raise InvalidAudio("the uploaded file is empty", code="empty_file", param="file")
        engine = engine_of(request)
        async with engine.slot():
            decoded = await asyncio.to_thread(audio_mod.decode, data, max_seconds=settings.max_audio_seconds)
            result = await engine.transcribe(decoded.samples, opts)
        metrics.audio_seconds.inc(result.duration)
        return result

    @app.post("/v1/audio/transcriptions", summary="Transcribe audio (OpenAI-compatible)")
    async def transcriptions(
        request: Request,
        *,
        file: Annotated[UploadFile, File(description="audio: wav, flac, ogg or mp3")],
        model: Annotated[str | None, Form()] = None,
        language: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        prompt: Annotated[str | None, Form(description="accepted and ignored")] = None,
        temperature: Annotated[float | None, Form(description="accepted and ignored")] = None,
    ) -> Response:
        if response_format not in RESPONSE_FORMATS:
            raise APIError(f"unsupported response_format {response_format!r}; one of {', '.join(RESPONSE_FORMATS)}",
                           code="unsupported_response_format", param="response_format")
        if model and model != settings.served_model_name:
            raise NotFound(f"model {model!r} does not exist; this server serves {settings.served_model_name!r}",
                           code="model_not_found", param="model")
        opts = Options(language=_language(language, settings.language), use_itn=settings.use_itn)
        result = await transcribe(request, file, opts)
        return render(result, response_format)

    @app.post("/recognize/", summary="Transcribe audio (the common hand-written server's API)")
    @app.post("/recognize", include_in_schema=False)
    async def recognize(request: Request, file: Annotated[UploadFile, File()]) -> dict[str, str]:
        result = await transcribe(request, file, Options(language=settings.language, use_itn=settings.use_itn))
        return {"result": result.text}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": settings.served_model_name, "object": "model", "created": created, "owned_by": "airlock"}]}

    stamp = {"release": release} if release else {}

    @app.get("/health", summary="process alive and its engine not dead (and the release it runs, when known)")
    async def health(request: Request) -> JSONResponse:
        engine = engine_of(request)
        if engine.dead:
            return JSONResponse({"status": "dead", "reason": engine.dead, **stamp}, status_code=503)
        return JSONResponse({"status": "ok", **stamp})

    @app.get("/ready", summary="models loaded, one inference done, accepting work")
    async def ready(request: Request) -> JSONResponse:
        engine = engine_of(request)
        if engine.ready and not engine.dead:
            return JSONResponse({"status": "ready", "model": settings.served_model_name})
        state = "dead" if engine.dead else "draining" if engine.draining else "loading"
        return JSONResponse({"status": state}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
