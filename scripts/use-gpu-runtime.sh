#!/usr/bin/env bash
# onnxruntime and onnxruntime-gpu ship the same `onnxruntime` module; with both installed, whichever
# was installed last wins file by file. Leave exactly the GPU build in the active environment.
set -euo pipefail
py="${PYTHON:-python}"
"$py" -m pip uninstall -y onnxruntime onnxruntime-gpu
"$py" -m pip install --no-deps onnxruntime-gpu==1.31.1
"$py" -c "import onnxruntime as ort; print('onnxruntime providers:', ort.get_available_providers())"
