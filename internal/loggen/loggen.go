// Package loggen fills an audit log with many realistic entries, fast,
// for benchmarks and scale tests (a 10M-entry log for the blast-radius
// goal of issue 16, the witness and log scale tests of issue 17).
//
// The entries go through the audit package's own write path —
// [audit.Log.AppendAll] in large batches, so each is salted, committed
// to, sequenced (tenant and actor sequence numbers), indexed (key,
// source) and hashed into the tiles exactly as in production — and the
// result passes [audit.Verify]. What makes it fast is only the batching:
// thousands of entries per call, the next batch made while the last
// commits, so the sequencer commits full batches back to back. Open the
// log with a large Config.MaxBatch (4096) for the best rate.
//
// The entries look like a vendor's traffic: Spec.Tenants tenants with
// their lists and contact tokens; Spec.Principals principals of every
// kind (tenant admins, editors and services of one tenant each, support
// and security staff, operators), each with its own key and a source
// address in its own network; actions weighted as a mail platform's are
// (reads, sends, list pages, writes, lookups, a few exports, support
// views and reveals, refusals, system entries). One principal, the
// subject, can be planted with an exact number of entries spread evenly
// over the log, for a blast-radius report to find. Nothing personal is
// generated: ids and tokens only, as in every real entry.
package loggen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// Spec describes a log to generate.
type Spec struct {
	Entries int // entries to append
	Tenants int // default 40
	// TenantIDs, if set, are the tenants' ids (Tenants is their number):
	// entries of a deployment's real tenant, for its pages at scale.
	TenantIDs  []string
	Principals int // default 400, besides the subject
	// Subject, if set, is a principal id ("pr_…") with exactly
	// SubjectEntries entries, spread evenly; SubjectKey and SubjectSource
	// are its key id and source address (default: generated).
	Subject        string
	SubjectEntries int
	SubjectKey     string
	SubjectSource  string
	// SubjectKind is the subject's kind (default staff_support: the seed
	// incident's insider), which decides its actions.
	SubjectKind custos.Kind
	Seed        uint64        // the choices' seed (the ids are random)
	Start       time.Time     // the first entry's time (default 2026-01-01 UTC)
	Step        time.Duration // time between entries (default 50ms)
	Batch       int           // entries per AppendAll (default 4096)
	// Progress, if set, hears the entries appended so far after each
	// batch.
	Progress func(done int)
}

type principal struct {
	id, key, person, source string
	kind                    custos.Kind
	tenant                  int // the tenant of a tenant principal; -1 for staff
}

type tenant struct {
	id     string
	lists  []string
	tokens []string
}

// Generator makes the entries of a Spec, in order.
type Generator struct {
	spec       Spec
	rng        *rand.Rand
	tenants    []tenant
	principals []principal
	subject    principal
	messages   int
}

