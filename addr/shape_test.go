package addr

import "testing"

func TestShapeOf(t *testing.T) {
	for _, tc := range []struct {
		in                 string
		class, stem, local string
	}{
		{"info@acme.example", ShapeRole, "", "info"},
		{"No-Reply@acme.example", ShapeRole, "", "no-reply"},
		{"sales+eu@acme.example", ShapeRole, "", "sales+eu"},
		{"John@acme.example", ShapeName, "", "john"},
		{"john.smith@acme.example", ShapeOther, "", "john.smith"},
		{"a1@x.example", ShapeOther, "a#", "a1"},
		{"a27@x.example", ShapeOther, "a#", "a27"},
		{"user12b3@x.example", ShapeOther, "user#b#", "user12b3"},
		{"x7k2@x.example", ShapeOther, "x#k#", "x7k2"},
	} {
		s := ShapeOf(tc.in)
		if s.Class != tc.class || s.Stem != tc.stem || s.Local != tc.local {
			t.Errorf("ShapeOf(%q) = %+v, want class %s stem %q local %q", tc.in, s, tc.class, tc.stem, tc.local)
		}
	}
	if s := ShapeOf("a1@X.example"); s.Domain != "X.example" {
		t.Errorf("domain %q: ShapeOf takes a normalised address and keeps its domain", s.Domain)
	}
}
