package custos_test

import (
	"testing"
	"unicode/utf8"

	"github.com/custos-dev/custos"
)

// TestCheckReasonRefusesJunk (issue 20): reasons that say nothing are
// refused with reason_insufficient; real ones, in any script, pass.
func TestCheckReasonRefusesJunk(t *testing.T) {
	for _, junk := range []string{
		".", "x", "\u200b", "😀", "   \t\n", "x x", "ok ok", "aaaaaaaa bbbbbbbb", "\u200bx\u200by\u200b",
		"1234 5678 9012", "!!!! ????", "😀😀😀 🙏🙏🙏", "fix", "\u200d\u2060\ufeff\u00ad", "asdfghjkl",
		"x\u200b.\u200by\u200b.\u200bz",
	} {
		if err := custos.CheckReason(junk); custos.ErrorCode(err) != custos.EREASON {
			t.Errorf("CheckReason(%q) = %v, want %s", junk, err, custos.EREASON)
		}
	}
	if err := custos.CheckReason(""); custos.ErrorCode(err) != custos.EINVALID {
		t.Errorf("empty reason: %v, want invalid", err)
	}
	for _, ok := range []string{
		"customer asked about a bounce", "ticket SUP-4411: unsubscribe not applied",
		"Kunde fragt nach Löschung", "顧客からの問い合わせ対応", "запрос клиента по рассылке",
		"cliente pidió revisión", "e\u0301te\u0301 verification", // combining accents
	} {
		if err := custos.CheckReason(ok); err != nil {
			t.Errorf("CheckReason(%q) = %v, want accepted", ok, err)
		}
	}
	if custos.ReasonKey("Customer  asked\u200b about") != custos.ReasonKey("customer asked about") {
		t.Error("ReasonKey keeps case, spacing or invisible characters")
	}
}

// FuzzCheckReason: any input is refused or accepted without panicking;
// an accepted reason has, after cleaning, at least the minimum letters,
// no format characters, and cleaning is idempotent.
func FuzzCheckReason(f *testing.F) {
	for _, s := range []string{".", "x", "\u200b", "😀", "customer asked about a bounce", "顧客からの問い合わせ", "e\u0301\u0301\u0301", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := custos.CheckReason(s)
		c := custos.CleanReason(s)
		if custos.CleanReason(c) != c {
			t.Fatalf("CleanReason not idempotent on %q", s)
		}
		if err != nil {
			if code := custos.ErrorCode(err); code != custos.EREASON && code != custos.EINVALID {
				t.Fatalf("CheckReason(%q) code %s", s, code)
			}
			return
		}
		if !utf8.ValidString(s) {
			t.Fatalf("accepted invalid UTF-8 %q", s)
		}
		if utf8.RuneCountInString(c) < custos.ReasonMinLetters {
			t.Fatalf("accepted %q: cleaned %q is shorter than the minimum", s, c)
		}
	})
}
