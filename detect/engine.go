package detect

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// dataActions are the actions that read contact data (plaintext, masked,
// or tokens): what an exfiltration is made of.
var dataActions = []string{"contact.read", "contact.list", "contact.lookup", "contact.export", "token.list", "support.view", "support.reveal"}

// plaintextActions hand out addresses in clear.
var plaintextActions = []string{"contact.read", "contact.list", "contact.export", "support.reveal"}

// sendAction is the relay resolving one recipient to send it one message
// (invariant 14). It decrypts an address by design, yet it is in neither
// list above: the address goes to the upstream mail server, not to the
// caller, and a campaign legitimately resolves a whole list, canaries
// included (the relay never delivers to them). Counted as a read it would
// trip the bulk-read, sweep and canary rules on every campaign; sends have
// their own first-seen list, template and volume enrichment instead.
const sendAction = "contact.send"

// credentialActions give the actor a new credential: it completed an
// enrollment (set up its own key from a one-time secret) or created an
// extra key for itself.
var credentialActions = []string{"principal.enroll", "key.create"}

// Event is one log entry as rules see it: the leaf plus what the detector
// knows about it from history (enrichment).
type Event struct {
	Index uint64
	Leaf  audit.Leaf

	Network    string  // the source's /24 (IPv4) or /48 (IPv6)
	Canary     bool    // the entry names a canary contact
	FirstPair  bool    // first access by this principal to this tenant
	NewNetwork bool    // the key was used before, never from this network
	NewAction  bool    // the key never performed this data action before
	ExportMean float64 // the principal's mean export size over the previous 30 days
	ExportN    int     // how many exports that mean is over
	// CredentialAt is when the actor last got a new credential
	// (credentialActions) within the previous 30 days; zero if it did not.
	CredentialAt time.Time

	// Sends (contact.send, ok) only:
	NewList bool // the key sent before, never to this list (its first message excepted)
	// TemplateTenants is how many tenants this template digest was sent to
	// within the previous 24 hours, this entry's included; TemplateFirst
	// that this entry is the first of its tenant for the template in that
	// time. Related and RelatedTenants are the first entries of the other
	// tenants: evidence for a rule that fires on this one.
	TemplateTenants int
	TemplateFirst   bool
	Related         []uint64
	RelatedTenants  []string
	SendHour        int     // the key's ok sends in this clock hour, this one included
	SendMean        float64 // the key's mean sends per active hour over the previous 7 days
	SendN           int     // how many active hours that mean is over

	// Who is who, and what the policy knows:
	OwnTenant    bool // a tenant-bound actor (admin, editor, service) acting on its own tenant
	KnownNetwork bool // the source is in a range the policy knows for the actor's kind
	KnownKey     bool // the key is one the policy vouches for
	// StaffNetwork: a staff data read came from this network within the
	// previous hour (this entry's own included).
	StaffNetwork bool
	// NetworkStaff is how many staff people (persons) read data from
	// this network within the previous 30 days, this entry's included: an
	// office is shared, an insider's own machine is not.
	NetworkStaff int
	// The principal's daily volume from this tenant (data reads, rows):
	// today's, this entry included, and the 95th percentile and number
	// of its previous active days within the policy's baseline window.
	DayRows      int
	BaselineP95  float64
	BaselineDays int

	// UnseenNetwork: the actor (principal) or its person acted before,
	// yet neither ever from this network, enrollment included: a key used
	// somewhere its holder has never been (not set on an enrollment).
	UnseenNetwork bool
	// The person's breadth today (staff data reads, ok or refused): the
	// distinct tenants it touched this UTC day, this entry included, and
	// the most it touched on any of its previous active days within the
	// baseline window, over how many such days.
	PersonDayTenants int
	PersonTenantsMax int
	PersonDays       int
	// PeerTenants, for a person with fewer than three previous active
	// days (no baseline of its own yet): the median, over the other staff
	// persons with at least one previous active day, of the most tenants
	// each touched on one day; 0 when there are none.
	PeerTenants int
	// Exact lookups (hits and misses) and misses by the person within
	// the previous hour, this one included (lookups only).
	LookupN      int
	LookupMisses int
	// Guess patterns of the person's lookups within the previous hour
	// (lookups whose leaf records the guess's shape): distinct local
	// parts sharing this one's numbered stem at its domain; distinct
	// domains this one's local part was tried at; role mailboxes and lone
	// first names looked up, missed, and their distinct domains.
	LookupSeq         int
	LookupSpread      int
	LookupDict        int
	LookupDictMisses  int
	LookupDictDomains int
}

