package custos

import (
	"strings"
	"testing"
)

func TestNormalizeIdentity(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Alice@Example.COM", "alice@example.com"},
		{"  alice+ops@example.com ", "alice@example.com"},
		{"ALICE+x+y@example.com", "alice@example.com"},
		{"+tag@example.com", "+tag@example.com"}, // a local part that is only a tag stays
		{"a.b@sub.example.org", "a.b@sub.example.org"},
	} {
		got, err := NormalizeIdentity(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeIdentity(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "alice", "alice@", "@example.com", "a@b@example.com", "alice@localhost", "alice@.example.com",
		"alice@example.com.", "al ice@example.com", "alice@exa\nmple.com", "<alice@example.com>", "\"a\"@example.com", "ålice@example.com",
		strings.Repeat("a", 250) + "@example.com"} {
		if _, err := NormalizeIdentity(bad); ErrorCode(err) != EINVALID {
			t.Errorf("NormalizeIdentity(%q): %v, want EINVALID", bad, err)
		} else if strings.Contains(ErrorMessage(err), bad) && bad != "" {
			t.Errorf("NormalizeIdentity(%q) echoes its input: %v", bad, err)
		}
	}
}

func TestEnrollmentSecret(t *testing.T) {
	id := NewID(PrefixEnrollment)
	tag := make([]byte, 32)
	for i := range tag {
		tag[i] = byte(i * 7)
	}
	s := EnrollmentSecret(id, tag)
	gotID, gotTag, err := ParseEnrollmentSecret(s)
	if err != nil || gotID != id || len(gotTag) != 32 {
		t.Fatalf("ParseEnrollmentSecret(%q) = %q, %q, %v", s, gotID, gotTag, err)
	}
	for _, bad := range []string{"", s[:len(s)-1], s + "a", strings.Replace(s, "cse_", "cst_", 1), strings.Replace(s, "en_", "ak_", 1),
		s[:len(s)-1] + "1", s[:len(s)-1] + "A", "cse_" + id, "cse__" + s[len(s)-32:]} {
		if _, _, err := ParseEnrollmentSecret(bad); ErrorCode(err) != EUNAUTHORIZED {
			t.Errorf("ParseEnrollmentSecret(%q): %v, want EUNAUTHORIZED", bad, err)
		}
	}
}

// FuzzNormalizeIdentity: no input panics; an accepted one is a fixed point
// (normalising twice changes nothing) and never holds a space, a control
// character or a second '@'.
func FuzzNormalizeIdentity(f *testing.F) {
	for _, s := range []string{"Alice+x@Example.com", "a@b.c", "@", "a@b@c.d", " x@y.z ", "\x00@a.b", "é@a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeIdentity(s)
		if err != nil {
			if ErrorCode(err) != EINVALID {
				t.Fatalf("error code %s", ErrorCode(err))
			}
			return
		}
		again, err := NormalizeIdentity(got)
		if err != nil || again != got {
			t.Fatalf("not a fixed point: %q → %q → %q (%v)", s, got, again, err)
		}
		if strings.Count(got, "@") != 1 || strings.ContainsAny(got, " \t\r\n\x00") || got != strings.ToLower(got) {
			t.Fatalf("accepted %q as %q", s, got)
		}
	})
}

// FuzzParseEnrollmentSecret: no input panics, and what parses formats back
// to itself.
func FuzzParseEnrollmentSecret(f *testing.F) {
	f.Add(EnrollmentSecret(NewID(PrefixEnrollment), make([]byte, 20)))
	f.Add("cse_en_x_y")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, tag, err := ParseEnrollmentSecret(s)
		if err != nil {
			if ErrorCode(err) != EUNAUTHORIZED {
				t.Fatalf("error code %s", ErrorCode(err))
			}
			return
		}
		if "cse_"+id+"_"+tag != s {
			t.Fatalf("%q parsed as %q + %q", s, id, tag)
		}
	})
}
