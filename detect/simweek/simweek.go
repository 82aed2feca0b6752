// Package simweek generates a seeded, deterministic week (or any number
// of days) of a vendor's normal work as audit events, to replay through a
// rule pack with [detect.Backtest]: how often would the pack alert on
// benign work, and would it contain anyone innocent? Attacks can be mixed
// in, to measure how long after it began each one is detected.
//
// The world: several hundred tenants, each with
//   - one pipeline service principal, one key at a time, reading tokens
//     (token.list pages) around the clock from the vendor's pipeline
//     network, at a per-tenant rate with a daily rhythm; keys are rotated
//     (key.create, then the new key) once in the period, at a random hour;
//   - one or two tenant admins working office hours in their timezone from
//     their office network (sometimes from home): masked and clear pages
//     of their lists, imports, and exports of their whole list — some lists
//     are large (up to a million rows); approving support requests;
//
// and the vendor's support desk: engineers in three 8-hour shifts from
// the vendor's office network, each working one ticket at a time (40 to
// 120 minutes on one tenant, under a grant the tenant approved): masked
// pages and, on a few tickets, one or two reveals. Three sevenths into the
// period a new engineer joins (enrolls, first reads); four sevenths in the
// pipeline moves to a new network range (both ranges are in the vendor's
// policy). Warm-up days of the same world come first, as history.
//
// Events are generated hour by hour and emitted in time order with
// increasing indexes, so a week streams in bounded memory.
package simweek

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
)

// Config shapes a generated period.
type Config struct {
	Seed    uint64
	Tenants int       // default 300
	Days    int       // default 7
	Start   time.Time // default 2026-11-02 00:00 UTC (a Monday)
	// Attacks mixes the attacks in (see [Attack]).
	Incident bool // the 2022 sweep, at [Config.IncidentHour]
	Slow     bool // one reveal every 10 minutes for a day, from [Config.SlowHour]
	// Engineers is the support desk's size (default 12, 4 per shift).
	Engineers int
	// Warmup days come before the period (default 3): the history a
	// deployment has, from which first-seen sets and baselines are
	// learned. Their events are generated and replayed, not reported.
	Warmup int
}

func (c Config) withDefaults() Config {
	if c.Tenants <= 0 {
		c.Tenants = 300
	}
	if c.Days <= 0 {
		c.Days = 7
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	}
	if c.Engineers <= 0 {
		c.Engineers = 12
	}
	if c.Warmup <= 0 {
		c.Warmup = 3
	}
	return c
}

// The vendor's networks.
const (
	PipelineOld = "10.20.0.0/24" // the pipeline until day 4
	PipelineNew = "10.30.0.0/24" // the pipeline from day 4
	Office      = "192.0.2.0/24" // the vendor's office (staff)
	attackerNet = "198.51.100."  // the insider's own machine
)

// networkChange is the hour the pipeline moves: four sevenths in
// (day 4 of a week).
func (c Config) networkChange() int { return (c.Warmup + c.Days*4/7) * 24 }

// IncidentHour is when the incident starts: 14:00 on the day before the
// last. SlowHour is when the slow variant starts: the last day's midnight.
func (c Config) IncidentHour() int {
	c = c.withDefaults()
	return (c.Warmup+max(0, c.Days-2))*24 + 14
}

// SlowHour is when the slow variant starts.
func (c Config) SlowHour() int {
	c = c.withDefaults()
	return (c.Warmup + c.Days - 1) * 24
}

// Policy returns the vendor's detection policy for this world: the two
// pipeline ranges known for services, the office known for staff.
func Policy() *detect.Policy {
	return &detect.Policy{KnownNetworks: []detect.KnownNetwork{
		{CIDR: PipelineOld, Name: "pipeline (old range)", Kinds: []string{"service"}},
		{CIDR: PipelineNew, Name: "pipeline", Kinds: []string{"service"}},
		{CIDR: Office, Name: "vendor office", Kinds: []string{"staff"}},
	}}
}

// Attack is an attack mixed into the period: who does it and when it
// starts. Its events' actors are Principals.
type Attack struct {
	Name       string
	Principals []string
	Start      time.Time
}

// Stats describes a generated period.
type Stats struct {
	Events  int // in the period (the warm-up's not counted)
	Attacks []Attack
	// Attackers are the principals of the attacks (an insider, and the
	// services whose keys it used): containing them is right.
	Attackers map[string]bool
}

type tenant struct {
	id       string
	service  string // principal
	key      string
	keyGen   int
	rotateAt int     // hour of the key rotation
	rate     float64 // token pages per hour at peak
	admins   []string
	adminKey []string
	office   string // the admin's office /24 prefix, "100.64.X."
	home     string
	tz       int // hours from UTC
	rows     int // list size
	exports  float64
}

