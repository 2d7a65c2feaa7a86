#!/usr/bin/env bash
# make bench's rows for media sealed at rest (issue 13), each against its
# baseline in the same run:
#   - sealed vs plain through the whole chain (the handler's chunk path,
#     origin sub-requests, age decryption, sealing, the client's open):
#     the throughput ratio sealed/plain over alternating rounds, target ≥ 0.8;
#   - seal MiB/s per core (age encryption and the manifest's hashes)
#     against age's own Encrypt over the same bytes.
# A verdict whose range straddles its target says so.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${BENCH_SEALED_ROUNDS:-30}

out=$(go test -run '^$' -bench '^BenchmarkSealedVsPlain$' -benchtime "${rounds}x" ./caddymodule)
echo "$out" | grep '^Benchmark'
echo "$out" | awk '/^BenchmarkSealedVsPlain/ {
	for (i = 1; i <= NF; i++) {
		if ($i == "sealed/plain-min") min = $(i-1)
		if ($i == "sealed/plain-median") med = $(i-1)
		if ($i == "sealed/plain-max") max = $(i-1)
	}
	verdict = (min >= 0.8) ? "meets the target 0.8" : (max < 0.8) ? "misses the target 0.8" : "straddles the target 0.8 (inconclusive)"
	printf "sealed/plain throughput: median %.2f, range [%.2f, %.2f] over the rounds: %s\n", med, min, max, verdict
}'

out=$(go test -run '^$' -bench '^(BenchmarkSeal|BenchmarkAgeEncrypt)$' -cpu 1 -count 5 ./sealing)
echo "$out" | grep '^Benchmark'
echo "$out" | awk '/^BenchmarkSeal(-[0-9]+)?[ \t]/ { for (i = 1; i <= NF; i++) if ($i == "MB/s") s[ns++] = $(i-1) }
	/^BenchmarkAgeEncrypt/ { for (i = 1; i <= NF; i++) if ($i == "MB/s") a[na++] = $(i-1) }
	END {
		if (ns == 0 || na == 0) { print "seal: no figures"; exit 1 }
		smin = smax = s[0]; amin = amax = a[0]
		for (i = 0; i < ns; i++) { if (s[i] < smin) smin = s[i]; if (s[i] > smax) smax = s[i] }
		for (i = 0; i < na; i++) { if (a[i] < amin) amin = a[i]; if (a[i] > amax) amax = a[i] }
		m = 1e6 / 1048576 # MB/s to MiB/s
		printf "seal per core: %.0f-%.0f MiB/s; age Encrypt alone: %.0f-%.0f MiB/s; seal/age: %.2f-%.2f\n", smin*m, smax*m, amin*m, amax*m, smin/amax, smax/amin
	}'
