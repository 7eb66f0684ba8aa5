#!/usr/bin/env bash
# Does the controller help? The main job with a growth policy against the same job whose seeds
# never germinate (--policy none: the frozen base layers alone), same data, same steps, run one
# after the other (issue 6). Usage: bench/controller/policy_vs_frozen.sh [ranks] [steps] [policy...]
# Prints each policy's final held-out loss and its ratio to the frozen job's.
set -euo pipefail
cd "$(dirname "$0")/../.."
ranks=${1:-4} steps=${2:-600}
shift $(( $# < 2 ? $# : 2 ))
policies=("${@:-aggressive balanced conservative}")
read -r -a policies <<< "${policies[*]}"
bin=${ESPER_BIN:-build/default/runtime/cli/esper}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
loss() {  # policy -> final held-out loss
  mpirun --oversubscribe -np "$ranks" "$bin" run --steps "$steps" --policy "$1" --progress-every "$steps" \
    --report "$out/$1.json" ${ESPER_ARGS:-} > "$out/$1.log"
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['loss']['final_held_out'])" "$out/$1.json"
}
frozen=$(loss none)
printf "%-14s %-12s %s\n" policy "final loss" "vs never germinated"
printf "%-14s %-12.5f %s\n" none "$frozen" "1.000x"
for p in "${policies[@]}"; do
  l=$(loss "$p")
  printf "%-14s %-12.5f %.3fx (%.1f%% lower)\n" "$p" "$l" "$(python3 -c "print($l/$frozen)")" \
    "$(python3 -c "print(100*(1-$l/$frozen))")"
done
