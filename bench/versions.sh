#!/usr/bin/env bash
# The OpenTofu version a configuration asks for, fetched from a local release mirror, gantry side
# by side with the plain steps doing the same work, in one run:
#   cold   gantry plan (infra phase) whose required_version the bundled binary does not satisfy:
#          index, download, signature and SHA256SUMS check, unpack into the tool cache, then
#          init + plan; against curl (zip, SHA256SUMS, signature) + gpgv + sha256sum -c + unzip +
#          tofu init + tofu plan
#   warm   the same with the release in the tool cache (gantry reads the index and finds it
#          cached); against tofu init + tofu plan with the binary already there
# The mirror serves the test bed's OpenTofu as its release (python3 -m http.server on loopback),
# its SHA256SUMS signed by a key made for the run (gantry is given it as the signing key).
# Usage: bash bench/versions.sh [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-5}
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_setup

work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  GNUPGHOME=$work/gnupg gpgconf --kill gpg-agent 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
version=$("$GANTRY_TEST_TOFU" version | sed -n '1s/^OpenTofu v//p')
archive=tofu_${version}_linux_amd64.zip
mkdir -p "$work/mirror/v$version" "$work/ws/infra" "$work/home"
python3 - "$work/mirror/v$version/$archive" "$GANTRY_TEST_TOFU" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.write(sys.argv[2], "tofu")
PY
(cd "$work/mirror/v$version" && sha256sum "$archive" >"tofu_${version}_SHA256SUMS")
mkdir -m 700 "$work/gnupg"
gpg_() { GNUPGHOME=$work/gnupg gpg --batch --pinentry-mode loopback --passphrase '' "$@" 2>/dev/null; }
gpg_ --quick-gen-key 'bench publisher <bench@gantry.invalid>' rsa3072 sign never
gpg_ --armor --export >"$work/key.asc"
gpg_ --export >"$work/key.gpg"
gpg_ --digest-algo SHA512 --detach-sign -o "$work/mirror/v$version/tofu_${version}_SHA256SUMS.gpgsig" \
  "$work/mirror/v$version/tofu_${version}_SHA256SUMS"
printf '{"versions":[{"id":"%s"}]}\n' "$version" >"$work/mirror/api.json"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/mirror" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
minor=$(echo "$version" | cut -d. -f1,2)
printf 'terraform {\n  required_version = "~> %s.0"\n}\noutput "x" {\n  value = 1\n}\n' "$minor" >"$work/ws/infra/main.tf"
mirror=http://127.0.0.1:$port

record() { echo "$2" >>"$work/fig.$1"; }
fig() { median <"$work/fig.$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
timed() { # KEY COMMAND...: runs COMMAND (quiet), records its seconds
  local key=$1 t0
  shift
  t0=$(date +%s.%N)
  "$@" >"$work/last.log" 2>&1 || { echo "bench: $key failed:" >&2; tail -20 "$work/last.log" >&2; exit 1; }
  record "$key" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')"
}
gantry_plan() { # CACHE
  env -C "$work/ws" PATH=/usr/bin:/bin HOME="$work/home" GANTRY_TOOL_CACHE="$1" GANTRY_TOFU_RELEASES_URL="$mirror" GANTRY_TOFU_SIGNING_KEY="$work/key.asc" \
    "$gantry" plan --environment bench --phases infra --terraform-directory infra --terraform-binary tofu
}
plain() { # DIR: the same work by hand: fetch, check, unpack, init, plan
  mkdir -p "$1"
  (cd "$1" &&
    curl -fsSO "$mirror/v$version/$archive" &&
    curl -fsSO "$mirror/v$version/tofu_${version}_SHA256SUMS" &&
    curl -fsSO "$mirror/v$version/tofu_${version}_SHA256SUMS.gpgsig" &&
    gpgv --quiet --keyring "$work/key.gpg" "tofu_${version}_SHA256SUMS.gpgsig" "tofu_${version}_SHA256SUMS" 2>/dev/null &&
    sha256sum -c --quiet "tofu_${version}_SHA256SUMS" &&
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("tofu", ".")' "$archive" &&
    chmod +x tofu)
  plain_run "$1/tofu"
}
plain_run() { # TOFU: init + plan in a fresh copy of the module
  rm -rf "$work/plain-ws" && cp -r "$work/ws/infra" "$work/plain-ws"
  (cd "$work/plain-ws" && "$1" init -input=false -no-color >/dev/null && "$1" plan -input=false -no-color >/dev/null)
}

for run in $(seq "$runs"); do
  rm -rf "$work/cache" "$work/plain"
  timed gantry.cold gantry_plan "$work/cache"
  grep -q "SHA256SUMS signed by" "$work/last.log" || { echo "bench: gantry did not download" >&2; exit 1; }
  timed plain.cold plain "$work/plain"
  timed gantry.warm gantry_plan "$work/cache"
  grep -q "from the tool cache" "$work/last.log" || { echo "bench: gantry did not use its cache" >&2; exit 1; }
  timed plain.warm plain_run "$work/plain/tofu"
  echo "run $run: cold gantry $(tail -n1 "$work/fig.gantry.cold")s plain $(tail -n1 "$work/fig.plain.cold")s" >&2
done

echo
echo "$("$gantry" --version | head -n1), OpenTofu $version ($(du -h "$work/mirror/v$version/$archive" | cut -f1) zip) from a loopback mirror; medians of $runs runs"
printf '%-52s %9s %9s %8s\n' "" "gantry s" "plain s" "ratio"
g=$(fig gantry.cold) p=$(fig plain.cold)
printf '%-52s %9s %9s %8s\n' "download, verify, unpack, init, plan (cold cache)" "$g" "$p" "$(ratio "$g" "$p")"
g=$(fig gantry.warm) p=$(fig plain.warm)
printf '%-52s %9s %9s %8s\n' "resolve from the cache, init, plan (warm cache)" "$g" "$p" "$(ratio "$g" "$p")"
