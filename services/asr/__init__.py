"""Speech recognition service: FunASR SenseVoiceSmall + FSMN-VAD behind an OpenAI-compatible FastAPI server.

``build_app(settings)`` (in :mod:`services.asr.app`) makes the ASGI app; ``python -m services.asr`` runs it under
uvicorn. funasr and torch are imported only when the engine loads, so importing this package stays cheap.
"""
