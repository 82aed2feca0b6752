package detect

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-dev/custos"
)

// Policy is what a vendor tells detection about its own deployment
// (custos.json's "detection" section): networks and keys it knows,
// exceptions to single rules, and how long a baseline is learned over.
// Rules see it through event fields (known_network, known_key); the
// engine applies exceptions itself.
//
// Changing it can silence detection, so the engine guards it: every
// exception has an owner and an expiry, stops applying (and raises an
// alert) when it expires, and never silences its owner's own person;
// each start records the policy's digest in the log, and a digest that
// differs from the last one raises an alert.
type Policy struct {
	// KnownNetworks are the vendor's own ranges, each known for some
	// kinds of actor only: the pipeline's range for services, the office's
	// for staff. A service key used from the office is not on a known
	// network.
	KnownNetworks []KnownNetwork `json:"known_networks,omitempty"`
	// KnownKeys are API keys the vendor vouches for (an integration it
	// runs); rules may use event.known_key.
	KnownKeys []KnownKey `json:"known_keys,omitempty"`
	// Exceptions silence one rule for one subject until they expire.
	Exceptions []Exception `json:"exceptions,omitempty"`
	// BaselineDays is the trailing window of the per-principal, per-tenant
	// daily volume baseline (default 14, at most 30).
	BaselineDays int `json:"baseline_days,omitempty"`

	owners map[string]string // exception owner → its person, from the database ([Policy.SetOwner])
}

// SetOwner tells the policy the person of an exception owner (looked up
// when the node starts), so that an exception never silences a principal
// of its owner's person even before the owner acts.
func (p *Policy) SetOwner(owner, person string) {
	if p.owners == nil {
		p.owners = map[string]string{}
	}
	p.owners[owner] = person
}

// KnownNetwork is a range the vendor runs, known for the kinds listed.
type KnownNetwork struct {
	CIDR  string   `json:"cidr"`
	Name  string   `json:"name"`
	Kinds []string `json:"kinds"` // principal kinds, or "staff" for both staff kinds

	prefix netip.Prefix
}

// KnownKey is an API key the vendor vouches for.
type KnownKey struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

// Exception silences one rule for the entries of one subject — a
// principal, a key, a network range or a tenant; at least one, and all
// that are set must match — until Expires. Owner is the principal
// answerable for it, never the principal it silences.
type Exception struct {
	Rule    string    `json:"rule"`
	Actor   string    `json:"actor,omitempty"`
	KeyID   string    `json:"key_id,omitempty"`
	Network string    `json:"network,omitempty"` // a CIDR
	Tenant  string    `json:"tenant,omitempty"`
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
	Reason  string    `json:"reason"`

	prefix netip.Prefix
}

// DefaultBaselineDays is the baseline window when the policy names none.
const DefaultBaselineDays = 14

// maxExceptionSpan bounds how far ahead an exception may expire: an
// exception is a decision someone revisits.
const maxExceptionSpan = 90 * 24 * time.Hour

