package caddymodule

import (
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-drm/caddy-drm/licensing"
)

func init() {
	caddy.RegisterModule(BoltLicenseStore{})
}

// LicenseStore is the guest module interface of license stores
// (namespace drm.license_stores): it names the store it opens, so that
// configs naming the same one share one handle across reloads.
type LicenseStore interface {
	// StoreKey names the store: configs with the same key share it.
	StoreKey() string
	// OpenStore opens the store; the pool closes it when the last config
	// using it is unloaded.
	OpenStore() (licensing.Store, error)
}

// BoltLicenseStore keeps licenses in a bbolt file (the default). bbolt
// locks its file: a second handle would wait for the first forever, so
// the handle is shared through a UsagePool across reloads.
type BoltLicenseStore struct {
	// Path is the bbolt file. Default: drm/licenses.db in Caddy's data
	// directory.
	Path string `json:"path,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (BoltLicenseStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "drm.license_stores.bbolt",
		New: func() caddy.Module { return new(BoltLicenseStore) },
	}
}

// Provision resolves the default path and makes it absolute, so that
// the pool key names the file whatever the working directory.
func (s *BoltLicenseStore) Provision(caddy.Context) error {
	if s.Path == "" {
		s.Path = defaultLicenseStorePath()
	}
	abs, err := filepath.Abs(s.Path)
	if err != nil {
		return fmt.Errorf("drm: license store %s: %w", s.Path, err)
	}
	s.Path = abs
	return nil
}

func defaultLicenseStorePath() string {
	return filepath.Join(caddy.AppDataDir(), "drm", "licenses.db")
}

// StoreKey implements LicenseStore.
func (s *BoltLicenseStore) StoreKey() string { return "bbolt:" + s.Path }

// OpenStore implements LicenseStore.
func (s *BoltLicenseStore) OpenStore() (licensing.Store, error) {
	st, err := licensing.OpenBolt(s.Path, licensing.BoltOptions{})
	if err != nil {
		return nil, fmt.Errorf("drm: %w", err)
	}
	return st, nil
}

var (
	_ caddy.Provisioner = (*BoltLicenseStore)(nil)
	_ LicenseStore      = (*BoltLicenseStore)(nil)
)
