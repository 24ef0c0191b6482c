"""Virtual environments for the FunASR offline-patch proofs (tests/test_patches_funasr.py).

One *base* venv holds FunASR's dependencies at the versions models.lock resolves (torch 2.13.0+cpu from
/opt/wheels, modelscope, transformers...), built once by :func:`tests.offline_venvs.make_venv`. Each FunASR
release under test is a *layer*: a venv of its own holding only that ``funasr`` (``--no-deps``, a few MB)
plus a ``.pth`` file that appends the base venv's site-packages. So every release runs against the same
dependencies, `packager.patching.apply_venv` sees exactly one funasr in the layer's site-packages, and a
private copy to patch costs a few MB instead of the 1.5 GB of torch.

FunASR before 1.4.5 imports torchaudio unconditionally (``funasr/utils/load_utils.py``, and its fbank
frontend is ``torchaudio.compliance.kaldi``). The fleet's bundle leaves torchaudio out, and no torchaudio
release is built for torch 2.13 (the newest, 2.11.1, cannot load its C++ extension against it), so those
releases cannot even be imported with the fleet's dependencies. To run their proofs anyway, their layers
also get torchaudio 2.11.1 *without* its compiled extension (``torchaudio/lib/*.so`` removed): torchaudio
then imports as pure Python (``_IS_TORCHAUDIO_EXT_AVAILABLE`` is False), which is all that FunASR's fbank
needs. The probe passes audio as arrays, so ``torchaudio.load`` (torchcodec) is never called.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from packaging.version import Version

from tests.offline_venvs import VENVS, copy_venv, make_venv, site_packages

#: FunASR's dependencies (the union over funasr 1.2.0 ... 1.4.16) at the versions models.lock resolves;
#: editdistance and pytorch-wpe are only required by the 1.2.x releases.
BASE_REQUIREMENTS = (
    "torch==2.13.0",
    "numpy==2.3.5", "scipy==1.17.1", "librosa==0.11.0", "soundfile==0.14.0", "sentencepiece==0.2.3",
    "kaldiio==2.18.1", "kaldi-native-fbank==1.23.0", "torch-complex==0.4.4", "hydra-core==1.4.0rc3",
    "omegaconf==2.4.1rc1", "pyyaml==6.0.3", "tqdm==4.70.1", "requests==2.34.2", "regex==2026.11.15",
    "websockets==17.4", "modelscope==1.40.2", "huggingface-hub==1.33.0", "safetensors==0.8.0",
    "transformers==5.19.0", "tiktoken==0.14.0", "jieba==0.42.1", "jamo==0.4.1", "jaconv==0.5.0",
    "umap-learn==0.5.12", "rapidfuzz==3.14.6", "tensorboardx==2.6.5", "oss2==2.19.1",
    "editdistance", "pytorch-wpe",
)

#: the release models.lock resolves for ``funasr>=1.2,<1.5``
LOCKED = "1.4.16"
#: the first release that imports without torchaudio
NO_TORCHAUDIO_SINCE = Version("1.4.5")
#: the torchaudio that older releases get, without its C++ extension (see above)
TORCHAUDIO = "torchaudio==2.11.1"


def base_venv() -> Path:
    return make_venv("funasr-deps", BASE_REQUIREMENTS)


def funasr_venv(version: str) -> Path:
    """A cached layer venv with exactly ``funasr==version`` on top of :func:`base_venv`."""
    base = base_venv()
    reqs = [f"funasr=={version}"]
    if Version(version) < NO_TORCHAUDIO_SINCE:
        reqs.append(TORCHAUDIO)
    layer = make_venv(f"funasr-{version}", reqs, extra_pip_args=["--no-deps"])
    for lib in (site_packages(layer) / "torchaudio" / "lib").glob("*.so"):
        lib.unlink()  # built for torch 2.11: cannot load against torch 2.13 (see above)
    pth = site_packages(layer) / "zz_airlock_funasr_deps.pth"
    want = f"{site_packages(base)}\n"
    if not pth.exists() or pth.read_text() != want:
        pth.write_text(want)
    return layer


def private_copy(version: str, dest: Path) -> Path:
    """A private copy of the layer for ``version`` to patch (the cached one stays as the wheel ships it)."""
    if dest.exists():
        shutil.rmtree(dest)
    return copy_venv(funasr_venv(version), dest)


__all__ = ["BASE_REQUIREMENTS", "LOCKED", "NO_TORCHAUDIO_SINCE", "TORCHAUDIO", "VENVS", "base_venv", "funasr_venv",
           "private_copy"]
