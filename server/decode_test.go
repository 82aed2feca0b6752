package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
)

// FuzzDecodeStrict feeds arbitrary bodies to the request decoder: it must
// never panic, must fail with a domain error code (never an internal one),
// and its message must never echo the body.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@b.test"}`, `{"email":1}`, `{"email":"a@b.test"} {}`, `[]`, `null`, ``, `{`,
		`{"email":"a@b.test","attributes":{"x":[1,2,{"y":null}]},"consent":"subscribed"}`,
		`{"unknown":"secret.value@x.test"}`, "\xff\xfe", `{"email":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v struct {
			Email      string          `json:"email"`
			Attributes json.RawMessage `json:"attributes"`
			Consent    string          `json:"consent"`
		}
		err := decodeStrict(bytes.NewReader(body), &v)
		if err == nil {
			if !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			return
		}
		code := custos.ErrorCode(err)
		if code != custos.EINVALID && code != custos.ETOOLARGE {
			t.Fatalf("decode error code %q for %q", code, body)
		}
		msg := custos.ErrorMessage(err)
		for _, field := range strings.FieldsFunc(string(body), func(r rune) bool { return r == '"' || r == ':' || r == ',' || r == '{' || r == '}' }) {
			if len(field) >= 8 && strings.Contains(msg, field) {
				t.Fatalf("error message %q echoes input %q", msg, field)
			}
		}
	})
}

func TestParseTilePath(t *testing.T) {
	for _, tc := range []struct {
		path    string
		entries bool
		ok      bool
		l       int
		n       int64
		w       int
	}{
		{"0/000", false, true, 0, 0, 256},
		{"0/000.p/7", false, true, 0, 0, 7},
		{"1/x001/234", false, true, 1, 1234, 256},
		{"x001/234.p/9", true, true, -1, 1234, 9},
		{"0/1", false, false, 0, 0, 0},
		{"0/000.p/256", false, false, 0, 0, 0},
		{"0//000", false, false, 0, 0, 0},
		{"../../etc", false, false, 0, 0, 0},
	} {
		tile, err := parseTilePath(tc.path, tc.entries)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok=%v", tc.path, err, tc.ok)
			continue
		}
		if tc.ok && (tile.L != tc.l || tile.N != tc.n || tile.W != tc.w) {
			t.Errorf("%q: got L=%d N=%d W=%d", tc.path, tile.L, tile.N, tile.W)
		}
	}
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"0/000", "1/x001/234.p/7", "x001/234", "", "0/000.p/0"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, p string, entries bool) {
		tile, err := parseTilePath(p, entries)
		if err != nil {
			return
		}
		if tile.W < 1 || tile.W > 256 || tile.N < 0 {
			t.Fatalf("%q parsed to out-of-range tile %+v", p, tile)
		}
	})
}
