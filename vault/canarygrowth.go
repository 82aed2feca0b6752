package vault

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// Canaries of a list grown by single creates (issue 20, migrations 0037
// and 0054). An import names no row, so the canaries it plants hide among
// its rows; a create's leaf names its contact, so a canary nobody's leaf
// named would stand out. Such a list's canaries are therefore created one
// at a time, each with an ordinary contact.create leaf of its own, at
// positions drawn over the list's growth (not all at its first create).
// Reserved tokens are planted the same way and become readers' watermark
// rows, so those are named by the log too. Every create leaf carries a
// mark: random for a real contact, a keyed tag of the token (canary key)
// for a canary, so the log stays checkable by the key's holder.
//
// Only the list's first canary rides a real create's commit (its first:
// every list carries a canary from its first contact, invariant 9). Every
// later event is queued by the real create it falls due at and planted by
// [Vault.PlantCanaries] at a moment of its own, drawn from the list's gaps
// between creates: a leaf sharing a real create's instant would tell the
// canary apart in a list whose creates are minutes apart.

// growthSpan scales where a create-grown list's canary events fall. The
// first list canary rides the list's first create; the other events'
// positions (in real creates) are drawn from F(n) = n/(n+H), H =
// growthSpan·c for c canaries a list — half of them within its first H
// creates, the rest spread over its further growth (a list that stays
// small gets fewer).
const growthSpan = 10

// maxPlantDelay bounds how long after the create it fell due at an event
// is planted, however sparse the list.
const maxPlantDelay = 24 * time.Hour

// Kinds of planned canary events.
const (
	eventCanary  = 'c' // a list canary, stored as a contact
	eventReserve = 'r' // a token reserved for a reader's watermark row
	eventUpdate  = 'u' // an update of a canary, echoing a real update (canaryupdate.go)
)

// plannedEvent is one due canary event: at the pos-th real create.
type plannedEvent struct {
	pos  int64
	kind byte
}

// drawPlan draws the positions of c list canaries and r reserved tokens
// over a list's growth, sorted.
func drawPlan(c, r int) []plannedEvent {
	h := float64(growthSpan * max(c, 1))
	out := make([]plannedEvent, 0, c+r)
	for i := range c + r {
		u := float64(randN(1<<30)) / (1 << 30)
		pos := int64(h*u/(1-u)) + 1
		kind := byte(eventCanary)
		if i == 0 {
			pos = 1
		} else if i >= c {
			kind = eventReserve
		}
		out = append(out, plannedEvent{pos, kind})
	}
	slices.SortFunc(out, func(a, b plannedEvent) int {
		if a.pos != b.pos {
			return int(a.pos - b.pos)
		}
		return int(a.kind) - int(b.kind)
	})
	return out
}

func encodePlan(p []plannedEvent) string {
	parts := make([]string, len(p))
	for i, e := range p {
		parts[i] = fmt.Sprintf("%d:%c", e.pos, e.kind)
	}
	return strings.Join(parts, " ")
}

func decodePlan(s string) []plannedEvent {
	var out []plannedEvent
	for _, f := range strings.Fields(s) {
		var e plannedEvent
		pos, kind, ok := strings.Cut(f, ":")
		if _, err := fmt.Sscan(pos, &e.pos); err != nil || !ok || len(kind) != 1 {
			continue
		}
		e.kind = kind[0]
		out = append(out, e)
	}
	return out
}

// pendingPlants is what waits for the planter in a list's plan row:
// sealed under the system key with the list's tag as associated data, so
// the database shows neither the list nor the moments.
type pendingPlants struct {
	Tenant string         `json:"t"`
	List   string         `json:"l"`
	Rider  rider          `json:"r"` // the list's last real create
	Events []pendingEvent `json:"e"`
}

// rider is who a planted canary's leaf names: the principal, key, person
// and network of the list's last real create before it.
type rider struct {
	Actor       string `json:"a"`
	ActorKind   string `json:"k,omitempty"`
	ActorTenant string `json:"t,omitempty"`
	KeyID       string `json:"i,omitempty"`
	Person      string `json:"p,omitempty"`
	Source      string `json:"s,omitempty"`
}

// leaf is a leaf of action in tenant's list naming r, with a request id
// of its own: what a planted canary create or echoed update records.
func (r rider) leaf(action custos.Action, tenant, list string) audit.Leaf {
	return audit.Leaf{RequestID: custos.NewID(custos.PrefixRequest), Actor: r.Actor, ActorKind: r.ActorKind, ActorTenant: r.ActorTenant,
		KeyID: r.KeyID, Person: r.Person, Source: r.Source, Action: string(action), Tenant: tenant, List: list, Outcome: "ok"}
}

