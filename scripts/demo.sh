#!/usr/bin/env bash
# Set up everything, then run the main job on the demo spec (models.yaml): generate the tiny demo models,
# make a signing key (once), build and sign dist/demo-1.0.0, verify it as the offline side would.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=.venv/bin/python
[[ -f demo/models/tiny-llama/config.json ]] || $py scripts/tinymodels.py llama demo/models/tiny-llama
[[ -f demo/models/sensevoice-tiny/config.yaml ]] || $py scripts/tinyasr.py sensevoice demo/models/sensevoice-tiny
[[ -f demo/models/fsmn-vad-tiny/config.yaml ]] || $py scripts/tinyasr.py vad demo/models/fsmn-vad-tiny
[[ -f demo/keys/demo.key ]] || $py -m packager keygen --out demo/keys/demo
spec=models.yaml
if [[ ! -d /opt/wheels ]]; then
  # models.yaml takes torch's CPU build from this kind of build machine's wheel folder; elsewhere the same
  # wheel comes from the PyTorch CPU index, so build from a copy of the spec that names it instead.
  spec=demo/models.yaml
  sed -e 's#^  find_links:#  indexes: ["https://download.pytorch.org/whl/cpu"]\n  find_links: []#' \
      -e '\#^    - /opt/wheels#d' -e 's#path: demo/models/#path: models/#' -e 's#^    - \.$#    - ..#' models.yaml >"$spec"
fi
$py -m packager build --models "$spec" --key demo/keys/demo.key --out dist
$py -m packager verify dist/demo-1.0.0 --pubkey demo/keys/demo.pub
$py -m packager inspect dist/demo-1.0.0 --pubkey demo/keys/demo.pub
