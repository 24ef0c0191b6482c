"""``python -m services.asr --model-dir DIR [--vad-dir DIR] [--host H] [--port P] [--api-key K] ...``

Every flag is also an environment variable: ``--model-dir`` is ``ASR_MODEL_DIR``; a flag wins over the variable.
Runs the app under uvicorn; SIGTERM lets in-flight requests finish (up to ``--shutdown-timeout-s``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from services.asr.settings import Settings


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m services.asr", description=__doc__.split("\n\n")[0])
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "ASR_" + name.upper()
        help_ = f"{field.description or name} (env {env})"
        if field.annotation is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            p.add_argument(flag, dest=name, default=None, metavar=name.split("_")[-1].upper(), help=help_)
    return {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    overrides = parse_args(argv)
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        for err in e.errors():
            field = ".".join(str(x) for x in err["loc"]) or "settings"
            print(f"asr: --{field.replace('_', '-')}: {err['msg']}", file=sys.stderr)
        return 2

    import logging

    import uvicorn

    from services.asr.app import build_app

    # before funasr's AutoModel calls logging.basicConfig itself
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        access_log=settings.log_level == "debug",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
