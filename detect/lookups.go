package detect

import (
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
}
