package relay

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limits are the send rate limits: recipients per second per API key and
// per tenant, each a token bucket with a burst of one second's worth.
// A recipient is charged to both buckets or to neither.
type limits struct {
	perKey, perTenant rate.Limit // 0: unlimited

	mu      sync.Mutex
	keys    map[string]*rate.Limiter
	tenants map[string]*rate.Limiter
}

// maxBuckets bounds each map: past it, buckets that have refilled (and so
// behave as fresh ones would) are dropped.
const maxBuckets = 4096

func newLimits(perKey, perTenant float64) *limits {
	lim := func(f float64) rate.Limit {
		if f < 0 {
			return 0
		}
		return rate.Limit(f)
	}
	return &limits{
		perKey: lim(perKey), perTenant: lim(perTenant),
		keys: map[string]*rate.Limiter{}, tenants: map[string]*rate.Limiter{},
	}
}

// take charges up to n recipients to key and tenant at now and returns
// how many it charged: the first that many recipients may be sent, the
// rest are deferred.
func (l *limits) take(key, tenant string, n int, now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := bucket(l.keys, key, l.perKey, now)
	t := bucket(l.tenants, tenant, l.perTenant, now)
	for _, b := range []*rate.Limiter{k, t} {
		if b != nil {
			n = min(n, int(math.Floor(b.TokensAt(now))))
		}
	}
	if n <= 0 {
		return 0
	}
	for _, b := range []*rate.Limiter{k, t} {
		if b != nil {
			b.AllowN(now, n)
		}
	}
	return n
}

// bucket returns m's limiter for id, creating it full; nil when r is
// unlimited.
func bucket(m map[string]*rate.Limiter, id string, r rate.Limit, now time.Time) *rate.Limiter {
	if r == 0 {
		return nil
	}
	if b, ok := m[id]; ok {
		return b
	}
	if len(m) >= maxBuckets {
		for id, b := range m {
			if b.TokensAt(now) >= float64(b.Burst()) {
				delete(m, id)
			}
		}
	}
	b := rate.NewLimiter(r, max(1, int(math.Ceil(float64(r))))) // starts full
	m[id] = b
	return b
}
