package caddymodule

// The drm handler protects only the requests that reach it. Caddy orders
// handle, handle_path, route and respond before drm, so `drm` at site level
// beside `handle /x/* { file_server }` serves media in the clear under /x/.
// exposedHandlers finds such handlers: those of the same server that a
// request for drm's site can reach without passing drm and that may serve
// files. Provision refuses to start when there are any, unless
// allow_unprotected_routes.
//
// The check runs while the http app provisions its routes, so it sees the
// routes before drm's provisioned and those after it still as JSON; it
// reads both.

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
)

// Handler modules (http.handlers.*) that cannot serve a file: middleware
// that passes the request on, and terminal handlers that answer on their
// own. Any other module — file_server, reverse_proxy, a plugin — may serve
// the origin's files, so the check counts it as serving.
var (
	passesOn = map[string]bool{
		"authentication": true, "encode": true, "headers": true, "intercept": true, "log_append": true, "map": true,
		"push": true, "request_body": true, "templates": true, "tracing": true, "vars": true,
	}
	answersItself = map[string]bool{"static_response": true, "error": true, "metrics": true, "acme_server": true}
)

// routeNode is a route as the check sees it.
type routeNode struct {
	match    string   // the matchers, for messages; "" when it has none
	hosts    []string // the hosts it is limited to; nil for any
	terminal bool
	handlers []handlerNode
}

type handlerNode struct {
	module string      // "drm", "file_server", "subroute", …
	routes []routeNode // a subroute's
	errors []routeNode // a subroute's error routes
	invoke string      // the named route an invoke runs
	pins   bool        // a rewrite that sets the path to one that does not depend on the request
	root   string      // a file_server's root, or the root a vars handler sets
}

// walker walks the routes of one server.
type walker struct {
	named    map[string][]routeNode
	drmHosts []string // the hosts of drm's site; nil for any
	depth    int      // of invoke, against loops
}

// exposedHandlers returns, for people, the handlers of srv that a request
// for drm's site can reach without passing drm and that may serve files:
// in its routes, its error routes (which every refusal of drm reaches),
// subroutes' error routes and the named routes they invoke.
func exposedHandlers(srv *caddyhttp.Server) ([]string, error) {
	w := &walker{named: map[string][]routeNode{}}
	for name, r := range srv.NamedRoutes {
		nodes, err := routeNodes(caddyhttp.RouteList{*r})
		if err != nil {
			return nil, err
		}
		w.named[name] = nodes
	}
	routes, err := routeNodes(srv.Routes)
	if err != nil {
		return nil, err
	}
	var errorRoutes []routeNode
	if srv.Errors != nil {
		if errorRoutes, err = routeNodes(srv.Errors.Routes); err != nil {
			return nil, err
		}
	}
	w.drmHosts, _ = drmHosts(routes, nil)
	found, _, _ := w.exposed(routes, "routes", false)
	f, _, _ := w.exposed(errorRoutes, "handle_errors", false)
	return append(found, f...), nil
}

// drmHosts returns the hosts the routes that lead to a drm handler are
// limited to (nil: any host), and whether any does.
func drmHosts(routes []routeNode, within []string) (hosts []string, found bool) {
	anyHost := false
	for _, r := range routes {
		scope := within
		if r.hosts != nil {
			scope = r.hosts
		}
		for _, h := range r.handlers {
			inner, ok := scope, h.module == "drm"
			if h.module == "subroute" {
				inner, ok = drmHosts(h.routes, scope)
			}
			if !ok {
				continue
			}
			found = true
			if inner == nil {
				anyHost = true
			}
			hosts = append(hosts, inner...)
		}
	}
	if anyHost {
		return nil, found
	}
	return hosts, found
}

// apart reports whether routes limited to a and to b can never see the
// same request (no host in common, no wildcard to be unsure about).
func apart(a, b []string) bool {
	if a == nil || b == nil {
		return false
	}
	for _, x := range a {
		for _, y := range b {
			if strings.Contains(x, "*") || strings.Contains(y, "*") || strings.EqualFold(x, y) {
				return false
			}
		}
	}
	return true
}

