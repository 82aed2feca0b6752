package server

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/custos-dev/custos"
)

// Rate limits (golang.org/x/time/rate token buckets). Anonymous requests —
// no key, a malformed or unknown one, and the routes that need none — are
// limited per source IP; authenticated ones per key. A refusal answers 429
// with code ETOOMANY ("rate_limited") and Retry-After.
//
// What a flood costs the log is bounded separately: the refusals of one
// source (or key) are recorded as they come only while that source has no
// open window; the first opens a window of RefusalWindow, and the ones
// after it in the window are counted and recorded as one leaf when the
// window closes (count, first and last time). A window that closes with
// refusals opens the next at once, so a sustained flood costs one leaf per
// source per window; a window that closes empty is forgotten.
const (
	DefaultSourceRate  = 50 // anonymous requests per second per source IP
	DefaultSourceBurst = 100
	DefaultKeyRate     = 1000 // authenticated requests per second per key
	DefaultKeyBurst    = 2000
	DefaultRefusals    = time.Minute
)

// limiters holds one token bucket per source or key, dropping buckets that
// have been idle (and so full) for a while.
type limiters struct {
	limit rate.Limit
	burst int

	mu    sync.Mutex
	m     map[string]*bucket
	swept time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newLimiters(limit rate.Limit, burst int) *limiters {
	return &limiters{limit: limit, burst: burst, m: map[string]*bucket{}, swept: time.Now()}
}

// allow takes a token for key; if there is none it returns false and how
// long until there is one.
func (l *limiters) allow(key string) (bool, time.Duration) {
	if l.limit == rate.Inf {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	b := l.m[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = b
	}
	b.used = now
	if now.Sub(l.swept) > time.Minute {
		// A bucket idle for longer than it takes to refill is full:
		// forgetting it changes nothing.
		refill := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Minute
		for k, o := range l.m {
			if now.Sub(o.used) > refill {
				delete(l.m, k)
			}
		}
		l.swept = now
	}
	l.mu.Unlock()
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	need := 1 - b.lim.TokensAt(now)
	return false, time.Duration(need / float64(l.limit) * float64(time.Second))
}

// tooMany is the refusal of a rate-limited request.
func tooMany(w http.ResponseWriter, wait time.Duration) error {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	return custos.Errorf(custos.ETOOMANY, "too many requests: retry later")
}

// hasCredentials reports whether r carries a bearer key to try.
func hasCredentials(r *http.Request) bool {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && strings.TrimSpace(secret) != ""
}
