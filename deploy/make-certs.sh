#!/usr/bin/env bash
# Makes what a TLS deployment needs (openssl): a private CA, the coordinator's certificate,
# a worker client certificate, and the two tokens, sorted by who may hold them:
#
#   DIR/ca/           ca.pem ca.key                 keep on the admin's machine only
#   DIR/coordinator/  ca.pem coordinator.pem/.key user.token worker.token
#   DIR/worker/       ca.pem worker.pem/.key worker.token
#   DIR/user/         ca.pem user.token             hand to the people who submit grids
#
#   deploy/make-certs.sh                         # DIR = deploy/secrets
#   deploy/make-certs.sh DIR head.example.org 10.0.0.5   # more names/IPs for the coordinator
#
# The coordinator's certificate names `coordinator` (its Compose service), `localhost`,
# 127.0.0.1 and ::1, plus the extra arguments. Existing files are kept (delete DIR to start
# over). Run as root, the container user (uid 10001) gets the files its containers mount;
# otherwise they are made world-readable and the script says so.
set -euo pipefail

DEPLOY="$(cd "$(dirname "$0")" && pwd)"
DIR="${1:-$DEPLOY/secrets}"
shift || true
DAYS="${ABLATE_CERT_DAYS:-825}"
CONTAINER_UID=10001

command -v openssl >/dev/null || { echo "make-certs: openssl is needed" >&2; exit 1; }
umask 077
mkdir -p "$DIR/ca" "$DIR/coordinator" "$DIR/worker" "$DIR/user"

ca="$DIR/ca"
if [ ! -f "$ca/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$DAYS" \
    -subj "/CN=ablate CA" -keyout "$ca/ca.key" -out "$ca/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  echo "made the CA: $ca/ca.pem"
fi

# leaf NAME CN SAN EKU: a key and a certificate signed by the CA.
leaf() {
  local name=$1 cn=$2 san=$3 eku=$4 out="$DIR/$1"
  [ -f "$out/$name.pem" ] && return
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
    -keyout "$out/$name.key" -out "$out/$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$san" "$eku" \
    >"$out/$name.ext"
  openssl x509 -req -in "$out/$name.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
    -CAcreateserial -days "$DAYS" -extfile "$out/$name.ext" -out "$out/$name.pem" 2>/dev/null
  rm -f "$out/$name.csr" "$out/$name.ext"
  echo "made $out/$name.pem ($san)"
}

san="DNS:coordinator,DNS:localhost,IP:127.0.0.1,IP:::1"
for extra in "$@"; do
  if [[ "$extra" =~ ^[0-9.]+$ || "$extra" == *:* ]]; then san="$san,IP:$extra"; else san="$san,DNS:$extra"; fi
done
leaf coordinator coordinator "$san" serverAuth
leaf worker ablate-worker "DNS:ablate-worker" clientAuth

token() { [ -f "$1" ] || openssl rand -hex 32 >"$1"; }
token "$DIR/coordinator/user.token"
token "$DIR/coordinator/worker.token"
for f in ca/ca.pem; do
  cp "$DIR/$f" "$DIR/coordinator/ca.pem"
  cp "$DIR/$f" "$DIR/worker/ca.pem"
  cp "$DIR/$f" "$DIR/user/ca.pem"
done
cp "$DIR/coordinator/worker.token" "$DIR/worker/worker.token"
cp "$DIR/coordinator/user.token" "$DIR/user/user.token"

if [ "$(id -u)" = 0 ]; then
  chown -R "$CONTAINER_UID:$CONTAINER_UID" "$DIR/coordinator" "$DIR/worker"
  chmod 700 "$DIR/coordinator" "$DIR/worker"
  chmod 600 "$DIR"/coordinator/* "$DIR"/worker/*
  chmod 755 "$DIR"
else
  chmod 755 "$DIR" "$DIR/coordinator" "$DIR/worker"
  chmod 644 "$DIR"/coordinator/* "$DIR"/worker/*
  echo "make-certs: not root, so the container user cannot be given the files: keys and tokens in $DIR/coordinator and $DIR/worker are readable by every user of this host" >&2
fi
echo "done: $DIR (user side: ABLATE_CA=$DIR/user/ca.pem ABLATE_USER_TOKEN_FILE=$DIR/user/user.token)"