// exposed walks routes in order and returns the serving handlers reached
// without drm, and whether a request can go on past the routes. pinned:
// a rewrite already set the path to one the request does not choose.
//
// A rewrite changes the request for the routes after it too (Caddyfile
// puts each directive in a route of its own): a route without matchers
// passes its pinned state on; one with matchers may or may not have run,
// so after it the path is pinned only if it was and stays so.
func (w *walker) exposed(routes []routeNode, trail string, pinned bool) (found []string, goesOn, pinnedAfter bool) {
	for i, r := range routes {
		if apart(r.hosts, w.drmHosts) {
			continue // another site's: drm's requests never reach it
		}
		where := fmt.Sprintf("%s › route %d", trail, i)
		if r.match != "" {
			where += " (" + r.match + ")"
		}
		f, passes, after := w.exposedInChain(r.handlers, where, pinned)
		found = append(found, f...)
		if r.match == "" && (!passes || r.terminal) {
			return found, false, after // every request stops in this route
		}
		if r.match == "" {
			pinned = after
		} else {
			pinned = pinned && after
		}
	}
	return found, true, pinned
}

// exposedInChain walks the handlers of one route.
func (w *walker) exposedInChain(handlers []handlerNode, trail string, pinned bool) (found []string, passes, pinnedAfter bool) {
	for _, h := range handlers {
		switch {
		case h.module == "drm":
			return found, false, pinned // drm answers every request it sees
		case h.module == "subroute":
			f, goesOn, after := w.exposed(h.routes, trail+" › subroute", pinned)
			e, _, _ := w.exposed(h.errors, trail+" › subroute errors", false)
			found, pinned = append(append(found, f...), e...), after
			if !goesOn {
				return found, false, pinned
			}
		case h.module == "invoke":
			routes, ok := w.named[h.invoke]
			if !ok || w.depth > 8 {
				return append(found, trail+" › invoke "+h.invoke), false, pinned
			}
			w.depth++
			f, goesOn, after := w.exposed(routes, trail+" › invoke "+h.invoke, pinned)
			w.depth--
			found, pinned = append(found, f...), after
			if !goesOn {
				return found, false, pinned
			}
		case h.module == "rewrite":
			pinned = h.pins
		case passesOn[h.module]:
		case answersItself[h.module]:
			return found, false, pinned
		case pinned && h.module == "file_server":
			return found, false, pinned // serves the one path the rewrite set
		default:
			return append(found, trail+" › "+h.module), false, pinned
		}
	}
	return found, true, pinned
}

// routeNodes reads provisioned routes; a route whose handlers are still
// raw (not provisioned yet, or being provisioned) is read from its JSON.
func routeNodes(routes caddyhttp.RouteList) ([]routeNode, error) {
	var out []routeNode
	for _, r := range routes {
		n := routeNode{terminal: r.Terminal, match: describeMatchers(r)}
		if len(r.MatcherSetsRaw) > 0 {
			b, _ := json.Marshal(r.MatcherSetsRaw)
			n.hosts = rawHosts(b)
		} else {
			n.hosts = matcherHosts(r.MatcherSets)
		}
		if len(r.HandlersRaw) > 0 {
			for _, raw := range r.HandlersRaw {
				h, err := rawHandlerNode(raw)
				if err != nil {
					return nil, err
				}
				n.handlers = append(n.handlers, h)
			}
		} else {
			for _, mh := range r.Handlers {
				h, err := handlerNodeOf(mh)
				if err != nil {
					return nil, err
				}
				n.handlers = append(n.handlers, h)
			}
		}
		out = append(out, n)
	}
	return out, nil
}