type engineer struct {
	id, key, person string
	src             string
	shift           int // 0: 00–08, 1: 08–16, 2: 16–24
	joins           int // hour joined (0: before the period)
	ticket          string
	until           time.Time
	reveals         int
	grants          map[string]bool
}

type gen struct {
	cfg     Config
	r       *rand.Rand
	tenants []*tenant
	eng     []*engineer
	buf     []detect.Event
	next    uint64
	n       int
	stats   Stats
}

// Generate emits the period's events in time order to fn.
func Generate(cfg Config, fn func(*detect.Event) error) (Stats, error) {
	cfg = cfg.withDefaults()
	g := &gen{cfg: cfg, r: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), stats: Stats{Attackers: map[string]bool{}}}
	g.world()
	hours := (cfg.Warmup + cfg.Days) * 24
	for h := range hours {
		g.buf = g.buf[:0]
		g.hour(h)
		slices.SortStableFunc(g.buf, func(a, b detect.Event) int { return a.Leaf.Time.Compare(b.Leaf.Time) })
		for i := range g.buf {
			g.buf[i].Index = g.next
			g.next++
			if err := fn(&g.buf[i]); err != nil {
				return g.stats, err
			}
		}
		if h >= cfg.Warmup*24 {
			g.stats.Events += len(g.buf)
		}
	}
	return g.stats, nil
}

func id(prefix string, parts ...any) string {
	s := prefix
	for _, p := range parts {
		s += fmt.Sprint(p)
	}
	return s
}

func (g *gen) world() {
	for i := range g.cfg.Tenants {
		t := &tenant{id: fmt.Sprintf("tn_sim%05d", i), service: fmt.Sprintf("pr_svc%05d", i), tz: g.r.IntN(24) - 11}
		t.key = fmt.Sprintf("ky_svc%05dg0", i)
		t.rotateAt = g.cfg.Warmup*24 + g.r.IntN(g.cfg.Days*24)
		// Peak token pages per hour: most tenants small, a few heavy.
		t.rate = math.Min(120, math.Exp(g.r.NormFloat64()*0.8+2.6))
		// List sizes: log-normal around 20 000 rows, a few near a million.
		t.rows = int(math.Min(1_000_000, math.Exp(g.r.NormFloat64()*1.3+10)))
		t.exports = 0.1 + g.r.Float64()*0.4 // exports per office day
		na := 1 + g.r.IntN(2)
		for a := range na {
			t.admins = append(t.admins, fmt.Sprintf("pr_adm%05d%d", i, a))
			t.adminKey = append(t.adminKey, fmt.Sprintf("ky_adm%05d%d", i, a))
		}
		t.office = fmt.Sprintf("100.64.%d.", i%250)
		t.home = fmt.Sprintf("100.%d.%d.", 65+i/250, i%250)
		g.tenants = append(g.tenants, t)
	}
	for e := range g.cfg.Engineers {
		g.eng = append(g.eng, &engineer{id: fmt.Sprintf("pr_eng%03d", e), key: fmt.Sprintf("ky_eng%03d", e), person: fmt.Sprintf("pe_eng%03d", e),
			src: fmt.Sprintf("192.0.2.%d", 100+e), shift: e % 3, grants: map[string]bool{}})
	}
	// The new employee joins on the day shift, three sevenths in.
	g.eng = append(g.eng, &engineer{id: "pr_engnew", key: "ky_engnew", person: "pe_engnew", src: "192.0.2.99", shift: 1,
		joins: (g.cfg.Warmup+g.cfg.Days*3/7)*24 + 9, grants: map[string]bool{}})
}

// base is when generation starts: the warm-up before the period.
func (g *gen) base() time.Time { return g.cfg.Start.Add(-time.Duration(g.cfg.Warmup) * 24 * time.Hour) }

func (g *gen) at(h int, frac float64) time.Time {
	return g.base().Add(time.Duration(h)*time.Hour + time.Duration(frac*float64(time.Hour)))
}

func (g *gen) emit(l audit.Leaf) {
	if l.Outcome == "" {
		l.Outcome = audit.OutcomeOK
	}
	g.buf = append(g.buf, detect.Event{Leaf: l})
}

func (g *gen) pipelineSource(h int, i int) string {
	net := "10.20.0."
	if h >= g.cfg.networkChange() {
		net = "10.30.0."
	}
	return net + fmt.Sprint(10+i%40)
}

