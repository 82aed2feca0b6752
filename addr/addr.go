// Package addr normalises and masks email addresses.
//
// [Normalize] is the contract behind custos's blind index: two addresses
// are the same contact if and only if they normalise to the same string.
// The rules:
//
//   - surrounding ASCII whitespace is trimmed;
//   - the address splits at its last '@';
//   - the local part is kept exactly as given — RFC 5321 §2.4 lets a
//     mailbox's local part be case-sensitive, so "Jane" and "jane" are two
//     contacts. It must be 1–64 bytes of printable non-space characters,
//     without quotes, and without leading, trailing or doubled dots;
//   - the domain is mapped to ASCII with IDNA (UTS #46 lookup profile, so
//     "Exämple.COM" becomes "xn--exmple-cua.com") and lower-cased; it must
//     have at least two labels of 1–63 letters, digits or hyphens, not
//     starting or ending with a hyphen, and be at most 253 bytes;
//   - the whole address is at most 254 bytes.
//
// Errors say which rule failed and never contain the address.
package addr

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/custos-dev/custos"
)

var lookup = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

func invalid(rule string) error {
	return custos.Errorf(custos.EINVALID, "invalid email address: %s", rule)
}

// Normalize returns the canonical form of an email address.
func Normalize(s string) (string, error) {
	s = strings.Trim(s, " \t\r\n")
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", invalid("missing @")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return "", err
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		return "", err
	}
	out := local + "@" + d
	if len(out) > 254 {
		return "", invalid("longer than 254 bytes")
	}
	return out, nil
}

func checkLocal(local string) error {
	switch {
	case local == "":
		return invalid("empty local part")
	case len(local) > 64:
		return invalid("local part longer than 64 bytes")
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return invalid("misplaced dot in local part")
	}
	for _, r := range local {
		switch {
		case r == 0xfffd:
			return invalid("local part is not valid UTF-8")
		case r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return invalid("space or control character in local part")
		case r == '"' || r == '@' || r == '\\' || r == '(' || r == ')' || r == '<' || r == '>' || r == ',' || r == ';' || r == ':' || r == '[' || r == ']':
			return invalid("special character in local part")
		}
	}
	return nil
}

func normalizeDomain(domain string) (string, error) {
	if domain == "" {
		return "", invalid("empty domain")
	}
	// The IDNA mapper replaces invalid UTF-8 with U+FFFD and encodes
	// that, which would give the address a canonical form it does not
	// have.
	if !utf8.ValidString(domain) {
		return "", invalid("domain is not valid UTF-8")
	}
	d, err := lookup.ToASCII(domain)
	if err != nil {
		return "", invalid("domain is not a valid internationalised name")
	}
	d = strings.ToLower(d)
	if len(d) > 253 {
		return "", invalid("domain longer than 253 bytes")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "", invalid("domain needs at least two labels")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", invalid("domain label empty or longer than 63 bytes")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", invalid("domain label starts or ends with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", invalid("domain has a character outside letters, digits and hyphens")
			}
		}
	}
	return d, nil
}

// Mask returns a staff-safe rendering of an address: the first character
// of the local part and of the domain's first label, and the domain's last
// label ("jane@gmail.com" → "j***@g***.com"). Invalid input masks to "***".
func Mask(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "***"
	}
	local, domain := []rune(s[:at]), s[at+1:]
	dot := strings.LastIndexByte(domain, '.')
	if dot <= 0 {
		return "***"
	}
	first := []rune(domain[:dot])
	return string(local[0]) + "***@" + string(first[0]) + "***" + domain[dot:]
}
