#!/usr/bin/env bash
# End-to-end test of the Docker deployment (deploy/README.md, "Test"):
#   1. builds both images (deploy/build-images.sh) from host-built binaries;
#   2. starts the CPU stack (docker-compose.yml + docker-compose.cpu.yml) under its own
#      project name, on a random local port, with short leases;
#   3. submits deploy/test-grid.toml from the host with `ablate submit --coordinator`;
#   4. `docker kill`s a worker in the middle of a run: that run must finish on the other;
#   5. `docker network disconnect`s a worker in the middle of a run: its lease must expire
#      (the run is re-queued, attempt + 1) and, once it is reconnected, its late reports
#      must be refused;
#   6. checks that the report has every run of the grid exactly once, all completed.
# Each fault happens at a moment made by construction, not caught by polling: the workers
# run with the test-only hold (ABLATE_TEST_HOLD_DIR, worker/src/agent/test_hooks.rs), so a
# run stops after each epoch while DIR/hold exists, until DIR/<run id> lets it go on. The
# test reads the state through `ablate status --json` and `ablate workers --json`.
# Removes its containers, network and volume whatever happens. Prints a SKIP line and
# exits 0 when there is no Docker engine or no Compose.
#
# Environment: ABLATE_BIN_DIR (use DIR/ablate and DIR/ablate-worker instead of building
# the debug binaries), BASE_IMAGE (see build-images.sh), ABLATE_TEST_TAG (image tag,
# default compose-test), ABLATE_TEST_KEEP=1 (leave the stack up for inspection).
set -euo pipefail

DEPLOY="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$DEPLOY")"
TEST_NAME=test-compose
LIMIT_S=$((20 * 60))
# shellcheck source=deploy/test-lib.sh
source "$DEPLOY/test-lib.sh"

command -v docker >/dev/null 2>&1 || skip "no docker CLI on this machine"
timeout 20 docker info >/dev/null 2>&1 || skip "no Docker engine answers (docker info failed)"
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  skip "neither 'docker compose' nor 'docker-compose' is installed"
fi
command -v python3 >/dev/null 2>&1 || fail "python3 is needed to read JSON"
[ -f "${ABLATE_DATASETS:-/usr/share/datasets}/fashion-mnist/train-images-idx3-ubyte.gz" ] ||
  fail "no Fashion-MNIST under ${ABLATE_DATASETS:-/usr/share/datasets} (deploy/setup.sh installs dataset-fashion-mnist)"

# --- images ---------------------------------------------------------------------------
# ABLATE_TEST_TAG: another image tag (and build context), so that test runs from several
# checkouts on one Docker engine do not replace each other's images.
TAG="${ABLATE_TEST_TAG:-compose-test}"
export ABLATE_IMAGE_CONTEXT="${ABLATE_IMAGE_CONTEXT:-${ABLATE_CACHE_DIR:-$HOME/.cache/ablate}/image-context/$TAG}"
if [ -n "${ABLATE_BIN_DIR:-}" ]; then
  "$DEPLOY/build-images.sh" --bin-dir "$ABLATE_BIN_DIR" --tag "$TAG"
  BIN_DIR="$ABLATE_BIN_DIR"
else
  "$DEPLOY/build-images.sh" --profile dev --tag "$TAG"
  # shellcheck source=/dev/null
  source "$DEPLOY/env.sh"
  BIN_DIR="$CARGO_TARGET_DIR/debug"
fi
ABLATE="$BIN_DIR/ablate"
[ -x "$ABLATE" ] || fail "no host CLI at $ABLATE"
# The coordinator image must not carry libtorch (nor anything else than its binary and
# the glibc files it loads).
probe="$(docker create "ablate-coordinator:$TAG")"
coordinator_files="$(docker export "$probe" | tar -t)"
docker rm -v "$probe" >/dev/null   # -v: and its anonymous /data volume
! grep -qi torch <<<"$coordinator_files" || fail "the coordinator image contains libtorch"
log "images built: $(docker image inspect -f '{{.Size}}' "ablate-coordinator:$TAG" | awk '{printf "coordinator %.0f MB", $1/1e6}'), $(docker image inspect -f '{{.Size}}' "ablate-worker:$TAG" | awk '{printf "worker %.2f GB", $1/1e9}'); no libtorch in the coordinator"