// New returns the generator of spec's entries.
func New(spec Spec) *Generator {
	if len(spec.TenantIDs) > 0 {
		spec.Tenants = len(spec.TenantIDs)
	}
	if spec.Tenants <= 0 {
		spec.Tenants = 40
	}
	if spec.Principals <= 0 {
		spec.Principals = 400
	}
	if spec.Start.IsZero() {
		spec.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if spec.Step <= 0 {
		spec.Step = 50 * time.Millisecond
	}
	if spec.Batch <= 0 {
		spec.Batch = 4096
	}
	if spec.SubjectKind == "" {
		spec.SubjectKind = custos.KindStaffSupport
	}
	g := &Generator{spec: spec, rng: rand.New(rand.NewPCG(spec.Seed, 0x6c6f6767656e))}
	at := spec.Start
	for i := range spec.Tenants {
		t := tenant{id: custos.NewIDAt(custos.PrefixTenant, at)}
		if len(spec.TenantIDs) > 0 {
			t.id = spec.TenantIDs[i]
		}
		for range 1 + i%4 {
			t.lists = append(t.lists, custos.NewIDAt(custos.PrefixList, at))
		}
		for range 500 {
			t.tokens = append(t.tokens, custos.NewIDAt(custos.PrefixContact, at))
		}
		g.tenants = append(g.tenants, t)
	}
	kinds := []custos.Kind{custos.KindTenantAdmin, custos.KindTenantEditor, custos.KindService, custos.KindService, custos.KindTenantEditor,
		custos.KindStaffSupport, custos.KindStaffSecurity, custos.KindOperator}
	for i := range spec.Principals {
		p := g.newPrincipal(kinds[i%len(kinds)], i%spec.Tenants, i)
		g.principals = append(g.principals, p)
	}
	if spec.Subject != "" {
		g.subject = g.newPrincipal(spec.SubjectKind, 0, spec.Principals)
		g.subject.id = spec.Subject
		if spec.SubjectKey != "" {
			g.subject.key = spec.SubjectKey
		}
		if spec.SubjectSource != "" {
			g.subject.source = spec.SubjectSource
		}
	}
	return g
}

func (g *Generator) newPrincipal(kind custos.Kind, tn, n int) principal {
	at := g.spec.Start
	p := principal{id: custos.NewIDAt(custos.PrefixPrincipal, at), key: custos.NewIDAt(custos.PrefixKey, at),
		person: custos.NewIDAt("pp", at), kind: kind, tenant: -1}
	if kind.TenantBound() {
		p.tenant = tn
	}
	// Each principal in its own /24 of 10.0.0.0/8: a source network names
	// a few principals, as an office or a cluster would.
	p.source = netip.AddrFrom4([4]byte{10, byte(n >> 8), byte(n), byte(1 + n%200)}).String()
	return p
}

// Subject returns the subject's key id and source address (generated
// unless the Spec named them).
func (g *Generator) Subject() (key, source string) { return g.subject.key, g.subject.source }

// Tenants returns the generated tenants' ids.
func (g *Generator) Tenants() []string {
	out := make([]string, len(g.tenants))
	for i, t := range g.tenants {
		out[i] = t.id
	}
	return out
}

// isSubject reports whether entry i is one of the subject's: exactly
// SubjectEntries of the Entries, evenly spread.
func (g *Generator) isSubject(i int) bool {
	s := g.spec
	if s.Subject == "" || s.SubjectEntries <= 0 || s.Entries <= 0 {
		return false
	}
	k, n := int64(s.SubjectEntries), int64(s.Entries)
	return (int64(i)+1)*k/n != int64(i)*k/n
}

// Leaf returns entry i. Calls must come in order (the choices are one
// random stream).
func (g *Generator) Leaf(i int) audit.Leaf {
	l := audit.Leaf{Time: g.spec.Start.Add(time.Duration(i) * g.spec.Step), RequestID: custos.PrefixRequest + fmt.Sprintf("_gen%023d", i), Outcome: audit.OutcomeOK}
	var p principal
	switch {
	case g.isSubject(i):
		p = g.subject
	case g.rng.IntN(100) < 3: // the system: suppressions from bounces, canary mail, alerts
		t := &g.tenants[g.rng.IntN(len(g.tenants))]
		l.Actor, l.Tenant = "system", t.id
		l.Action, l.Tokens = string(custos.ActionSuppress), []string{t.tokens[g.rng.IntN(len(t.tokens))]}
		return l
	case g.rng.IntN(100) < 2: // an unauthenticated request
		l.Actor, l.Action, l.Source = "anonymous", string(custos.ActionAuthenticate), "203.0.113."+fmt.Sprint(g.rng.IntN(250)+1)
		l.Outcome, l.Code = audit.OutcomeDenied, custos.EUNAUTHORIZED
		return l
	default:
		p = g.principals[g.rng.IntN(len(g.principals))]
	}
	l.Actor, l.ActorKind, l.KeyID, l.Person, l.Source = p.id, string(p.kind), p.key, p.person, p.source
	tn := p.tenant
	if tn < 0 {
		tn = g.rng.IntN(len(g.tenants))
	}
	t := &g.tenants[tn]
	l.Tenant = t.id
	l.List = t.lists[g.rng.IntN(len(t.lists))]
	token := t.tokens[g.rng.IntN(len(t.tokens))]
	r := g.rng.IntN(100)
	switch p.kind {
	case custos.KindTenantAdmin, custos.KindTenantEditor:
		switch {
		case r < 45:
			l.Action, l.Tokens = string(custos.ActionContactRead), []string{token}
		case r < 65:
			l.Action, l.Count = string(custos.ActionContactList), 50
			l.Tokens = g.page(t, 5)
		case r < 80:
			l.Action, l.Tokens = string(custos.ActionContactUpdate), []string{token}
		case r < 90:
			l.Action, l.Tokens = string(custos.ActionContactCreate), []string{token}
		case r < 97:
			l.Action, l.Tokens = string(custos.ActionContactLookup), []string{token}
		case r < 99 && p.kind == custos.KindTenantAdmin:
			l.Action, l.Count = string(custos.ActionContactExport), len(t.tokens)
		default:
			l.Action, l.Tokens = string(custos.ActionContactDelete), []string{token}
		}
	case custos.KindService:
		switch {
		case r < 70:
			g.messages++
			l.Action, l.Tokens = string(custos.ActionSend), []string{token}
			l.Message = custos.PrefixMessage + fmt.Sprintf("_gen%023d", g.messages/1000)
		case r < 90:
			l.Action, l.Tokens = string(custos.ActionTokenList), g.page(t, 5)
			l.Count = 100
		default:
			l.Action, l.Tokens = string(custos.ActionContactCreate), []string{token}
		}
	case custos.KindStaffSupport:
		switch {
		case r < 60:
			l.Action, l.Count, l.Tokens = string(custos.ActionSupportView), 20, g.page(t, 3)
		case r < 85:
			l.Action, l.Tokens, l.Detail = string(custos.ActionSupportReveal), []string{token}, "reason given"
		default:
			l.Action, l.Tokens = string(custos.ActionContactRead), []string{token}
			l.Outcome, l.Code, l.Reason = audit.OutcomeDenied, custos.EFORBIDDEN, "no grant"
		}
	case custos.KindStaffSecurity:
		l.Tenant, l.List = "", ""
		l.Action = []string{string(custos.ActionAlertRead), string(custos.ActionReview), string(custos.ActionBlastRadius)}[r%3]
	default: // operators
		l.List = ""
		l.Action = []string{string(custos.ActionTenantRead), string(custos.ActionPrincipalRead), string(custos.ActionKeyRead)}[r%3]
	}
	if r%50 == 49 && l.Outcome == audit.OutcomeOK { // refusals sprinkled over every kind
		l.Outcome, l.Code = audit.OutcomeDenied, custos.EFORBIDDEN
	}
	return l
}

// page returns n of t's tokens, as a page of a list names them.
func (g *Generator) page(t *tenant, n int) []string {
	out := make([]string, n)
	start := g.rng.IntN(len(t.tokens))
	for i := range out {
		out[i] = t.tokens[(start+i)%len(t.tokens)]
	}
	return out
}

// Fill appends spec.Entries entries to l and signs a checkpoint of the
// result. It returns the generator (for the subject's key and source,
// and the tenants).
func Fill(ctx context.Context, l *audit.Log, spec Spec) (*Generator, error) {
	g := New(spec)
	batches := make(chan []audit.Entry, 2)
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	// One appender, so the log holds the entries in order; the next batch
	// is made while the last commits.
	for range 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for es := range batches {
				if _, err := l.AppendAll(ctx, es); err != nil {
					errc <- err
					return
				}
				mu.Lock()
				done += len(es)
				if g.spec.Progress != nil {
					g.spec.Progress(done)
				}
				mu.Unlock()
			}
		}()
	}
	var err error
produce:
	for start := 0; start < g.spec.Entries; start += g.spec.Batch {
		es := make([]audit.Entry, 0, min(g.spec.Batch, g.spec.Entries-start))
		for i := start; i < start+cap(es); i++ {
			es = append(es, audit.Entry{Leaf: g.Leaf(i)})
		}
		select {
		case batches <- es:
		case err = <-errc:
			break produce
		case <-ctx.Done():
			err = ctx.Err()
			break produce
		}
	}
	close(batches)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	if err != nil {
		return nil, fmt.Errorf("fill log: %w", err)
	}
	if err := l.Sync(ctx); err != nil {
		return nil, fmt.Errorf("fill log: %w", err)
	}
	if _, err := l.SignCheckpoint(ctx); err != nil {
		return nil, fmt.Errorf("fill log: %w", err)
	}
	return g, nil
}
