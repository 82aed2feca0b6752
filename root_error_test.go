package custos_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
)

// codes are every documented code with the value clients see in the
// error envelope: renaming one breaks clients, so the values are pinned.
var codes = map[string]string{
	custos.ECONFLICT:       "conflict",
	custos.EFORBIDDEN:      "forbidden",
	custos.EINTERNAL:       "internal",
	custos.EINVALID:        "invalid",
	custos.ENOTFOUND:       "not_found",
	custos.ETOOMANY:        "rate_limited",
	custos.ETOOLARGE:       "too_large",
	custos.EUNAUTHORIZED:   "unauthorized",
	custos.EUNAVAILABLE:    "unavailable",
	custos.EUNSUPPORTED:    "unsupported_media_type",
	custos.EGONE:           "gone",
	custos.EREASON:         "reason_insufficient",
	custos.EKEYUNAVAILABLE: "key_unavailable",
}

func TestErrorCodes(t *testing.T) {
	if len(codes) != 13 {
		t.Fatalf("%d distinct codes, want 13: two constants share a value", len(codes))
	}
	for code, want := range codes {
		if code != want {
			t.Errorf("code %q, want %q", code, want)
		}
		err := custos.Errorf(code, "thing %s is %d", "x", 3)
		if err.Code != code || err.Message != "thing x is 3" {
			t.Errorf("Errorf(%s) = %+v", code, err)
		}
		if got := custos.ErrorCode(err); got != code {
			t.Errorf("ErrorCode(Errorf(%s)) = %q", code, got)
		}
		if !strings.Contains(err.Error(), "code="+code) || !strings.Contains(err.Error(), "thing x is 3") {
			t.Errorf("Error() = %q, want the code and message", err.Error())
		}
	}
}

func TestErrorCodeAndMessage(t *testing.T) {
	domain := custos.Errorf(custos.ENOTFOUND, "list %s not found", "ls_x")
	tests := []struct {
		name     string
		err      error
		code     string
		message  string
		isDomain bool
	}{
		{"nil", nil, "", "", false},
		{"domain", domain, custos.ENOTFOUND, "list ls_x not found", true},
		{"wrapped with %w", fmt.Errorf("read list: %w", domain), custos.ENOTFOUND, "list ls_x not found", true},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", domain)), custos.ENOTFOUND, "list ls_x not found", true},
		{"joined", errors.Join(io.EOF, domain), custos.ENOTFOUND, "list ls_x not found", true},
		{"wrapped with %v loses the code", fmt.Errorf("read list: %v", domain), custos.EINTERNAL, "internal error", false},
		{"plain error", errors.New("pq: relation does not exist"), custos.EINTERNAL, "internal error", false},
		{"wrapped driver error", fmt.Errorf("insert contact: %w", io.ErrUnexpectedEOF), custos.EINTERNAL, "internal error", false},
		{"outermost domain error wins", custos.Prefixed(custos.EINVALID, "row 3", fmt.Errorf("x: %w", domain)), custos.EINVALID, "row 3: list ls_x not found", true},
		{"prefixed non-domain error", custos.Prefixed(custos.EINVALID, "row 3", errors.New("secret detail")), custos.EINVALID, "row 3: internal error", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := custos.ErrorCode(tt.err); got != tt.code {
				t.Errorf("ErrorCode = %q, want %q", got, tt.code)
			}
			if got := custos.ErrorMessage(tt.err); got != tt.message {
				t.Errorf("ErrorMessage = %q, want %q", got, tt.message)
			}
			if _, ok := errors.AsType[*custos.Error](tt.err); ok != tt.isDomain {
				t.Errorf("errors.AsType[*custos.Error] = %v, want %v", ok, tt.isDomain)
			}
			if tt.isDomain && tt.code == custos.ENOTFOUND && !errors.Is(tt.err, domain) {
				t.Errorf("errors.Is does not find the wrapped error")
			}
		})
	}
}

// TestRecordedMessage: what the audit log may keep of an error's message.
func TestRecordedMessage(t *testing.T) {
	keepIDs := func(s string) bool { return custos.ValidID(custos.PrefixList, s) }
	list := custos.NewID(custos.PrefixList)
	type label string
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"id kept", custos.Errorf(custos.ENOTFOUND, "list %s not found", list), "list " + list + " not found"},
		{"caller bytes redacted", custos.Errorf(custos.EINVALID, "field %q unknown", "jane@example.test"), `field "[redacted]" unknown`},
		{"numbers kept", custos.Errorf(custos.EINVALID, "row %d: %d bytes, %v", 7, int64(9), true), "row 7: 9 bytes, true"},
		{"duration kept", custos.Errorf(custos.EINVALID, "at most %s", time.Hour), "at most 1h0m0s"},
		{"named string type redacted", custos.Errorf(custos.EINVALID, "bad %s", label("jane")), "bad [redacted]"},
		{"named string type kept when keep says", custos.Errorf(custos.EINVALID, "bad %s", label(list)), "bad " + list},
		{"stringer redacted", custos.Errorf(custos.EINVALID, "month %v", time.March), "month [redacted]"},
		{"other values redacted", custos.Errorf(custos.EINVALID, "bad %v", []string{"jane"}), "bad [redacted]"},
		{"wrapped", fmt.Errorf("ctx: %w", custos.Errorf(custos.EINVALID, "email %s refused", "jane@example.test")), "email [redacted] refused"},
		{"prefixed keeps the redaction", custos.Prefixed(custos.EINVALID, "line 4", custos.Errorf(custos.EINVALID, "email %s", "jane@x.test")), "line 4: email [redacted]"},
		{"prefixed plain error", custos.Prefixed(custos.EINVALID, "line 4", errors.New("jane@x.test")), "line 4: [redacted]"},
		{"struct literal message redacted", &custos.Error{Code: custos.EINVALID, Message: "jane@x.test"}, custos.Redacted},
		{"struct literal message kept when keep says", &custos.Error{Code: custos.EINVALID, Message: list}, list},
		{"non-domain error", errors.New("jane@x.test"), "internal error"},
	}
	for _, tt := range tests {
		if got := custos.RecordedMessage(tt.err, keepIDs); got != tt.want {
			t.Errorf("%s: RecordedMessage = %q, want %q", tt.name, got, tt.want)
		}
	}
}