// ownTenant reports whether a tenant-bound actor acts on its own tenant.
// Entries from before actor_tenant was recorded fall back on what
// authorization guarantees: an allowed request of a tenant-bound
// principal is on its own tenant.
func (e *Event) ownTenant() bool {
	l := &e.Leaf
	if l.Tenant == "" || !custos.Kind(l.ActorKind).TenantBound() {
		return false
	}
	if l.ActorTenant != "" {
		return l.ActorTenant == l.Tenant
	}
	return l.Outcome == audit.OutcomeOK
}

// noCredential is credential_age when the actor got no new credential
// within the previous 30 days: longer than any timespan.
const noCredential = time.Duration(math.MaxInt64)

// credentialAge is how long before this entry the actor got its newest
// credential. Older than the baseline span counts as none, so that the
// answer does not depend on when the state was last pruned.
func (e *Event) credentialAge() time.Duration {
	if e.CredentialAt.IsZero() {
		return noCredential
	}
	age := e.Leaf.Time.Sub(e.CredentialAt)
	if age >= baselineSpan {
		return noCredential
	}
	return age
}

// person is the actor's person pseudonym: several principals of one
// identity share it. Entries without one (the system, anonymous requests,
// entries from before pseudonyms) count their actor as its own person.
func (e *Event) person() string {
	if e.Leaf.Person != "" {
		return e.Leaf.Person
	}
	return e.Leaf.Actor
}

// field returns a correlation field's value.
func (e *Event) field(name string) string {
	l := &e.Leaf
	switch name {
	case "actor":
		return l.Actor
	case "actor_kind":
		return l.ActorKind
	case "key_id":
		return l.KeyID
	case "person":
		return e.person()
	case "source":
		return l.Source
	case "network":
		return e.Network
	case "tenant":
		return l.Tenant
	case "list":
		return l.List
	case "action":
		return l.Action
	case "outcome":
		return l.Outcome
	case "code":
		return l.Code
	case "message":
		return l.Message
	case "digest":
		return l.Digest
	case "template":
		return l.Template
	}
	return ""
}

// network returns the /24 or /48 of an address, or the address itself.
func network(src string) string {
	a, err := netip.ParseAddr(src)
	if err != nil {
		return src
	}
	bits := 24
	if a.Is6() && !a.Is4In6() {
		bits = 48
	}
	p, err := a.Unmap().Prefix(bits)
	if err != nil {
		return src
	}
	return p.String()
}

// Point is one match kept in a correlation window.
type Point struct {
	T      int64  `json:"t"` // ms
	Index  uint64 `json:"i"`
	Value  string `json:"v,omitempty"`
	N      int    `json:"k,omitempty"` // value_sum: the summed field's value
	Actor  string `json:"a,omitempty"`
	Tenant string `json:"n,omitempty"`

	// seq numbers the point among all the state's points (State.Seq): the
	// detector stores each point once, as a row of its own (points.go).
	seq int64
}

// Window is one group's matches within a rule's timespan, with the
// number of matches per distinct value (and the sum of a value_sum's
// field) kept as they come and go, so neither is recomputed over the
// window on every event.
type Window struct {
	Points []Point        `json:"p"`
	Counts map[string]int `json:"c,omitempty"`
	Sum    int            `json:"s,omitempty"`

	saved int64 // the highest seq of its points stored (points.go)
}

func (w *Window) drop(n int) {
	for _, p := range w.Points[:n] {
		if p.Value != "" {
			if w.Counts[p.Value]--; w.Counts[p.Value] <= 0 {
				delete(w.Counts, p.Value)
			}
		}
		w.Sum -= p.N
	}
	w.Points = w.Points[n:]
}