func (g *gen) hour(h int) {
	for i, t := range g.tenants {
		g.pipeline(h, i, t)
		g.admin(h, i, t)
	}
	g.desk(h)
	if g.cfg.Incident && h == g.cfg.IncidentHour() {
		g.incident(h)
	}
	if g.cfg.Slow && h >= g.cfg.SlowHour() && h < g.cfg.SlowHour()+24 {
		g.slow(h)
	}
}

// pipeline: token pages at the tenant's rate with a daily rhythm (busier
// in the tenant's daytime), a key rotation once in the period.
func (g *gen) pipeline(h, i int, t *tenant) {
	src := g.pipelineSource(h, i)
	if h == t.rotateAt {
		t.keyGen++
		t.key = fmt.Sprintf("ky_svc%05dg%d", i, t.keyGen)
		g.emit(audit.Leaf{Time: g.at(h, 0.001), Actor: t.service, ActorKind: "service", ActorTenant: t.id, KeyID: t.key, Person: t.service,
			Source: src, Action: "key.create", Tenant: t.id})
	}
	local := (h + t.tz + 48) % 24
	rhythm := 0.3 + 0.7*math.Max(0, math.Sin(float64(local-6)/24*2*math.Pi))
	n := g.poisson(t.rate * rhythm)
	for range n {
		rows := 500
		if g.r.IntN(4) == 0 {
			rows = 1 + g.r.IntN(500) // the last page of a sync
		}
		g.emit(audit.Leaf{Time: g.at(h, g.r.Float64()), Actor: t.service, ActorKind: "service", ActorTenant: t.id, KeyID: t.key, Person: t.service,
			Source: src, Action: "token.list", Tenant: t.id, List: "li_" + t.id[3:], Count: rows})
	}
	// Ingest: imports of new contacts, not reads.
	for range g.poisson(t.rate * rhythm / 4) {
		g.emit(audit.Leaf{Time: g.at(h, g.r.Float64()), Actor: t.service, ActorKind: "service", ActorTenant: t.id, KeyID: t.key, Person: t.service,
			Source: src, Action: "contact.import", Tenant: t.id, List: "li_" + t.id[3:], Count: 1 + g.r.IntN(200)})
	}
}

// admin: office hours in the tenant's timezone, weekdays.
func (g *gen) admin(h, i int, t *tenant) {
	local := g.base().Add(time.Duration(h+t.tz) * time.Hour)
	if local.Hour() < 9 || local.Hour() >= 18 || local.Weekday() == time.Saturday || local.Weekday() == time.Sunday {
		return
	}
	for a, adm := range t.admins {
		if g.r.Float64() < 0.5 {
			continue // not at the desk this hour
		}
		src := t.office + fmt.Sprint(20+a)
		if g.r.Float64() < 0.1 {
			src = t.home + fmt.Sprint(30+a) // working from home
		}
		leaf := func(frac float64, action string, count int) audit.Leaf {
			return audit.Leaf{Time: g.at(h, frac), Actor: adm, ActorKind: "tenant_admin", ActorTenant: t.id, KeyID: t.adminKey[a], Person: "pe_" + adm[3:],
				Source: src, Action: action, Tenant: t.id, List: "li_" + t.id[3:], Count: count}
		}
		for range g.poisson(6) {
			act := "contact.list"
			if g.r.IntN(3) == 0 {
				act = "contact.read"
			}
			g.emit(leaf(g.r.Float64(), act, 1+g.r.IntN(100)))
		}
		if g.r.Float64() < 0.15 {
			g.emit(leaf(g.r.Float64(), "contact.import", 100+g.r.IntN(20000)))
		}
		if g.r.Float64() < t.exports/9 {
			// An export of the whole list (sometimes of a segment).
			rows := t.rows
			if g.r.IntN(3) == 0 {
				rows = max(1, t.rows/(2+g.r.IntN(20)))
			}
			g.emit(leaf(g.r.Float64(), "contact.export", rows))
		}
	}
}

