#!/usr/bin/env bash
# Builds the local base image `ablate-base:bookworm` when it is absent, for machines where
# no registry can be reached (nothing can be pulled): a minimal Debian bookworm root made
# by debootstrap from the mirror apt already uses, trimmed like debian:bookworm-slim (no
# docs, man pages, locales or apt caches), then `docker import`ed.
#
#   deploy/base-image.sh            # build it if absent (a second run returns at once)
#   deploy/base-image.sh --force    # rebuild it
#
# Environment: ABLATE_BASE_IMAGE (default ablate-base:bookworm), ABLATE_DEBIAN_MIRROR
# (default: the first Debian mirror in apt's sources, else http://deb.debian.org/debian),
# ABLATE_DEBIAN_SUITE (default bookworm). Needs root (or sudo) and debootstrap, which it
# installs with apt-get when missing.
set -euo pipefail

IMAGE="${ABLATE_BASE_IMAGE:-ablate-base:bookworm}"
SUITE="${ABLATE_DEBIAN_SUITE:-bookworm}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf '[base-image] %s\n' "$*" >&2; }

if [ "$FORCE" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
  log "installing debootstrap"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null
fi
DEBOOTSTRAP="$(command -v debootstrap || echo /usr/sbin/debootstrap)"

# The mirror apt already uses (deb822 .sources or one-line sources.list), security excluded.
mirror="${ABLATE_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
               grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
                 awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'; } |
             grep -v -e security -e '^$' | grep -m1 '/debian/*$' || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

ROOT="$(mktemp -d "${TMPDIR:-/tmp}/ablate-rootfs.XXXXXX")"
cleanup() { $SUDO rm -rf --one-file-system "$ROOT"; }
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
$SUDO "$DEBOOTSTRAP" --variant=minbase "$SUITE" "$ROOT" "$mirror" >"$ROOT.log" 2>&1 || {
  tail -20 "$ROOT.log" >&2; rm -f "$ROOT.log"; log "debootstrap failed"; exit 1; }
rm -f "$ROOT.log"

# Trim to the content of debian:bookworm-slim, and keep later apt-get installs slim too.
$SUDO tee "$ROOT/etc/dpkg/dpkg.cfg.d/ablate-slim" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
$SUDO tee "$ROOT/etc/apt/apt.conf.d/ablate-slim" >/dev/null <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
$SUDO find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
$SUDO find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
$SUDO rm -rf "$ROOT"/usr/share/{man,info,groff,lintian,locale}/* \
  "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/*.bin \
  "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* \
  "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old
# Docker provides these at run time; the host's copies must not leak into the image.
$SUDO sh -c ": > '$ROOT/etc/resolv.conf'; : > '$ROOT/etc/hostname'"

log "importing as $IMAGE"
$SUDO tar --numeric-owner -C "$ROOT" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE $mirror (trimmed)" \
    - "$IMAGE" >/dev/null
log "$IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
