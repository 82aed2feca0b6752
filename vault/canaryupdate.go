package vault

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// Canaries age like the rows around them (issue 20). A list's real rows
// are updated over time — consent given or withdrawn, attributes changed
// — and each update is a contact.update leaf naming the row. A canary
// that is never updated would stand out in a list whose rows mostly are:
// its updated_at equals its created_at, and no update leaf ever names it.
// So every real update of a list is echoed, with probability c/(n−c) for
// c canaries among n rows (so that a canary is updated as often as a real
// row, on average), by an update of one of the list's canaries: the same
// kind of change (the consent it set, the attribute keys it set or
// removed, values drawn from a sample of the list, never the real row's),
// a contact.update leaf naming the same principal, key, person and
// network with a request id of its own, at a moment of its own drawn from
// the list's gaps between updates — planted by [Vault.PlantCanaries] like
// the canaries of create-grown lists. A canary's address is never changed
// (it is how a leaked copy is traced).

// canaryListTTL is how long a list's size and canary tokens are reused
// before they are read again (in the background, the old ones in use).
const canaryListTTL = 10 * time.Minute

// canaryListCache keeps, per list, what echoing its updates needs.
type canaryListCache struct {
	mu sync.Mutex
	m  map[string]*canaryList
}

type canaryList struct {
	size     int64    // rows, canaries included
	tokens   []string // its canaries (those planted with a sealed token)
	reserved []string // reserved tokens no reader took, and readers' watermark rows
	at       time.Time
	loading  bool
	lastUpd  int64 // the list's last real update seen by this node (ms)
	gapMS    int64 // the mean of its gaps between updates (ms)
}

// canaryAEAD returns the key that seals canaries' tokens and the events
// waiting for the planter (the system free-text keyset), loading it — and
// creating it on first use, a write of its own — outside any transaction.
func (v *Vault) canaryAEAD(ctx context.Context) (*keys.SystemAEAD, error) {
	v.canaryMu.Lock()
	k := v.canarySeal
	v.canaryMu.Unlock()
	if k != nil {
		return k, nil
	}
	k, err := v.systemAEAD(ctx, true)
	if err != nil {
		return nil, err
	}
	v.canaryMu.Lock()
	v.canarySeal = k
	v.canaryMu.Unlock()
	return k, nil
}

func canaryTokenAD(tag string) []byte { return []byte("canary-token/" + tag) }

// sealCanaryToken seals a canary's token for its index row (tag).
// Callers loaded the key before their transaction (readyCanaries).
func (v *Vault) sealCanaryToken(tag, token string) (string, error) {
	v.canaryMu.Lock()
	k := v.canarySeal
	v.canaryMu.Unlock()
	if k == nil {
		return "", errors.New("plant canaries: canary seal key not loaded")
	}
	return sealText(k, sealedSystem, token, canaryTokenAD(tag))
}

// openCanarySealed opens a value sealText sealed under the canary seal
// key with ad; anything else fails.
func (v *Vault) openCanarySealed(ctx context.Context, s string, ad []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, sealedSystem)
	if !ok {
		return nil, errors.New("not sealed")
	}
	k, err := v.canaryAEAD(ctx)
	if err != nil {
		return nil, err
	}
	ct, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, err
	}
	return k.Open(ct, ad)
}

// canaryListState returns list's size and canary tokens, read at once the
// first time and again in the background once older than canaryListTTL;
// it also counts the update at now in the list's gaps between updates and
// returns the mean gap.
func (v *Vault) canaryListState(ctx context.Context, list, listTag string, now int64) (st canaryList, err error) {
	c := &v.canaryLists
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*canaryList{}
	}
	cur := c.m[list]
	if cur == nil {
		c.mu.Unlock()
		fresh, err := v.readCanaryList(ctx, list, listTag)
		if err != nil {
			return canaryList{}, err
		}
		c.mu.Lock()
		if cur = c.m[list]; cur == nil {
			cur = fresh
			c.m[list] = cur
		}
	} else if !cur.loading && v.now().Sub(cur.at) > canaryListTTL {
		cur.loading = true
		go func() {
			fresh, err := v.readCanaryList(context.WithoutCancel(ctx), list, listTag)
			c.mu.Lock()
			defer c.mu.Unlock()
			cur.loading = false
			if err == nil {
				cur.size, cur.tokens, cur.reserved, cur.at = fresh.size, fresh.tokens, fresh.reserved, fresh.at
			}
		}()
	}
	defer c.mu.Unlock()
	if cur.lastUpd > 0 && now > cur.lastUpd {
		if d := now - cur.lastUpd; cur.gapMS == 0 {
			cur.gapMS = d
		} else {
			cur.gapMS = (7*cur.gapMS + d) / 8
		}
	}
	cur.lastUpd = max(cur.lastUpd, now)
	return *cur, nil
}

