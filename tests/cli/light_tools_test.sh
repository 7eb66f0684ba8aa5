#!/usr/bin/env bash
# The tools that do not train run where MPI and CUDA cannot be loaded (a login node): in a private
# mount namespace every MPI, PMIx, CUDA, cuBLAS and NCCL library that esper-run links is replaced by
# /dev/null; esper-run then cannot start (checked, so the hiding is real), while `esper --help`,
# `esper broker`, `esper ctl send`, `esper watch` and `esper top --once` work against a real broker.
# Usage: light_tools_test.sh ESPER_BINARY (needs root for unshare/mount, as the Slurm test does).
set -euo pipefail
esper=$(readlink -f "$1")
run="$(dirname "$esper")/esper-run"
[[ -x $run ]] || { echo "no esper-run beside $esper"; exit 1; }
mapfile -t hide < <(ldd "$run" | awk '$3 ~ /^\// && $1 ~ /(mpi|pmix|open-pal|open-rte|cuda|cublas|nccl)/ {print $3}' | sort -u)
[[ ${#hide[@]} -gt 0 ]] || { echo "esper-run links none of the libraries to hide: nothing to test"; exit 1; }
echo "hiding ${#hide[@]} libraries: ${hide[*]}"

exec unshare --mount --propagation private /bin/bash -s "$esper" "$run" "${hide[@]}" <<'EOF'
set -euo pipefail
esper=$1; run=$2; shift 2
for lib in "$@"; do mount --bind /dev/null "$lib"; done
if "$run" run --help >/dev/null 2>&1; then echo "FAIL: esper-run started although its libraries are hidden"; exit 1; fi
echo "esper-run cannot start here (as intended)"

"$esper" --help >/dev/null
"$esper" ctl send --help >/dev/null
dir=$(mktemp -d /tmp/esper-light-XXXXXX)
trap 'kill $broker 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
# The broker's first line, read as it is printed (a fifo), then the rest copied to a log. No join
# grace: a command for a rank that is not there is answered at once.
mkfifo "$dir/broker.out"
"$esper" broker --bind "ipc://$dir/b" --join-grace-ms 0 >"$dir/broker.out" 2>&1 &
broker=$!
exec 3<"$dir/broker.out"
read -r -t 20 first <&3 || first=""
cat <&3 >"$dir/broker.log" &
cmd=$(sed -n 's/^endpoints cmd=\([^ ]*\) .*/\1/p' <<<"$first")
[[ -n $cmd ]] || { echo "FAIL: the broker printed no endpoints: $first"; exit 1; }

# No rank is connected: the command ends at once with the broker's reason (exit 1), after running.
set +e
out=$("$esper" ctl send --broker "$cmd" --timeout-ms 2000 snapshot 2>&1); rc=$?
set -e
echo "$out"
[[ $rc -eq 1 && $out == *"outcome: not all ok"* ]] || { echo "FAIL: esper ctl send (exit $rc)"; exit 1; }

set +e
# --foreground: the signal goes to esper watch alone, not also to its process group (two SIGINTs
# in a row are the forced exit, status 130).
timeout --foreground --preserve-status -s INT 2 "$esper" watch --broker "$cmd" >"$dir/watch.log" 2>&1; rc=$?
set -e
[[ $rc -eq 0 ]] && grep -q "^watching " "$dir/watch.log" || { echo "FAIL: esper watch (exit $rc)"; cat "$dir/watch.log"; exit 1; }

"$esper" top --broker "$cmd" --once --no-color >"$dir/top.log" 2>&1 || { echo "FAIL: esper top --once"; cat "$dir/top.log"; exit 1; }
echo "ok: esper --help, broker, ctl send, watch and top --once ran without MPI, PMIx, CUDA, cuBLAS and NCCL"
EOF
