#!/usr/bin/env bash
# Checks the NCCL we ship (the torch wheel's nvidia/nccl/lib/libnccl.so.2) against the cudarc
# NCCL feature in Cargo.toml: the library must export every function cudarc declares for
# that feature (read from cudarc's own source), be at least that version, and be reachable
# under the name cudarc opens (libnccl.so). So a version drift fails CI, not a first GPU run.
#
#   deploy/check-nccl-symbols.sh                   # the library of deploy/env.sh's torch
#   deploy/check-nccl-symbols.sh --lib PATH        # another libnccl.so.2
#   deploy/check-nccl-symbols.sh --feature nccl-02030   # what another feature would need
# Needs cargo (to locate cudarc's source), python3 and nm (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."

LIB=""
FEATURE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --lib) LIB="$2"; shift 2 ;;
    --feature) FEATURE="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-nccl-symbols: unknown argument $1" >&2; exit 2 ;;
  esac
done
fail() { echo "check-nccl-symbols: FAIL: $*" >&2; exit 1; }

# The feature the workspace builds cudarc with.
if [ -z "$FEATURE" ]; then
  FEATURE=$(grep -E '^cudarc *=' Cargo.toml | grep -oE '"nccl-0[0-9]{4}"' | tr -d '"' || true)
  [ "$(wc -w <<<"$FEATURE")" = 1 ] ||
    fail "Cargo.toml's cudarc line must name exactly one versioned NCCL feature (nccl-0XXYY), found: '${FEATURE}'"
fi
[[ "$FEATURE" =~ ^nccl-0([0-9]{2})([0-9]{2})$ ]] || fail "$FEATURE is not a feature of the form nccl-0XXYY"
want_minor=$((10#${BASH_REMATCH[1]} * 100 + 10#${BASH_REMATCH[2]}))   # 2028 for 2.28

# cudarc's source, as locked.
CUDARC_DIR=$(cargo metadata --format-version 1 --locked --features ablate-worker/cuda 2>/dev/null | python3 -c '
import json, os, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
print(os.path.dirname(pkgs[0]["manifest_path"]) if pkgs else "")')
SYS="$CUDARC_DIR/src/nccl/sys/mod.rs"
[ -f "$SYS" ] || fail "cudarc's source not found (cargo metadata gave '$CUDARC_DIR')"
CUDARC_VERSION=$(basename "$CUDARC_DIR")
grep -qE "^$FEATURE = " "$CUDARC_DIR/Cargo.toml" || fail "$CUDARC_VERSION has no feature $FEATURE"

# The library.
if [ -z "$LIB" ]; then
  [ -f deploy/env.sh ] || fail "deploy/env.sh is missing: run deploy/setup.sh (or give --lib)"
  # shellcheck source=/dev/null
  source deploy/env.sh
  LIB=$(ls "$VIRTUAL_ENV"/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2 2>/dev/null | head -1 || true)
  [ -n "$LIB" ] || fail "no nvidia/nccl/lib/libnccl.so.2 in $VIRTUAL_ENV (torch wheel)"
fi
[ -f "$LIB" ] || fail "$LIB does not exist"

# Every nccl* function cudarc compiles for FEATURE: those without a cfg, and those whose
# cfg names the feature.
required=$(awk -v feat="\"$FEATURE\"" '
  /^#\[cfg\(/ { cfg = $0; next }
  /^pub unsafe fn nccl/ {
    name = $4; sub(/\(.*/, "", name)
    if (cfg == "" || index(cfg, feat) > 0) print name
    cfg = ""; next
  }
  { cfg = "" }' "$SYS" | sort -u)
[ -n "$required" ] || fail "found no NCCL function in $SYS"
exported=$(nm -D --defined-only "$LIB" | awk '{print $NF}' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$required") <(printf '%s\n' "$exported"))

version=$(grep -aoE 'NCCL version [0-9]+\.[0-9]+\.[0-9]+' "$LIB" | head -1 | awk '{print $3}')
[ -n "$version" ] || fail "cannot read the version string of $LIB"
IFS=. read -r major minor patch <<<"$version"
have_minor=$((major * 1000 + minor))   # 2028 for 2.28
printf 'cudarc %s, feature %s: %d functions; %s: NCCL %s, %d exported\n' \
  "${CUDARC_VERSION#cudarc-}" "$FEATURE" "$(wc -l <<<"$required")" "$LIB" "$version" \
  "$(grep -c '^nccl' <<<"$exported")"
if [ -n "$missing" ]; then
  echo "missing from the library ($(wc -l <<<"$missing")):" $missing >&2
  fail "$LIB lacks functions that cudarc's $FEATURE declares: pick the feature of NCCL $major.$minor"
fi
[ "$have_minor" -ge "$want_minor" ] ||
  fail "NCCL $version is older than the $FEATURE API"
# cudarc dlopens libnccl.so (and other names), never libnccl.so.2.
[ -e "$(dirname "$LIB")/libnccl.so" ] ||
  fail "$(dirname "$LIB")/libnccl.so is missing (cudarc opens that name): run deploy/setup.sh"
echo "check-nccl-symbols: ok"
