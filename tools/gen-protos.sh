#!/usr/bin/env bash
# Regenerate the Python stubs (+ .pyi) from protos/ into OUT (default: the client package).
# Used by `make protos` and, into a scratch directory, by `make proto-check`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/clients/python/src}
py=${PYTHON:-$here/.venv/bin/python}
bin=$(dirname "$py")
rm -rf "$out/berth/v1"
mkdir -p "$out/berth/v1"
PATH="$bin:$PATH" "$py" -m grpc_tools.protoc -I"$here/protos" \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  "$here"/protos/berth/v1/*.proto
printf '"""Generated protobuf and gRPC stubs for berth.v1 (make protos; never edit)."""\n' \
  >"$out/berth/v1/__init__.py"
