# Source this file (`source scripts/env.sh`) before cargo: it prepares the torch venv if needed
# (scripts/setup.sh) and points the `tch` build at its libtorch.
_ugatit_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$_ugatit_root/scripts/setup.sh" || return 1
export VIRTUAL_ENV="$_ugatit_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
# Binaries carry an rpath to torch/lib (build.rs); this also serves tools that ignore it.
_ugatit_torch_lib=$("$VIRTUAL_ENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$_ugatit_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# libtorch's OpenMP threads otherwise spin while idle, which is ruinous when tests or other
# processes share the cores (the ugatit binary sets this itself).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
unset _ugatit_root _ugatit_torch_lib