// desk: each engineer on shift works one ticket at a time.
func (g *gen) desk(h int) {
	for _, e := range g.eng {
		if h%24 < e.shift*8 || h%24 >= e.shift*8+8 || (e.joins > 0 && h < e.joins) {
			continue
		}
		src := e.src
		if e.joins > 0 && h == e.joins {
			g.emit(audit.Leaf{Time: g.at(h, 0.01), Actor: e.id, ActorKind: "staff_support", KeyID: e.key, Person: e.person, Source: src, Action: "principal.enroll"})
		}
		t := g.base().Add(time.Duration(h) * time.Hour)
		end := t.Add(time.Hour)
		for t.Before(end) {
			if !t.Before(e.until) || e.ticket == "" {
				g.newTicket(e, t, src)
			}
			// A masked page every 3 to 15 minutes on the ticket's tenant.
			t = t.Add(time.Duration(3+g.r.IntN(13)) * time.Minute)
			if !t.Before(end) || !t.Before(e.until) {
				continue
			}
			g.emit(audit.Leaf{Time: t, Actor: e.id, ActorKind: "staff_support", KeyID: e.key, Person: e.person, Source: src,
				Action: "support.view", Tenant: e.ticket, List: "li_" + e.ticket[3:], Count: 50})
			if e.reveals > 0 && g.r.IntN(3) == 0 {
				e.reveals--
				g.emit(audit.Leaf{Time: t.Add(time.Minute), Actor: e.id, ActorKind: "staff_support", KeyID: e.key, Person: e.person, Source: src,
					Action: "support.reveal", Tenant: e.ticket, List: "li_" + e.ticket[3:], Count: 1, Reason: "debugging"})
			}
		}
	}
}

func (g *gen) newTicket(e *engineer, t time.Time, src string) {
	tn := g.tenants[g.r.IntN(len(g.tenants))]
	e.ticket = tn.id
	// A ticket takes 40 to 120 minutes; a fifth need a reveal or two.
	e.until = t.Add(time.Duration(40+g.r.IntN(81)) * time.Minute)
	e.reveals = 0
	if g.r.IntN(5) == 0 {
		e.reveals = 1 + g.r.IntN(2)
	}
	if !e.grants[tn.id] {
		// Ask, and the tenant's admin approves within minutes.
		g.emit(audit.Leaf{Time: t, Actor: e.id, ActorKind: "staff_support", KeyID: e.key, Person: e.person, Source: src, Action: "support.request", Tenant: tn.id})
		g.emit(audit.Leaf{Time: t.Add(time.Second), Actor: tn.admins[0], ActorKind: "tenant_admin", ActorTenant: tn.id, KeyID: tn.adminKey[0], Person: "pe_" + tn.admins[0][3:],
			Source: tn.office + "20", Action: "support.decide", Tenant: tn.id})
		e.grants[tn.id] = true
	}
}

// incident: the 2022 sweep. A senior engineer, from his own machine,
// pages through six tenants' lists under grants he holds, and uses two
// leaked service keys of other tenants, within half an hour.
func (g *gen) incident(h int) {
	a := Attack{Name: "2022 incident", Principals: []string{"pr_insider"}, Start: g.at(h, 0)}
	src := attackerNet + "7"
	for k := range 6 {
		tn := g.tenants[(k*37+5)%len(g.tenants)]
		for p := range 4 {
			g.emit(audit.Leaf{Time: g.at(h, float64(k*4+p)/96), Actor: "pr_insider", ActorKind: "staff_support", KeyID: "ky_insider", Person: "pe_insider",
				Source: src, Action: "support.view", Tenant: tn.id, List: "li_" + tn.id[3:], Count: 50})
		}
	}
	for k := range 2 {
		tn := g.tenants[(k*53+11)%len(g.tenants)]
		a.Principals = append(a.Principals, tn.service)
		g.stats.Attackers[tn.service] = true // its key was leaked: suspending it is right
		for p := range 5 {
			g.emit(audit.Leaf{Time: g.at(h, 0.3+float64(k*5+p)/96), Actor: tn.service, ActorKind: "service", ActorTenant: tn.id, KeyID: tn.key, Person: tn.service,
				Source: src, Action: "token.list", Tenant: tn.id, List: "li_" + tn.id[3:], Count: 500})
		}
	}
	g.stats.Attacks = append(g.stats.Attacks, a)
	g.stats.Attackers["pr_insider"] = true
}

// slow: one reveal every 10 minutes for a day, by an engineer holding a
// grant on one tenant, from the office.
func (g *gen) slow(h int) {
	tn := g.tenants[17%len(g.tenants)]
	if h == g.cfg.SlowHour() {
		g.stats.Attacks = append(g.stats.Attacks, Attack{Name: "slow reveals", Principals: []string{"pr_slow"}, Start: g.at(h, 0)})
		g.stats.Attackers["pr_slow"] = true
	}
	for m := 0; m < 60; m += 10 {
		g.emit(audit.Leaf{Time: g.at(h, float64(m)/60), Actor: "pr_slow", ActorKind: "staff_support", KeyID: "ky_slow", Person: "pe_slow",
			Source: "192.0.2.200", Action: "support.reveal", Tenant: tn.id, List: "li_" + tn.id[3:], Count: 1, Reason: "debugging"})
	}
}

func (g *gen) poisson(mean float64) int {
	// Knuth's method; means here are small (≤ 60).
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= g.r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
