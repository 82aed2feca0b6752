package server

import (
	"bytes"
	"sync"
)

// LockedBuffer is a bytes.Buffer that handlers may log to while a test
// reads it. It is defined here, in package server, so that the internal
// tests and package server_test share one.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
