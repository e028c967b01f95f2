# Sourced by the bench scripts that run peers side by side. Puts the peer
# packers on PATH, installing
# what is missing into $BENCH_PEERS (default .cache/bench-peers): yek and
# code2prompt (cargo install), repomix (npm), files-to-prompt and tiktoken
# (pip). A peer that fails to install is said and left out.
peers=${BENCH_PEERS:-$PWD/.cache/bench-peers}
mkdir -p "$peers"
export PATH="$peers/cargo/bin:$peers/npm/node_modules/.bin:$PATH" PYTHONPATH="$peers/py${PYTHONPATH:+:$PYTHONPATH}"
command -v yek >/dev/null || cargo install -q --root "$peers/cargo" yek || echo "yek: install failed" >&2
command -v code2prompt >/dev/null || cargo install -q --root "$peers/cargo" code2prompt || echo "code2prompt: install failed" >&2
command -v repomix >/dev/null || npm install --silent --prefix "$peers/npm" repomix || echo "repomix: install failed" >&2
python3 -c 'import files_to_prompt' 2>/dev/null || pip install -q --target "$peers/py" files-to-prompt || echo "files-to-prompt: install failed" >&2
python3 -c 'import tiktoken' 2>/dev/null || pip install -q --target "$peers/py" tiktoken || echo "tiktoken: install failed" >&2

# Runs "$@" $runs times (its output to /dev/null, its errors to $out/err),
# prints the median wall seconds, or "failed (...)". The caller sets $runs
# and $out.
timed() {
  local start end times=()
  for _ in $(seq "$runs"); do
    start=$(date +%s.%N)
    if ! "$@" >/dev/null 2>"$out/err"; then
      echo "failed ($(head -c 200 "$out/err" | tr '\n' ' '))"
      return
    fi
    end=$(date +%s.%N)
    times+=("$(python3 -c "print($end - $start)")")
  done
  python3 -c 'import statistics, sys; print(f"{statistics.median(map(float, sys.argv[1:])):.3f}")' "${times[@]}"
}

# Runs several commands in turn, round after round ($runs rounds), so that
# a noisy spell of the machine falls on all of them alike; prints
# "NAME SECONDS" for each, the median of its rounds (or "NAME failed (...)").
# Each argument is the name of a shell function to run; the caller sets
# $runs and $out.
interleaved() {
  local name round start end
  declare -A times=() failed=()
  for round in $(seq "$runs"); do
    for name in "$@"; do
      [ -n "${failed[$name]:-}" ] && continue
      start=$(date +%s.%N)
      if ! "$name" >/dev/null 2>"$out/err"; then
        failed[$name]="failed ($(head -c 200 "$out/err" | tr '\n' ' '))"
        continue
      fi
      end=$(date +%s.%N)
      times[$name]+="$(python3 -c "print($end - $start)") "
    done
  done
  for name in "$@"; do
    if [ -n "${failed[$name]:-}" ]; then
      echo "$name ${failed[$name]}"
    else
      # shellcheck disable=SC2086
      echo "$name $(python3 -c 'import statistics, sys; print(f"{statistics.median(map(float, sys.argv[1:])):.3f}")' ${times[$name]})"
    fi
  done
}