func (v *Vault) readCanaryList(ctx context.Context, list, listTag string) (*canaryList, error) {
	st := &canaryList{at: v.now()}
	if err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM contacts WHERE list_id = $1`, list).Scan(&st.size); err != nil {
		return nil, fmt.Errorf("count list: %w", err)
	}
	type row struct{ tag, sealed string }
	rows, err := queryAll(ctx, v, func(s scanner) (row, error) {
		var r row
		return r, s.Scan(&r.tag, &r.sealed)
	}, `SELECT tag, token_sealed FROM canaries WHERE list_tag = $1 AND retired_at IS NULL AND token_sealed IS NOT NULL`, listTag)
	if err != nil {
		return nil, fmt.Errorf("list canaries: %w", err)
	}
	for _, r := range rows {
		tok, err := v.openCanarySealed(ctx, r.sealed, canaryTokenAD(r.tag))
		if err != nil {
			return nil, fmt.Errorf("list canaries: %w", err) // tampered with: echo nothing
		}
		st.tokens = append(st.tokens, string(tok))
	}
	// Readers' watermark rows, and the reserved tokens no reader has
	// taken yet (a taken one is its reader's row).
	st.reserved, err = queryAll(ctx, v, func(s scanner) (string, error) {
		var t string
		return t, s.Scan(&t)
	}, `SELECT token FROM canary_reserve WHERE list_id = $1 AND reader_tag IS NULL
		UNION ALL SELECT token FROM reader_canaries WHERE list_id = $1 AND deleted_at IS NULL`, list)
	if err != nil {
		return nil, fmt.Errorf("reserved canary tokens: %w", err)
	}
	return st, nil
}

// echoEveryUpdate makes every real update echoed (a test of what an echo
// carries: vault.EchoEveryUpdate).
var echoEveryUpdate atomic.Bool

// echo is an update of a canary queued beside a real update.
type echo struct {
	listTag, tenant, list string
	event                 pendingEvent
}

// prepareEcho decides, before a real update of a list is recorded (its
// leaf l, the row before and after), whether a canary's update echoes it,
// and if so which canary, what change and when. Nil when none does.
func (v *Vault) prepareEcho(ctx context.Context, l audit.Leaf, before, after *custos.Contact) *echo {
	if v.canaries <= 0 {
		return nil
	}
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return nil
	}
	if _, err := v.canaryAEAD(ctx); err != nil {
		return nil
	}
	listTag := fmt.Sprintf("%x", k.Tag("list/"+after.ListID))
	now := v.now().UnixMilli()
	st, err := v.canaryListState(ctx, after.ListID, listTag, now)
	c, r := int64(len(st.tokens)), int64(len(st.reserved))
	if err != nil || c+r == 0 || st.size <= c {
		return nil
	}
	// With probability (c+r)/(n−c), for c canaries and r reserved tokens
	// beside n−c real rows: each is then updated as often as a real row,
	// on average, when the list's updates pick rows at random.
	if int64(randN(1<<30))*(st.size-c) >= (c+r)<<30 && !echoEveryUpdate.Load() {
		return nil
	}
	e := pendingEvent{ID: custos.NewID(custos.PrefixRequest), Kind: eventUpdate}
	if i := randN(int(c + r)); i < int(c) {
		e.Token = st.tokens[i]
	} else {
		e.Token, e.Reserved = st.reserved[i-int(c)], true
	}
	gap := st.gapMS
	rd := riderOf(l)
	e.Rider = &rd
	if after.Consent != before.Consent {
		e.Consent = string(after.Consent)
	}
	var was, is map[string]json.RawMessage
	_ = json.Unmarshal(before.Attributes, &was)
	_ = json.Unmarshal(after.Attributes, &is)
	for _, key := range slices.Sorted(maps.Keys(is)) {
		if old, ok := was[key]; !ok || string(old) != string(is[key]) {
			e.Keys = append(e.Keys, key)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(was)) {
		if _, ok := is[key]; !ok {
			e.Removed = append(e.Removed, key)
		}
	}
	u := (float64(randN(1<<30)) + 1) / (1<<30 + 1) // (0, 1)
	delay := min(time.Duration(-float64(gap)*math.Log(u))*time.Millisecond, maxPlantDelay)
	e.Due = now + delay.Milliseconds()
	return &echo{listTag: listTag, tenant: after.TenantID, list: after.ListID, event: e}
}

// queueEcho adds the echo to the list's waiting events, in the real
// update's transaction.
func (v *Vault) queueEcho(ctx context.Context, tx *sql.Tx, e *echo) error {
	var sealed string
	err := tx.QueryRowContext(ctx, `SELECT pending FROM canary_plans WHERE list_tag = $1`, e.listTag).Scan(&sealed)
	exists := err == nil
	if err != nil && !isNoRows(err) {
		return fmt.Errorf("canary plan: %w", err)
	}
	p, err := v.openPending(ctx, e.listTag, sealed)
	if err != nil {
		return err
	}
	p.Tenant, p.List = e.tenant, e.list
	p.Events = append(p.Events, e.event)
	s, err := v.sealPending(ctx, e.listTag, p)
	if err != nil {
		return err
	}
	if exists {
		_, err = tx.ExecContext(ctx, `UPDATE canary_plans SET pending = $2 WHERE list_tag = $1`, e.listTag, s)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO canary_plans (list_tag, creates, due, pending) VALUES ($1, 0, '', $2)`, e.listTag, s)
	}
	if err != nil {
		return fmt.Errorf("canary plan: %w", err)
	}
	return nil
}

