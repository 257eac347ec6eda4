#!/usr/bin/env bash
# One set-up step of the Makefile, as one line on the terminal:
#
#   ops/step.sh NAME TITLE COMMAND [ARG...]
#
# runs COMMAND with its whole output (pip, npm, TensorFlow's warnings) in
# build/logs/setup/NAME.log, shows "TITLE  12s  <the log's last line>" while it runs (on a
# terminal), then "TITLE  done in 12s", or on failure the log's last 30 lines, its path and
# COMMAND's exit code. `make V=1 ...` (STEP_VERBOSE=1) shows the full output instead.
set -u
name=$1 title=$2
shift 2
if [ -n "${STEP_VERBOSE:-}" ]; then
  exec "$@"
fi
log_dir=build/logs/setup
mkdir -p "$log_dir"
log="$log_dir/$name.log"
start=$SECONDS
"$@" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; echo; exit 130' INT TERM
if [ -t 1 ]; then
  columns=$(tput cols 2>/dev/null || echo 100)
  room=$((columns - 48))
  while kill -0 "$pid" 2>/dev/null; do
    # the log's last line (progress bars write \r), cut to the terminal's width
    last=$(tail -c 400 "$log" 2>/dev/null | tr '\r' '\n' | sed '/^[[:space:]]*$/d' | tail -n 1 | cut -c "1-$((room > 10 ? room : 10))")
    printf '\r\033[K  %-40s %4ds  %s' "$title" $((SECONDS - start)) "$last"
    sleep 0.3
  done
fi
wait "$pid"
code=$?
trap - INT TERM
[ -t 1 ] && printf '\r\033[K'
if [ "$code" -eq 0 ]; then
  printf '  %-40s done in %ds\n' "$title" $((SECONDS - start))
else
  printf '  %-40s FAILED after %ds (exit %d); the last lines of %s:\n' "$title" $((SECONDS - start)) "$code" "$log"
  tail -n 30 "$log" | sed 's/^/    /'
fi
exit "$code"