// State is everything evaluation remembers; it is committed with the
// detector's cursor, so a restart resumes exactly where it stopped.
type State struct {
	Windows  map[string]*Window    `json:"windows"`  // rule|group → matches within the timespan
	Fired    map[string]int64      `json:"fired"`    // rule|group → when its current alert fired (ms)
	Pairs    map[string]bool       `json:"pairs"`    // principal|tenant seen
	Networks map[string][]string   `json:"networks"` // key → networks it was used from
	Actions  map[string][]string   `json:"actions"`  // key → data actions it performed
	Exports  map[string][][2]int64 `json:"exports"`  // principal → (time ms, count) of exports, 30 days
	Creds    map[string]int64      `json:"creds"`    // principal → when it last got a new credential (ms)
	Last     int64                 `json:"last"`     // time of the latest event evaluated (ms)

	// Daily is the volume baseline: principal|tenant → (day ms, rows) of
	// its active days within the baseline window.
	Daily map[string][][2]int64 `json:"daily,omitempty"`
	// Config is the digest of the detection configuration last recorded
	// in the log; Expired the exceptions already announced as expired;
	// Owners the person of each exception owner seen acting.
	Config  string            `json:"config,omitempty"`
	Expired map[string]bool   `json:"expired,omitempty"`
	Owners  map[string]string `json:"owners,omitempty"`
	// StaffNets is when staff last read data from each network (ms).
	StaffNets map[string]int64 `json:"staff_nets,omitempty"`
	// NetPersons is, per network, when each staff person last read data
	// from it (ms); at most maxNetPersons persons per network are kept.
	NetPersons map[string]map[string]int64 `json:"net_persons,omitempty"`
	// Seen is, per principal and per person, the networks it acted from
	// (at most maxSeenNets each).
	Seen map[string][]string `json:"seen,omitempty"`
	// PersonDays is each staff person's breadth baseline: (day ms,
	// distinct tenants) of its active days within the baseline window;
	// PersonToday the tenants of its latest day.
	PersonDays  map[string][][2]int64 `json:"person_days,omitempty"`
	PersonToday map[string][]string   `json:"person_today,omitempty"`

	// Sends through the relay (contact.send, ok).
	SendLists map[string]*SendLists   `json:"send_lists,omitempty"` // key → lists it sent to
	Sends     map[string][][2]int64   `json:"sends,omitempty"`      // key → (hour ms, sends) of its active hours, 7 days
	Templates map[string][]TemplateAt `json:"templates,omitempty"`  // template digest → first send per tenant, 24 h
	// Lookups is, per person, (minute ms, lookups, misses) of the last hour.
	Lookups map[string][][3]int64 `json:"lookups,omitempty"`
	// Guesses is, per person, the shapes of its lookups of the last hour
	// (keyed digests from the leaves, at most maxGuesses).
	Guesses map[string][]lookupGuess `json:"guesses,omitempty"`

	// Seq is the seq of the latest window point (Point.seq).
	Seq int64 `json:"seq,omitempty"`
	// Spans is, in the detector's stored state only, each window's first
	// point seq and number of points; the points themselves are rows of
	// detector_points, written once each (points.go), and Windows is then
	// left out of the stored JSON.
	Spans map[string][2]int64 `json:"spans,omitempty"`

	// Windows changed and removed since the detector last stored them.
	dirty, gone map[string]bool
}

// touch notes that window k changed since the detector stored it.
func (s *State) touch(k string) {
	if s.dirty == nil {
		s.dirty = map[string]bool{}
	}
	s.dirty[k] = true
}

// SendLists is what a send key is known to send to: the lists of its
// sends, and its first message, whose lists are all its own.
type SendLists struct {
	First string   `json:"f"`
	Lists []string `json:"l"`
}

// TemplateAt is the first send of a template digest to one tenant within
// the template span.
type TemplateAt struct {
	Tenant string `json:"n"`
	T      int64  `json:"t"` // ms
	Index  uint64 `json:"i"`
}

func newState() *State {
	return &State{Windows: map[string]*Window{}, Fired: map[string]int64{}, Pairs: map[string]bool{},
		Networks: map[string][]string{}, Actions: map[string][]string{}, Exports: map[string][][2]int64{}, Creds: map[string]int64{},
		SendLists: map[string]*SendLists{}, Sends: map[string][][2]int64{}, Templates: map[string][]TemplateAt{}}
}

// Bounds of the send enrichment's memory (the state is saved with the
// cursor every second, so it must stay small):
const (
	sendSpan        = 7 * 24 * time.Hour // the volume baseline
	templateSpan    = 24 * time.Hour     // how long a template's tenants are remembered
	maxSendLists    = 1024               // lists remembered per key
	maxTemplates    = 10_000             // templates remembered
	maxTemplateSeen = 16                 // tenants remembered per template
)

const baselineSpan = 30 * 24 * time.Hour

// maxNetPersons bounds the staff persons remembered per network: enough
// to tell a shared office from one person's machine.
const maxNetPersons = 8

// seeStaff records that person read data from network at now.
func (s *State) seeStaff(network, person string, now int64) {
	if s.NetPersons == nil {
		s.NetPersons = map[string]map[string]int64{}
	}
	ps := s.NetPersons[network]
	if ps == nil {
		ps = map[string]int64{}
		s.NetPersons[network] = ps
	}
	if _, ok := ps[person]; !ok && len(ps) >= maxNetPersons {
		// Full: the person seen longest ago makes room.
		old, oldT := "", int64(math.MaxInt64)
		for p, t := range ps {
			if t < oldT || (t == oldT && p < old) {
				old, oldT = p, t
			}
		}
		delete(ps, old)
	}
	ps[person] = now
}

// staffNetSpan is how long a network stays a staff network
// (staff_network) after a staff data read from it.
const staffNetSpan = time.Hour

