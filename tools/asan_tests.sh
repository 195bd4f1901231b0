#!/usr/bin/env bash
# Run the test suite against an AddressSanitizer + UBSan build of vtx._core.
#
# The sanitized extension is built (VTX_ASAN=1, see setup.py) in a temporary
# copy of the source tree, so the normal in-place build that the rest of the
# test suite uses is never touched. pytest then runs from that copy with the
# compiler's libasan preloaded into python. Any sanitizer report, or any test
# failure, makes this script exit non-zero.
#
#   tools/asan_tests.sh                        # the default test set
#   tools/asan_tests.sh -x -k vmcs             # options are added to the default set
#   tools/asan_tests.sh tests/test_insn.py -x  # test paths replace the default set
#
# Test paths are relative to the repository root. Environment: PYTHON
# (default: python), CC (default: gcc), VTX_ASAN_KEEP=1 keeps the temporary copy.
#
# ASan sees overruns of heap memory (the Cpu struct, TLB, decoded instruction
# cache, code-page map, Python objects) and of the stack.  Guest RAM and the
# private region holding the VMCS are mmap'd, which ASan does not track; they
# have PROT_NONE guard pages on both sides instead (vtx/core/hostmem.pxi), so
# an access just outside them faults at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

# The default set: the whole test suite (tests/).  The script took 1m45s
# on an idle 2-core machine, 3m under load; keep it under ~5 minutes.
DEFAULT_TESTS=(tests)

die() {
    printf 'asan_tests.sh: %s\n' "$*" >&2
    exit 1
}

section() {
    printf '\n==== %s ====\n' "$*"
}

# --- The sanitizer runtimes --------------------------------------------------
CC="${CC:-gcc}"
command -v "$CC" >/dev/null || die "$CC not found (Debian: apt-get install gcc)"
LIBASAN="$("$CC" -print-file-name=libasan.so)"
# gcc prints the bare name back when it has no such file.
if [[ "$LIBASAN" != /* || ! -e "$LIBASAN" ]]; then
    die "libasan.so not found by '$CC -print-file-name=libasan.so'. gcc normally ships it;
on Debian it is in libgcc-<N>-dev (the symlink) and libasan<M> (the library),
e.g. apt-get install libgcc-12-dev libasan8 for gcc 12."
fi
LIBASAN="$(readlink -f "$LIBASAN")"

# --- A copy of the source tree -----------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vtx-asan.XXXXXX")"
cleanup() {
    if [[ "${VTX_ASAN_KEEP:-0}" == 1 ]]; then
        echo "asan_tests.sh: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

section "Copy the source tree to $WORK"
git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
    || die "$ROOT is not a git checkout: the copy is made from 'git ls-files'"
# Tracked and untracked-but-not-ignored files, as they are in the working tree
# (so uncommitted edits are tested); .gitignore keeps build outputs (*.so,
# vtx/_core.c, build/) out. Files deleted from the working tree are skipped.
(
    cd "$ROOT"
    git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do if [[ -f "$f" ]]; then printf '%s\0' "$f"; fi; done \
        | tar --null -T - -cf -
) | tar -xf - -C "$WORK"
SRC="$WORK"
[[ -f "$SRC/setup.py" && -f "$SRC/vtx/_core.pyx" ]] || die "the copy in $SRC is incomplete"
if compgen -G "$SRC/vtx/_core*.so" >/dev/null; then
    die "the copy already holds a built vtx/_core*.so"
fi

section "Build: VTX_ASAN=1 python setup.py build_ext --inplace"
(cd "$SRC" && VTX_ASAN=1 "$PYTHON" setup.py -q build_ext --inplace --force) \
    >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; die "the ASan build failed"; }
compgen -G "$SRC/vtx/_core*.so" >/dev/null || { cat "$WORK/build.log"; die "the ASan build made no vtx/_core*.so"; }

# --- Run ---------------------------------------------------------------------
LOGDIR="$WORK/sanitizer-logs"
mkdir -p "$LOGDIR"
# detect_leaks=0: CPython does not free everything at exit (interned strings,
#   static types, module state), so LeakSanitizer would report thousands of
#   "leaks" that are by design. We look for memory errors, not leaks.
# abort_on_error=1: a report kills the process with SIGABRT (non-zero exit).
# log_path: ASan writes each report to a file instead of stderr, so one from
#   a child process (tests start python and gcc children, which inherit
#   LD_PRELOAD) is not lost in output a test captured; any such file fails
#   the run below.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$LOGDIR/asan"
# UBSan (linked together with ASan, gcc) ignores log_path and always writes
# to stderr; pytest runs with --capture=sys so that reaches the terminal, and
# its output is scanned for reports below.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1"
# Python's own allocator (pymalloc) carves objects out of big arenas, which
# hides overruns between them from ASan; plain malloc lets ASan see each one.
export PYTHONMALLOC=malloc
export LD_PRELOAD="$LIBASAN${LD_PRELOAD:+:$LD_PRELOAD}"
export PYTHONPATH="$SRC"
export PYTHONDONTWRITEBYTECODE=1

cd "$SRC"

section "Check: vtx._core is the ASan build in the copy"
"$PYTHON" - "$SRC" <<'EOF'
import os, sys
src = os.path.realpath(sys.argv[1])
try:
    import vtx, vtx._core
except ImportError as e:
    sys.exit(f"asan_tests.sh: cannot import vtx._core (the ASan build in {src}): {e!r}")
for mod in (vtx, vtx._core):
    f = os.path.realpath(mod.__file__)
    if not f.startswith(src + os.sep):
        sys.exit(f"asan_tests.sh: {mod.__name__} is {f}, not the ASan copy under {src}")
with open(vtx._core.__file__, "rb") as so:
    if b"__asan_report" not in so.read():
        sys.exit(f"asan_tests.sh: {vtx._core.__file__} is not built with -fsanitize=address")
print("vtx._core:", vtx._core.__file__)
with open("/proc/self/maps") as maps:
    if "libasan" not in maps.read():
        sys.exit("asan_tests.sh: libasan is not loaded in this python")
EOF

# Arguments go to pytest after the default test set; if one of them names a
# test path (tests/test_x.py, tests/test_x.py::test_y, tests/), it replaces
# the default set instead.
TESTS=("${DEFAULT_TESTS[@]}")
for arg in "$@"; do
    if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then
        TESTS=()
        break
    fi
done
TESTS+=("$@")

section "Tests: pytest under ASan ${TESTS[*]}"
# --capture=sys: pytest captures Python's sys.stdout/stderr only, not file
# descriptor 2, where the sanitizers write; a report followed by an abort
# would otherwise vanish with the test's captured output.
set +e
"$PYTHON" -m pytest -q -p no:cacheprovider --capture=sys "${TESTS[@]}" 2>&1 | tee "$WORK/pytest.log"
rc=${PIPESTATUS[0]}
set -e

reports=0
if compgen -G "$LOGDIR/*" >/dev/null; then
    section "AddressSanitizer reports"
    for f in "$LOGDIR"/*; do
        printf -- '--- %s\n' "$(basename "$f")"
        cat "$f"
    done
    reports=1
fi
if grep -E -q '(: runtime error: |ERROR: AddressSanitizer)' "$WORK/pytest.log"; then
    section "Sanitizer reports in the output above"
    grep -E -A3 '(: runtime error: |ERROR: AddressSanitizer)' "$WORK/pytest.log"
    reports=1
fi
[[ $reports -eq 0 ]] || die "sanitizer reports above (pytest exit status $rc)"
[[ $rc -eq 0 ]] || die "pytest failed under ASan (exit status $rc)"

section "ASan tests passed"
