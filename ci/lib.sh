# Shared helpers for the ci/ scripts: sourced, never run.
# Everything heavy is cached under PODVM_CACHE, one directory per tool and version,
# so a second run of any install script takes seconds.

set -euo pipefail

PODVM_CACHE=${PODVM_CACHE:-/var/cache/podvm}
export PODVM_CACHE

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# run_logged LOG CMD...: runs CMD with its output in LOG, printing a dot every
# 15 s so a long build shows progress; on failure prints the log's tail.
run_logged() {
	local log=$1; shift
	mkdir -p "$(dirname "$log")"
	"$@" >"$log" 2>&1 &
	local pid=$! start=$SECONDS
	while kill -0 "$pid" 2>/dev/null; do
		sleep 15
		kill -0 "$pid" 2>/dev/null && printf '    ... %ds (%s)\n' $((SECONDS - start)) "$(basename "$log")" >&2
	done
	if ! wait "$pid"; then
		tail -n 40 "$log" >&2
		die "command failed: $* (full log: $log)"
	fi
	printf '    done in %ds\n' $((SECONDS - start)) >&2
}