// enrich fills e's history-derived fields and updates the history. It
// runs once per event, in log order, before any rule sees it.
func (s *State) enrich(e *Event, isCanary func(string) bool, p *Policy) {
	l := &e.Leaf
	e.Network = network(l.Source)
	e.OwnTenant = e.ownTenant()
	e.KnownNetwork = p.knownNetwork(l.Source, l.ActorKind)
	e.KnownKey = p.knownKey(l.KeyID)
	// Canaries count when a contact is read in clear. A masked page that
	// happens to hold one is not a read of it (every page of a small list
	// would be), nor is a token listing.
	if isCanary != nil && l.Outcome == audit.OutcomeOK && slices.Contains(plaintextActions, l.Action) {
		for _, t := range l.Tokens {
			if isCanary(t) {
				e.Canary = true
				break
			}
		}
	}
	if t, ok := s.Creds[l.Actor]; ok {
		e.CredentialAt = time.UnixMilli(t).UTC()
	}
	if custos.Kind(l.ActorKind).Staff() && l.Tenant != "" && slices.Contains(dataActions, l.Action) &&
		(l.Outcome == audit.OutcomeOK || l.Outcome == audit.OutcomeDenied) {
		s.enrichPersonDay(e, p.baselineDays())
	}
	if strings.HasPrefix(l.Actor, "pr_") {
		s.enrichLookup(e)
	}
	if l.Outcome != audit.OutcomeOK || !strings.HasPrefix(l.Actor, "pr_") {
		return
	}
	if e.Network != "" {
		s.enrichSeen(e)
	}
	if slices.Contains(credentialActions, l.Action) {
		if s.Creds == nil {
			s.Creds = map[string]int64{} // state saved before creds existed
		}
		// The actor is the principal whose credential it is: an
		// enrollment is completed by its holder, and key.create by a
		// principal is for itself (keys are enrolled by their holders).
		s.Creds[l.Actor] = l.Time.UnixMilli()
		e.CredentialAt = l.Time
	}
	if l.Tenant != "" && slices.Contains(dataActions, l.Action) {
		k := l.Actor + "|" + l.Tenant
		e.FirstPair = !s.Pairs[k]
		s.Pairs[k] = true
		if l.ActorKind == string(custos.KindService) {
			// Services only: the state is saved every second, and a
			// baseline per staff member and tenant would grow with every
			// ticket.
			s.enrichDaily(e, k, p.baselineDays())
		}
		if e.Network != "" {
			if s.StaffNets == nil {
				s.StaffNets = map[string]int64{}
			}
			now := l.Time.UnixMilli()
			if custos.Kind(l.ActorKind).Staff() {
				s.StaffNets[e.Network] = now
				s.seeStaff(e.Network, e.person(), now)
			}
			for _, t := range s.NetPersons[e.Network] {
				if now-t < baselineSpan.Milliseconds() {
					e.NetworkStaff++
				}
			}
			if t, ok := s.StaffNets[e.Network]; ok && now-t < staffNetSpan.Milliseconds() {
				e.StaffNetwork = true
			}
		}
	}
	// A key's networks start with its first use, not with its
	// enrollment: whoever sets a service up enrolls its key from their
	// own desk, and the service then runs where it runs.
	if l.KeyID != "" && e.Network != "" && l.Action != "principal.enroll" {
		seen := s.Networks[l.KeyID]
		if !slices.Contains(seen, e.Network) {
			e.NewNetwork = len(seen) > 0
			if len(seen) < 64 {
				s.Networks[l.KeyID] = append(seen, e.Network)
			}
		}
	}
	if l.KeyID != "" && slices.Contains(dataActions, l.Action) {
		seen := s.Actions[l.KeyID]
		if !slices.Contains(seen, l.Action) {
			e.NewAction = len(seen) > 0
			s.Actions[l.KeyID] = append(seen, l.Action)
		}
	}
	if l.Action == sendAction {
		s.enrichSend(e)
	}
	if l.Action == "contact.export" {
		now := l.Time.UnixMilli()
		hist := s.Exports[l.Actor]
		kept := hist[:0]
		var sum int64
		for _, x := range hist {
			if now-x[0] < baselineSpan.Milliseconds() {
				kept = append(kept, x)
				sum += x[1]
			}
		}
		if len(kept) > 0 {
			e.ExportMean, e.ExportN = float64(sum)/float64(len(kept)), len(kept)
		}
		s.Exports[l.Actor] = append(kept, [2]int64{now, int64(l.Count)})
	}
}

// maxSeenNets bounds the networks remembered per principal and person.
const maxSeenNets = 64

// enrichSeen sets UnseenNetwork and remembers the network for the actor
// and its person. Enrollment counts: whoever enrolls a key was there.
func (s *State) enrichSeen(e *Event) {
	if s.Seen == nil {
		s.Seen = map[string][]string{}
	}
	l := &e.Leaf
	ids := []string{l.Actor}
	if l.Person != "" {
		ids = append(ids, l.Person)
	}
	// Only a holder with a history can be somewhere new: a principal
	// never seen before (and without a person who was) has no networks
	// to compare with. An enrollment is not a use of a key.
	history, seen := false, false
	for _, id := range ids {
		history = history || len(s.Seen[id]) > 0
		seen = seen || slices.Contains(s.Seen[id], e.Network)
	}
	e.UnseenNetwork = history && !seen && l.Action != "principal.enroll"
	if l.Action == "principal.enroll" && l.ActorKind == string(custos.KindService) {
		// Whoever sets a service up enrolls its key from their own desk;
		// the service runs elsewhere, so its first network is its first use.
		return
	}
	for _, id := range ids {
		if seen := s.Seen[id]; !slices.Contains(seen, e.Network) && len(seen) < maxSeenNets {
			s.Seen[id] = append(seen, e.Network)
		}
	}
}

