package custos

import (
	"strings"
	"unicode"
)

// EREASON refuses a reveal whose free-text reason says nothing: too few
// real words ([CheckReason]).
const EREASON = "reason_insufficient"

// Reason minimums: a reveal's reason must hold at least ReasonMinWords
// words and ReasonMinLetters letters.
const (
	ReasonMinWords   = 2
	ReasonMinLetters = 8
)

// noSpaceScript reports whether r belongs to a script written without
// spaces between words; there two letters count as a word.
func noSpaceScript(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar)
}

// CleanReason returns reason with format characters (Unicode category
// Cf: zero-width spaces and joiners, direction marks, soft hyphens)
// removed, runs of white space made one space, and the ends trimmed: the
// text a reader sees.
func CleanReason(reason string) string {
	var b strings.Builder
	space := false
	for _, r := range reason {
		switch {
		case unicode.Is(unicode.Cf, r):
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// CheckReason refuses, with [EREASON], a reveal's reason that says
// nothing: ".", "x", a zero-width space, an emoji, white space, one word
// or a letter repeated. It counts words — runs of letters (with their
// combining marks) holding at least two different letters; in scripts
// written without spaces, every two letters — and letters, after
// [CleanReason]. It says what is missing, never what was sent.
func CheckReason(reason string) error {
	if !ValidReason(reason) {
		return Errorf(EINVALID, "reason must be 1 to 1000 characters")
	}
	words, letters := 0, 0
	var run []rune
	flush := func() {
		if len(run) >= 2 {
			for _, r := range run[1:] {
				if unicode.ToLower(r) != unicode.ToLower(run[0]) {
					words++
					break
				}
			}
		}
		run = run[:0]
	}
	cjk := 0
	for _, r := range CleanReason(reason) {
		switch {
		case unicode.IsLetter(r) && noSpaceScript(r):
			flush()
			letters++
			cjk++
		case unicode.IsLetter(r):
			letters++
			run = append(run, r)
		case unicode.Is(unicode.M, r) && len(run) > 0:
			// a combining mark belongs to its letter
		default:
			flush()
		}
	}
	flush()
	words += cjk / 2
	if words < ReasonMinWords || letters < ReasonMinLetters {
		return Errorf(EREASON, "reason must say why in words: at least %d words and %d letters (emoji, punctuation, digits and invisible characters do not count)", ReasonMinWords, ReasonMinLetters)
	}
	return nil
}

// ReasonKey is the form of a reason compared for reuse: cleaned and
// lower-cased, so that case, spacing and invisible characters do not
// make one reason two.
func ReasonKey(reason string) string { return strings.ToLower(CleanReason(reason)) }
