// Command clientproxy plays caddy-drm protected media with ordinary
// players: it runs the protocol against a Caddy server with the drm module
// and serves the verified plaintext on a loopback address, with Range
// support, an M3U playlist and a catalog page.
//
//	clientproxy --server http://127.0.0.1:8080/drm --root-ca root.crt
//	mpv http://127.0.0.1:8765/media/track.flac
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-drm/caddy-drm/clientproxy"
	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// config holds the flags; each has an environment variable of the same
// name in upper case with a CLIENTPROXY_ prefix, which the flag overrides.
type config struct {
	server, rootCA, serverName, endpoint, listen, suites, tlsRootCA, logLevel, allowHosts, renew string
	deviceCert, deviceKey, userCert, userKey, userChain                                          string
	pkcs11Module, pkcs11Token, pkcs11KeyLabel, pinFile, contentCA                                string
	pkcs11Slot                                                                                   int
	prefetch, cacheChunks                                                                        int
	retryBudget, playTimeout                                                                     time.Duration
	allowRemote                                                                                  bool
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "clientproxy:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("clientproxy", flag.ContinueOnError)
	env := &envValues{}
	str := func(p *string, name, def, usage string) {
		fs.StringVar(p, name, envOr(name, def), usage+" (env "+envName(name)+")")
	}
	str(&c.server, "server", "", "drm endpoint prefix of the server, e.g. http://127.0.0.1:8080/drm (required)")
	str(&c.rootCA, "root-ca", "", "PEM file of the root CA the server's drm certificate must chain to (required)")
	str(&c.serverName, "server-name", "", "name the server's certificate must carry (default: the host of --server)")
	str(&c.endpoint, "endpoint", "", "endpoint name the server must sign (its drm endpoint setting); any when empty, and logged")
	str(&c.allowHosts, "allow-host", "", "host names, comma-separated, that players may use besides localhost and loopback addresses (others are refused: DNS rebinding)")
	str(&c.deviceCert, "device-cert", "", "PEM certificate (chain) of this device, for servers that require one")
	str(&c.deviceKey, "device-key", "", "PEM private key of --device-cert")
	str(&c.userCert, "user-cert", "", "PEM certificate (chain) of the user, for servers that require one")
	str(&c.userKey, "user-key", "", "PEM private key of --user-cert (a software key: prefer a token)")
	str(&c.userChain, "user-chain", "", "PEM intermediates of the user's certificate that the server may lack")
	str(&c.pkcs11Module, "pkcs11-module", "", "PKCS#11 module of the user's token (a Citizen Card: libpteidpkcs11.so or opensc-pkcs11.so), instead of --user-cert/--user-key")
	str(&c.pkcs11Token, "pkcs11-token", "", "label of the token (default: the first present)")
	str(&c.pkcs11KeyLabel, "pkcs11-key-label", "", "label of the key on the token (default: the first key with a certificate; a Citizen Card's is \"CITIZEN AUTHENTICATION KEY\")")
	str(&c.pinFile, "pin-file", "", "file holding the token's PIN (else CLIENTPROXY_PIN, else a prompt on the terminal; never a flag)")
	fs.IntVar(&c.pkcs11Slot, "pkcs11-slot", env.int("pkcs11-slot", -1), "slot of the token, instead of --pkcs11-token (env CLIENTPROXY_PKCS11_SLOT)")
	str(&c.listen, "listen", "127.0.0.1:8765", "address to serve players on; loopback only unless --allow-remote")
	str(&c.suites, "suites", strings.Join(protocol.SuiteNames(protocol.DefaultSuites()), ","), "cipher suites to offer, comma-separated, most preferred first")
	str(&c.contentCA, "content-ca", "", "PEM file of the content CA whose publishers sign manifests: every medium must then come with a valid manifest, and every byte is checked against it before the player gets it")
	str(&c.tlsRootCA, "tls-root-ca", "", "PEM file of extra roots for an https:// --server (e.g. Caddy's tls internal root)")
	str(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	str(&c.renew, "renew", "ask", "when a license is used up and the server offers a renewal: ask (a y/n prompt on this terminal; the player waits), auto, or never (the player gets 402)")
	fs.DurationVar(&c.playTimeout, "play-timeout", env.duration("play-timeout", protocol.DefaultPlayTimeout), "a medium unread this long starts a new play, which the server counts as a view; at most the server's play_timeout (env CLIENTPROXY_PLAY_TIMEOUT)")
	fs.IntVar(&c.prefetch, "prefetch", env.int("prefetch", clientproxy.DefaultPrefetch), "chunks to read ahead of the player, negative for none (env CLIENTPROXY_PREFETCH)")
	fs.IntVar(&c.cacheChunks, "cache-chunks", env.int("cache-chunks", clientproxy.DefaultCacheChunks), "chunks kept in memory (env CLIENTPROXY_CACHE_CHUNKS)")
	fs.DurationVar(&c.retryBudget, "retry-budget", env.duration("retry-budget", clientproxy.DefaultRetryBudget), "how long one request keeps retrying while the server is unreachable or its origin fails (env CLIENTPROXY_RETRY_BUDGET)")
	fs.BoolVar(&c.allowRemote, "allow-remote", os.Getenv(envName("allow-remote")) == "true", "allow --listen on a non-loopback address: anyone who reaches it can play the media (env CLIENTPROXY_ALLOW_REMOTE)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: clientproxy --server URL --root-ca FILE [flags]\n\n"+
			"Plays caddy-drm protected media: serves GET / (catalog), /playlist.m3u and\n"+
			"/media/{id} (with Range) on --listen, e.g. mpv http://127.0.0.1:8765/media/ID\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if env.err != nil {
		return nil, env.err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.server == "" || c.rootCA == "" {
		fs.Usage()
		return nil, errors.New("--server and --root-ca are required")
	}
	return c, nil
}

func envName(flagName string) string {
	return "CLIENTPROXY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func envOr(flagName, def string) string {
	if v, ok := os.LookupEnv(envName(flagName)); ok {
		return v
	}
	return def
}

// envValues reads the numeric flags' environment variables, remembering
// the first that does not parse: a bad value is an error, never silently
// the default (a mistyped slot would pick another token).
type envValues struct{ err error }

func (e *envValues) fail(flagName, v string, err error) {
	if e.err == nil {
		e.err = fmt.Errorf("%s=%q: %v", envName(flagName), v, err)
	}
}

func (e *envValues) duration(flagName string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(envName(flagName))
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.fail(flagName, v, err)
		return def
	}
	return d
}

func (e *envValues) int(flagName string, def int) int {
	v, ok := os.LookupEnv(envName(flagName))
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 0, 64) // 0x… as pkcs11-tool prints slots
	if err != nil {
		e.fail(flagName, v, err)
		return def
	}
	return int(n)
}