func handlerNodeOf(h caddyhttp.MiddlewareHandler) (handlerNode, error) {
	switch h := h.(type) {
	case *Handler:
		return handlerNode{module: "drm"}, nil
	case *caddyhttp.Subroute:
		routes, err := routeNodes(h.Routes)
		if err != nil || h.Errors == nil {
			return handlerNode{module: "subroute", routes: routes}, err
		}
		errs, err := routeNodes(h.Errors.Routes)
		return handlerNode{module: "subroute", routes: routes, errors: errs}, err
	case *caddyhttp.Invoke:
		return handlerNode{module: "invoke", invoke: h.Name}, nil
	case *rewrite.Rewrite:
		return handlerNode{module: "rewrite", pins: pinsPath(h)}, nil
	case *fileserver.FileServer:
		return handlerNode{module: "file_server", root: h.Root}, nil
	case caddyhttp.VarsMiddleware:
		root, _ := h["root"].(string)
		return handlerNode{module: "vars", root: root}, nil
	case caddy.Module:
		return handlerNode{module: strings.TrimPrefix(string(h.CaddyModule().ID), "http.handlers.")}, nil
	}
	return handlerNode{module: fmt.Sprintf("%T", h)}, nil
}

// rawRoute is a route's JSON, as far as the check needs it.
type rawRoute struct {
	Match    json.RawMessage   `json:"match"`
	Handle   []json.RawMessage `json:"handle"`
	Terminal bool              `json:"terminal"`
}

func rawHandlerNode(raw json.RawMessage) (handlerNode, error) {
	var h struct {
		Handler string     `json:"handler"`
		Routes  []rawRoute `json:"routes"`
		Errors  *struct {
			Routes []rawRoute `json:"routes"`
		} `json:"errors"`
		Name string `json:"name"` // invoke's
		Root any    `json:"root"` // file_server's (a string), or vars' (any value)
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return handlerNode{}, fmt.Errorf("reading a route's handler: %w", err)
	}
	n := handlerNode{module: h.Handler, invoke: h.Name}
	if root, ok := h.Root.(string); ok && (h.Handler == "file_server" || h.Handler == "vars") {
		n.root = root
	}
	if h.Handler == "rewrite" {
		var rw rewrite.Rewrite
		if err := json.Unmarshal(raw, &rw); err != nil {
			return handlerNode{}, fmt.Errorf("reading a rewrite: %w", err)
		}
		n.pins = pinsPath(&rw)
	}
	var err error
	if n.routes, err = rawRouteNodes(h.Routes); err != nil {
		return handlerNode{}, err
	}
	if h.Errors != nil {
		if n.errors, err = rawRouteNodes(h.Errors.Routes); err != nil {
			return handlerNode{}, err
		}
	}
	return n, nil
}

func rawRouteNodes(routes []rawRoute) ([]routeNode, error) {
	var out []routeNode
	for _, r := range routes {
		rn := routeNode{terminal: r.Terminal}
		if len(r.Match) > 0 && string(r.Match) != "null" {
			rn.match = string(r.Match)
			rn.hosts = rawHosts(r.Match)
		}
		for _, raw := range r.Handle {
			child, err := rawHandlerNode(raw)
			if err != nil {
				return nil, err
			}
			rn.handlers = append(rn.handlers, child)
		}
		out = append(out, rn)
	}
	return out, nil
}

// rawHosts returns the hosts a route's matcher sets (JSON) limit it to:
// nil when one of the sets has no host matcher.
func rawHosts(match json.RawMessage) []string {
	var sets []map[string]json.RawMessage
	if json.Unmarshal(match, &sets) != nil || len(sets) == 0 {
		return nil
	}
	var hosts []string
	for _, set := range sets {
		var hs []string
		if json.Unmarshal(set["host"], &hs) != nil || len(hs) == 0 {
			return nil
		}
		hosts = append(hosts, hs...)
	}
	return hosts
}

