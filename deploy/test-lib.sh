# Shared by the deployment tests (test-compose.sh, test-slurm.sh); sourced, not run.
# Before sourcing, set TEST_NAME (the log prefix) and LIMIT_S (the whole test's limit);
# the functions that read state need ABLATE (the CLI) and TMP (a scratch directory), and
# reach the coordinator through the CLI's environment (ABLATE_COORDINATOR, ABLATE_CA, …).

START=$(date +%s)

log() { printf '[%s %4ss] %s\n' "$TEST_NAME" "$(($(date +%s) - START))" "$*"; }
fail() { log "FAIL: $*"; exit 1; }
skip() { echo "SKIP deploy/$TEST_NAME.sh: $*"; exit 0; }

# wait_for LIMIT WHAT CMD…: runs CMD every half second until it succeeds; fails the test
# after LIMIT seconds, or once the whole test is over LIMIT_S.
wait_for() {
  local limit=$1 what=$2 t0
  shift 2
  t0=$(date +%s)
  until "$@"; do
    [ $(($(date +%s) - t0)) -lt "$limit" ] || fail "timed out after ${limit}s waiting for $what"
    [ $(($(date +%s) - START)) -lt "$LIMIT_S" ] || fail "over the test's $((LIMIT_S / 60))-minute limit"
    sleep 0.5
  done
}

# runs EXP: the experiment's runs, one JSON object a line (cli/status_json.rs has the fields).
runs() {
  "$ABLATE" status "$1" --json >"$TMP/status.json" 2>"$TMP/status.err" || return 1
  python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["experiments"][0]["runs"]:
    print(json.dumps(r))' "$TMP/status.json"
}

# run_field EXP RUN FIELD: one field of one run.
run_field() {
  runs "$1" | python3 -c '
import json, sys
for line in sys.stdin.read().splitlines():  # all of it: no broken pipe
    r = json.loads(line)
    if r["id"] == sys.argv[1]: print(r[sys.argv[2]]); break' "$2" "$3"
}