func run(args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	roots, err := keystore.LoadRoots(c.rootCA)
	if err != nil {
		return err
	}
	suites, err := protocol.ParseSuites(splitList(c.suites))
	if err != nil {
		return fmt.Errorf("--suites: %w", err)
	}
	tlsRoots, err := loadTLSRoots(c.tlsRootCA)
	if err != nil {
		return err
	}
	renew, err := clientproxy.ParseRenewPolicy(c.renew)
	if err != nil {
		return fmt.Errorf("--renew: %w", err)
	}
	var verifyManifest func([][]byte) (*x509.Certificate, error)
	if c.contentCA != "" {
		pool, err := keystore.LoadContentCAs(c.contentCA)
		if err != nil {
			return fmt.Errorf("--content-ca: %w", err)
		}
		verifyManifest = keystore.ContentVerifier(pool)
	}
	creds, closeToken, err := loadCredentials(c, logger)
	if err != nil {
		return err
	}
	defer closeToken()
	client, err := clientproxy.NewClient(clientproxy.ClientOptions{Credentials: creds,
		ServerURL: c.server, Roots: roots, ServerName: c.serverName, Endpoint: c.endpoint,
		Suites: suites, HTTPClient: clientproxy.NewHTTPClient(tlsRoots), RetryBudget: c.retryBudget, Logger: logger,
		Renew: renew, Ask: askOnTerminal(logger), PlayTimeout: c.playTimeout, VerifyManifest: verifyManifest,
	})
	if err != nil {
		return err
	}

	host, _, err := net.SplitHostPort(c.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if ip := net.ParseIP(host); !c.allowRemote && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %s is not a loopback address; add --allow-remote if you mean it", c.listen)
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	srv := clientproxy.NewServer(client, clientproxy.ServerOptions{Prefetch: c.prefetch, CacheChunks: c.cacheChunks, AllowHosts: splitList(c.allowHosts)}, logger)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("serving players", "url", "http://"+ln.Addr().String()+"/", "server", c.server)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(shutdown)
	srv.Close()
	if err := client.Close(shutdown); err != nil {
		logger.Debug("closing the session", "err", err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// loadTLSRoots returns the system roots plus those in file, or nil when
// file is empty (the system roots alone).
func loadTLSRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tls-root-ca %s holds no certificate", file)
	}
	return pool, nil
}
