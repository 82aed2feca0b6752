package vault

import (
	"context"
	"crypto/subtle"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/custos-dev/custos"
)

// authCacheMax bounds the keys the authentication cache holds; when it is
// full it starts again empty (a miss costs one uncached lookup, nothing
// else), so its memory stays a few hundred KiB whatever the key count.
const authCacheMax = 4096

// authCacheTTL bounds how long an entry is used even while the counter
// does not move: whoever can write the database can stop the counter (drop
// the triggers, rewind it), and then the cache would keep a key custos
// revoked working. Past the TTL the rows are read and their MACs checked
// again, which also brings last-used times up to date.
const authCacheTTL = 30 * time.Second

// authCache remembers the keys that authenticated, with their principals
// and the principals' legacy certificate bindings (principal_certs), so
// that a request costs one read of a one-row counter instead of a join,
// a binding read and three row MACs.
//
// Invalidation is by version, not by time. The auth_epoch row (migration
// 0025) holds a counter that triggers on api_keys, principals and
// principal_certs (0052) raise in the same transaction as any change to
// them other than a key's last-used time — made by custos on any node, or by hand in the
// database. Every request reads the counter first; an entry is used only
// if it was filled under the counter's current value. So a revocation, a
// suspension, a scope change or a forged row committed anywhere is seen
// by the very next request on every node, and if the counter cannot be
// read the request takes the uncached path (which fails closed as before).
// Expiry is checked against the clock on every request, cached or not.
//
// Entries are filled under the counter read *before* the row is read: a
// change committing in between raises the counter past the entry's, so
// the entry is never used. The counter only grows: a request that reads a
// lower value than the cache's (a slow request, or a rewound counter)
// uses nothing cached.
type authCache struct {
	off     bool // tests only: the uncached baseline in the same run
	mu      sync.Mutex
	epoch   int64 // the counter value the entries were filled under
	entries map[[32]byte]*authEntry
}

type authEntry struct {
	hash   []byte    // the stored hash, compared again in constant time
	filled time.Time // when the rows were read (the vault's clock)
	p      custos.Principal
	k      custos.APIKey
	pin    string // principal_certs' pin, "" for none
}

// authEpoch reads the invalidation counter.
func (v *Vault) authEpoch(ctx context.Context) (int64, error) {
	var n int64
	if err := v.queryRow(ctx, `SELECT n FROM auth_epoch WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read auth epoch: %w", err)
	}
	return n, nil
}

// get returns copies of the principal and key cached for hash under
// epoch, if any, filled less than authCacheTTL before now, with the
// principal's legacy certificate pin.
func (c *authCache) get(epoch int64, hash []byte, now time.Time) (*custos.Principal, *custos.APIKey, string, bool) {
	if len(hash) != 32 || c.off {
		return nil, nil, "", false
	}
	c.mu.Lock()
	switch {
	case epoch > c.epoch:
		// Something changed: nothing cached before is trusted.
		c.epoch, c.entries = epoch, nil
	case epoch < c.epoch:
		c.mu.Unlock()
		return nil, nil, "", false
	}
	e, ok := c.entries[[32]byte(hash)]
	c.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(e.hash, hash) != 1 {
		return nil, nil, "", false
	}
	if age := now.Sub(e.filled); age < 0 || age >= authCacheTTL {
		return nil, nil, "", false
	}
	return copyPrincipal(&e.p), copyKey(&e.k), e.pin, true
}

// put caches p, k and the legacy pin, read at now after the counter was
// epoch.
func (c *authCache) put(epoch int64, hash []byte, now time.Time, p *custos.Principal, k *custos.APIKey, pin string) {
	if len(hash) != 32 {
		return
	}
	e := &authEntry{hash: slices.Clone(hash), filled: now, p: *copyPrincipal(p), k: *copyKey(k), pin: pin}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return // filled under another counter value: not cached
	}
	if c.entries == nil || len(c.entries) >= authCacheMax {
		c.entries = make(map[[32]byte]*authEntry)
	}
	c.entries[[32]byte(hash)] = e
}

func copyPrincipal(p *custos.Principal) *custos.Principal {
	c := *p
	if p.VerifiedAt != nil {
		t := *p.VerifiedAt
		c.VerifiedAt = &t
	}
	return &c
}

func copyKey(k *custos.APIKey) *custos.APIKey {
	c := *k
	c.Scopes = slices.Clone(k.Scopes)
	for _, pp := range []**time.Time{&c.ExpiresAt, &c.LastUsedAt, &c.RevokedAt} {
		if *pp != nil {
			t := **pp
			*pp = &t
		}
	}
	return &c
}
