#!/usr/bin/env bash
# End-to-end test of the Slurm launcher (deploy/README.md, "Slurm"), on a one-node Slurm
# cluster that it starts on this machine:
#   1. installs Debian's slurm-wlm and munge when missing (as root), and starts munged,
#      slurmctld and slurmd with a private key, socket, ports and state directory (one
#      node, 2 CPUs, no cgroups: proctrack/linuxproc, task/none);
#   2. starts `ablate serve --launcher slurm` (TLS, client certificates and the two tokens,
#      as the compose test) and submits a grid of 2 CPU runs: worker jobs appear in
#      squeue, register as the workers `slurm-<job id>` and train;
#   3. a second grid's run gets a third job that stays PENDING (the node's 2 CPUs are
#      taken): `ablate status` says so; cancelling that experiment scancels the job;
#   4. `scancel`s the job of a run in the middle of it: the worker gets SIGTERM, gives the
#      run back with its checkpoint and leaves; a new job takes the run and resumes it;
#   5. checks the report: every run once, finished, each epoch once; then sees every
#      worker leave when idle (`--exit-when-idle`) and its job end: no job is left.
# Faults happen at moments made by construction, not caught by polling: workers wait
# after each epoch while the test hold (ABLATE_TEST_HOLD_DIR/hold) exists, so a run is
# mid-way, a checkpoint stored, when its job is cancelled. The test reads the state
# through `ablate status --json`, `ablate workers --json` and `squeue`.
# Stops every daemon it started and removes its files whatever happens. Prints a SKIP
# line and exits 0 where Slurm is missing and cannot be installed (not root, no apt-get).
#
# Environment: ABLATE_BIN_DIR (use DIR/ablate and DIR/ablate-worker instead of building
# the debug binaries), ABLATE_DATASETS (default /usr/share/datasets),
# ABLATE_TEST_KEEP=1 (keep the temporary directory with every log).
set -euo pipefail

DEPLOY="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$DEPLOY")"
TEST_NAME=test-slurm
LIMIT_S=$((8 * 60))
# shellcheck source=deploy/test-lib.sh
source "$DEPLOY/test-lib.sh"

# --- Slurm and munge ------------------------------------------------------------------
have_slurm() {
  command -v sbatch >/dev/null && command -v slurmctld >/dev/null &&
    command -v slurmd >/dev/null && command -v munged >/dev/null
}
if ! have_slurm; then
  [ "$(id -u)" -eq 0 ] || skip "Slurm is not installed and this is not root (apt-get install slurm-wlm munge)"
  command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get"
  log "installing slurm-wlm and munge"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >/dev/null 2>&1 ||
    fail "apt-get install slurm-wlm munge failed"
  have_slurm || fail "slurm-wlm is installed but sbatch/slurmctld/slurmd/munged are not on PATH"
fi
# slurmd and the jobs run as this user; slurmd needs root to start jobs as their owners.
[ "$(id -u)" -eq 0 ] || skip "slurmd needs root"
command -v python3 >/dev/null 2>&1 || fail "python3 is needed to read JSON"
DATASETS="${ABLATE_DATASETS:-/usr/share/datasets}"
[ -f "$DATASETS/fashion-mnist/train-images-idx3-ubyte.gz" ] ||
  fail "no Fashion-MNIST under $DATASETS (deploy/setup.sh installs dataset-fashion-mnist)"

# --- binaries -------------------------------------------------------------------------
if [ -n "${ABLATE_BIN_DIR:-}" ]; then
  BIN_DIR="$ABLATE_BIN_DIR"
else
  # shellcheck source=/dev/null
  source "$DEPLOY/env.sh"
  (cd "$REPO" && cargo build -q -p ablate-coordinator -p ablate-worker)
  BIN_DIR="$CARGO_TARGET_DIR/debug"
fi
ABLATE="$BIN_DIR/ablate"
[ -x "$ABLATE" ] && [ -x "$BIN_DIR/ablate-worker" ] || fail "no ablate and ablate-worker in $BIN_DIR"