// plantUpdate updates the canary a waiting echo names, with a
// contact.update leaf of its own naming the real update's principal. An
// echo whose canary is gone, or whose principal may no longer act, is
// dropped unplanted.
func (v *Vault) plantUpdate(ctx context.Context, listTag string, p *pendingPlants, e pendingEvent) error {
	if e.Rider == nil || !v.riderActive(ctx, *e.Rider) {
		return v.dropEvent(ctx, listTag, e.ID)
	}
	if e.Reserved {
		return v.plantReservedUpdate(ctx, listTag, p, e)
	}
	s, err := v.findContact(ctx, p.Tenant, e.Token)
	if custos.ErrorCode(err) == custos.ENOTFOUND {
		return v.dropEvent(ctx, listTag, e.ID)
	} else if err != nil {
		return err
	}
	lk, err := v.listKeys(ctx, p.Tenant, s.list)
	if err != nil {
		return err
	}
	c, err := open(lk, s)
	if err != nil {
		return err
	}
	snap, err := v.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	donors, err := exportDonors(ctx, snap, lk, s.list)
	snap.Rollback()
	if err != nil {
		return err
	}
	applyEcho(c, e, donors)
	c.UpdatedAt = v.now().UTC().Truncate(time.Millisecond)
	ns, err := seal(lk, c)
	if err != nil {
		return err
	}
	return v.record(ctx, echoLeaf(p.Tenant, s.list, e), func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if err := v.claimEvent(ctx, tx, listTag, e.ID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE contacts SET email = $1, attributes = $2, consent = $3, updated_at = $4, mac = $5 WHERE token = $6 AND mac = $7`,
			ns.email, ns.attrs, string(ns.consent), ns.updated, ns.mac, e.Token, s.mac)
		if err != nil {
			return fmt.Errorf("update canary: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errors.New("update canary: changed meanwhile")
		}
		return nil
	})
}

// applyEcho makes the echo's change to c: the consent the real update
// set, its attribute keys removed, and set to values drawn from donors
// (a sample of the list) through commonValue — never the real row's.
func applyEcho(c *custos.Contact, e pendingEvent, donors []canaryDonor) {
	if e.Consent != "" {
		c.Consent = custos.Consent(e.Consent)
	}
	if len(e.Keys)+len(e.Removed) > 0 {
		attrs := map[string]json.RawMessage{}
		_ = json.Unmarshal(c.Attributes, &attrs)
		for _, key := range e.Removed {
			delete(attrs, key)
		}
		for _, key := range e.Keys {
			var vals []json.RawMessage
			for _, d := range donors {
				if val, ok := d.attrs[key]; ok {
					vals = append(vals, val)
				}
			}
			if len(vals) > 0 {
				attrs[key] = commonValue(donors, key, vals[randN(len(vals))])
			}
		}
		c.Attributes = nil
		if len(attrs) > 0 {
			c.Attributes, _ = json.Marshal(attrs)
		}
	}
}

// echoLeaf is the contact.update leaf of an echo: the real update's
// principal, key, person and network, a request id of its own.
func echoLeaf(tenant, list string, e pendingEvent) audit.Leaf {
	l := e.Rider.leaf(custos.ActionContactUpdate, tenant, list)
	l.Tokens = []string{e.Token}
	return l
}

// plantReservedUpdate plants an echo of a reserved token or a reader's
// watermark row: its update leaf names the token; a reader's kept row
// takes the change (re-sealed with its row MAC, as the reader's own
// update would), and a token no reader took yet keeps when, which the
// row a reader's export makes of it shows. A token gone with its list, or
// a row its reader deleted, is dropped.
func (v *Vault) plantReservedUpdate(ctx context.Context, listTag string, p *pendingPlants, e pendingEvent) error {
	var n int
	if err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM canary_reserve WHERE token = $1 AND list_id = $2`, e.Token, p.List).Scan(&n); err != nil {
		return fmt.Errorf("reserved canary token: %w", err)
	}
	marks, err := queryAll(ctx, v, func(s scanner) (*sealed, error) { return scanReaderCanary(s) },
		`SELECT `+readerCanaryColumns+` FROM reader_canaries WHERE token = $1 AND list_id = $2 AND deleted_at IS NULL`, e.Token, p.List)
	if err != nil {
		return err
	}
	if n == 0 && len(marks) == 0 {
		return v.dropEvent(ctx, listTag, e.ID)
	}
	now := v.now().UTC().Truncate(time.Millisecond)
	type change struct{ s, ns *sealed }
	var changes []change
	if len(marks) > 0 {
		lk, err := v.listKeys(ctx, p.Tenant, p.List)
		if err != nil {
			return err
		}
		snap, err := v.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		donors, err := exportDonors(ctx, snap, lk, p.List)
		snap.Rollback()
		if err != nil {
			return err
		}
		for _, s := range marks {
			k, err := v.checkContact(ctx, lk, s)
			if err != nil {
				return err // altered in the database: fail closed, plant nothing
			}
			c, err := open(k, s)
			if err != nil {
				return err
			}
			applyEcho(c, e, donors)
			c.UpdatedAt = now
			ns, err := seal(k, c)
			if err != nil {
				return err
			}
			changes = append(changes, change{s, ns})
		}
	}
	return v.record(ctx, echoLeaf(p.Tenant, p.List, e), func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if err := v.claimEvent(ctx, tx, listTag, e.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE canary_reserve SET updated_at = $1 WHERE token = $2`, ms(now), e.Token); err != nil {
			return fmt.Errorf("reserved canary token: %w", err)
		}
		for _, ch := range changes {
			if err := updateMark(ctx, tx, ch.s, ch.ns); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropEvent removes a waiting event that will not be planted.
func (v *Vault) dropEvent(ctx context.Context, listTag, id string) error {
	tx, err := v.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := v.claimEvent(ctx, tx, listTag, id); err != nil {
		return err
	}
	return tx.Commit()
}
