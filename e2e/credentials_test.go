package e2e

// Who is listening (protocol §17) with real Caddy, clientproxy and mpv:
// credentials made by `caddy drm pki` play; those an outside CA (openssl)
// made are refused each with its own reason, never a 500; a CRL changed
// while Caddy runs takes effect without a reload.

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/testpki"
	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

const credentialsCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	drm {
		identity {{q .Cert}} {{q .Key}}
		require device user
		device_ca {{q .DeviceCA}}
		user_ca{{range .UserCA}} {{q .}}{{end}}
		crl{{range .CRL}} {{q .}}{{end}}
		chunk_size 64KiB
	}
	file_server browse {
		root {{q .Root}}
	}
}
`

// credSetup is a drm Caddy requiring a device and a user, with the
// development PKI made by the caddy binary in pki.
type credSetup struct {
	caddy    *caddyServer
	caddyBin string
	pki      string
	files    keystore.Files
	media    mediaFile
	roots    *x509.CertPool
}

// pkiCLI runs `caddy drm pki args... --dir pki`.
func pkiCLI(t *testing.T, caddyBin, pki string, args ...string) {
	t.Helper()
	out, err := exec.Command(caddyBin, append(append([]string{"drm", "pki"}, args...), "--dir", pki)...).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy drm pki %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// startCredentials starts Caddy with the development PKI's CAs and CRLs,
// plus the user CAs and CRLs given.
func startCredentials(t *testing.T, userCAs, crls []string) *credSetup {
	t.Helper()
	requireE2E(t, "mpv", "ffmpeg", "openssl")
	root := t.TempDir()
	m, err := makeOne(root, mediaSpecs[0])
	if err != nil {
		t.Fatal(err)
	}
	caddyBin := caddyBinary(t)
	pki := devPKI(t, caddyBin)
	pkiCLI(t, caddyBin, pki, "issue", "device", "laptop")
	pkiCLI(t, caddyBin, pki, "issue", "user", "--serial", "BI12345678", "--name", "Maria Silva")
	files, err := keystore.FilesIn(pki)
	if err != nil {
		t.Fatal(err)
	}
	d, u := files.CA(keystore.DeviceCA), files.CA(keystore.UserCA)
	vars := map[string]any{"Root": root, "Cert": files.ServerCert, "Key": files.ServerKey, "DeviceCA": d.Cert,
		"UserCA": append([]string{u.Cert}, userCAs...), "CRL": append([]string{d.CRL, d.DeltaCRL, u.CRL, u.DeltaCRL}, crls...)}
	srv := startCaddy(t, caddyBin, credentialsCaddyfile, vars, nil)
	roots, err := keystore.LoadRoots(files.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, e := range readAccessLog(t, srv.AccessLog) {
			if e.Status >= 500 {
				t.Errorf("%s %s answered %d", e.Request.Method, e.Request.URI, e.Status)
			}
		}
	})
	return &credSetup{caddy: srv, caddyBin: caddyBin, pki: pki, files: files, media: m, roots: roots}
}

// credential loads a certificate (chain) and key as a credential.
func credential(t *testing.T, kind, cert, key string) protocol.Credential {
	t.Helper()
	id, err := keystore.LoadIdentity(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return protocol.Credential{Kind: kind, Chain: id.Chain, Signer: id.Signer}
}

// present runs a handshake and presents device and user as a protocol
// client does, and returns the status and the Drm-Error of the answer.
func (s *credSetup) present(t *testing.T, device, user protocol.Credential) (int, string) {
	t.Helper()
	cfg := &protocol.ClientConfig{Suites: protocol.DefaultSuites()[:1], VerifyCertificate: keystore.ServerVerifier(s.roots, "127.0.0.1"),
		Credentials: []string{protocol.CredentialDevice, protocol.CredentialUser}}
	hs, hello, err := cfg.Start()
	if err != nil {
		t.Fatal(err)
	}
	status, de, reply := post(t, s.caddy.URL("drm/v1/handshake"), hello)
	if status != http.StatusOK {
		t.Fatalf("handshake: %d %s", status, de)
	}
	sess, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	req, err := sess.NewClientAuthRequest([]protocol.Credential{device, user})
	if err != nil {
		t.Fatalf("the client refused to send its credentials: %v", err)
	}
	status, de, _ = post(t, s.caddy.URL("drm/v1/client-auth"), req.Envelope())
	return status, de
}

func post(t *testing.T, url string, body []byte) (int, string, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Drm-Error"), b
}

// TestCredentialsPlay: a device and a user from `caddy drm pki` play
// through clientproxy and mpv, sample for sample; without the user, the
// player is told 403 and why; a user revoked while Caddy runs
// (`caddy drm pki revoke`, a new delta CRL on disk) is refused from then
// on, without a reload.
func TestCredentialsPlay(t *testing.T) {
	s := startCredentials(t, nil, nil)
	dev, user := s.files.Device("laptop"), s.files.User("BI12345678")
	cp := startClientProxy(t, clientProxyBinary(t), s.caddy.URL("drm"), s.files.RootCert,
		"--device-cert", dev.Cert, "--device-key", dev.Key, "--user-cert", user.Cert, "--user-key", user.Key)
	comparePCM(t, mpvPCM(t, cp.MediaURL(s.media.ID), 0), ffmpegPCM(t, s.media.Path, 0))

	anonymous := startClientProxy(t, clientProxyBinary(t), s.caddy.URL("drm"), s.files.RootCert,
		"--device-cert", dev.Cert, "--device-key", dev.Key)
	resp, err := http.Get(anonymous.MediaURL(s.media.ID))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "user credential") || !strings.Contains(string(body), "--user-cert") {
		t.Errorf("a player of a clientproxy without a user: %s %q", resp.Status, body)
	}

	devCred, userCred := credential(t, protocol.CredentialDevice, dev.Cert, dev.Key), credential(t, protocol.CredentialUser, user.Cert, user.Key)
	if status, de := s.present(t, devCred, userCred); status != http.StatusOK {
		t.Fatalf("before the revocation: %d %s", status, de)
	}
	pkiCLI(t, s.caddyBin, s.pki, "revoke", user.Cert, "--reason", "keyCompromise")
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, de := s.present(t, devCred, userCred)
		if status == http.StatusForbidden && de == "credential-refused: user credential: revoked" {
			break
		}
		if status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("after the revocation: %d %q, want 403 revoked within 10 s", status, de)
		}
		time.Sleep(100 * time.Millisecond) // polling Caddy's once-a-second look at the CRL files
	}
	if n := countLog(s.caddy.Proc, "CRL file read again"); n == 0 {
		t.Error("Caddy did not log the CRL it read again")
	}
}

// TestCredentialRefusals: certificates and CRLs made by openssl (an
// outside CA, as a national one would be) are refused, each with its own
// reason; a user of a fresh partition plays its part.
func TestCredentialRefusals(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	// A CA with a complete CRL.
	full, err := testpki.NewCA(dir, "Users Full")
	must(err)
	expired, expiredKey, err := full.Issue("expired", "/serialNumber=BI1/CN=Expired", testpki.ClientExt,
		"-startdate", testpki.Time(now.Add(-48*time.Hour)), "-enddate", testpki.Time(now.Add(-24*time.Hour)))
	must(err)
	revokedFull, revokedFullKey, err := full.Issue("revoked", "/serialNumber=BI2/CN=Revoked", testpki.ClientExt)
	must(err)
	must(full.Revoke(revokedFull, "keyCompromise"))
	fullCRL := filepath.Join(dir, "full.crl")
	must(full.CRL(fullCRL, ""))
	// A CA that publishes its CRL in two partitions.
	parts, err := testpki.NewCA(dir, "Users Partitioned")
	must(err)
	dp := func(p string) string {
		return testpki.ClientExt + "crlDistributionPoints = URI:http://crl.test/" + p + ".crl\n"
	}
	inA, inAKey, err := parts.Issue("in-a", "/serialNumber=BI3/CN=Partition A", dp("a"))
	must(err)
	inB, inBKey, err := parts.Issue("in-b", "/serialNumber=BI4/CN=Partition B", dp("b"))
	must(err)
	must(parts.Revoke(inA, "superseded"))
	crlA, crlB := filepath.Join(dir, "a.crl"), filepath.Join(dir, "b.crl")
	idp := func(p string) string {
		return "issuingDistributionPoint = critical,@idp\n[ idp ]\nfullname = URI:http://crl.test/" + p + ".crl\n"
	}
	must(parts.CRL(crlA, idp("a")))
	// Partition B lists in-a's revocation too, but only for its own
	// certificates: in-b is not revoked there.
	must(parts.CRL(crlB, idp("b")))
	// A CA whose CRL is past its NextUpdate.
	stale, err := testpki.NewCA(dir, "Users Stale")
	must(err)
	staleUser, staleKey, err := stale.Issue("stale", "/serialNumber=BI5/CN=Stale CRL", testpki.ClientExt)
	must(err)
	staleCRL := filepath.Join(dir, "stale.crl")
	must(stale.CRL(staleCRL, "", "-crl_lastupdate", testpki.Time(now.Add(-48*time.Hour)), "-crl_nextupdate", testpki.Time(now.Add(-time.Hour))))
	// A CA the server does not know.
	unknown, err := testpki.NewCA(dir, "Users Unknown")
	must(err)
	stranger, strangerKey, err := unknown.Issue("stranger", "/serialNumber=BI6/CN=Stranger", testpki.ClientExt)
	must(err)

	s := startCredentials(t, []string{full.Cert, parts.Cert, stale.Cert}, []string{fullCRL, crlA, crlB, staleCRL})
	dev := s.files.Device("laptop")
	device := credential(t, protocol.CredentialDevice, dev.Cert, dev.Key)
	user := func(cert, key string) protocol.Credential { return credential(t, protocol.CredentialUser, cert, key) }
	// The client checks the issuer itself; these carry a configured CA
	// along so that the server has to refuse on its own.
	disguised := func(c protocol.Credential) protocol.Credential {
		ca, err := keystore.LoadCertificates(full.Cert)
		must(err)
		c.Kind, c.Chain = protocol.CredentialUser, append(append([][]byte{}, c.Chain...), ca...)
		return c
	}
	for _, c := range []struct {
		name   string
		user   protocol.Credential
		status int
		reason string
	}{
		{"a fresh partition's user plays", user(inB, inBKey), http.StatusOK, ""},
		{"expired", user(expired, expiredKey), http.StatusForbidden, "user credential: expired"},
		{"revoked by the complete CRL", user(revokedFull, revokedFullKey), http.StatusForbidden, "user credential: revoked"},
		{"revoked in its CRL partition", user(inA, inAKey), http.StatusForbidden, "user credential: revoked"},
		{"CRL past NextUpdate", user(staleUser, staleKey), http.StatusForbidden, "user credential: CRL expired"},
		{"unknown CA", disguised(user(stranger, strangerKey)), http.StatusForbidden, "user credential: unknown CA"},
		{"a device certificate as the user", disguised(device), http.StatusForbidden, "user credential: unknown CA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, de := s.present(t, device, c.user)
			want := ""
			if c.reason != "" {
				want = "credential-refused: " + c.reason
			}
			if status != c.status || de != want {
				t.Errorf("%d %q, want %d %q", status, de, c.status, want)
			}
		})
	}
	t.Run("no credentials", func(t *testing.T) {
		// A session that presents nothing gets its catalog and no chunk.
		resp, err := http.Get(startClientProxy(t, clientProxyBinary(t), s.caddy.URL("drm"), s.files.RootCert).MediaURL(s.media.ID))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "device credential") {
			t.Errorf("%s %q", resp.Status, body)
		}
	})
	if t.Failed() {
		_, stderr := s.caddy.Proc.Logs()
		fmt.Fprintln(os.Stderr, lastLines(stderr, 30))
	}
}
