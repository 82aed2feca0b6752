package relay

import (
	"sync"
	"time"
)

// maxAuthFailures is how many failed AUTHs a remote address may make per
// minute on the submission listener before AUTH is refused to it for the
// rest of the minute. A pipeline with a wrong key fails a few times; a key
// guesser (or a flood meant to fill the log) is stopped without a vault
// call per attempt.
const maxAuthFailures = 10

// failures counts events per remote address in fixed windows, in a map
// of bounded size (a full map forgets its oldest windows first).
type failures struct {
	max    int
	window time.Duration
	size   int

	mu sync.Mutex
	m  map[string]*failWindow
}

type failWindow struct {
	start time.Time
	n     int
}

func newFailures(max int, window time.Duration, size int) *failures {
	return &failures{max: max, window: window, size: size, m: map[string]*failWindow{}}
}

// blocked reports whether addr used up its failures in the current window.
func (f *failures) blocked(addr string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.m[addr]
	return w != nil && now.Sub(w.start) < f.window && w.n >= f.max
}

// add counts one failure of addr.
func (f *failures) add(addr string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.m[addr]
	if w == nil || now.Sub(w.start) >= f.window {
		if w == nil && len(f.m) >= f.size {
			f.evict(now)
		}
		w = &failWindow{start: now}
		f.m[addr] = w
	}
	w.n++
}

// evict drops expired windows, or the oldest one if none has expired.
func (f *failures) evict(now time.Time) {
	var oldest string
	for a, w := range f.m {
		if now.Sub(w.start) >= f.window {
			delete(f.m, a)
		} else if oldest == "" || w.start.Before(f.m[oldest].start) {
			oldest = a
		}
	}
	if len(f.m) >= f.size {
		delete(f.m, oldest)
	}
}