// enrichPersonDay fills the person's breadth today and its baseline (a
// staff data read, ok or refused).
func (s *State) enrichPersonDay(e *Event, days int) {
	if s.PersonDays == nil {
		s.PersonDays, s.PersonToday = map[string][][2]int64{}, map[string][]string{}
	}
	who := e.person()
	now := e.Leaf.Time.UnixMilli()
	day := now - now%(24*time.Hour).Milliseconds()
	span := int64(days) * (24 * time.Hour).Milliseconds()
	hist := s.PersonDays[who]
	kept := hist[:0]
	for _, x := range hist {
		if day-x[0] <= span {
			kept = append(kept, x)
		}
	}
	if n := len(kept); n == 0 || kept[n-1][0] != day {
		kept = append(kept, [2]int64{day, 0})
		s.PersonToday[who] = nil
	}
	today := s.PersonToday[who]
	if !slices.Contains(today, e.Leaf.Tenant) && len(today) < 1024 {
		today = append(today, e.Leaf.Tenant)
		s.PersonToday[who] = today
	}
	kept[len(kept)-1][1] = int64(len(today))
	s.PersonDays[who] = kept
	e.PersonDayTenants = len(today)
	for _, x := range kept[:len(kept)-1] {
		e.PersonTenantsMax = max(e.PersonTenantsMax, int(x[1]))
		e.PersonDays++
	}
	if e.PersonDays < minPersonDays {
		e.PeerTenants = s.peerTenants(who, day, span)
	}
}

// minPersonDays is how many previous active days make a person's own
// breadth baseline; below it, the person is judged against its peers.
const minPersonDays = 3

// peerTenants is the median, over the staff persons other than who with
// at least one active day before day within span, of their busiest such
// day's distinct tenants: what a colleague's day looks like, for a person
// with no baseline of its own (a newcomer, or a deployment's first days).
func (s *State) peerTenants(who string, day, span int64) int {
	var maxes []int
	for p, hist := range s.PersonDays {
		if p == who {
			continue
		}
		m := 0
		for _, x := range hist {
			if x[0] < day && day-x[0] <= span {
				m = max(m, int(x[1]))
			}
		}
		if m > 0 {
			maxes = append(maxes, m)
		}
	}
	if len(maxes) == 0 {
		return 0
	}
	slices.Sort(maxes)
	return maxes[(len(maxes)-1)/2]
}

// enrichDaily fills the volume baseline of a data read (principal|tenant
// k) and adds the entry's rows (at least 1) to today's.
func (s *State) enrichDaily(e *Event, k string, days int) {
	if s.Daily == nil {
		s.Daily = map[string][][2]int64{} // state saved before baselines existed
	}
	now := e.Leaf.Time.UnixMilli()
	day := now - now%(24*time.Hour).Milliseconds()
	span := int64(days) * (24 * time.Hour).Milliseconds()
	hist := s.Daily[k]
	kept := hist[:0]
	var prior []int64
	for _, x := range hist {
		if day-x[0] > span {
			continue
		}
		kept = append(kept, x)
		if x[0] != day {
			prior = append(prior, x[1])
		}
	}
	rows := int64(max(e.Leaf.Count, 1))
	if n := len(kept); n > 0 && kept[n-1][0] == day {
		kept[n-1][1] += rows
		e.DayRows = int(kept[n-1][1])
	} else {
		kept = append(kept, [2]int64{day, rows})
		e.DayRows = int(rows)
	}
	if len(prior) > 0 {
		slices.Sort(prior)
		// Nearest rank: the smallest value at or above 95% of the days.
		i := (95*len(prior)+99)/100 - 1
		e.BaselineP95, e.BaselineDays = float64(prior[max(0, i)]), len(prior)
	}
	s.Daily[k] = kept
}

