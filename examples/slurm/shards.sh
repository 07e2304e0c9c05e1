#!/usr/bin/env bash
# A spec spread over a Slurm array of 4 tasks, then merged by a job that
# waits for them (afterok). Each task runs its shard in a workspace of its
# own on node-local scratch and copies the call memo to a shared folder;
# the merge imports the memos and runs the whole spec.
#
#   bash examples/slurm/shards.sh specs/eval.yaml /shared/flow-memos
set -euo pipefail
spec=${1:?usage: shards.sh SPEC SHARED_DIR}
shared=${2:?usage: shards.sh SPEC SHARED_DIR}
shards=4
mkdir -p "$shared"

array=$(sbatch --parsable --array=0-$((shards - 1)) --job-name=flow-shard --wrap "
  ws=\${TMPDIR:-/tmp}/flow-shard-\$SLURM_ARRAY_TASK_ID
  flow run $spec --shard \$SLURM_ARRAY_TASK_ID/$shards --workspace \$ws/.flow
  cp \$ws/.flow/memo.sqlite $shared/memo-\$SLURM_ARRAY_TASK_ID.sqlite
")

sbatch --dependency=afterok:"$array" --job-name=flow-merge --wrap "
  flow cache import $shared/memo-*.sqlite --workspace $(dirname "$spec")/.flow
  flow run $spec -o results.junit.xml
"
