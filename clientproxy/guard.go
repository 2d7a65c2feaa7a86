package clientproxy

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// The player-facing server serves decrypted media to whoever reaches it,
// so it must not be reachable from web pages (§2 of docs/PROTOCOL.md,
// "the local proxy"):
//
//   - DNS rebinding: a page on evil.example re-points its name at 127.0.0.1
//     and reads http://evil.example:8765/media/… as same-origin. Such a
//     request carries the attacker's name in Host, so only loopback names,
//     IP addresses the request really arrived at, and names the user
//     allowed are answered.
//   - Cross-site embedding: a page elsewhere cannot read the media it
//     embeds, but it can still make the proxy fetch and decrypt them.
//     Browsers mark such requests Sec-Fetch-Site: cross-site; media
//     requests so marked are refused.

// hostAllowed reports whether r's Host names this server: "localhost", a
// loopback address, the address the request arrived on, or one of allowed.
func hostAllowed(r *http.Request, allowed []string) bool {
	host := hostOnly(r.Host)
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1] // an IPv6 address without a port
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true
		}
		local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if ta, isTCP := local.(*net.TCPAddr); ok && isTCP && ta.IP.Equal(ip) {
			return true
		}
	}
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSuffix(a, "."), host) {
			return true
		}
	}
	return false
}

// guard refuses requests from web pages that must not reach the proxy
// (see above) and reports whether it did.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) bool {
	if !hostAllowed(r, s.allowHosts) {
		s.logger.Warn("refused a request for another host name (DNS rebinding?)", "host", r.Host, "path", r.URL.Path)
		http.Error(w, fmt.Sprintf("clientproxy answers only loopback names; %q is not one (start it with --allow-host %s to allow it)",
			r.Host, hostOnly(r.Host)), http.StatusMisdirectedRequest)
		return true
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" && strings.HasPrefix(r.URL.Path, "/media/") {
		s.logger.Warn("refused a cross-site media request", "path", r.URL.Path, "referer", r.Referer())
		http.Error(w, "clientproxy does not serve media to other sites' pages", http.StatusForbidden)
		return true
	}
	return false
}

// hostOnly strips the port from a Host header value.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}