func riderOf(l audit.Leaf) rider {
	return rider{Actor: l.Actor, ActorKind: l.ActorKind, ActorTenant: l.ActorTenant, KeyID: l.KeyID, Person: l.Person, Source: l.Source}
}

// pendingEvent is one queued event: its id (the planter claims it by id),
// kind and moment (Unix ms).
type pendingEvent struct {
	ID   string `json:"i"`
	Kind byte   `json:"k"`
	Due  int64  `json:"d"`
	// An update of a canary (eventUpdate) echoes a real update: which
	// canary, what the real one changed, and who made it.
	Token   string   `json:"t,omitempty"`
	Consent string   `json:"c,omitempty"` // the consent it set, if it changed it
	Keys    []string `json:"a,omitempty"` // attribute keys it set
	Removed []string `json:"x,omitempty"` // attribute keys it removed
	Rider   *rider   `json:"r,omitempty"`
	// Reserved: Token is a reserved token (a reader's watermark row to
	// be, or one already), not a stored canary.
	Reserved bool `json:"v,omitempty"`
}

func pendingAD(listTag string) []byte { return []byte("canary-pending/" + listTag) }

func (v *Vault) sealPending(ctx context.Context, listTag string, p *pendingPlants) (string, error) {
	if len(p.Events) == 0 {
		return "", nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	k, err := v.canaryAEAD(ctx)
	if err != nil {
		return "", err
	}
	return sealText(k, sealedSystem, string(b), pendingAD(listTag))
}

// openPending opens a plan row's pending events; "" is none. Anything
// but a value sealed for this list's tag fails (a row copied from
// another list, or written by hand).
func (v *Vault) openPending(ctx context.Context, listTag, s string) (*pendingPlants, error) {
	if s == "" {
		return &pendingPlants{}, nil
	}
	pt, err := v.openCanarySealed(ctx, s, pendingAD(listTag))
	if err != nil {
		return nil, fmt.Errorf("canary plan: %w", err)
	}
	var p pendingPlants
	if err := json.Unmarshal(pt, &p); err != nil {
		return nil, fmt.Errorf("canary plan: %w", err)
	}
	return &p, nil
}

// growth is what a create of a list must do for its canaries: advance the
// list's plan, carry its first canary (the list's first create), and
// queue the events that fall due at it for the planter.
type growth struct {
	listTag string
	exists  bool           // the plan row exists (else the create inserts it)
	plan    []plannedEvent // events still due, before this create
	due     *plannedEvent  // the event this create carries, if any
	queue   []plannedEvent // events this create queues for the planter
	lastAt  int64          // the list's last real create (ms), 0 if none
	gapMS   int64          // the mean of its gaps between creates (ms)
	pending bool           // events already wait for the planter
}

// canaryGrowth reads the list's plan before a create (outside its
// transaction). A list with no plan and no canaries yet gets a fresh one;
// a list whose canaries an import planted gets none.
func (v *Vault) canaryGrowth(ctx context.Context, list string) (*growth, error) {
	if v.canaries <= 0 {
		return nil, nil
	}
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return nil, err
	}
	g := &growth{listTag: hex.EncodeToString(k.Tag("list/" + list))}
	var creates int64
	var due, pending string
	err = v.read.QueryRowContext(ctx, `SELECT creates, due, last_at, gap_ms, pending FROM canary_plans WHERE list_tag = $1`, g.listTag).
		Scan(&creates, &due, &g.lastAt, &g.gapMS, &pending)
	switch {
	case err == nil:
		g.exists, g.plan, g.pending = true, decodePlan(due), pending != ""
	case isNoRows(err):
		var n int
		if err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM canaries WHERE list_tag = $1`, g.listTag).Scan(&n); err != nil {
			return nil, fmt.Errorf("count canaries: %w", err)
		}
		if n > 0 {
			return nil, nil // planted by an import, or the plan is done
		}
		g.plan = drawPlan(v.canaries, 2*v.canaries) // reserves for two readers
	default:
		return nil, fmt.Errorf("canary plan: %w", err)
	}
	i := 0
	if !g.exists && len(g.plan) > 0 && g.plan[0].pos == 1 {
		g.due, i = &g.plan[0], 1 // the list's first canary rides its first create
	}
	// Events due at the list's first create, beside the riding one, wait
	// for its second: their moments are drawn from the list's gaps
	// between creates, and it has none yet (drawn at once, they would
	// share the first create's instant).
	for g.exists && i < len(g.plan) && g.plan[i].pos <= creates+1 {
		g.queue = append(g.queue, g.plan[i])
		i++
	}
	if len(g.queue) > 0 || g.pending {
		// The create seals its events in the log's transaction: the key
		// must exist before (storing it is a write of its own).
		if _, err := v.canaryAEAD(ctx); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// advance counts a real create (its leaf l, at now) in the list's plan, in
// its transaction: it drops the events the create carried or queued,
// keeps the list's gaps between creates, and queues the due events, each
// at a moment drawn from those gaps, naming this create as the list's
// last. A plan with nothing left to plant or wait for is removed.
func (v *Vault) advance(ctx context.Context, tx *sql.Tx, g *growth, l audit.Leaf, tenant, list string, now time.Time) error {
	at := now.UnixMilli()
	carried := len(g.queue)
	if g.due != nil {
		carried++
	}
	rest := g.plan[carried:]
	gap := g.gapMS
	if g.lastAt > 0 && at > g.lastAt {
		if d := at - g.lastAt; gap == 0 {
			gap = d
		} else {
			gap = (7*gap + d) / 8
		}
	}
	if !g.exists {
		pending, err := v.queueEvents(ctx, g.listTag, &pendingPlants{}, g.queue, l, tenant, list, at, gap)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO canary_plans (list_tag, creates, due, last_at, gap_ms, pending) VALUES ($1, 1, $2, $3, $4, $5) ON CONFLICT (list_tag) DO NOTHING`,
			g.listTag, encodePlan(rest), at, gap, pending); err != nil {
			return fmt.Errorf("canary plan: %w", err)
		}
		return nil
	}
	// A racing create may have moved the plan (and queued its events):
	// then only count.
	res, err := tx.ExecContext(ctx, `UPDATE canary_plans SET creates = creates + 1, due = $2, last_at = $3, gap_ms = $4 WHERE list_tag = $1 AND due = $5`,
		g.listTag, encodePlan(rest), at, gap, encodePlan(g.plan))
	if err != nil {
		return fmt.Errorf("canary plan: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		g.queue = nil
		if _, err := tx.ExecContext(ctx, `UPDATE canary_plans SET creates = creates + 1, last_at = $2, gap_ms = $3 WHERE list_tag = $1`, g.listTag, at, gap); err != nil {
			return fmt.Errorf("canary plan: %w", err)
		}
	}
	if len(g.queue) == 0 && !g.pending {
		if len(rest) == 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM canary_plans WHERE list_tag = $1 AND due = '' AND pending = ''`, g.listTag)
		}
		return err
	}
	// Events wait: this create becomes the one their leaves name, and
	// this create's own events join them. Read again in the transaction:
	// the planter may have claimed some since.
	var sealed string
	if err := tx.QueryRowContext(ctx, `SELECT pending FROM canary_plans WHERE list_tag = $1`, g.listTag).Scan(&sealed); err != nil {
		return fmt.Errorf("canary plan: %w", err)
	}
	p, err := v.openPending(ctx, g.listTag, sealed)
	if err != nil {
		return err
	}
	pending, err := v.queueEvents(ctx, g.listTag, p, g.queue, l, tenant, list, at, gap)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE canary_plans SET pending = $2 WHERE list_tag = $1`, g.listTag, pending); err != nil {
		return fmt.Errorf("canary plan: %w", err)
	}
	return nil
}

