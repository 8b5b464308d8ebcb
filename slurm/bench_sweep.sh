#!/bin/bash
# Overhead of the sweep machinery per task: plan, submit, scheduling/start, result
# collection (status) and report, for N trivial tasks on the private local cluster, against
# the time the tasks themselves take.
#
#   slurm/bench_sweep.sh path/to/crackseg [N=100]
#
# Each task is a tiny script that writes result.json (no training), so nearly everything
# measured is overhead: sbatch, slurmctld scheduling (sched_interval=2 s), slurmd launch,
# the array script, srun, and crackseg's own status/report work.
set -euo pipefail
BIN=$(realpath "${1:?usage: $0 path/to/crackseg [N]}")
N=${2:-100}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/crackseg-bench-XXXXXX)
chmod 0755 "$W"
cleanup() { bash "$HERE/local-cluster.sh" stop "$W/cluster" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
now() { date +%s.%N; }

eval "$(bash "$HERE/local-cluster.sh" start "$W/cluster")"
cat >"$W/task.sh" <<'SH'
#!/bin/bash
t0=$(date +%s.%N)
spec=$3; id=${spec##*:}; dir=$(dirname "${spec%:*}")/$(printf 'task-%04d' "$id")
printf '{"metrics":{"val_f1":%s}}\n' "0.$id" >"$dir/result.json"
t1=$(date +%s.%N)
echo "$t0 $t1" >"$dir/task_time"
SH
chmod +x "$W/task.sh"
echo "[train]" >"$W/base.toml"
cat >"$W/sweep.toml" <<TOML
base = "base.toml"
out = "out"
seeds = [1]
trainer = ["$W/task.sh"]
[random]
samples = $N
seed = 1
x = { dist = "uniform", low = 0, high = 1 }
[resources]
cpus_per_rank = 1
TOML

t0=$(now); "$BIN" sweep plan "$W/sweep.toml" >/dev/null
t1=$(now); "$BIN" sweep submit "$W/out" >/dev/null
t2=$(now); "$BIN" sweep status --wait "$W/out" >"$W/status.txt"
t3=$(now); "$BIN" sweep report --no-plots "$W/out" >/dev/null
t4=$(now)
done_n=$(awk '$2 == "done"' "$W/status.txt" | wc -l)
task_s=$(cat "$W"/out/task-*/task_time | awk '{ s += $2 - $1 } END { printf "%.4f", s }')
cpus=$(sinfo -h -o %c)
awk -v n="$N" -v done_n="$done_n" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" -v t4="$t4" \
    -v task="$task_s" -v cpus="$cpus" 'BEGIN {
  p = t1 - t0; s = t2 - t1; r = t3 - t2; rep = t4 - t3; total = t4 - t0
  printf "sweep of %d trivial tasks on the local cluster (%d CPUs, so %d tasks at once): %d done\n", n, cpus, cpus, done_n
  printf "  plan      %8.3f s\n  submit    %8.3f s\n  run+wait  %8.3f s   (submit until every result.json exists)\n  report    %8.3f s\n", p, s, r, rep
  printf "  total     %8.3f s   = %.3f s of wall time per task\n", total, total / n
  printf "  the tasks themselves: %.4f s in all, %.5f s per task\n", task, task / n
  printf "  overhead per task (wall x CPUs / tasks - own time): %.3f s of one CPU slot\n", total * cpus / n - task / n
}'
