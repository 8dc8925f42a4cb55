# Sourced by the scripts that call cuBLAS (cudarc loads it at run time): puts the machine's
# libcublas on LD_LIBRARY_PATH, the system's or else the nvidia-cublas wheel's that PyTorch
# uses, and names it in $lib (empty where none was found).
lib=$(ls /usr/local/cuda/lib64/libcublas.so* 2>/dev/null | head -1 || true)
[ -n "$lib" ] || lib=$(python3 -c 'import glob, nvidia, os; print(next(iter(sorted(glob.glob(os.path.join(list(nvidia.__path__)[0], "**", "libcublas.so*"), recursive=True))), ""))' 2>/dev/null || true)
if [ -n "$lib" ]; then export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