// queueEvents adds events to p, each at a moment after at drawn from an
// exponential distribution whose mean is the list's mean gap between
// creates (a moment like any other create's, in a list whose creates
// come at random), names l as the list's last create, and seals p.
func (v *Vault) queueEvents(ctx context.Context, listTag string, p *pendingPlants, events []plannedEvent, l audit.Leaf, tenant, list string, at, gapMS int64) (string, error) {
	p.Tenant, p.List, p.Rider = tenant, list, riderOf(l)
	for _, e := range events {
		u := (float64(randN(1<<30)) + 1) / (1<<30 + 1) // (0, 1)
		delay := min(time.Duration(-float64(gapMS)*math.Log(u))*time.Millisecond, maxPlantDelay)
		p.Events = append(p.Events, pendingEvent{ID: custos.NewID(custos.PrefixRequest), Kind: e.kind, Due: at + delay.Milliseconds()})
	}
	return v.sealPending(ctx, listTag, p)
}

// PlantCanaries plants the queued canary events of create-grown lists
// whose moment has come, each through the create path with a
// contact.create leaf of its own naming the list's last creator, and
// returns how many it planted and the earliest moment still waiting
// (zero if none). The node's leader runs it every second. An event of a
// list deleted meanwhile is dropped with its plan.
func (v *Vault) PlantCanaries(ctx context.Context) (int, time.Time, error) {
	if v.canaries <= 0 {
		return 0, time.Time{}, nil
	}
	type row struct{ tag, sealed string }
	rows, err := queryAll(ctx, v, func(s scanner) (row, error) {
		var r row
		return r, s.Scan(&r.tag, &r.sealed)
	}, `SELECT list_tag, pending FROM canary_plans WHERE pending <> ''`)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("canary plans: %w", err)
	}
	var next int64
	planted := 0
	var errs []error
	for _, r := range rows {
		p, err := v.openPending(ctx, r.tag, r.sealed)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		held := len(p.Events) > 0 && !v.riderActive(ctx, p.Rider)
		for _, e := range p.Events {
			if e.Kind != eventUpdate && held {
				// The list's last creator was suspended or its key revoked
				// or expired since: a create in its name now would be a
				// request nobody could have made. The event waits for the
				// list's next create.
				continue
			}
			if now := v.now().UnixMilli(); e.Due > now {
				if next == 0 || e.Due < next {
					next = e.Due
				}
				continue
			}
			var gone bool
			if e.Kind == eventUpdate {
				err = v.plantUpdate(ctx, r.tag, p, e)
			} else {
				gone, err = v.plantQueued(ctx, r.tag, p, e)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if gone {
				break
			}
			planted++
		}
	}
	var at time.Time
	if next != 0 {
		at = time.UnixMilli(next)
	}
	return planted, at, errors.Join(errs...)
}