// Validate checks the policy against the rules it applies to and
// prepares it; now bounds exceptions' expiry. Each problem names the
// field at fault (detection.exceptions[2].owner: …).
func (p *Policy) Validate(rules []*Rule, now time.Time) error {
	if p == nil {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	kinds := append(kindStrings(), "staff")
	for i := range p.KnownNetworks {
		n := &p.KnownNetworks[i]
		at := fmt.Sprintf("detection.known_networks[%d]", i)
		pfx, err := netip.ParsePrefix(n.CIDR)
		if err != nil {
			bad("%s.cidr: %q is not a CIDR such as 10.20.0.0/16", at, n.CIDR)
		}
		n.prefix = pfx.Masked()
		if strings.TrimSpace(n.Name) == "" {
			bad("%s.name is required: say whose network it is", at)
		}
		if len(n.Kinds) == 0 {
			bad("%s.kinds is required: the kinds of actor this network is known for (%s)", at, strings.Join(kinds, ", "))
		}
		for _, k := range n.Kinds {
			if !slices.Contains(kinds, k) {
				bad("%s.kinds: %q is not one of %s%s", at, k, strings.Join(kinds, ", "), didYouMean(k, kinds))
			}
		}
	}
	for i, k := range p.KnownKeys {
		at := fmt.Sprintf("detection.known_keys[%d]", i)
		if !custos.ValidID(custos.PrefixKey, k.Key) {
			bad("%s.key: %q is not a key id (%s…)", at, k.Key, custos.PrefixKey)
		}
		if strings.TrimSpace(k.Name) == "" {
			bad("%s.name is required", at)
		}
	}
	ids := make([]string, 0, len(rules))
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	for i := range p.Exceptions {
		x := &p.Exceptions[i]
		at := fmt.Sprintf("detection.exceptions[%d]", i)
		if !slices.Contains(ids, x.Rule) {
			bad("%s.rule: no rule %q in the rule set%s", at, x.Rule, didYouMean(x.Rule, ids))
		}
		if x.Actor == "" && x.KeyID == "" && x.Network == "" && x.Tenant == "" {
			bad("%s: name what it excepts (actor, key_id, network or tenant); an exception for everyone is switching the rule off", at)
		}
		if x.Actor != "" && !custos.ValidID(custos.PrefixPrincipal, x.Actor) {
			bad("%s.actor: %q is not a principal id", at, x.Actor)
		}
		if x.KeyID != "" && !custos.ValidID(custos.PrefixKey, x.KeyID) {
			bad("%s.key_id: %q is not a key id", at, x.KeyID)
		}
		if x.Tenant != "" && !custos.ValidID(custos.PrefixTenant, x.Tenant) {
			bad("%s.tenant: %q is not a tenant id", at, x.Tenant)
		}
		if x.Network != "" {
			pfx, err := netip.ParsePrefix(x.Network)
			if err != nil {
				bad("%s.network: %q is not a CIDR", at, x.Network)
			}
			x.prefix = pfx.Masked()
		}
		switch {
		case x.Owner == "":
			bad("%s.owner is required: the principal answerable for the exception", at)
		case !custos.ValidID(custos.PrefixPrincipal, x.Owner):
			bad("%s.owner: %q is not a principal id", at, x.Owner)
		case x.Owner == x.Actor:
			bad("%s.owner: an exception cannot be owned by the principal it silences", at)
		}
		switch {
		case x.Expires.IsZero():
			bad("%s.expires is required (RFC 3339, at most 90 days ahead)", at)
		case x.Expires.Sub(now) > maxExceptionSpan:
			bad("%s.expires: %s is more than 90 days ahead", at, x.Expires.Format(time.RFC3339))
		}
		if strings.TrimSpace(x.Reason) == "" {
			bad("%s.reason is required", at)
		}
	}
	if p.BaselineDays < 0 || p.BaselineDays > 30 {
		bad("detection.baseline_days must be between 1 and 30, not %d", p.BaselineDays)
	}
	return errors.Join(errs...)
}

// Digest is the hex SHA-256 of the policy's JSON and the rule set's ids,
// levels, conditions and responses: what a start records in the log, so
// a change of either is visible there.
func (p *Policy) Digest(rules []*Rule) string {
	h := sha256.New()
	b, _ := json.Marshal(p)
	h.Write(b)
	for _, r := range rules {
		fmt.Fprintf(h, "\n%s|%s|%s|%s|%s", r.ID, r.Level, r.Condition, strings.Join(r.Respond, ","), correlationText(r.Correlation))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DefaultDigest is the digest of the default pack with an empty policy:
// the configuration a deployment runs until a detection.config entry says
// otherwise. Starts with it record nothing.
var DefaultDigest = sync.OnceValue(func() string {
	rules, err := DefaultRules()
	if err != nil {
		return ""
	}
	return (&Policy{}).Digest(rules)
})

// LastDigest returns the digest of the detection configuration the
// detector last saw recorded (cursor name "default"), or [DefaultDigest]
// if none: what a start compares its own with before recording it.
func LastDigest(ctx context.Context, db *sql.DB) (string, error) {
	var state string
	err := db.QueryRowContext(ctx, `SELECT state FROM detector_state WHERE name = 'default'`).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return DefaultDigest(), nil
	} else if err != nil {
		return "", fmt.Errorf("read the detector's state: %w", err)
	}
	var st struct {
		Config string `json:"config"`
	}
	if err := json.Unmarshal([]byte(state), &st); err != nil {
		return "", fmt.Errorf("read the detector's state: %w", err)
	}
	if st.Config == "" {
		return DefaultDigest(), nil
	}
	return st.Config, nil
}

func correlationText(c *Correlation) string {
	if c == nil {
		return ""
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// BaselineDaysOrDefault is the baseline window in days.
func (p *Policy) BaselineDaysOrDefault() int { return p.baselineDays() }

// prepare parses the policy's ranges (Validate reports those that do
// not parse; they match nothing).
func (p *Policy) prepare() {
	if p == nil {
		return
	}
	for i := range p.KnownNetworks {
		if pfx, err := netip.ParsePrefix(p.KnownNetworks[i].CIDR); err == nil {
			p.KnownNetworks[i].prefix = pfx.Masked()
		}
	}
	for i := range p.Exceptions {
		if pfx, err := netip.ParsePrefix(p.Exceptions[i].Network); err == nil {
			p.Exceptions[i].prefix = pfx.Masked()
		}
	}
}

func (p *Policy) baselineDays() int {
	if p == nil || p.BaselineDays == 0 {
		return DefaultBaselineDays
	}
	return p.BaselineDays
}

// NetworksFor returns the ranges known for actors of kind (as written in
// known_networks; a range listed for "staff" counts for both staff kinds).
// The vault binds a service key created without networks to those for
// services.
func (p *Policy) NetworksFor(kind string) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, n := range p.KnownNetworks {
		if slices.ContainsFunc(n.Kinds, func(k string) bool { return k == kind || (k == "staff" && custos.Kind(kind).Staff()) }) {
			out = append(out, n.CIDR)
		}
	}
	return out
}

// knownNetwork reports whether source is in a range known for kind.
func (p *Policy) knownNetwork(source, kind string) bool {
	if p == nil || source == "" {
		return false
	}
	a, err := netip.ParseAddr(source)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, n := range p.KnownNetworks {
		if !n.prefix.IsValid() || !n.prefix.Contains(a) {
			continue
		}
		for _, k := range n.Kinds {
			if k == kind || (k == "staff" && custos.Kind(kind).Staff()) {
				return true
			}
		}
	}
	return false
}

func (p *Policy) knownKey(key string) bool {
	if p == nil || key == "" {
		return false
	}
	return slices.ContainsFunc(p.KnownKeys, func(k KnownKey) bool { return k.Key == key })
}

// matches reports whether x covers ev (every subject it names matches).
func (x *Exception) matches(ev *Event) bool {
	l := &ev.Leaf
	if x.Actor != "" && x.Actor != l.Actor {
		return false
	}
	if x.KeyID != "" && x.KeyID != l.KeyID {
		return false
	}
	if x.Tenant != "" && x.Tenant != l.Tenant {
		return false
	}
	if x.Network != "" {
		a, err := netip.ParseAddr(l.Source)
		if err != nil || !x.prefix.IsValid() || !x.prefix.Contains(a.Unmap()) {
			return false
		}
	}
	return true
}

// Built-in rules: what the engine raises about the policy itself. They
// are part of every rule set the engine runs (and of a backtest's
// summary) and cannot be excepted.
var (
	RuleExceptionExpired = &Rule{ID: "exception-expired", Level: "medium",
		Title: "A detection exception expired: the rule applies again to what it silenced"}
	RuleExceptionExpiring = &Rule{ID: "exception-expiring", Level: "low",
		Title: "A detection exception expires within a day: renew it, or the rule applies again"}
	RuleExceptionSelf = &Rule{ID: "exception-self", Level: "high",
		Title: "A detection exception would have silenced its own owner; it was not applied"}
	RuleConfigChanged = &Rule{ID: "detection-config-changed", Level: "medium",
		Title: "The detection configuration (rules, allowlists, exceptions) changed"}
)

var builtinRules = []*Rule{RuleExceptionExpired, RuleExceptionExpiring, RuleExceptionSelf, RuleConfigChanged}

// ExceptionNotice is how long before its expiry an exception is announced
// as expiring (exception-expiring, once): its owner renews it or lets the
// rule apply again, knowingly.
const ExceptionNotice = 24 * time.Hour

// ActionConfig is the system entry a start appends with the running
// detection configuration's digest (in the leaf's digest field).
const ActionConfig = "detection.config"

// exception returns the exception of the policy that covers r's match on
// ev, if any, and whether it is one that would silence its own owner (a
// principal of the owner's person): such an exception is not applied.
// An exception that expired by the entry's time does not apply.
func (en *Engine) exception(r *Rule, ev *Event) (x *Exception, self bool) {
	p := en.Policy
	if p == nil {
		return nil, false
	}
	l := &ev.Leaf
	for i := range p.Exceptions {
		x := &p.Exceptions[i]
		if x.Rule != r.ID || !l.Time.Before(x.Expires) || !x.matches(ev) {
			continue
		}
		if x.Owner == l.Actor {
			return x, true
		}
		if op := p.owners[x.Owner]; op != "" && op == l.Person {
			return x, true
		}
		if op := en.State.Owners[x.Owner]; op != "" && op == l.Person {
			return x, true
		}
		return x, false
	}
	return nil, false
}

// policyHits raises the built-in rules on ev: exceptions that expired by
// its time (once each), a change of the recorded detection configuration.
// It also remembers the person of exception owners it sees act.
func (en *Engine) policyHits(ev *Event) []Hit {
	l := &ev.Leaf
	s := en.State
	var hits []Hit
	if l.Actor == "system" && l.Action == ActionConfig && l.Digest != "" {
		prev := s.Config
		if prev == "" {
			prev = DefaultDigest() // nothing recorded: the default pack ran
		}
		if prev != l.Digest {
			hits = append(hits, en.policyHit(RuleConfigChanged, "system", ev, nil,
				fmt.Sprintf("detection configuration %s replaced %s", short(l.Digest), short(prev))))
		}
		s.Config = l.Digest
	}
	p := en.Policy
	if p == nil {
		return hits
	}
	for i := range p.Exceptions {
		x := &p.Exceptions[i]
		if x.Owner == l.Actor && l.Person != "" {
			if s.Owners == nil {
				s.Owners = map[string]string{}
			}
			s.Owners[x.Owner] = l.Person
		}
		k := fmt.Sprintf("%s|%s|%d", x.Rule, x.Owner, x.Expires.UnixMilli())
		if l.Time.Before(x.Expires) {
			if soon := "soon|" + k; !l.Time.Before(x.Expires.Add(-ExceptionNotice)) && !s.Expired[soon] {
				if s.Expired == nil {
					s.Expired = map[string]bool{}
				}
				s.Expired[soon] = true
				hits = append(hits, en.policyHit(RuleExceptionExpiring, x.Rule+","+x.Owner, ev, []string{x.Owner},
					fmt.Sprintf("exception for rule %s owned by %s expires at %s", x.Rule, x.Owner, x.Expires.UTC().Format(time.RFC3339))))
			}
			continue
		}
		if s.Expired[k] {
			continue
		}
		if s.Expired == nil {
			s.Expired = map[string]bool{}
		}
		s.Expired[k] = true
		hits = append(hits, en.policyHit(RuleExceptionExpired, x.Rule+","+x.Owner, ev, []string{x.Owner},
			fmt.Sprintf("exception for rule %s owned by %s expired at %s; the rule applies again", x.Rule, x.Owner, x.Expires.UTC().Format(time.RFC3339))))
	}
	return hits
}

// policyHit is a new alert of a built-in rule, one per group and hour,
// with ev as evidence. It contains no one: the principals it names are
// whom security asks.
func (en *Engine) policyHit(r *Rule, group string, ev *Event, principals []string, detail string) Hit {
	t := ev.Leaf.Time.UnixMilli()
	window := t - t%time.Hour.Milliseconds()
	fk := r.ID + "|" + group
	h := Hit{Rule: r, DedupKey: fmt.Sprintf("%s:%s:%d", r.ID, group, window/1000), Group: group, New: en.State.Fired[fk] != window,
		Evidence: []uint64{ev.Index}, Principals: principals, Time: ev.Leaf.Time, Detail: detail}
	en.State.Fired[fk] = window
	return h
}

func short(digest string) string { return digest[:min(12, len(digest))] }
