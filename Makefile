# caddy-drm. The two commands that matter:
#   make demo   build everything, make a dev PKI and sample media, run Caddy
#               and clientproxy, print the mpv command
#   make test   every test (installs mpv and ffmpeg when missing)

GO        ?= go
BIN       := bin
# buildcaddy and drmbench are a module of their own, so that xcaddy and
# golang.org/x/image are no dependencies of the caddy-drm module.
TOOLS     := internal/tools
FUZZTIME  ?= 3s
FUZZ_PKGS := ./protocol ./caddymodule ./keystore ./licensing

# What the binaries are built from: a binary is rebuilt when one of these
# is newer than it.
SOURCES := $(shell find . -path ./demo -prune -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -print)

.PHONY: all caddy clientproxy demo deps ref test test-short check fuzz e2e bench bench-sealed clean

all: caddy clientproxy

caddy: $(BIN)/caddy
clientproxy: $(BIN)/clientproxy

# Caddy v2.11.9 with this module, from xcaddy.json (the xcaddy library,
# with this checkout replacing the published module), built by buildcaddy
# in the tools module.
$(BIN)/caddy: $(SOURCES) xcaddy.json
	cd $(TOOLS) && $(GO) run ./buildcaddy -config $(CURDIR)/xcaddy.json -local $(CURDIR) -o $(CURDIR)/$(BIN)/caddy

# With cgo: PKCS#11 tokens (--pkcs11-module) are C libraries. Caddy and
# its module build without cgo (xcaddy), and never load them.
$(BIN)/clientproxy: $(SOURCES)
	CGO_ENABLED=1 $(GO) build -o $(BIN)/clientproxy ./cmd/clientproxy

demo: caddy clientproxy deps
	./scripts/demo.sh

deps:
	./scripts/deps.sh

# The Python reference implementation, written from docs/PROTOCOL.md alone,
# recomputes every known-answer vector; --self-test proves it can fail
# (protocol/testdata/ref/README.md). Needs python3-cryptography, from deps.
ref: deps
	/usr/bin/python3 protocol/testdata/ref/check_vectors.py protocol/testdata/vectors.json
	/usr/bin/python3 protocol/testdata/ref/check_vectors.py protocol/testdata/vectors.json --self-test

# The reference vectors check, formatting, vet, every test with the race
# detector (the end-to-end tests build Caddy and clientproxy themselves and
# fail, not skip, when a tool is missing) in both modules, then each fuzz
# target briefly.
test: deps ref check
	DRM_E2E_STRICT=1 $(GO) test -race -count=1 -timeout 30m ./...
	cd $(TOOLS) && $(GO) test -race -count=1 ./...
	$(MAKE) fuzz

test-short:
	$(GO) test -short ./...
	cd $(TOOLS) && $(GO) test -short ./...

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd $(TOOLS) && $(GO) vet ./...

# A run that ends in the fuzzing engine's own "context deadline exceeded"
# without a failing input (the coordinator timing out a busy worker at the
# end of FUZZTIME on a loaded machine) is run once more; a failing input
# (written to testdata/fuzz) always fails.
fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			for try in 1 2; do \
				if out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x $$pkg 2>&1); then break; fi; \
				if [ $$try = 1 ] && echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
					echo "fuzz $$pkg $$f: the engine timed out without a failing input; once more"; continue; fi; \
				echo "$$out" | tail -40; echo "FAIL: fuzz $$pkg $$f"; exit 1; \
			done; \
		done; \
	done; echo "fuzz: all targets passed"

e2e: deps
	DRM_E2E_STRICT=1 $(GO) test -race -count=1 -v ./e2e/

# caddy-drm against plain Caddy, on loopback (bench/README.md): ~10 min;
# BENCH_QUICK=1 for a 1-2 min smoke run. drmbench is built in the tools
# module and run from here.
bench: caddy clientproxy
	cd $(TOOLS) && $(GO) build -o $(CURDIR)/$(BIN)/drmbench ./drmbench
	$(BIN)/drmbench -caddy $(BIN)/caddy -clientproxy $(BIN)/clientproxy -out bench/results
	./scripts/bench-sealed.sh

# The sealed-media rows alone (~1 min).
bench-sealed:
	./scripts/bench-sealed.sh

clean:
	rm -rf $(BIN) demo
