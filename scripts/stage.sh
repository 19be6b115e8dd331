#!/usr/bin/env bash
# Runs one stage of `make test` or `make demo` and prints how long it took, so that CI's time
# budget (90 minutes on 2 cores, aiming at 45) stays visible stage by stage in the log.
# Usage: scripts/stage.sh NAME COMMAND...
name=$1
shift
start=$(date +%s)
"$@"
rc=$?
echo "== stage ${name}: $(($(date +%s) - start)) s (exit ${rc})"
exit "$rc"
