#!/bin/sh
# Slim the image's virtualenv: the Dockerfile's build stage runs it on /opt/venv, and
# bench/image_size.py on the prefix it measures. Usage: slim-venv.sh VENV OCR(1|0)
# It removes only what the running bot never loads (each step says why) and refuses a
# venv with a non-headless OpenCV in it. Needs `strip` (binutils): the build stage only.
set -eu
venv=${1:?usage: slim-venv.sh VENV OCR}
ocr=${2:?usage: slim-venv.sh VENV OCR}
# -I: not the current directory's bot/ (the build stage runs this in the source tree), -B: no
# byte-code written by the checks below
py="$venv/bin/python"
sp=$("$py" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# Only the headless OpenCV (rapidocr 3.x depends on opencv-python-headless; a GUI build would
# bring X11/Qt libraries the bot never uses): fail the build if another one got in.
for dist in opencv-python opencv-contrib-python; do
    if "$py" -I -B -c "import importlib.metadata as m, sys; m.version('$dist')" 2>/dev/null; then
        echo "slim-venv: $dist is installed; only opencv-python-headless is wanted" >&2
        exit 1
    fi
done
if [ "$ocr" = 1 ]; then
    "$py" -I -B -c "import importlib.metadata as m; m.version('opencv-python-headless'); m.version('rapidocr'); m.version('onnxruntime')"
fi

# The installers: nothing is installed at run time. (jieba and python-stdnum read their data
# files directly when pkg_resources is missing.)
"$py" -m pip uninstall --yes --quiet pip setuptools
rm -rf "$venv"/bin/pip "$venv"/bin/pip3* "$venv"/bin/activate* "$venv"/bin/Activate.ps1

# Byte-code caches: the image runs with PYTHONDONTWRITEBYTECODE=1, so they would only be the
# install-time copies; Python compiles what it imports in memory (docs/deploy.md: the cost).
find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +

# The test suites shipped inside the wheels (numpy, shapely, jsonschema, ...): no package
# imports its own tests. Only `tests` directories inside a package (depth >= 2).
find "$sp" -mindepth 2 -type d -name tests -prune -exec rm -rf {} +

# Inputs for compiling against a package or type-checking it (C headers and sources, static
# libraries, Cython declarations, stubs): nothing compiles or type-checks in the image.
find "$sp" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cpp' -o -name '*.a' \
    -o -name '*.pxd' -o -name '*.pyx' -o -name '*.pyi' \) -delete

# jieba's paddle-mode model (loaded only with use_paddle=True, which needs paddlepaddle: not
# installed), part-of-speech tagger and keyword extraction: the bot calls jieba.lcut only
# (bot/matching), which uses the dictionary and the HMM of jieba/finalseg; jieba/__init__.py
# imports none of these three (tests/test_dockerfile.py checks the bot never does).
rm -rf "$sp/jieba/lac_small" "$sp/jieba/posseg" "$sp/jieba/analyse"

# onnxruntime's model-conversion and benchmarking tooling: inference (InferenceSession, all
# rapidocr uses) never imports these subpackages.
rm -rf "$sp/onnxruntime/transformers" "$sp/onnxruntime/quantization" "$sp/onnxruntime/tools"

# Debug sections of the compiled modules and bundled libraries. --strip-debug removes only the
# .debug_* sections, but rewriting a library that auditwheel patched (patchelf) can leave it
# unloadable ("ELF load command address/offset not page-aligned": numpy's OpenBLAS): each
# stripped file must still load (dlopen), else the original is put back.
find "$sp" -type f -name '*.so*' | while read -r lib; do
    readelf --section-headers "$lib" 2>/dev/null | grep -q '\.debug_' || continue
    cp -p "$lib" "$lib.orig"
    if strip --strip-debug "$lib" && "$py" -I -B -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$lib" 2>/dev/null; then
        rm "$lib.orig"
    else
        mv -f "$lib.orig" "$lib"
    fi
done

# The result must still import.
"$py" -I -B -c "import bot.cli, jieba, av, cryptography, psycopg, starlette, uvicorn"
if [ "$ocr" = 1 ]; then
    "$py" -I -B -c "import cv2, onnxruntime, rapidocr"
fi
