// Package tlsfiles serves TLS from certificate and key files that an
// operator (or an ACME client, or cert-manager) replaces while custos runs:
// [Files.Config] returns a tls.Config whose certificate and client CA pool
// are read again on [Files.Reload] (SIGHUP) and when a file's modification
// time changes ([Files.Watch]), without a restart. A reload that fails
// (a half-written key, a certificate that does not match its key) keeps
// the pair that was being served: a bad file never takes the listener
// down, and the failure is reported to the caller.
//
// The minimum version is TLS 1.2; Go's defaults choose the cipher suites.
package tlsfiles

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files are the PEM files a TLS listener serves from.
type Files struct {
	Cert, Key string
	// ClientCA, if set, holds the CAs a client certificate must chain to.
	// A client that presents one is verified against it; RequireClient
	// makes presenting one mandatory.
	ClientCA      string
	RequireClient bool

	mu     sync.Mutex
	cur    *tls.Config
	stamps map[string]time.Time
}

// Load reads the files for the first time.
func (f *Files) Load() error {
	if f.Cert == "" || f.Key == "" {
		return errors.New("tls: cert_file and key_file are both required")
	}
	return f.Reload()
}

// Reload reads the files again. On error the previous configuration stays.
func (f *Files) Reload() error {
	stamps := map[string]time.Time{}
	for _, p := range []string{f.Cert, f.Key, f.ClientCA} {
		if p == "" {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		stamps[p] = st.ModTime()
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", f.Cert, f.Key, err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if f.ClientCA != "" {
		b, err := os.ReadFile(f.ClientCA)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("tls: %s holds no PEM certificate", f.ClientCA)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if f.RequireClient {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	f.mu.Lock()
	f.cur, f.stamps = c, stamps
	f.mu.Unlock()
	return nil
}

// Config returns the configuration a listener serves with: each new
// connection gets the files as last (re)loaded.
func (f *Files) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.cur == nil {
				return nil, errors.New("tls: no certificate loaded")
			}
			return f.cur, nil
		},
	}
}

// Changed reports whether a file's modification time differs from the one
// it had at the last successful load.
func (f *Files) Changed() bool {
	f.mu.Lock()
	stamps := f.stamps
	f.mu.Unlock()
	for p, t := range stamps {
		st, err := os.Stat(p)
		if err != nil || !st.ModTime().Equal(t) {
			return true
		}
	}
	return false
}

// Watch polls the files' modification times every interval until ctx ends
// and reloads when one changed, calling done with the result of each
// reload (nil error: the new pair is served).
func (f *Files) Watch(ctx context.Context, interval time.Duration, done func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var failed map[string]time.Time // the stamps a failed reload saw: not retried until they change
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !f.Changed() {
			continue
		}
		now := map[string]time.Time{}
		for _, p := range []string{f.Cert, f.Key, f.ClientCA} {
			if st, err := os.Stat(p); err == nil {
				now[p] = st.ModTime()
			}
		}
		if sameStamps(now, failed) {
			continue
		}
		err := f.Reload()
		if err != nil {
			failed = now
		} else {
			failed = nil
		}
		if done != nil {
			done(err)
		}
	}
}

func sameStamps(a, b map[string]time.Time) bool {
	if len(a) != len(b) || b == nil {
		return false
	}
	for k, v := range a {
		if !b[k].Equal(v) {
			return false
		}
	}
	return true
}

// Fingerprint returns the SHA-256 of the served certificate's DER, hex,
// for the log line of a reload (a public value).
func (f *Files) Fingerprint() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil || len(f.cur.Certificates) == 0 || len(f.cur.Certificates[0].Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(f.cur.Certificates[0].Certificate[0])
	return hex.EncodeToString(sum[:])
}

// SPKIPin returns the SHA-256 of a certificate's SubjectPublicKeyInfo,
// hex: the pin a principal is bound to (it survives a renewal that keeps
// the key).
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}
