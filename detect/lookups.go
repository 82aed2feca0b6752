package detect

import (
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// lookupAction is an exact lookup by address; its leaf says hit (ok, the
// contact's token) or miss (rejected, not_found), never the address.
const lookupAction = string(custos.ActionContactLookup)

// lookupSpan is the rolling window of lookup_n and lookup_misses, kept
// in one-minute buckets.
const lookupSpan = time.Hour

// enrichLookup fills a lookup's lookup_n and lookup_misses: the person's
// (principal's, for one without a verified identity) exact lookups and
// misses within the previous hour, this one included, whichever of their
// principals made them. Refused lookups (no scope, another tenant) are
// neither: they answer nothing about membership.
func (s *State) enrichLookup(e *Event) {
	l := &e.Leaf
	miss := l.Outcome == audit.OutcomeRejected && l.Code == custos.ENOTFOUND
	if l.Action != lookupAction || (l.Outcome != audit.OutcomeOK && !miss) {
		return
	}
	if s.Lookups == nil {
		s.Lookups = map[string][][3]int64{}
	}
	now := l.Time.UnixMilli()
	minute := now - now%time.Minute.Milliseconds()
	person := e.person()
	hist := s.Lookups[person]
	kept := hist[:0]
	for _, b := range hist {
		if minute-b[0] < lookupSpan.Milliseconds() {
			kept = append(kept, b)
		}
	}
	if n := len(kept); n == 0 || kept[n-1][0] != minute {
		kept = append(kept, [3]int64{minute, 0, 0})
	}
	kept[len(kept)-1][1]++
	if miss {
		kept[len(kept)-1][2]++
	}
	for _, b := range kept {
		e.LookupN += int(b[1])
		e.LookupMisses += int(b[2])
	}
	s.Lookups[person] = kept
	s.enrichGuesses(e, person, miss)
}

// lookupGuess is one recent lookup's shape, as its leaf's detail gives it
// (the vault's "shape CLASS s:… l:… d:…"): short keyed digests, never the
// address.
type lookupGuess struct {
	T    int64  `json:"t"`           // ms
	Dict bool   `json:"k,omitempty"` // a role mailbox or a lone first name
	Miss bool   `json:"m,omitempty"`
	Stem string `json:"s,omitempty"` // numbered stem at its domain, if any
	Loc  string `json:"l"`
	Dom  string `json:"d"`
}

// maxGuesses bounds the shapes remembered per person (the most recent
// within lookupSpan): the state is saved every second.
const maxGuesses = 256

// parseGuess reads a lookup leaf's shape; ok is false for a leaf written
// before shapes were recorded.
func parseGuess(detail string) (g lookupGuess, ok bool) {
	f := strings.Fields(detail)
	if len(f) < 2 || f[0] != "shape" {
		return g, false
	}
	g.Dict = f[1] == "role" || f[1] == "name"
	for _, x := range f[2:] {
		switch {
		case strings.HasPrefix(x, "s:"):
			g.Stem = x[2:]
		case strings.HasPrefix(x, "l:"):
			g.Loc = x[2:]
		case strings.HasPrefix(x, "d:"):
			g.Dom = x[2:]
		}
	}
	return g, g.Loc != "" && g.Dom != ""
}

// enrichGuesses fills a lookup's pattern fields from the person's
// lookups of the last hour, this one included: lookup_seq (distinct local
// parts sharing its numbered stem at its domain), lookup_spread (distinct
// domains its local part was tried at; 0 for a role mailbox or first name,
// which lookup_dict counts: info@ at many domains is a B2B list's
// ordinary content), lookup_dict, lookup_dict_misses
// and lookup_dict_domains (role mailboxes and lone first names: how many,
// how many missed, at how many distinct domains).
func (s *State) enrichGuesses(e *Event, person string, miss bool) {
	g, ok := parseGuess(e.Leaf.Detail)
	if !ok {
		return
	}
	g.T, g.Miss = e.Leaf.Time.UnixMilli(), miss
	if s.Guesses == nil {
		s.Guesses = map[string][]lookupGuess{}
	}
	hist := s.Guesses[person]
	kept := hist[:0]
	for _, x := range hist {
		if g.T-x.T < lookupSpan.Milliseconds() {
			kept = append(kept, x)
		}
	}
	if len(kept) >= maxGuesses {
		kept = append(kept[:0], kept[len(kept)-maxGuesses+1:]...)
	}
	kept = append(kept, g)
	s.Guesses[person] = kept
	locals, domains, dictDomains := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, x := range kept {
		if g.Stem != "" && x.Stem == g.Stem {
			locals[x.Loc] = true
		}
		if !g.Dict && x.Loc == g.Loc {
			domains[x.Dom] = true
		}
		if x.Dict {
			e.LookupDict++
			dictDomains[x.Dom] = true
			if x.Miss {
				e.LookupDictMisses++
			}
		}
	}
	e.LookupSeq, e.LookupSpread, e.LookupDictDomains = len(locals), len(domains), len(dictDomains)
}
