package vault

import "testing"

// FuzzKeysetCursor: a key inventory cursor (the caller's ?after=) either
// is refused or reads back as itself, so a page never resumes elsewhere
// than the cursor says.
func FuzzKeysetCursor(f *testing.F) {
	for _, s := range []string{"", "tenant/tn_a", "list/tn_a/ls_b", "system/blind-index", "list/tn_a", "list//x", "bogus", "tenant/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseKeysetCursor(s)
		if err != nil || s == "" {
			return
		}
		if c.rank < 1 || c.rank > 3 || c.a == "" || (c.rank == 2) != (c.b != "") {
			t.Fatalf("%q read as %+v", s, c)
		}
		if got := c.String(); got != s {
			t.Fatalf("%q read back as %q", s, got)
		}
	})
}
