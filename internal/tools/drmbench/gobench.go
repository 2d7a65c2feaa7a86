package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/caddy-drm/caddy-drm/internal/proc"
)

// benchLine matches a Go benchmark result line.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) MB/s)?`)

// goBenchResults maps a benchmark name to its ns/op and MB/s per run.
type goBenchResults map[string]struct{ ns, mbs *sample }

// runGoBench runs the compiled protocol test binary with -test.bench re
// (one goroutine: -test.cpu 1, so ns/op is per core).
func (b *bench) runGoBench(testBin, re, benchtime string, count int) (goBenchResults, error) {
	cmd := exec.Command(testBin, "-test.run", "^$", "-test.bench", re, "-test.benchtime", benchtime,
		"-test.count", strconv.Itoa(count), "-test.cpu", "1", "-test.benchmem")
	cmd.Dir = filepath.Join(b.repo, "protocol") // testdata relative paths
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v\n%s\n%s", strings.Join(cmd.Args, " "), err, proc.LastLines(out.String(), 10), proc.LastLines(stderr.String(), 10))
	}
	res := goBenchResults{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		e, ok := res[m[1]]
		if !ok {
			e.ns, e.mbs = newSample("ns/op"), newSample("MB/s")
			res[m[1]] = e
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		e.ns.add(ns)
		if m[3] != "" {
			v, _ := strconv.ParseFloat(m[3], 64)
			e.mbs.add(v)
		}
	}
	return res, nil
}

// goBench is scenario 3a (server CPU per handshake, in process, from
// protocol/bench_test.go) plus the seal/open stage costs per suite.
func (b *bench) goBench() error {
	logf("scenario 3a: go test -bench in ./protocol (handshake -benchtime %s -count %d; seal/open per suite)", b.cfg.GoBenchTime, b.cfg.GoBenchCount)
	testBin := filepath.Join(b.tmp, "protocol.test")
	build := exec.Command("go", "test", "-c", "-o", testBin, "./protocol/")
	build.Dir = b.repo // the root module
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c ./protocol/: %v\n%s", err, proc.LastLines(string(out), 20))
	}
	hs, err := b.runGoBench(testBin, "^BenchmarkHandshake$/^(X25519_AES128_GCM_SHA256|X25519MLKEM768_AES128_GCM_SHA256)$",
		b.cfg.GoBenchTime, b.cfg.GoBenchCount)
	if err != nil {
		return err
	}
	raw := map[string]any{}
	for _, g := range []struct {
		bench, label string
		target       float64
	}{
		{"BenchmarkHandshake/X25519_AES128_GCM_SHA256", "X25519", 5000},
		{"BenchmarkHandshake/X25519MLKEM768_AES128_GCM_SHA256", "X25519MLKEM768", 3000},
	} {
		e, ok := hs[g.bench]
		if !ok {
			return fmt.Errorf("no result for %s", g.bench)
		}
		raw[g.bench] = e.ns
		rate := &sample{Unit: "handshakes/s per core"}
		for _, ns := range e.ns.Values {
			rate.add(1e9 / ns)
		}
		b.add(&row{Scenario: "3", Name: "in process: server handshakes/s per core, " + g.label + " (BenchmarkHandshake, Ed25519 identity)",
			Product: rate, Target: &target{">=", g.target, "product"}, Short: "3 in-process handshakes/s " + g.label})
	}
	stageTime := "300ms"
	if b.cfg.Quick {
		stageTime = "100ms"
	}
	st, err := b.runGoBench(testBin, "^Benchmark(Seal|Open)Chunk$/^(X25519_AES128_GCM_SHA256|X25519_CHACHA20_POLY1305_SHA256|X25519_AES128_CBC_SHA256)$",
		stageTime, 3)
	if err != nil {
		return err
	}
	for _, f := range families {
		seal, open := st["BenchmarkSealChunk/"+f.name], st["BenchmarkOpenChunk/"+f.name]
		if seal.mbs == nil || open.mbs == nil {
			continue
		}
		raw["seal_"+f.key], raw["open_"+f.key] = seal.mbs, open.mbs
		b.add(&row{Scenario: "stage", Name: "SealChunk 256 KiB, one core, " + f.label, Product: seal.mbs.scaled(1e6/(1<<20), "MiB/s")})
		b.add(&row{Scenario: "stage", Name: "OpenChunk 256 KiB, one core, " + f.label, Product: open.mbs.scaled(1e6/(1<<20), "MiB/s")})
	}
	b.raw("go_bench", raw)
	b.note("Scenario 3a: `go test -c ./protocol/`, then `-test.bench BenchmarkHandshake/... -test.benchtime %s -test.count %d -test.cpu 1`; "+
		"handshakes/s per core = 1e9 / (ns/op) of the server's part (client work outside the timer). Stage rows: "+
		"BenchmarkSealChunk/BenchmarkOpenChunk, one core, for reading the throughput figures.", b.cfg.GoBenchTime, b.cfg.GoBenchCount)
	return nil
}