# --- the stack ------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ablate-compose-test.XXXXXX")"
export COMPOSE_PROJECT_NAME="ablatetest$$"
export ABLATE_TAG="$TAG"
export ABLATE_ENV_FILE="$TMP/ablate.env"
export ABLATE_PUBLISH="127.0.0.1:0"          # a free port, read back with `compose port`
export ABLATE_HTTP_PUBLISH="127.0.0.1:0"     # the dashboard's, likewise
export ABLATE_DATASETS="${ABLATE_DATASETS:-/usr/share/datasets}"
export RUST_LOG="${RUST_LOG:-info}"
# TLS and two tokens, as in production: certificates and tokens made for this run.
export ABLATE_SECRETS="$TMP/secrets"
"$DEPLOY/make-certs.sh" "$ABLATE_SECRETS" >/dev/null
echo "RUST_LOG=$RUST_LOG" >"$ABLATE_ENV_FILE"
# The test hold: runs wait after each epoch while $HOLD/hold exists (and $HOLD/<run id>
# does not). Created before the stack starts, so no run can get past its first epoch
# unnoticed.
HOLD="$TMP/hold"
mkdir -p "$HOLD"
chmod 755 "$TMP" "$HOLD"
touch "$HOLD/hold"
# Short leases, so that a vanished worker loses its run within seconds.
cat >"$TMP/compose.test.yml" <<EOF
services:
  coordinator:
    command: ["serve", "--listen", "0.0.0.0:50051", "--data-dir", "/data", "--lease-ttl", "6s"]
  cpu-worker-1:
    environment: { ABLATE_TEST_HOLD_DIR: /hold }
    volumes: ["$HOLD:/hold:ro"]
  cpu-worker-2:
    environment: { ABLATE_TEST_HOLD_DIR: /hold }
    volumes: ["$HOLD:/hold:ro"]
EOF
FILES=(-f "$DEPLOY/docker-compose.yml" -f "$DEPLOY/docker-compose.cpu.yml" -f "$TMP/compose.test.yml")
compose() { "${COMPOSE[@]}" "${FILES[@]}" "$@"; }

cleanup() {
  rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    log "logs of the stack (last 40 lines each):"
    for svc in coordinator cpu-worker-1 cpu-worker-2; do
      echo "----- $svc"
      compose logs --no-color --tail 40 "$svc" 2>&1 || true
    done
  fi
  if [ "${ABLATE_TEST_KEEP:-0}" = 1 ]; then
    log "ABLATE_TEST_KEEP=1: left up; remove with: COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME ABLATE_ENV_FILE=$ABLATE_ENV_FILE ${COMPOSE[*]} ${FILES[*]} down -v"
  else
    compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    rm -rf "$TMP"
    left="$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")"
    [ -z "$left" ] || docker rm -f $left >/dev/null 2>&1 || true
  fi
  [ "$rc" -eq 0 ] && log "PASS ($(($(date +%s) - START)) s)" || log "FAILED (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting the CPU stack (project $COMPOSE_PROJECT_NAME)"
compose up -d 2>&1 | sed 's/^/  /'

container() { compose ps -q "$1"; }
COORD="$(container coordinator)"
W1="$(container cpu-worker-1)"
W2="$(container cpu-worker-2)"
[ -n "$COORD" ] && [ -n "$W1" ] && [ -n "$W2" ] || fail "the stack did not start"
NETWORK="$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$W1")"

# wait_for SECONDS DESCRIPTION COMMAND…: polls COMMAND every second until it succeeds.

healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$COORD")" = healthy ]; }
wait_for 90 "the coordinator's healthcheck" healthy
HOSTPORT="$(compose port coordinator 50051 | tail -1)"
URL="https://$HOSTPORT"
export ABLATE_COORDINATOR="$URL"   # for the shared readers in test-lib.sh
export ABLATE_CA="$ABLATE_SECRETS/user/ca.pem"
export ABLATE_USER_TOKEN_FILE="$ABLATE_SECRETS/user/user.token"
log "coordinator healthy at $URL"