// riderActive reports whether the principal and key a planted leaf would
// name could make a request now: neither suspended, revoked nor expired.
// A rider without a key (a console session signed in through a provider)
// is judged by its principal alone.
func (v *Vault) riderActive(ctx context.Context, r rider) bool {
	var suspended int64
	if r.KeyID == "" {
		err := v.read.QueryRowContext(ctx, `SELECT suspended FROM principals WHERE id = $1`, r.Actor).Scan(&suspended)
		return err == nil && suspended == 0
	}
	var expires, revoked sql.NullInt64
	err := v.read.QueryRowContext(ctx, `SELECT p.suspended, k.expires_at, k.revoked_at FROM api_keys k JOIN principals p ON p.id = k.principal_id
		WHERE k.id = $1 AND p.id = $2`, r.KeyID, r.Actor).Scan(&suspended, &expires, &revoked)
	return err == nil && suspended == 0 && !revoked.Valid && (!expires.Valid || expires.Int64 > v.now().UnixMilli())
}

// plantQueued plants one queued event of the list p names. It reports
// gone when the list no longer exists (its plan is then removed).
func (v *Vault) plantQueued(ctx context.Context, listTag string, p *pendingPlants, e pendingEvent) (gone bool, err error) {
	if _, err := v.findList(ctx, p.Tenant, p.List); custos.ErrorCode(err) == custos.ENOTFOUND {
		_, err = v.write.ExecContext(ctx, `DELETE FROM canary_plans WHERE list_tag = $1`, listTag)
		return true, err
	} else if err != nil {
		return false, err
	}
	lk, err := v.listKeys(ctx, p.Tenant, p.List)
	if err != nil {
		return false, err
	}
	var donors []canaryDonor
	snap, err := v.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return false, err
	}
	donors, err = exportDonors(ctx, snap, lk, p.List)
	snap.Rollback()
	if err != nil {
		return false, err
	}
	l := p.Rider.leaf(custos.ActionContactCreate, p.Tenant, p.List)
	at := v.now().UTC().Truncate(time.Millisecond)
	cl, plant, err := v.canaryEntry(ctx, l, p.Tenant, p.List, at, e.Kind, listTag, donors, lk)
	if err != nil {
		return false, err
	}
	claim := func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if err := v.claimEvent(ctx, tx, listTag, e.ID); err != nil {
			return err
		}
		return plant(ctx, tx, leaf)
	}
	return false, v.record(ctx, cl, claim)
}

