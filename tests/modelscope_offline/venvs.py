"""The venvs the ModelScope offline proofs run in: one per ModelScope release covered, built once and cached.

Each holds what ``modelscope server`` needs for a text-classification model (torch CPU, transformers,
FastAPI, uvicorn), so the same venv proves both the download and the server patches.
"""

from __future__ import annotations

#: ModelScope 1.14.0 (field guides) with the libraries of its time where today's break it (all found by running
#: the proofs): transformers 4.40; numpy 1 (datasets<2.19 predates numpy 2), so pyarrow<18 and pandas<2.3, whose
#: newer releases need numpy 2; setuptools<82, because 1.14 imports pkg_resources (gone from setuptools 82; torch
#: needs >=77.0.3); OpenCV, which 1.14's utils/input_output.py (the server) imports at the top without declaring
#: it; sentencepiece, which the server's LLM check (llm_first) imports. FastAPI and uvicorn unpinned, as the fleet
#: resolves them today.
MS_1_14 = ["modelscope==1.14.0", "torch==2.13.0", "transformers==4.40.2", "numpy<2", "pyarrow<18", "pandas<2.3",
           "setuptools>=77.0.3,<82", "opencv-python-headless", "sentencepiece", "fastapi", "uvicorn"]
#: The current release, as the fleet bundle resolves `modelscope` unpinned (with its framework + server extras).
#: transformers<5: ModelScope's StructBERT/BERT classes read config attributes transformers 5 dropped
#: ("'SbertConfig' object has no attribute 'is_decoder'"), online or not; that is not an offline matter.
MS_1_40 = ["modelscope[framework,server]==1.40.2", "torch==2.13.0", "transformers<5"]

VENVS = {"1.14.0": ("modelscope-1.14", MS_1_14), "1.40.2": ("modelscope-1.40", MS_1_40)}
