package clientproxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// catalogCache keeps the Source's catalog for a short time, because every
// media request needs the item's size and type and asking the origin each
// time (a sealed round trip) would add latency to every seek.
type catalogCache struct {
	src Source
	ttl time.Duration
	now func() time.Time

	// mu is held across refreshes so that a burst of requests after
	// expiry produces one catalog call, not one per request.
	mu      sync.Mutex
	items   []protocol.MediaInfo
	byID    map[string]protocol.MediaInfo
	fetched time.Time
}

func newCatalogCache(src Source, ttl time.Duration) *catalogCache {
	return &catalogCache{src: src, ttl: ttl, now: time.Now}
}

// list returns the catalog, refreshing it if it is older than the TTL.
func (c *catalogCache) list(ctx context.Context) ([]protocol.MediaInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil || c.now().Sub(c.fetched) >= c.ttl {
		if err := c.refreshLocked(ctx); err != nil {
			return nil, err
		}
	}
	return c.items, nil
}

// lookup finds id in the catalog. A miss in a fresh catalog still triggers
// a refresh, since a just-published item should be playable at once rather
// than 404 for up to a TTL.
func (c *catalogCache) lookup(ctx context.Context, id string) (protocol.MediaInfo, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID != nil && c.now().Sub(c.fetched) < c.ttl {
		if info, ok := c.byID[id]; ok {
			return info, true, nil
		}
	}
	if err := c.refreshLocked(ctx); err != nil {
		return protocol.MediaInfo{}, false, err
	}
	info, ok := c.byID[id]
	return info, ok, nil
}

// refreshLocked replaces the cached catalog; on error the old one is kept
// (but still counts as stale). c.mu must be held.
func (c *catalogCache) refreshLocked(ctx context.Context) error {
	items, err := c.src.Catalog(ctx)
	if err != nil {
		return fmt.Errorf("fetch catalog: %w", err)
	}
	byID := make(map[string]protocol.MediaInfo, len(items))
	for _, it := range items {
		byID[it.ID] = it
	}
	c.items, c.byID, c.fetched = items, byID, c.now()
	return nil
}
