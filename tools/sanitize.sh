#!/usr/bin/env bash
# The C core and the extension under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   PYTHON=.venv/bin/python bash tools/sanitize.sh      (make sanitize; .ci/run calls it after make test)
#
# 1. Copies the sources into a temporary directory and builds the extension there with
#    FASTGRU_SANITIZE=1 (setup.py adds -fsanitize=address,undefined -fno-sanitize-recover=undefined),
#    so the checkout's own build is left alone.
# 2. Builds tests/c/test_core.c, tests/c/test_pool.c, tests/c/test_cpu.c and tests/c/backward_sanitize.c
#    against src_c/*.c (compiled once) with the same sanitizers and runs them with leak detection on: no Python there, so any leak is the core's.
# 3. Runs the pytest files that drive the core (forward, backward when the core has it, bad input,
#    properties with few examples, concurrency, streaming, weights out and int8 codes in) on the
#    sanitized extension, with libasan preloaded into the Python interpreter. Leak detection is off
#    there: CPython and numpy keep memory until exit by design. A pytest plugin checks that `import fastgru` is the sanitized build.
# Any sanitizer report aborts the process it happens in, and the script exits nonzero.
#
# Environment: PYTHON (default python3), CC (default cc), FASTGRU_HYPOTHESIS_EXAMPLES (default 10),
# SANITIZE_KEEP=1 keeps the temporary directory. Takes about 3 to 6 minutes on 2 cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
# The script works in a scratch directory: a relative interpreter path (make passes .venv/bin/python)
# must be made absolute before that.
case "$PYTHON" in
    /*) ;;
    */*) PYTHON="$PWD/$PYTHON" ;;
    *) PYTHON=$(command -v "$PYTHON") ;;
esac
CC=${CC:-cc}
START=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastgru-sanitize.XXXXXX")
if [ "${SANITIZE_KEEP:-0}" != 1 ]; then trap 'rm -rf "$WORK"' EXIT; fi
step() { printf '\n== sanitize: %s (%ds)\n' "$*" $((SECONDS - START)); }

step "copying the sources to $WORK"
for path in fastgru src_c setup.py pyproject.toml README.md tests; do
    if [ -e "$ROOT/$path" ]; then cp -r "$ROOT/$path" "$WORK/"; fi
done
touch "$WORK/README.md" # pyproject.toml names it
# whatever the checkout has built must not be picked up instead of the sanitized build
rm -rf "$WORK"/fastgru/*.so "$WORK"/fastgru/_core.c "$WORK"/build
find "$WORK" -name __pycache__ -type d -prune -exec rm -rf {} +

LIBASAN=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
    echo "sanitize: $CC has no libasan.so (got '$LIBASAN'); install the compiler's sanitizer runtime" >&2
    exit 1
fi
export ASAN_OPTIONS_BASE="abort_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

step "building and running the C test programs (ASan + UBSan + LeakSanitizer)"
# Built without Python's -fwrapv (which the extension inherits and which makes signed overflow defined,
# hiding it from UBSan), and with float-cast-overflow, which -fsanitize=undefined leaves out in gcc.
# The core is compiled once, one compiler per core, and linked into the three programs (compiling it per
# program tripled the slowest part of this script: the AVX-512 kernel files under the sanitizers).
C_FLAGS=(-std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -fno-omit-frame-pointer
         -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -Wall -I"$WORK/src_c")
mkdir -p "$WORK/objects"
export CC WORK
printf '%s\n' "$WORK"/src_c/*.c | xargs -P "$(nproc 2>/dev/null || echo 2)" -I{} \
    sh -c 'exec "$CC" "$@" -c "$0" -o "$WORK/objects/$(basename "$0" .c).o"' {} "${C_FLAGS[@]}"
for program in test_core test_pool test_cpu backward_sanitize; do
    "$CC" "${C_FLAGS[@]}" "$WORK/tests/c/$program.c" "$WORK"/objects/*.o -o "$WORK/$program" -lm -pthread
done
ASAN_OPTIONS="$ASAN_OPTIONS_BASE:detect_leaks=1" "$WORK/test_core" | tail -n 8
ASAN_OPTIONS="$ASAN_OPTIONS_BASE:detect_leaks=1" "$WORK/test_pool" 50000 | tail -n 8
ASAN_OPTIONS="$ASAN_OPTIONS_BASE:detect_leaks=1" "$WORK/test_cpu" | tail -n 8
# forward and backward with every array its own exact-size allocation (a read past one fails the run), and
# the backward of every kernel table this CPU runs agreeing with the portable one; it prints "ok" last
ASAN_OPTIONS="$ASAN_OPTIONS_BASE:detect_leaks=1" "$WORK/backward_sanitize" | tail -n 3 | tee "$WORK/backward.out"
[ "$(tail -n 1 "$WORK/backward.out")" = ok ]

step "building the extension with FASTGRU_SANITIZE=1"
if ! "$PYTHON" -c "import Cython, setuptools, numpy, scipy" 2>/dev/null; then
    # a venv made by `make` has the runtime dependencies but not the build ones (pip builds in isolation)
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "Cython>=3.0" "setuptools>=64"
fi
(cd "$WORK" && CC="$CC" FASTGRU_SANITIZE=1 "$PYTHON" setup.py --quiet build_ext --inplace >"$WORK/build.log" 2>&1) || {
    tail -n 40 "$WORK/build.log" >&2
    exit 1
}

# A pytest plugin (on PYTHONPATH, loaded with -p) that refuses to run anything but the sanitized build.
cat >"$WORK/sanitized_build_check.py" <<EOF
import os

def pytest_sessionstart(session):
    import fastgru._core
    where = os.path.realpath(fastgru._core.__file__)
    assert where.startswith(os.path.realpath("$WORK") + os.sep), f"imported {where}, not the sanitized build"
    with open("/proc/self/maps") as maps:
        mapped = maps.read()
    assert "libasan" in mapped, "libasan is not loaded: the sanitizers are not active"
    print(f"sanitize: fastgru._core from {where}")
EOF

TESTS=()
for file in tests/test_forward.py tests/test_bad_input.py tests/test_properties.py tests/test_concurrency.py \
    tests/test_stream.py tests/test_weights.py; do
    if [ -e "$WORK/$file" ]; then TESTS+=("$file"); fi
done
# the backward tests once the core has a backward pass
if grep -qs "^fg_status fg_backward(" "$WORK"/src_c/*.c; then TESTS+=(tests/test_backward.py); fi


step "running ${TESTS[*]} on the sanitized extension"
(
    cd "$WORK"
    export PYTHONPATH="$WORK" KERAS_BACKEND=torch
    export FASTGRU_HYPOTHESIS_EXAMPLES=${FASTGRU_HYPOTHESIS_EXAMPLES:-10}
    export ASAN_OPTIONS="$ASAN_OPTIONS_BASE:detect_leaks=0"
    export LD_PRELOAD="$LIBASAN"
    "$PYTHON" -m pytest -q -p sanitized_build_check -p no:cacheprovider "${TESTS[@]}"
)

step "done: no sanitizer report"
