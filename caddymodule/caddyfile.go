package caddymodule

import (
	"reflect"
	"strconv"
	"strings"

	"github.com/caddy-drm/caddy-drm/protocol"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterDirective("drm", parseCaddyfile)
	// Before reverse_proxy and file_server, whose media it guards, so no
	// route block is needed.
	httpcaddyfile.RegisterDirectiveOrder("drm", httpcaddyfile.Before, "reverse_proxy")
}

// parseCaddyfile refuses a matcher on the directive: drm guards only the
// requests it sees, so `drm /drm/*` would leave every other path to the
// origin, raw media included.
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcher, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	if matcher != nil {
		return nil, h.Errf("drm takes no matcher: it must see every request of its route, or the media would be served in the clear outside the matcher; set the endpoint path with the prefix option")
	}
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if m.Endpoint == "" {
		site, ok := siteAddress(h)
		if !ok {
			return nil, h.Errf("drm: cannot tell this site's address; set the endpoint option")
		}
		prefix := m.Prefix
		if prefix == "" {
			prefix = defaultPrefix
		}
		m.Endpoint = strings.TrimSuffix(site, "/") + "/" + strings.Trim(prefix, "/")
	}
	return h.NewRoute(nil, m), nil
}

// siteAddress is the first address of the site block the directive is
// in. httpcaddyfile keeps it in an unexported field of the Helper, and
// reflection is the only way a plugin reaches it: a Caddy that renamed the
// field makes this report false, and the endpoint must then be set, rather
// than anything break.
func siteAddress(h httpcaddyfile.Helper) (string, bool) {
	block := reflect.ValueOf(h).FieldByName("parentBlock")
	if !block.IsValid() || block.Kind() != reflect.Struct {
		return "", false
	}
	keys := block.FieldByName("Keys")
	if !keys.IsValid() || keys.Kind() != reflect.Slice || keys.Len() == 0 {
		return "", false
	}
	text := keys.Index(0).FieldByName("Text")
	if !text.IsValid() || text.Kind() != reflect.String || text.String() == "" {
		return "", false
	}
	return text.String(), true
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	drm {
//		endpoint             <name>
//		prefix               <path>
//		origin_path          <path>
//		catalog_file         <name>
//		identity             <certificate.pem> <key.pem>
//		suites               <suite...>
//		chunk_size           <size>
//		rekey_after_chunks   <count>
//		rekey_after_bytes    <size>
//		rekey_after_age      <duration>
//		session_idle_timeout <duration>
//		max_sessions         <count>
//		unused_handshakes_per_address <count>
//		allow_unprotected_routes
//		require              device|user...
//		device_ca            <ca.pem...>
//		user_ca              <ca.pem...>
//		user_id              serialNumber|cn|email|spki
//		crl                  <crl...>
//		crl_optional         <ca.pem...>
//		before_credentials   catalog|nothing
//		content_ca           <ca.pem...>
//		require_manifest
//		at_rest {
//			keys            <file>
//			passphrase_file <file>
//			passphrase_env  <VAR>
//			require_sealed
//		}
//		license {
//			views        <count>
//			expire_after <duration>
//			store        bbolt [<file>]
//			renew        auto [<views>] | deny | webhook <url> [<timeout>]
//			concurrent   <count>
//			play_timeout <duration>
//			play_bound   <multiple of the medium's size>
//		}
//	}
//
// Sizes accept units (256KiB, 1GiB); durations Caddy's syntax (90s, 1h).
//
// The directive takes no argument: a path given after it would be a
// request matcher, and requests outside a matcher would skip drm and reach
// the raw media. Give drm the whole site (or a whole handle block).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.Errf("drm takes no arguments (got %q); set the endpoint path with the prefix option", d.Val())
	}
	for d.NextBlock(0) {
		key := d.Val()
		switch key {
		case "endpoint", "prefix", "origin_path", "catalog_file":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch key {
			case "endpoint":
				h.Endpoint = v
			case "prefix":
				h.Prefix = v
			case "origin_path":
				h.OriginPath = v
			default:
				h.CatalogFile = v
			}
		case "identity":
			if !d.AllArgs(&h.Certificate, &h.Key) {
				return d.ArgErr()
			}
		case "suites":
			h.Suites = d.RemainingArgs()
			if len(h.Suites) == 0 {
				return d.ArgErr()
			}
		case "chunk_size", "rekey_after_bytes":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 {
				return d.Errf("%s: want a positive size, got %q", key, v)
			}
			// The protocol's bounds, checked here too so that the error
			// names the Caddyfile line.
			switch {
			case key == "chunk_size" && (n < protocol.MinChunkSize || n > protocol.MaxChunkSize):
				return d.Errf("chunk_size %s is outside [%d, %d] bytes", v, protocol.MinChunkSize, protocol.MaxChunkSize)
			case key == "chunk_size":
				h.ChunkSize = int(n)
			case n > protocol.MaxEpochBytes:
				return d.Errf("rekey_after_bytes %s is above %d bytes, what one AES-GCM key safely seals", v, uint64(protocol.MaxEpochBytes))
			default:
				h.RekeyAfterBytes = n
			}
		case "rekey_after_chunks", "max_sessions", "unused_handshakes_per_address":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return d.Errf("%s: want a positive count, got %q", key, v)
			}
			switch key {
			case "max_sessions":
				h.MaxSessions = int(n)
			case "unused_handshakes_per_address":
				h.UnusedHandshakesPerAddress = int(n)
			default:
				h.RekeyAfterChunks = uint32(n)
			}
		case "rekey_after_age", "session_idle_timeout":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("%s: want a positive duration, got %q", key, v)
			}
			if key == "rekey_after_age" {
				h.RekeyAfterAge = caddy.Duration(dur)
			} else {
				h.SessionIdleTimeout = caddy.Duration(dur)
			}
		case "allow_unprotected_routes", "require_manifest":
			if d.NextArg() {
				return d.ArgErr()
			}
			if key == "require_manifest" {
				h.RequireManifest = true
			} else {
				h.AllowUnprotectedRoutes = true
			}
		case "require":
			h.Require = d.RemainingArgs()
			if len(h.Require) == 0 {
				return d.ArgErr()
			}
			if err := parseRequire(h.Require); err != nil {
				return d.Err(err.Error())
			}
		case "device_ca", "user_ca", "crl", "crl_optional", "content_ca":
			files := d.RemainingArgs()
			if len(files) == 0 {
				return d.ArgErr()
			}
			switch key {
			case "device_ca":
				h.DeviceCA = append(h.DeviceCA, files...)
			case "user_ca":
				h.UserCA = append(h.UserCA, files...)
			case "crl":
				h.CRL = append(h.CRL, files...)
			case "content_ca":
				h.ContentCA = append(h.ContentCA, files...)
			default:
				h.CRLOptional = append(h.CRLOptional, files...)
			}
		case "user_id", "before_credentials":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			if key == "user_id" {
				if userIDRules[v] == nil {
					return d.Errf("user_id %q: want serialNumber, cn, email or spki", v)
				}
				h.UserID = v
			} else {
				if v != "catalog" && v != "nothing" {
					return d.Errf("before_credentials %q: want catalog or nothing", v)
				}
				h.BeforeCredentials = v
			}
		case "at_rest":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.AtRest = &AtRestConfig{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch sub := d.Val(); sub {
				case "keys", "passphrase_file", "passphrase_env":
					var v string
					if !d.AllArgs(&v) {
						return d.ArgErr()
					}
					switch sub {
					case "keys":
						h.AtRest.Keys = v
					case "passphrase_file":
						h.AtRest.PassphraseFile = v
					default:
						h.AtRest.PassphraseEnv = v
					}
				case "require_sealed":
					if d.NextArg() {
						return d.ArgErr()
					}
					h.AtRest.RequireSealed = true
				default:
					return d.Errf("unknown at_rest option %q", sub)
				}
			}
		case "license":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.License = &LicenseConfig{}
			if err := h.License.unmarshalCaddyfile(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown drm option %q", key)
		}
	}
	return nil
}

