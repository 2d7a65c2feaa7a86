module github.com/caddy-drm/caddy-drm/internal/tools

go 1.26.8

require (
	github.com/caddy-drm/caddy-drm v0.0.0
	github.com/caddyserver/xcaddy v0.4.5
	golang.org/x/image v0.48.0
)

require (
	filippo.io/age v1.3.2 // indirect
	filippo.io/hpke v0.4.0 // indirect
	github.com/Masterminds/semver/v3 v3.5.0 // indirect
	github.com/akavel/rsrc v0.10.2 // indirect
	github.com/google/shlex v0.0.0-20191202100458-e7afc7fbc510 // indirect
	github.com/josephspurrier/goversioninfo v1.5.0 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

// The tools build against this checkout, never a published version.
replace github.com/caddy-drm/caddy-drm => ../..
