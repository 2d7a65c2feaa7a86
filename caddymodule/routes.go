package caddymodule

// The drm handler protects only the requests that reach it. Caddy orders
// handle, handle_path, route and respond before drm, so `drm` at site level
// beside `handle /x/* { file_server }` serves media in the clear under /x/.
// exposedHandlers finds such handlers: those of the same server that a
// request can reach without passing drm and that may serve files. Provision
// refuses to start when there are any, unless allow_unprotected_routes.
//
// The check runs while the http app provisions its routes, so it sees the
// routes before drm's provisioned and those after it still as JSON; it
// reads both.

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Handler modules (http.handlers.*) that cannot serve a file: middleware
// that passes the request on, and terminal handlers that answer on their
// own. Any other module — file_server, reverse_proxy, invoke, a plugin —
// may serve the origin's files, so the check counts it as serving.
var (
	passesOn = map[string]bool{
		"authentication": true, "encode": true, "headers": true, "log_append": true, "map": true,
		"push": true, "request_body": true, "rewrite": true, "templates": true, "tracing": true, "vars": true,
	}
	answersItself = map[string]bool{"static_response": true, "error": true, "metrics": true, "acme_server": true}
)

// routeNode is a route as the check sees it.
type routeNode struct {
	match    string // the matchers, for messages; "" when it has none
	terminal bool
	handlers []handlerNode
}

type handlerNode struct {
	module string      // "drm", "file_server", "subroute", …
	routes []routeNode // a subroute's
}

// exposedHandlers returns, for people, the handlers of srv that a request
// can reach without passing drm and that may serve files: its routes, its
// named routes and its error routes (which every refusal of drm reaches).
func exposedHandlers(srv *caddyhttp.Server) ([]string, error) {
	var found []string
	walk := func(name string, routes caddyhttp.RouteList) error {
		nodes, err := routeNodes(routes)
		if err != nil {
			return err
		}
		f, _ := exposed(nodes, name)
		found = append(found, f...)
		return nil
	}
	if err := walk("routes", srv.Routes); err != nil {
		return nil, err
	}
	if srv.Errors != nil {
		if err := walk("handle_errors", srv.Errors.Routes); err != nil {
			return nil, err
		}
	}
	for name, r := range srv.NamedRoutes {
		if err := walk("named route "+name, caddyhttp.RouteList{*r}); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// exposed walks routes in order and returns the serving handlers reached
// without drm, and whether a request can go on past the routes.
func exposed(routes []routeNode, trail string) (found []string, goesOn bool) {
	for i, r := range routes {
		where := fmt.Sprintf("%s › route %d", trail, i)
		if r.match != "" {
			where += " (" + r.match + ")"
		}
		f, passes := exposedInChain(r.handlers, where)
		found = append(found, f...)
		if r.match == "" && (!passes || r.terminal) {
			return found, false // every request stops in this route
		}
	}
	return found, true
}

// exposedInChain walks the handlers of one route.
func exposedInChain(handlers []handlerNode, trail string) (found []string, passes bool) {
	for _, h := range handlers {
		switch {
		case h.module == "drm":
			return found, false // drm answers every request it sees
		case h.module == "subroute":
			f, goesOn := exposed(h.routes, trail+" › subroute")
			found = append(found, f...)
			if !goesOn {
				return found, false
			}
		case passesOn[h.module]:
		case answersItself[h.module]:
			return found, false
		default:
			return append(found, trail+" › "+h.module), false
		}
	}
	return found, true
}

// routeNodes reads provisioned routes; a route whose handlers are still
// raw (not provisioned yet, or being provisioned) is read from its JSON.
func routeNodes(routes caddyhttp.RouteList) ([]routeNode, error) {
	var out []routeNode
	for _, r := range routes {
		n := routeNode{terminal: r.Terminal, match: describeMatchers(r)}
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
		return handlerNode{module: "subroute", routes: routes}, err
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
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return handlerNode{}, fmt.Errorf("reading a route's handler: %w", err)
	}
	n := handlerNode{module: h.Handler}
	for _, r := range h.Routes {
		rn := routeNode{terminal: r.Terminal}
		if len(r.Match) > 0 && string(r.Match) != "null" {
			rn.match = string(r.Match)
		}
		for _, raw := range r.Handle {
			child, err := rawHandlerNode(raw)
			if err != nil {
				return handlerNode{}, err
			}
			rn.handlers = append(rn.handlers, child)
		}
		n.routes = append(n.routes, rn)
	}
	return n, nil
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