// unmarshalCaddyfile reads the license block (see UnmarshalCaddyfile).
func (c *LicenseConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	count := func(key string) (uint64, error) {
		var v string
		if !d.AllArgs(&v) {
			return 0, d.ArgErr()
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return 0, d.Errf("license %s: want a positive count, got %q", key, v)
		}
		return n, nil
	}
	duration := func(key, v string) (caddy.Duration, error) {
		dur, err := caddy.ParseDuration(v)
		if err != nil || dur <= 0 {
			return 0, d.Errf("license %s: want a positive duration, got %q", key, v)
		}
		return caddy.Duration(dur), nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		switch key {
		case "views", "concurrent":
			n, err := count(key)
			if err != nil {
				return err
			}
			if key == "views" {
				c.Views = uint32(n)
			} else {
				c.Concurrent = int(n)
			}
		case "expire_after", "play_timeout":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := duration(key, v)
			if err != nil {
				return err
			}
			if key == "expire_after" {
				c.ExpireAfter = dur
			} else {
				c.PlayTimeout = dur
			}
		case "play_bound":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 1 {
				return d.Errf("license play_bound: want a multiple of the medium's size of at least 1, got %q", v)
			}
			c.PlayBound = f
		case "store":
			args := d.RemainingArgs()
			if len(args) == 0 || args[0] != "bbolt" || len(args) > 2 {
				return d.Errf("license store: want bbolt [<file>], got %q", args)
			}
			store := BoltLicenseStore{}
			if len(args) == 2 {
				store.Path = args[1]
			}
			c.StoreRaw = caddyconfig.JSONModuleObject(store, "backend", "bbolt", nil)
		case "renew":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			c.Renew = args[0]
			switch {
			case args[0] == "deny" && len(args) == 1:
			case args[0] == "auto" && len(args) <= 2:
				if len(args) == 2 {
					n, err := strconv.ParseUint(args[1], 10, 32)
					if err != nil || n == 0 {
						return d.Errf("license renew auto: want a positive number of views, got %q", args[1])
					}
					c.RenewViews = uint32(n)
				}
			case args[0] == "webhook" && (len(args) == 2 || len(args) == 3):
				c.Webhook = args[1]
				if len(args) == 3 {
					dur, err := duration("renew webhook timeout", args[2])
					if err != nil {
						return err
					}
					c.WebhookTimeout = dur
				}
			default:
				return d.Errf("license renew: want auto [<views>], deny or webhook <url> [<timeout>], got %q", args)
			}
		default:
			return d.Errf("unknown license option %q", key)
		}
	}
	return nil
}