// claimEvent removes the waiting event id from the list's plan, in tx (the
// transaction of the entry that plants it): a second planter (another
// node that led meanwhile) finds it gone and plants nothing. A plan left
// with nothing to plant or wait for is removed.
func (v *Vault) claimEvent(ctx context.Context, tx *sql.Tx, listTag, id string) error {
	var sealed, due string
	if err := tx.QueryRowContext(ctx, `SELECT pending, due FROM canary_plans WHERE list_tag = $1`, listTag).Scan(&sealed, &due); err != nil {
		return fmt.Errorf("canary plan: %w", err)
	}
	cur, err := v.openPending(ctx, listTag, sealed)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(cur.Events, func(x pendingEvent) bool { return x.ID == id })
	if i < 0 {
		return errors.New("canary plan: event already planted")
	}
	cur.Events = slices.Delete(cur.Events, i, i+1)
	left, err := v.sealPending(ctx, listTag, cur)
	if err != nil {
		return err
	}
	if left == "" && due == "" {
		_, err = tx.ExecContext(ctx, `DELETE FROM canary_plans WHERE list_tag = $1`, listTag)
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE canary_plans SET pending = $2 WHERE list_tag = $1`, listTag, left)
	}
	if err != nil {
		return fmt.Errorf("canary plan: %w", err)
	}
	return nil
}

// canaryEntry is the entry of a canary created in list at the instant at,
// with leaf l (a real create's, or the list's last creator's): its own
// request id, token and mark, whose change plants the canary — a list
// canary, or a reserved token when the list has its canaries — shaped
// after donors and a sample of the list.
func (v *Vault) canaryEntry(ctx context.Context, l audit.Leaf, tenant, list string, at time.Time, kind byte, listTag string, donors []canaryDonor, lk *keys.DataKeys) (audit.Leaf, func(context.Context, *sql.Tx, *audit.Leaf) error, error) {
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return l, nil, err
	}
	token := custos.NewID(custos.PrefixContact)
	cl := l
	cl.RequestID = custos.NewID(custos.PrefixRequest)
	cl.Tokens = []string{token}
	cl.Mark = createMark(k, token)
	cl.Detail = ""
	apply := func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if kind == eventCanary {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM canaries WHERE list_tag = $1 AND retired_at IS NULL`, listTag).Scan(&n); err != nil {
				return fmt.Errorf("count canaries: %w", err)
			}
			if n >= v.canaries {
				kind = eventReserve // an import planted them meanwhile
			}
		}
		if kind == eventReserve {
			if _, err := tx.ExecContext(ctx, `INSERT INTO canary_reserve (token, tenant_id, list_id, created_at) VALUES ($1, $2, $3, $4)`,
				token, tenant, list, ms(at)); err != nil {
				return fmt.Errorf("reserve canary token: %w", err)
			}
			return nil
		}
		for range 16 {
			cc := v.canaryLike(donors)
			if taken, err := canaryTaken(ctx, tx, addrTag(k, cc.Email)); err != nil {
				return err
			} else if taken {
				continue
			}
			cc.Token, cc.TenantID, cc.ListID, cc.CreatedAt, cc.UpdatedAt = token, tenant, list, at, at
			s, err := seal(lk, cc)
			if err != nil {
				return err
			}
			if ok, err := insertSealed(ctx, tx, s); err != nil {
				return err
			} else if !ok {
				continue
			}
			tag := hex.EncodeToString(k.Tag("token/" + token))
			sealed, err := v.sealCanaryToken(tag, token)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO canaries (tag, list_tag, addr_tag, token_sealed) VALUES ($1, $2, $3, $4)`,
				tag, listTag, addrTag(k, cc.Email), sealed); err != nil {
				return fmt.Errorf("index canary: %w", err)
			}
			return nil
		}
		return fmt.Errorf("plant canary: no free address drawn")
	}
	return cl, apply, nil
}

// ridingDonors is the shape of the canary that rides a list's first
// create: the new contact and a sample of the list. The sample only
// shapes the canary: a row this node cannot open (keys rotated by another
// node since it loaded them, or a row tampered with, which reads report)
// must not fail the create it rides.
func (v *Vault) ridingDonors(ctx context.Context, c *custos.Contact, lk *keys.DataKeys) []canaryDonor {
	donors := []canaryDonor{donorOf(c)}
	if snap, err := v.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}); err == nil {
		if more, err := exportDonors(ctx, snap, lk, c.ListID); err == nil {
			donors = append(donors, more...)
		}
		snap.Rollback()
	}
	return donors
}