// enrichSend fills a send's first-seen list, template and volume fields
// (an ok contact.send by a principal) and updates their history.
func (s *State) enrichSend(e *Event) {
	l := &e.Leaf
	now := l.Time.UnixMilli()
	if s.SendLists == nil {
		s.SendLists = map[string]*SendLists{} // state saved before sends existed
	}
	if s.Sends == nil {
		s.Sends = map[string][][2]int64{}
	}
	if s.Templates == nil {
		s.Templates = map[string][]TemplateAt{}
	}
	key := l.KeyID
	if key == "" {
		key = l.Actor
	}
	// Lists: a key's first message may span several lists, all its own;
	// after that a list it never sent to is new.
	if l.List != "" {
		sl := s.SendLists[key]
		if sl == nil {
			sl = &SendLists{First: l.Message}
			s.SendLists[key] = sl
		}
		if !slices.Contains(sl.Lists, l.List) {
			e.NewList = l.Message == "" || l.Message != sl.First
			if len(sl.Lists) < maxSendLists {
				sl.Lists = append(sl.Lists, l.List)
			}
		}
	}
	// Volume: sends per clock hour, against the key's active hours of the
	// previous 7 days.
	hour := now - now%time.Hour.Milliseconds()
	hist := s.Sends[key]
	kept := hist[:0]
	var sum int64
	for _, x := range hist {
		if now-x[0] >= sendSpan.Milliseconds() {
			continue
		}
		kept = append(kept, x)
		if x[0] != hour {
			sum += x[1]
		}
	}
	if n := len(kept); n > 0 && kept[n-1][0] == hour {
		kept[n-1][1]++
		e.SendHour = int(kept[n-1][1])
		e.SendN = n - 1
	} else if n == 0 || kept[n-1][0] < hour {
		kept = append(kept, [2]int64{hour, 1})
		e.SendHour, e.SendN = 1, n
	} else {
		// An entry earlier than the key's latest hour (clock skew
		// between nodes): count it where it belongs, without a baseline.
		e.SendHour = 1
	}
	if e.SendN > 0 {
		e.SendMean = float64(sum) / float64(e.SendN)
	}
	s.Sends[key] = kept
	// Templates: the first send of each tenant, within the span.
	if l.Template != "" && l.Tenant != "" {
		seen := slices.DeleteFunc(s.Templates[l.Template], func(x TemplateAt) bool { return now-x.T >= templateSpan.Milliseconds() })
		if !slices.ContainsFunc(seen, func(x TemplateAt) bool { return x.Tenant == l.Tenant }) {
			e.TemplateFirst = true
			for _, x := range seen {
				e.Related, e.RelatedTenants = append(e.Related, x.Index), append(e.RelatedTenants, x.Tenant)
			}
			if len(seen) < maxTemplateSeen {
				seen = append(seen, TemplateAt{Tenant: l.Tenant, T: now, Index: e.Index})
			}
			e.TemplateTenants = len(seen)
		} else {
			e.TemplateTenants = len(seen)
		}
		if _, ok := s.Templates[l.Template]; !ok && len(s.Templates) >= maxTemplates {
			s.forgetTemplates(now, true)
		}
		s.Templates[l.Template] = seen
	}
}

// forgetTemplates drops templates older than the span and, with room,
// when that is not enough for one more, the oldest quarter. Only a new
// template makes room (an event, not the clock of the saves), so replays
// decide the same. A flood of one-off templates thus blinds the
// cross-tenant rule to the templates it pushes out (the flood is itself a
// volume spike).
func (s *State) forgetTemplates(now int64, room bool) {
	newest := func(xs []TemplateAt) int64 {
		var t int64
		for _, x := range xs {
			t = max(t, x.T)
		}
		return t
	}
	for k, xs := range s.Templates {
		if now-newest(xs) >= templateSpan.Milliseconds() {
			delete(s.Templates, k)
		}
	}
	if !room || len(s.Templates) < maxTemplates {
		return
	}
	ts := make([]int64, 0, len(s.Templates))
	for _, xs := range s.Templates {
		ts = append(ts, newest(xs))
	}
	slices.Sort(ts)
	cut := ts[len(ts)/4]
	for k, xs := range s.Templates {
		if newest(xs) <= cut {
			delete(s.Templates, k)
		}
	}
}

// Hit is a rule firing (New) or more evidence for an alert that fired in
// the same window (not New).
type Hit struct {
	Rule       *Rule
	DedupKey   string // rule:group:window, stable for the alert's life
	Group      string
	New        bool
	Evidence   []uint64
	Principals []string
	Tenants    []string
	Time       time.Time
	// Detail is the matching entry's detail, for a rule without
	// correlation: vault-built identifiers (a canary mail's export,
	// exporter and evidence), quoted in the alert's message.
	Detail string
}

// Engine evaluates rules over events in log order.
type Engine struct {
	Rules []*Rule
	State *State
	// IsCanary reports whether a contact token is a canary (nil: none are).
	IsCanary func(token string) bool

	// Policy is the vendor's allowlists, exceptions and baseline window
	// (nil: none). Set it with [Engine.SetPolicy].
	Policy *Policy

	refs map[string][]*Rule // rule id → temporal rules that reference it
}

// SetPolicy makes the engine apply p (nil: none).
func (en *Engine) SetPolicy(p *Policy) {
	p.prepare()
	en.Policy = p
}