# Both workers registered, so that the grid is placed on both from the start (and the
# submit has no reason to warn that no connected worker fits its runs).
two_workers() {
  "$ABLATE" workers --json --coordinator "$URL" 2>/dev/null | python3 -c '
import json, sys
w = [w for w in json.load(sys.stdin)["workers"] if w["connected"]]
sys.exit(0 if len(w) >= 2 else 1)'
}
wait_for 120 "both workers to register" two_workers

# --- submit ---------------------------------------------------------------------------
"$ABLATE" submit "$DEPLOY/test-grid.toml" --coordinator "$URL" 2>"$TMP/submit.err" | tee "$TMP/submit.out"
! grep -q warning "$TMP/submit.err" || fail "the submit warned: $(cat "$TMP/submit.err")"
EXP="compose-test"
RUNS=$(python3 - "$DEPLOY/test-grid.toml" <<'EOF'
import math, sys, tomllib
grid = tomllib.load(open(sys.argv[1], "rb")).get("grid", {})
print(math.prod(len(v) for v in grid.values()))
EOF
)
log "submitted $EXP: $RUNS runs"

# held_on WORKER: prints "RUN ATTEMPT" of the run that the worker named WORKER (its
# coordinator id is w-WORKER-<8 hex>) holds at the test hold: running, an epoch stored and
# its checkpoint on the coordinator, epochs left. Nothing while there is none.
held_on() {
  runs "$EXP" | python3 -c '
import json, re, sys
worker = sys.argv[1]
for line in sys.stdin.read().splitlines():  # all of it: no broken pipe
    r = json.loads(line)
    if r["state"] != "running" or not re.fullmatch(re.escape("w-" + worker) + "-[0-9a-f]{8}", r["worker"] or ""):
        continue
    if r["checkpoint_epoch"] >= 1 and r["checkpoint_epoch"] < r["epochs"]:
        print(r["id"], r["attempt"]); break' "$1"
}
running() { [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ]; }
# logs CONTAINER: its log without ANSI colours.
logs() { docker logs "$1" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'; }
# pass RUN: lets RUN go on past the hold (every later epoch too).
pass() { touch "$HOLD/$1"; }

# --- 4: kill a worker mid-run ---------------------------------------------------------
# Each worker takes one run and stops at the hold after its first epoch: a stable state.
KILLED_RUN="" HELD_RUN=""
held_w1() { read -r KILLED_RUN KILLED_ATTEMPT < <(held_on cpu-worker-1) && [ -n "$KILLED_RUN" ]; }
held_w2() { read -r HELD_RUN HELD_ATTEMPT < <(held_on cpu-worker-2) && [ -n "$HELD_RUN" ]; }
wait_for 600 "cpu-worker-1 to hold a run after its first epoch" held_w1
wait_for 600 "cpu-worker-2 to hold a run after its first epoch" held_w2
log "docker kill cpu-worker-1 while it holds run $KILLED_RUN (attempt $KILLED_ATTEMPT, epoch $(run_field "$EXP" "$KILLED_RUN" checkpoint_epoch) stored)"
docker kill "$W1" >/dev/null
# Its lease expires and the run is queued again; it stays queued, since cpu-worker-2 holds
# its own run. Then both runs get a pass: cpu-worker-2 finishes its run and takes the
# killed one next (the queue's head: it has the lowest index of the queued runs), resuming
# from its checkpoint; the run after that stops at the hold again.
requeued() { [ "$(run_field "$EXP" "$KILLED_RUN" state)" = queued ]; }
wait_for 120 "run $KILLED_RUN to be queued again" requeued
log "run $KILLED_RUN is queued again: $(run_field "$EXP" "$KILLED_RUN" pending_reason)"
pass "$HELD_RUN"
pass "$KILLED_RUN"
finished() { [ "$(run_field "$EXP" "$1" state)" = finished ]; }
wait_for 600 "run $KILLED_RUN to finish" finished "$KILLED_RUN"
! running "$W1" || fail "cpu-worker-1 came back by itself"
logs "$W2" | grep 'run completed' | grep -q "$KILLED_RUN" ||
  fail "cpu-worker-2's log does not show run $KILLED_RUN completed"
logs "$W2" | grep -q "resuming run $KILLED_RUN after epoch" ||
  fail "cpu-worker-2 did not resume run $KILLED_RUN from its checkpoint"
log "run $KILLED_RUN finished on cpu-worker-2 (attempt $(run_field "$EXP" "$KILLED_RUN" attempt)), resumed from its checkpoint"

# --- 5: cut a worker off the network mid-run ------------------------------------------
# cpu-worker-2 holds its next run after an epoch; cpu-worker-1 comes back and holds one too
# (so the cut-off run stays queued once its lease expires).
CUT_RUN=""
held_cut() { read -r CUT_RUN CUT_ATTEMPT < <(held_on cpu-worker-2) && [ -n "$CUT_RUN" ] && [ "$CUT_RUN" != "$KILLED_RUN" ]; }
wait_for 600 "cpu-worker-2 to hold its next run after an epoch" held_cut
docker start "$W1" >/dev/null
W1_RUN=""
held_w1_again() { read -r W1_RUN _ < <(held_on cpu-worker-1) && [ -n "$W1_RUN" ]; }
wait_for 600 "the restarted cpu-worker-1 to hold a run" held_w1_again
log "docker network disconnect cpu-worker-2 while it holds run $CUT_RUN (attempt $CUT_ATTEMPT)"
docker network disconnect "$NETWORK" "$W2"
# The lease expires: the run is queued again (cpu-worker-1 holds its own run), attempt
# unchanged until a worker takes it.
requeued_cut() { [ "$(run_field "$EXP" "$CUT_RUN" state)" = queued ]; }
wait_for 120 "the lease of run $CUT_RUN to expire" requeued_cut
logs "$COORD" | grep -q "lease expired: worker cpu-worker-2" ||
  fail "the coordinator's log does not show cpu-worker-2's lease expiring"
log "lease expired: run $CUT_RUN is queued ($(run_field "$EXP" "$CUT_RUN" pending_reason)); reconnecting cpu-worker-2"
docker network connect "$NETWORK" "$W2"
# cpu-worker-2 still holds its attempt and reports on it: refused (fenced off).
refused() { logs "$W2" | grep -E 'fenced off|completion refused' | grep -q "$CUT_RUN"; }
wait_for 180 "cpu-worker-2's late reports on run $CUT_RUN to be refused" refused
log "cpu-worker-2's late report was refused: $(logs "$W2" | grep -E 'fenced off|completion refused' | grep "$CUT_RUN" | tail -1)"

# --- 6: the report --------------------------------------------------------------------
rm -f "$HOLD/hold"   # every run goes on to its end
all_done() {
  runs "$EXP" | python3 -c '
import json, sys
runs = [json.loads(l) for l in sys.stdin]
sys.exit(0 if runs and all(r["state"] in ("finished", "failed", "cancelled") for r in runs) else 1)'
}
wait_for 900 "every run to finish" all_done
"$ABLATE" report "$EXP" --format json --coordinator "$URL" >"$TMP/report.json"
python3 - "$TMP/report.json" "$RUNS" "$KILLED_RUN" "$CUT_RUN" <<'EOF' || fail "the report is wrong"
import json, sys
report = json.load(open(sys.argv[1]))
expected, killed, cut = int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = report["runs"]
ids = [r["id"] for r in runs]
names = [r["name"] for r in runs]
problems = []
if len(runs) != expected:
    problems.append(f"{len(runs)} runs in the report, the grid has {expected}")
if len(set(ids)) != len(ids) or len(set(names)) != len(names):
    problems.append(f"a run appears twice: {names}")
for r in runs:
    if r["state"] != "finished":
        problems.append(f"run {r['name']} is {r['state']}")
by_id = {r["id"]: r for r in runs}
for rid, what in ((killed, "killed"), (cut, "cut off")):
    if rid not in by_id:
        problems.append(f"the {what} run {rid} is missing")
    elif by_id[rid]["attempts"] < 2:
        problems.append(f"the {what} run {rid} shows {by_id[rid]['attempts']} attempt(s)")
for r in runs:
    print(f"  {r['name']:<24} {r['state']:<10} attempts={r['attempts']}")
if problems:
    print("\n".join("  problem: " + p for p in problems))
    sys.exit(1)
EOF
log "report: $RUNS runs, each once, all completed"
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "ablate-(coordinator|worker):$TAG" || true