# --- the cluster ----------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ablate-slurm-test.XXXXXX")"
chmod 755 "$TMP"   # munged wants every directory above its socket searchable by all
RUN="$TMP/run" STATE="$TMP/state" LOGS="$TMP/log"
mkdir -p "$RUN" "$STATE" "$LOGS" "$TMP/munge" "$TMP/spool"
chmod 755 "$RUN"
chmod 700 "$TMP/munge"
COORD_PID=""
# Jobs and daemons this test started, stopped in this order whatever happens.
cleanup() {
  rc=$?
  trap - EXIT INT TERM
  if [ -n "$COORD_PID" ] && kill -0 "$COORD_PID" 2>/dev/null; then
    kill -TERM "$COORD_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$COORD_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$COORD_PID" 2>/dev/null || true
  fi
  if [ -f "$RUN/slurmctld.pid" ]; then
    left="$(squeue -h -o %i 2>/dev/null || true)"
    if [ -n "$left" ]; then
      log "cancelling jobs left: $(echo $left)"
      scancel $left 2>/dev/null || true
      for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  if [ "$rc" -ne 0 ]; then
    for f in "$TMP"/coordinator.log "$LOGS"/slurmctld.log "$TMP"/slurm/logs/*.out; do
      [ -f "$f" ] || continue
      echo "----- $f (last 30 lines)"
      tail -n 30 "$f" | sed 's/\x1b\[[0-9;]*m//g'
    done
  fi
  for daemon in slurmd slurmctld munged; do
    pidfile="$RUN/$daemon.pid"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      log "$daemon ($pid) had to be killed"
    fi
  done
  if [ "${ABLATE_TEST_KEEP:-0}" = 1 ]; then
    log "ABLATE_TEST_KEEP=1: files kept in $TMP"
  else
    rm -rf "$TMP"
  fi
  [ "$rc" -eq 0 ] && log "PASS ($(($(date +%s) - START)) s)" || log "FAILED (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
COORD_PORT=$(free_port)
NODE="ablate$$"
MEM_MB=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)

# A private munge key and socket: nothing shared with another munged on this machine.
head -c 1024 /dev/urandom >"$TMP/munge/munge.key"
chmod 600 "$TMP/munge/munge.key"
munged --socket="$RUN/munge.socket" --key-file="$TMP/munge/munge.key" \
  --log-file="$LOGS/munged.log" --pid-file="$RUN/munged.pid" --seed-file="$TMP/munge/seed" ||
  fail "munged did not start: $(tail -3 "$LOGS/munged.log" 2>/dev/null)"

export SLURM_CONF="$TMP/slurm.conf"
mkdir -p "$TMP/spool/$NODE"
cat >"$SLURM_CONF" <<EOF
# A one-node test cluster of deploy/test-slurm.sh (absolute paths: the daemons chdir to /).
ClusterName=ablatetest
SlurmctldHost=$(hostname)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$RUN/munge.socket
CredType=cred/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$TMP/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
KillWait=30
MinJobAge=5
NodeName=$NODE NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=2 RealMemory=$MEM_MB State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
(cd / && slurmctld -f "$SLURM_CONF") || fail "slurmctld did not start: $(tail -5 "$LOGS/slurmctld.log" 2>/dev/null)"
(cd / && slurmd -f "$SLURM_CONF" -N "$NODE") || fail "slurmd did not start: $(tail -5 "$LOGS/slurmd.log" 2>/dev/null)"

# wait_for SECONDS DESCRIPTION COMMAND…: polls COMMAND every half second until it succeeds.
node_idle() { sinfo -h -n "$NODE" -o %t 2>/dev/null | grep -qx idle; }
wait_for 60 "the Slurm node to be idle" node_idle
log "Slurm $(sinfo -V | cut -d' ' -f2) is up: node $NODE ($(sinfo -h -n "$NODE" -o '%c CPUs')), controller on port $CTLD_PORT"

# --- the coordinator ------------------------------------------------------------------
SECRETS="$TMP/secrets"
"$DEPLOY/make-certs.sh" "$SECRETS" >/dev/null
HOLD="$TMP/hold"
mkdir -p "$HOLD"
touch "$HOLD/hold"   # before anything starts: no run gets past its first epoch unnoticed
URL="https://127.0.0.1:$COORD_PORT"
RUST_LOG="${RUST_LOG:-info}" "$ABLATE" serve --listen "127.0.0.1:$COORD_PORT" \
  --data-dir "$TMP/data" --lease-ttl 6s \
  --tls-cert "$SECRETS/coordinator/coordinator.pem" --tls-key "$SECRETS/coordinator/coordinator.key" \
  --tls-client-ca "$SECRETS/coordinator/ca.pem" \
  --user-token-file "$SECRETS/coordinator/user.token" \
  --worker-token-file "$SECRETS/coordinator/worker.token" \
  --launcher slurm --launcher-dir "$TMP/slurm" --max-jobs 3 --time 15 --signal-lead 60s \
  --cpus-per-job 1 --mem-per-job 1G --worker-idle 5s \
  --worker-bin "$BIN_DIR/ablate-worker" --worker-ca "$SECRETS/worker/ca.pem" \
  --worker-tls-cert "$SECRETS/worker/worker.pem" --worker-tls-key "$SECRETS/worker/worker.key" \
  --worker-env "ABLATE_TEST_HOLD_DIR=$HOLD" --worker-arg "--data-root=$DATASETS" \
  --worker-work-dir "$TMP/work" \
  >"$TMP/coordinator.log" 2>&1 &
COORD_PID=$!
export ABLATE_COORDINATOR="$URL"
export ABLATE_CA="$SECRETS/user/ca.pem"
export ABLATE_USER_TOKEN_FILE="$SECRETS/user/user.token"
answers() { "$ABLATE" workers --json >/dev/null 2>&1; }
wait_for 60 "the coordinator to answer" answers
TOKEN_MODE="$(stat -c %a "$TMP/slurm/worker.token")"
[ "$TOKEN_MODE" = 600 ] || fail "the worker token file has mode $TOKEN_MODE, not 600"
! grep -q "$(cat "$SECRETS/coordinator/worker.token")" "$TMP/slurm/worker-job.sh" ||
  fail "the batch script holds the worker token"
log "coordinator at $URL with --launcher slurm; the batch script (no secret in it):"
sed 's/^/    /' "$TMP/slurm/worker-job.sh"

# --- helpers --------------------------------------------------------------------------
JOB_NAME="$(sed -n 's/^#SBATCH --job-name=//p' "$TMP/slurm/worker-job.sh")"
# jobs [STATE]: our job ids in squeue (in that state), one per line.
jobs_in() { squeue -h --name="$JOB_NAME" ${1:+--states="$1"} -o %i 2>/dev/null | sort -n; }
# held EXP: "RUN JOB" of each run held after an epoch on a launched worker (w-slurm-JOB-…).
held() {
  runs "$1" | python3 -c '
import json, re, sys
for line in sys.stdin.read().splitlines():
    r = json.loads(line)
    m = re.fullmatch(r"w-slurm-([0-9]+)-[0-9a-f]{8}", r["worker"] or "")
    if r["state"] == "running" and m and 1 <= r["checkpoint_epoch"] < r["epochs"]:
        print(r["id"], m.group(1))'
}
# workers_json EXPR: evaluates a Python expression on `ablate workers --json` (as w).
workers_json() {
  "$ABLATE" workers --json 2>/dev/null | python3 -c '
import json, sys
w = json.load(sys.stdin)
sys.exit(0 if eval(sys.argv[1]) else 1)' "$1"
}
grid() {  # grid NAME SEEDS…
  local name=$1
  shift
  cat >"$TMP/$name.toml" <<EOF
name = "$name"
[base]
model = "lenet"
image_size = 32
channels = 1
classes = 10
epochs = 3
batch_size = 32
lr = 0.01
optimizer = "momentum"
threads = 1
max_attempts = 4
[base.dataset]
format = "idx"
root = "$DATASETS/fashion-mnist"
train = { images = "train-images-idx3-ubyte.gz", labels = "train-labels-idx1-ubyte.gz", limit = 1500 }
eval = { images = "t10k-images-idx3-ubyte.gz", labels = "t10k-labels-idx1-ubyte.gz", limit = 300 }
fit = "pad"
[grid]
seed = [$(IFS=,; echo "$*")]
EOF
  echo "$TMP/$name.toml"
}

# --- 2: jobs appear, register and train -----------------------------------------------
"$ABLATE" submit "$(grid slurm-a 1 2)" >/dev/null 2>"$TMP/submit.err" || fail "submit: $(cat "$TMP/submit.err")"
two_jobs() { [ "$(jobs_in | wc -l)" -eq 2 ]; }
wait_for 30 "two worker jobs in squeue" two_jobs
log "grid slurm-a (2 runs) submitted; squeue shows its worker jobs:"
squeue --name="$JOB_NAME" -o '    %.6i %.9T %.12N %.10M %j' 2>&1
both_held() { [ "$(held slurm-a | wc -l)" -eq 2 ]; }
wait_for 240 "both runs to train an epoch on launched workers" both_held
held slurm-a >"$TMP/held"
log "both runs hold after epoch 1 on their jobs' workers:"
sed 's/^/    run /; s/ \([0-9]*\)$/ on job \1/' "$TMP/held"
read -r VICTIM_RUN VICTIM_JOB <"$TMP/held"
jobs_have_workers() { workers_json 'len([j for j in w["jobs"] if j["worker_name"]]) == 2 and w["launcher"] == "slurm"'; }
wait_for 30 "ablate workers to show both jobs with their workers" jobs_have_workers
"$ABLATE" workers | sed 's/^/    /'

# --- 3: a pending job, cancelled with its experiment ----------------------------------
"$ABLATE" submit "$(grid slurm-b 9)" >/dev/null 2>"$TMP/submit.err" || fail "submit: $(cat "$TMP/submit.err")"
B_RUN="$(runs slurm-b | python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["id"])')"
says_pending() { run_field slurm-b "$B_RUN" pending_reason | grep -Eq 'slurm job [0-9]+ is PENDING'; }
wait_for 30 "slurm-b's pending reason to name its pending job" says_pending
PENDING_JOB="$(jobs_in PENDING)"
[ "$(echo "$PENDING_JOB" | wc -l)" -eq 1 ] && [ -n "$PENDING_JOB" ] || fail "expected one pending job, squeue has: $(jobs_in PENDING | tr '\n' ' ')"
log "slurm-b's run waits: $(run_field slurm-b "$B_RUN" pending_reason)"
"$ABLATE" cancel slurm-b >/dev/null
pending_gone() { ! jobs_in | grep -qx "$PENDING_JOB"; }
wait_for 30 "the launcher to scancel pending job $PENDING_JOB" pending_gone
grep -q "cancelled pending jobs no queued run needs" "$TMP/coordinator.log" ||
  fail "the coordinator's log does not say it cancelled the pending job"
log "cancelled slurm-b: its pending job $PENDING_JOB was scancelled"

# --- 4: scancel a job mid-run ---------------------------------------------------------
ATTEMPT="$(run_field slurm-a "$VICTIM_RUN" attempt)"
log "scancel $VICTIM_JOB while its worker holds run $VICTIM_RUN (attempt $ATTEMPT, epoch $(run_field slurm-a "$VICTIM_RUN" checkpoint_epoch) stored)"
scancel "$VICTIM_JOB"
moved() {
  local worker
  worker="$(run_field slurm-a "$VICTIM_RUN" worker)"
  [ "$(run_field slurm-a "$VICTIM_RUN" attempt)" -gt "$ATTEMPT" ] && [ -n "$worker" ] &&
    [ "${worker#w-slurm-"$VICTIM_JOB"-}" = "$worker" ]
}
wait_for 120 "run $VICTIM_RUN to start again on another job" moved
NEW_WORKER="$(run_field slurm-a "$VICTIM_RUN" worker)"
NEW_JOB="$(echo "$NEW_WORKER" | sed -E 's/^w-slurm-([0-9]+)-.*/\1/')"
grep -q "released: worker shutting down" "$TMP/coordinator.log" ||
  fail "the coordinator's log does not show the cancelled job's worker releasing its run"
grep -q "left: shutting down" "$TMP/coordinator.log" ||
  fail "the cancelled job's worker did not leave the coordinator"
log "run $VICTIM_RUN was released by job $VICTIM_JOB's worker and runs on job $NEW_JOB (attempt $(run_field slurm-a "$VICTIM_RUN" attempt))"

# --- 5: every run to its end; workers leave when idle ---------------------------------
rm -f "$HOLD/hold"
all_done() {
  runs slurm-a | python3 -c '
import json, sys
runs = [json.loads(l) for l in sys.stdin]
sys.exit(0 if runs and all(r["state"] in ("finished", "failed", "cancelled") for r in runs) else 1)'
}
wait_for 240 "every run of slurm-a to finish" all_done
grep -q "resuming run $VICTIM_RUN after epoch" "$TMP/slurm/logs/slurm-$NEW_JOB.out" ||
  fail "job $NEW_JOB's worker did not resume run $VICTIM_RUN from its checkpoint"
"$ABLATE" report slurm-a --format json >"$TMP/report.json"
python3 - "$TMP/report.json" "$VICTIM_RUN" <<'EOF' || fail "the report is wrong"
import json, sys
report = json.load(open(sys.argv[1]))
victim = sys.argv[2]
problems = []
runs = report["runs"]
if len(runs) != 2 or len({r["id"] for r in runs}) != 2:
    problems.append(f"expected 2 distinct runs, got {[r['id'] for r in runs]}")
for r in runs:
    epochs = [e["epoch"] for e in r["epochs"]]
    if r["state"] != "finished":
        problems.append(f"run {r['name']} is {r['state']}")
    if epochs != [1, 2, 3]:
        problems.append(f"run {r['name']} has epochs {epochs}, not each of 1..3 once")
    if r["id"] == victim and r["attempts"] < 2:
        problems.append(f"the cancelled job's run shows {r['attempts']} attempt(s)")
    print(f"    {r['name']:<16} {r['state']:<9} attempts={r['attempts']} epochs={epochs}")
if problems:
    print("\n".join("    problem: " + p for p in problems))
    sys.exit(1)
EOF
log "report: both runs finished, each epoch once; run $VICTIM_RUN resumed after epoch 1 on job $NEW_JOB"
no_jobs() { [ -z "$(jobs_in)" ]; }
wait_for 60 "the idle workers' jobs to end" no_jobs
no_workers() { workers_json 'not w["workers"] and not w["jobs"]'; }
wait_for 30 "ablate workers to show no worker and no job" no_workers
LEFT=$(grep -c "left: idle for" "$TMP/coordinator.log" || true)
[ "$LEFT" -ge 1 ] || fail "no worker left for being idle"
log "every worker left when idle ($LEFT for idleness); squeue has no job of ours"