// matcherHosts is rawHosts for provisioned matcher sets.
func matcherHosts(sets caddyhttp.MatcherSets) []string {
	if len(sets) == 0 {
		return nil
	}
	var hosts []string
	for _, set := range sets {
		var hs []string
		for _, m := range set {
			switch mh := m.(type) {
			case caddyhttp.MatchHost:
				hs = append(hs, mh...)
			case *caddyhttp.MatchHost:
				hs = append(hs, *mh...)
			}
		}
		if len(hs) == 0 {
			return nil
		}
		hosts = append(hosts, hs...)
	}
	return hosts
}

var placeholder = regexp.MustCompile(`\{[^}]*\}`)

// errorPlaceholder matches the placeholders of an error route that do not
// come from the request ({http.error.status_code}, {err.status_code}, …).
var errorPlaceholder = regexp.MustCompile(`^\{(http\.error|err)\.[a-z_]+\}$`)

// pinsPath reports whether a rewrite sets the path to one the request
// cannot choose — the error page pattern `rewrite * /{err.status_code}.html`
// — so that a file_server after it serves that one file.
func pinsPath(rw *rewrite.Rewrite) bool {
	if rw.URI == "" || strings.HasPrefix(rw.URI, "?") || rw.StripPathPrefix != "" || rw.StripPathSuffix != "" ||
		len(rw.URISubstring) > 0 || len(rw.PathRegexp) > 0 {
		return false
	}
	path, _, _ := strings.Cut(rw.URI, "?")
	for _, ph := range placeholder.FindAllString(path, -1) {
		if !errorPlaceholder.MatchString(ph) {
			return false
		}
	}
	return !strings.Contains(path, "..")
}

// describeMatchers names a route's matchers for people, as the JSON of
// the config: the raw JSON, or the provisioned matchers encoded again.
func describeMatchers(r caddyhttp.Route) string {
	if len(r.MatcherSetsRaw) > 0 {
		b, _ := json.Marshal(r.MatcherSetsRaw)
		return string(b)
	}
	if len(r.MatcherSets) == 0 {
		return ""
	}
	var sets []map[string]any
	for _, set := range r.MatcherSets {
		ms := map[string]any{}
		for _, m := range set {
			name := fmt.Sprintf("%T", m)
			if mod, ok := m.(caddy.Module); ok {
				name = strings.TrimPrefix(string(mod.CaddyModule().ID), "http.matchers.")
			}
			ms[name] = m
		}
		sets = append(sets, ms)
	}
	b, _ := json.Marshal(sets)
	return string(b)
}

// originRoots returns every directory a file_server of srv may serve
// from: file_server roots and the roots vars handlers set (Caddyfile's
// `root`), in its routes, error routes and named routes. A root with a
// placeholder other than the one vars set is left out: it cannot be
// known before a request.
func originRoots(srv *caddyhttp.Server) ([]string, error) {
	var lists []caddyhttp.RouteList
	lists = append(lists, srv.Routes)
	if srv.Errors != nil {
		lists = append(lists, srv.Errors.Routes)
	}
	for _, r := range srv.NamedRoutes {
		lists = append(lists, caddyhttp.RouteList{*r})
	}
	var roots []string
	varsRoot, bareFileServer := false, false
	var walk func([]routeNode)
	walk = func(routes []routeNode) {
		for _, r := range routes {
			for _, h := range r.handlers {
				varsRoot = varsRoot || h.module == "vars" && h.root != ""
				bareFileServer = bareFileServer || h.module == "file_server" && h.root == ""
				if h.root != "" && !strings.Contains(h.root, "{") {
					roots = append(roots, h.root)
				}
				walk(h.routes)
				walk(h.errors)
			}
		}
	}
	for _, l := range lists {
		nodes, err := routeNodes(l)
		if err != nil {
			return nil, err
		}
		walk(nodes)
	}
	if bareFileServer && !varsRoot {
		roots = append(roots, ".") // a file_server without a root serves the working directory
	}
	return roots, nil
}
