package addr_test

import (
	"strings"
	"testing"

	"github.com/custos-dev/custos/addr"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"jane@example.com", "jane@example.com"},
		{"  Jane@Example.COM\n", "Jane@example.com"},
		{"Jane@Exämple.COM", "Jane@xn--exmple-cua.com"},
		{"jane@xn--exmple-cua.com", "jane@xn--exmple-cua.com"},
		{"first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"},
		{"üser@example.com", "üser@example.com"},
		{"a@b.c", "a@b.c"},
	} {
		got, err := addr.Normalize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "plain", "@example.com", "jane@", "jane@localhost", ".jane@example.com", "jane.@example.com",
		"ja..ne@example.com", "ja ne@example.com", `"jane"@example.com`, "jane@exa mple.com", "jane@-example.com",
		"jane@example..com", strings.Repeat("a", 65) + "@example.com", "jane@" + strings.Repeat("a", 64) + ".com",
		"jane@exam_ple.com", "ja\x00ne@example.com", "jane@example.com.", "ja\xffne@example.com",
	} {
		if got, err := addr.Normalize(in); err == nil {
			t.Errorf("Normalize(%q) = %q; want an error", in, got)
		} else if len(in) > 3 && strings.Contains(err.Error(), in) {
			t.Errorf("error %q echoes the input", err)
		}
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"jane@gmail.com":        "j***@g***.com",
		"Jane@mail.example.org": "J***@m***.org",
		"ü@xn--exmple-cua.com":  "ü***@x***.com",
		"nodomain":              "***",
		"a@b":                   "***",
	} {
		if got := addr.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"jane@example.com", "Jane@Exämple.COM", "a@b.c", "@", "x@y", "ü@ü.ü", "a@b@c.d", "0@\xa4.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := addr.Normalize(in)
		if err != nil {
			if len(in) > 3 && strings.Contains(err.Error(), in) {
				t.Fatalf("error %q echoes the input", err)
			}
			return
		}
		again, err := addr.Normalize(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q → %q, %v", in, out, again, err)
		}
		if len(out) > 254 {
			t.Fatalf("output longer than 254 bytes")
		}
		addr.Mask(out) // must not panic
		sh := addr.ShapeOf(out)
		if sh.Class != addr.ShapeRole && sh.Class != addr.ShapeName && sh.Class != addr.ShapeOther ||
			strings.ContainsAny(sh.Stem, "0123456789") || sh.Local+"@"+sh.Domain != strings.ToLower(out[:strings.LastIndexByte(out, '@')])+"@"+out[strings.LastIndexByte(out, '@')+1:] {
			t.Fatalf("ShapeOf(%q) = %+v", out, sh)
		}
	})
}
