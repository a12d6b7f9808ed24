#!/usr/bin/env bash
# Prepares a fresh machine to build and run ugatit-rs: a virtual environment at .venv holding the
# PyPI torch wheel whose libtorch the `tch` crate links against. Nothing else from Python is needed.
# Idempotent: a second run only checks the installed version.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
want=2.11.0
have=$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "setup: installing torch==$want into $venv (about 5 GB, a few minutes)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$want"
fi
echo "setup: torch $want ready in $venv" >&2
# NCCL support (`--dist-backend nccl`) needs the CUDA headers the torch wheel does not ship: the
# runtime's `crt/` and libcu++'s `nv/`. Opt in with UGATIT_NCCL=1; build.rs finds them in the venv.
if [ "${UGATIT_NCCL:-0}" = 1 ] && [ ! -e "$venv/lib/python3"*/site-packages/nvidia/cu13/include/crt/host_config.h ]; then
  echo "setup: installing the CUDA headers for NCCL (nvidia-cuda-crt, nvidia-cuda-cccl)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "nvidia-cuda-crt==13.0.88" "nvidia-cuda-cccl==13.0.*"
fi