// NewEngine returns an engine over rules with fresh state.
func NewEngine(rules []*Rule) *Engine {
	// The built-in rules about the policy itself ([RuleExceptionExpired],
	// [RuleConfigChanged], …) are part of every rule set.
	for _, b := range builtinRules {
		if !slices.ContainsFunc(rules, func(r *Rule) bool { return r.ID == b.ID }) {
			rules = append(slices.Clip(rules), b)
		}
	}
	e := &Engine{Rules: rules, State: newState(), refs: map[string][]*Rule{}}
	for _, r := range rules {
		if c := r.Correlation; c != nil && c.Type == "temporal" {
			for _, ref := range c.Rules {
				e.refs[ref] = append(e.refs[ref], r)
			}
		}
	}
	return e
}

// maxEvidence bounds the evidence an alert carries from its window;
// maxWindow the matches a window keeps.
const (
	maxEvidence = 200
	maxWindow   = 10_000
)

// Evaluate runs every rule on ev and returns what fired. Entries the
// detector wrote itself are not evaluated.
func (en *Engine) Evaluate(ev *Event) ([]Hit, error) {
	if ev.Leaf.Actor == Actor {
		return nil, nil
	}
	en.State.Last = max(en.State.Last, ev.Leaf.Time.UnixMilli())
	en.State.enrich(ev, en.IsCanary, en.Policy)
	var vars map[string]any
	hits := en.policyHits(ev)
	for _, r := range en.Rules {
		if r.prg == nil {
			continue // temporal: fed by the rules it names; built-in: policyHits
		}
		if !r.admits(&ev.Leaf) {
			continue // a conjunct on a plain field is false: the condition is too
		}
		if vars == nil {
			vars = map[string]any{"event": ev.celEvent()}
		}
		out, _, err := r.prg.Eval(vars)
		if err != nil {
			// A condition that errors on this event (a missing field, the
			// cost limit) does not match; it must not stop the detector.
			continue
		}
		if b, ok := out.Value().(bool); !ok || !b {
			continue
		}
		if x, self := en.exception(r, ev); x != nil {
			if !self {
				continue // excepted: the match is not counted either
			}
			hits = append(hits, en.policyHit(RuleExceptionSelf, x.Rule+","+x.Owner, ev, []string{x.Owner},
				fmt.Sprintf("exception for rule %s owned by %s matched its owner's own person; not applied", x.Rule, x.Owner)))
		}
		if h, ok := en.matched(r, ev, ""); ok {
			hits = append(hits, h)
		}
		for _, t := range en.refs[r.ID] {
			if h, ok := en.matched(t, ev, r.ID); ok {
				hits = append(hits, h)
			}
		}
	}
	return hits, nil
}

