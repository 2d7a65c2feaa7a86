#!/usr/bin/env bash
# make demo: a dev PKI and generated sample audio under demo/, Caddy with the
# drm module running Caddyfile.example, clientproxy in front of it, a check
# that a track plays, and the mpv command to run. No network is needed.
# Ctrl-C stops both servers (DEMO_SECONDS=N stops them after N seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${DRM_DEMO_PORT:-8080}
listen=${CLIENTPROXY_LISTEN:-127.0.0.1:8765}
export DRM_DEMO_PORT=$port

for addr in "127.0.0.1:$port" "$listen"; do
	# Caddy binds with SO_REUSEPORT: a busy port would be shared silently.
	if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
		echo "demo: $addr is already in use; set DRM_DEMO_PORT / CLIENTPROXY_LISTEN" >&2
		exit 1
	fi
done

mkdir -p demo/media
bin/caddy drm pki init demo/pki >/dev/null
# The demo's listener: a device and a (software) user, as the server
# requires; the CRLs are signed again at every start, so they never expire.
[ -s demo/pki/device-demo-laptop.crt ] || bin/caddy drm pki issue device demo-laptop --dir demo/pki >/dev/null
[ -s demo/pki/user-BI12345678.crt ] || bin/caddy drm pki issue user --serial BI12345678 --name "Demo Listener" --dir demo/pki >/dev/null
# The publisher whose key signs the media's manifests.
[ -s demo/pki/publisher-demo-label.crt ] || bin/caddy drm pki issue publisher demo-label --dir demo/pki >/dev/null
bin/caddy drm pki crl --dir demo/pki >/dev/null

# Sample audio (generated, deterministic) and a catalog with titles.
make_track() { # file title ffmpeg-source [codec args...]
	local file=$1 title=$2 src=$3
	shift 3
	if [ ! -s "demo/media/$file" ]; then
		ffmpeg -v error -nostdin -y -f lavfi -i "$src" -ac 2 -ar 44100 "$@" "demo/media/$file"
	fi
	local dur
	dur=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "demo/media/$file")
	printf '  {"id": "%s", "title": "%s", "duration": %s}' "$file" "$title" "$dur"
}
{
	echo "["
	make_track a440.flac "A 440 Hz (FLAC)" "sine=frequency=440:duration=20"
	echo ","
	make_track chirp.opus "Rising chirp (Opus)" "aevalsrc=0.4*sin(2*PI*(200+40*t)*t):d=30" -c:a libopus -b:a 96k -ar 48000
	echo ","
	make_track chord.mp3 "Major chord (MP3)" "aevalsrc=0.2*sin(2*PI*261.6*t)+0.2*sin(2*PI*329.6*t)+0.2*sin(2*PI*392*t):d=25" -c:a libmp3lame -b:a 192k
	echo ","
	make_track noise.wav "Pink noise (WAV)" "anoisesrc=color=pink:amplitude=0.3:duration=15:seed=7"
	echo
	echo "]"
} >demo/media/catalog.json.tmp
mv demo/media/catalog.json.tmp demo/media/catalog.json
# The tracks sealed at rest: age files in demo/sealed, each with its
# signed manifest (clientproxy --content-ca checks every byte against it),
# to an at-rest identity whose file a passphrase protects. Both live in
# demo/secrets, outside what Caddy serves. Unchanged tracks are skipped.
mkdir -p demo/secrets
chmod 700 demo/secrets
if [ ! -s demo/secrets/passphrase ]; then
	(umask 077 && head -c 24 /dev/urandom | base64 >demo/secrets/passphrase)
fi
[ -s demo/secrets/at-rest.keys ] || bin/caddy drm keys new demo/secrets/at-rest.keys --passphrase-file demo/secrets/passphrase >/dev/null
bin/caddy drm seal demo/media demo/sealed --keys demo/secrets/at-rest.keys --passphrase-file demo/secrets/passphrase \
	--dir demo/pki --publisher demo-label >/dev/null

pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# wait_ready NAME PID URL LOG: poll URL until the server answers anything,
# for at most 60 s; fail with the log's tail if the process exits first.
wait_ready() {
	local name=$1 pid=$2 url=$3 log=$4
	for _ in $(seq 600); do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "demo: $name exited before it answered on $url; the end of $log:" >&2
			tail -n 20 "$log" >&2
			exit 1
		fi
		curl -sS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: $name did not answer on $url within 60 s; the end of $log:" >&2
	tail -n 20 "$log" >&2
	exit 1
}

XDG_DATA_HOME="$PWD/demo/data" XDG_CONFIG_HOME="$PWD/demo/config" \
	bin/caddy run --config Caddyfile.example --adapter caddyfile >demo/caddy.log 2>&1 &
pids+=($!)
wait_ready Caddy "$!" "http://127.0.0.1:$port/" demo/caddy.log
bin/clientproxy --server "http://127.0.0.1:$port/drm" --root-ca demo/pki/root.crt --listen "$listen" \
	--device-cert demo/pki/device-demo-laptop.crt --device-key demo/pki/device-demo-laptop.key \
	--user-cert demo/pki/user-BI12345678.crt --user-key demo/pki/user-BI12345678.key \
	--content-ca demo/pki/content-ca.crt --renew "${DEMO_RENEW:-auto}" >demo/clientproxy.log 2>&1 &
pids+=($!)
wait_ready clientproxy "$!" "http://$listen/healthz" demo/clientproxy.log

# A quick proof that the chain works: fetch one whole track through it.
if ! curl -fsS -o demo/check.flac "http://$listen/media/a440.flac" || ! cmp -s demo/check.flac demo/media/a440.flac; then
	echo "demo: the track did not come through intact. The end of demo/caddy.log:" >&2
	tail -n 20 demo/caddy.log >&2
	echo "The end of demo/clientproxy.log:" >&2
	tail -n 20 demo/clientproxy.log >&2
	exit 1
fi
rm -f demo/check.flac

cat <<MSG

caddy-drm demo is running:
  Caddy + drm   http://127.0.0.1:$port/drm      (raw media refused: curl -i http://127.0.0.1:$port/a440.flac)
  clientproxy   http://$listen/                 (catalog page, open it in a browser)

Play it:
  mpv http://$listen/playlist.m3u
  mpv --start=10 http://$listen/media/chirp.opus

Every track is sealed at rest (demo/sealed, age) with a manifest signed
by the demo publisher, and clientproxy checks every byte against it
(--content-ca).
Licenses: five plays per track, then 402; clientproxy renews them
(DEMO_RENEW=ask asks y/n on this terminal, DEMO_RENEW=never passes the 402
to the player). After Ctrl-C:
  bin/caddy drm licenses --store demo/data/caddy/drm/licenses.db

Logs: demo/caddy.log, demo/clientproxy.log. Ctrl-C stops the demo.
MSG

if [ -n "${DEMO_SECONDS:-}" ]; then
	sleep "$DEMO_SECONDS"
else
	wait -n
fi
