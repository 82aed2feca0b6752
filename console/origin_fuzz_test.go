package console_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/custos-dev/custos/console"
)

// FuzzSameOrigin: whatever Origin and Sec-Fetch-Site a request carries,
// a post is admitted only if the browser did not call it cross-site or
// same-site and its Origin, when present, names this very host (over
// https, or http on a plaintext connection).
func FuzzSameOrigin(f *testing.F) {
	for _, s := range [][2]string{
		{"", ""}, {"http://127.0.0.1:8080", "same-origin"}, {"https://evil.test", "cross-site"},
		{"null", "same-origin"}, {"http://127.0.0.1:8080.evil.test", ""}, {"http://user@127.0.0.1:8080", "none"},
		{"javascript:alert(1)", ""}, {"http://127.0.0.1:8080/", "same-site"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, origin, site string) {
		r, err := http.NewRequest("POST", "http://127.0.0.1:8080/ui/signin", nil)
		if err != nil {
			t.Fatal(err)
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if site != "" {
			r.Header.Set("Sec-Fetch-Site", site)
		}
		if !console.SameOrigin(r) {
			return
		}
		switch r.Header.Get("Sec-Fetch-Site") {
		case "", "same-origin", "none":
		default:
			t.Fatalf("admitted Sec-Fetch-Site %q", site)
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || u.Host != "127.0.0.1:8080" || (u.Scheme != "http" && u.Scheme != "https") {
				t.Fatalf("admitted Origin %q", o)
			}
		}
	})
}