// matched records that r's condition matched ev (for a temporal rule:
// that rule ref matched) and reports whether that makes r fire.
func (en *Engine) matched(r *Rule, ev *Event, ref string) (Hit, bool) {
	l := &ev.Leaf
	t := l.Time.UnixMilli()
	c := r.Correlation
	if c == nil {
		// Per-event: one alert per rule, actor and hour; later matches in
		// the hour add evidence to it. The system's entries (a canary
		// mail) are one actor for every tenant: they fold per tenant and
		// list, so a leak of another list is an alert of its own.
		group := l.Actor
		if l.Actor == "system" && l.Tenant != "" {
			group += "," + l.Tenant + "," + l.List
		}
		window := t - t%time.Hour.Milliseconds()
		key := fmt.Sprintf("%s:%s:%d", r.ID, group, window/1000)
		fk := r.ID + "|" + group
		h := Hit{Rule: r, DedupKey: key, Group: group, New: en.State.Fired[fk] != window,
			Evidence:   append(slices.Clone(ev.Related), ev.Index),
			Principals: principals(l.Actor), Tenants: nonEmpty(l.Tenant), Time: l.Time, Detail: l.Detail}
		if len(ev.RelatedTenants) > 0 {
			ts := map[string]bool{}
			for _, t := range append(h.Tenants, ev.RelatedTenants...) {
				ts[t] = true
			}
			h.Tenants = sortedKeys(ts)
		}
		en.State.Fired[fk] = window
		return h, true
	}
	var parts []string
	for _, g := range c.GroupBy {
		parts = append(parts, ev.field(g))
	}
	group := strings.Join(parts, ",")
	wk := r.ID + "|" + group
	w := en.State.Windows[wk]
	if w == nil {
		w = &Window{Counts: map[string]int{}}
		en.State.Windows[wk] = w
	} else if w.Counts == nil {
		w.Counts = map[string]int{}
	}
	cut := t - c.span.Milliseconds()
	i := 0
	for i < len(w.Points) && w.Points[i].T <= cut {
		i++
	}
	w.drop(i)
	val, num := "", 0
	switch c.Type {
	case "value_count":
		val = ev.field(c.Field)
	case "value_sum":
		num = max(0, l.Count)
	case "temporal":
		val = ref
	}
	en.State.Seq++
	en.State.touch(wk)
	w.Points = append(w.Points, Point{T: t, Index: ev.Index, Value: val, N: num, Actor: l.Actor, Tenant: l.Tenant, seq: en.State.Seq})
	if val != "" {
		w.Counts[val]++
	}
	w.Sum += num
	if len(w.Points) > maxWindow {
		w.drop(len(w.Points) - maxWindow)
	}
	pts := w.Points

	// An alert that fired within the timespan gathers further evidence.
	if f, ok := en.State.Fired[wk]; ok && t-f < c.span.Milliseconds() {
		return Hit{Rule: r, DedupKey: fmt.Sprintf("%s:%s:%d", r.ID, group, f/1000), Group: group, Evidence: []uint64{ev.Index},
			Principals: principals(l.Actor), Tenants: nonEmpty(l.Tenant), Time: l.Time}, true
	}
	var n int
	switch c.Type {
	case "event_count":
		n = len(pts)
	case "value_sum":
		n = w.Sum
	default:
		n = len(w.Counts)
	}
	fires := c.holds(n)
	if c.Type == "temporal" {
		fires = n == len(c.Rules)
	}
	if !fires {
		return Hit{}, false
	}
	en.State.Fired[wk] = t
	h := Hit{Rule: r, DedupKey: fmt.Sprintf("%s:%s:%d", r.ID, group, t/1000), Group: group, New: true, Time: l.Time}
	ps, ts := map[string]bool{}, map[string]bool{}
	for _, p := range pts[max(0, len(pts)-maxEvidence):] {
		h.Evidence = append(h.Evidence, p.Index)
		if strings.HasPrefix(p.Actor, "pr_") {
			ps[p.Actor] = true
		}
		if p.Tenant != "" {
			ts[p.Tenant] = true
		}
	}
	h.Principals, h.Tenants = sortedKeys(ps), sortedKeys(ts)
	return h, true
}

func principals(actor string) []string {
	if strings.HasPrefix(actor, "pr_") {
		return []string{actor}
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Actor is the audit actor of the detector's own entries.
const Actor = "detector"

// prune drops what can no longer matter: windows whose matches are all
// older than the longest timespan, and fired marks as old. It keeps the
// state committed with the cursor from growing with every group ever seen.
func (s *State) prune() {
	horizon := s.Last - (31 * 24 * time.Hour).Milliseconds()
	for k, w := range s.Windows {
		if len(w.Points) == 0 || w.Points[len(w.Points)-1].T < horizon {
			delete(s.Windows, k)
			if s.gone == nil {
				s.gone = map[string]bool{}
			}
			s.gone[k] = true
		}
	}
	for k, t := range s.Fired {
		if t < horizon {
			delete(s.Fired, k)
		}
	}
	for k, hist := range s.Sends {
		if len(hist) == 0 || hist[len(hist)-1][0] < s.Last-sendSpan.Milliseconds() {
			delete(s.Sends, k)
		}
	}
	if len(s.Templates) > 0 {
		s.forgetTemplates(s.Last, false)
	}
	for k, t := range s.StaffNets {
		if t < s.Last-staffNetSpan.Milliseconds() {
			delete(s.StaffNets, k)
		}
	}
	for n, ps := range s.NetPersons {
		for p, t := range ps {
			if t < s.Last-baselineSpan.Milliseconds() {
				delete(ps, p)
			}
		}
		if len(ps) == 0 {
			delete(s.NetPersons, n)
		}
	}
	// Lookup windows are an hour: a person idle longer has none.
	for k, hist := range s.Lookups {
		if len(hist) == 0 || hist[len(hist)-1][0] < s.Last-lookupSpan.Milliseconds() {
			delete(s.Lookups, k)
		}
	}
	for k, hist := range s.Guesses {
		if len(hist) == 0 || hist[len(hist)-1].T < s.Last-lookupSpan.Milliseconds() {
			delete(s.Guesses, k)
		}
	}
	for k, hist := range s.PersonDays {
		if len(hist) == 0 || hist[len(hist)-1][0] < s.Last-baselineSpan.Milliseconds() {
			delete(s.PersonDays, k)
			delete(s.PersonToday, k)
		}
	}
	for k, hist := range s.Daily {
		if len(hist) == 0 || hist[len(hist)-1][0] < s.Last-baselineSpan.Milliseconds() {
			delete(s.Daily, k)
		}
	}
	// credential_age treats a credential older than 30 days as none, so
	// dropping it changes no decision.
	for k, t := range s.Creds {
		if t < s.Last-baselineSpan.Milliseconds() {
			delete(s.Creds, k)
		}
	}
}
