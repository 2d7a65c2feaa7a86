#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when some are missing.
# Idempotent: with everything present it only runs dpkg-query and exits in
# well under a second. `apt-get update` runs at most once, and only when
# something has to be installed.
#
#   mpv ffmpeg             player and reference decoder for the end-to-end
#                          tests, e2e/ (ffmpeg brings ffprobe)
#   python3-cryptography   the reference vectors check, make ref
#                          (protocol/testdata/ref/), run by /usr/bin/python3
#   openssl                certificates made outside Go for the chain-policy
#                          tests (keystore/)
#   softhsm2 opensc        a PKCS#11 token (SoftHSM) and pkcs11-tool, for the
#                          user keys on tokens (keystore/token, e2e/)
#   chromium               a real browser for the local proxy's guard against
#                          DNS rebinding and cross-site pages (e2e/)
set -euo pipefail

pkgs=(mpv ffmpeg python3-cryptography openssl chromium softhsm2 opensc)

# make ref runs Debian's Python by its path, not whatever python3 is on PATH.
check_python() {
	if [[ ! -x /usr/bin/python3 ]]; then
		echo "deps.sh: /usr/bin/python3 missing (python3-cryptography should bring it)" >&2
		exit 1
	fi
}

missing=()
for p in "${pkgs[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [[ "$status" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	check_python
	echo "deps.sh: all present: ${pkgs[*]}"
	exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "deps.sh: missing ${missing[*]}, not root and no sudo" >&2
		exit 1
	fi
	sudo=(sudo)
fi

echo "deps.sh: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	"${missing[@]}"

for c in mpv ffmpeg ffprobe openssl chromium softhsm2-util pkcs11-tool; do
	if ! command -v "$c" >/dev/null 2>&1; then
		echo "deps.sh: $c still not on PATH after install" >&2
		exit 1
	fi
done
check_python
echo "deps.sh: done"
