#!/usr/bin/env bash
# Builds the images `ablate-coordinator:TAG` and `ablate-worker:TAG` from binaries compiled
# on this host (no compiler runs inside Docker):
#
#   deploy/build-images.sh                      # cargo build --release, then both images
#                                               # (the worker with `--features cuda`)
#   deploy/build-images.sh --profile dev        # the debug binaries (what CI already built)
#   deploy/build-images.sh --bin-dir DIR        # use DIR/ablate and DIR/ablate-worker as-is
#   deploy/build-images.sh --only coordinator   # one image (coordinator | worker)
#   deploy/build-images.sh --tag 0.2.0          # default: latest (or $ABLATE_TAG)
#
# The base image: $BASE_IMAGE when set; else debian:bookworm-slim when it is present or
# can be pulled; else the local ablate-base:bookworm, built by deploy/base-image.sh.
# Build contexts are staged under $ABLATE_IMAGE_CONTEXT, default ~/.cache/ablate/image-context/
# (hard links where possible):
# the stripped binaries, and for the worker only the torch-wheel libraries it loads.
set -euo pipefail

DEPLOY="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$DEPLOY")"
CACHE_DIR="${ABLATE_CACHE_DIR:-$HOME/.cache/ablate}"
CONTEXT_ROOT="${ABLATE_IMAGE_CONTEXT:-$CACHE_DIR/image-context}"
PROFILE=release
BIN_DIR=""
TAG="${ABLATE_TAG:-latest}"
ONLY=""

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --tag) TAG="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
case "$ONLY" in ""|coordinator|worker) ;; *) die "--only takes coordinator or worker" ;; esac
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

# --- the binaries ---------------------------------------------------------------------
if [ -z "$BIN_DIR" ]; then
  [ -f "$DEPLOY/env.sh" ] || die "deploy/env.sh is missing: run deploy/setup.sh first"
  # shellcheck source=/dev/null
  source "$DEPLOY/env.sh"
  pkgs=()
  want coordinator && pkgs+=(-p ablate-coordinator)
  # The worker image serves GPU hosts: NCCL (`cuda`, loaded at run time) for multi-GPU runs.
  want worker && pkgs+=(-p ablate-worker --features ablate-worker/cuda)
  log "cargo build --profile $PROFILE ${pkgs[*]} (target dir $CARGO_TARGET_DIR)"
  (cd "$REPO" && cargo build --profile "$PROFILE" "${pkgs[@]}" --bins)
  case "$PROFILE" in dev|test) sub=debug ;; *) sub="$PROFILE" ;; esac
  BIN_DIR="$CARGO_TARGET_DIR/$sub"
fi
want coordinator && { [ -x "$BIN_DIR/ablate" ] || die "$BIN_DIR/ablate not found"; }
want worker && { [ -x "$BIN_DIR/ablate-worker" ] || die "$BIN_DIR/ablate-worker not found"; }

# --- the base image -------------------------------------------------------------------
if [ -z "${BASE_IMAGE:-}" ]; then
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1 ||
     timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    BASE_IMAGE=debian:bookworm-slim
  else
    BASE_IMAGE=ablate-base:bookworm
    log "debian:bookworm-slim cannot be pulled: using the local $BASE_IMAGE"
  fi
fi
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  case "$BASE_IMAGE" in
    ablate-base:*) ABLATE_BASE_IMAGE="$BASE_IMAGE" "$DEPLOY/base-image.sh" ;;
    *) docker pull "$BASE_IMAGE" ;;
  esac
fi
log "base image: $BASE_IMAGE"

# Hard link when source and context share a file system, copy otherwise; -L follows the
# wheel's symlinks so that the context holds plain files.
link_or_copy() { cp -L -l "$1" "$2" 2>/dev/null || cp -L "$1" "$2"; }
strip_into() { strip --strip-debug -o "$2" "$1" 2>/dev/null || cp "$1" "$2"; }

revision="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
build() { # component dockerfile context
  log "docker build ablate-$1:$TAG ($(du -shL "$3" | cut -f1) of context)"
  docker build -q -f "$DEPLOY/$2" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --label "org.opencontainers.image.source=ablate" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "ablate.component=$1" \
    -t "ablate-$1:$TAG" "$3" >/dev/null
  # Drop the image this tag pointed at before, if nothing else uses it (the worker is GBs).
  docker image prune -f --filter "label=ablate.component=$1" >/dev/null
}

# --- coordinator ----------------------------------------------------------------------
if want coordinator; then
  ctx="$CONTEXT_ROOT/coordinator"
  rm -rf "$ctx" && mkdir -p "$ctx"
  strip_into "$BIN_DIR/ablate" "$ctx/ablate"
  build coordinator Dockerfile.coordinator "$ctx"
fi

# --- worker: the binary and the torch-wheel libraries it loads --------------------------
if want worker; then
  ctx="$CONTEXT_ROOT/worker"
  rm -rf "$ctx" && mkdir -p "$ctx/site-packages"
  strip_into "$BIN_DIR/ablate-worker" "$ctx/ablate-worker"
  deps="$(env -u LD_LIBRARY_PATH ldd "$BIN_DIR/ablate-worker")"
  if grep -q 'not found' <<<"$deps"; then
    grep 'not found' <<<"$deps" >&2; die "ablate-worker has unresolved libraries on this host"
  fi
  torch_cpu="$(awk '$1 == "libtorch_cpu.so" {print $3}' <<<"$deps")"
  [ -n "$torch_cpu" ] || die "ablate-worker does not link libtorch_cpu.so"
  site="$(cd "$(dirname "$torch_cpu")/../.." && pwd -P)"   # …/site-packages
  log "libtorch from $site"
  # What the loader resolves inside the wheel (torch/lib and nvidia/*/lib)…
  libs=()
  while read -r path; do
    real="$(cd "$(dirname "$path")" && pwd -P)/$(basename "$path")"   # keep the SONAME
    case "$real" in "$site"/*) libs+=("${real#"$site"/}") ;; esac
  done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3}' <<<"$deps")
  # …and what CUDA code opens later with dlopen: cuDNN's sub-libraries (convolutions),
  # NVRTC (cuDNN's runtime-compiled engines, torch's jiterator), torch's NVRTC stub.
  shopt -s nullglob
  for extra in "$site"/nvidia/cudnn/lib/libcudnn*.so.* \
               "$site"/nvidia/*/lib/libnvrtc.so.* "$site"/nvidia/*/lib/libnvrtc-builtins.so.* \
               "$site"/torch/lib/libcaffe2_nvrtc.so; do
    case "$extra" in *.alt.*) continue ;; esac
    libs+=("${extra#"$site"/}")
  done
  shopt -u nullglob
  for rel in $(printf '%s\n' "${libs[@]}" | sort -u); do
    mkdir -p "$ctx/site-packages/$(dirname "$rel")"
    link_or_copy "$site/$rel" "$ctx/site-packages/$rel"
  done
  # cudarc dlopens NCCL as libnccl.so (its candidate names lack the wheel's .so.2).
  nccl_dir="$ctx/site-packages/nvidia/nccl/lib"
  if [ -e "$nccl_dir/libnccl.so.2" ]; then ln -sfn libnccl.so.2 "$nccl_dir/libnccl.so"; fi
  log "worker libraries: $(printf '%s\n' "${libs[@]}" | sort -u | wc -l) files"
  build worker Dockerfile.worker "$ctx"
fi

docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' |
  grep -E "^ablate-(coordinator|worker):$TAG " >&2 || true
