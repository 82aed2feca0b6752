package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/custos-dev/custos/client"
)

// BenchmarkGetLoop measures what one request of the GET loop costs the
// generator, against the bare handler (so the server's share is as small
// as it gets): "prepared" is the hand-rolled loop custos-load ran before
// it used package client (one request built per worker, sent again and
// again, body discarded), "repeat" is [client.Repeat] as [load] uses it,
// and "typed" is [client.Client.Contact], which builds, decodes and may
// retry, for comparison. Compare allocs/op and B/op, which the shared
// machine's noise does not move:
//
//	go test -run XXX -bench GetLoop -benchmem ./cmd/custos-load/
func BenchmarkGetLoop(b *testing.B) {
	body := []byte(`{"token":"ct_aaaaaaaaaaaaaaaaaaaaaaaaaa","tenant_id":"tn_aaaaaaaaaaaaaaaaaaaaaaaaaa","list_id":"ls_aaaaaaaaaaaaaaaaaaaaaaaaaa","email":"load.test@example.test","attributes":{"first_name":"Lo","plan":"pro"},"consent":"subscribed","created_at":"2026-01-02T03:04:05.123456Z","updated_at":"2026-01-02T03:04:05.123456Z"}` + "\n")
	// The same handler as the bare baseline, which also notes the path the
	// client asks for, so that the hand-rolled loop sends the same request
	// line (the server's parsing is in this process's figures too).
	var once sync.Once
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { path = r.URL.Path })
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer srv.Close()
	base := srv.URL
	newHC := func() (*http.Client, func()) {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
		return &http.Client{Transport: tr}, tr.CloseIdleConnections
	}
	const tenant, token = "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", "ct_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	if err := client.New(base).RepeatContact(context.Background(), tenant, token).Do(); err != nil {
		b.Fatal(err)
	}
	b.Run("prepared", func(b *testing.B) {
		hc, done := newHC()
		defer done()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer cst_x")
		b.ReportAllocs()
		for b.Loop() {
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
	})
	b.Run("repeat", func(b *testing.B) {
		hc, done := newHC()
		defer done()
		get := client.New(base, client.WithKey("cst_x"), client.WithHTTPClient(hc), client.WithRetries(0, 0)).RepeatContact(context.Background(), tenant, token)
		b.ReportAllocs()
		for b.Loop() {
			if err := get.Do(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("typed", func(b *testing.B) {
		hc, done := newHC()
		defer done()
		c := client.New(base, client.WithKey("cst_x"), client.WithHTTPClient(hc), client.WithRetries(0, 0))
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Contact(ctx, tenant, token); err != nil {
				b.Fatal(err)
			}
		}
	})
}
