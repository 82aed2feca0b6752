package vault

import (
	"context"
	"slices"
	"time"

	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"

	"github.com/custos-dev/custos/addr"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/keys"
)

// Canary contacts. Every list gets Options.Canaries of them (default 3):
// realistic names on the configured canary domains, stored and served
// exactly like real contacts, planted in the transaction of the list's
// first contacts so they share their creation time. Which tokens are
// canaries is known only through the canaries table: HMAC tags under a
// system key wrapped by the KEK, which the detector holds. A read of one
// by staff is a critical alert; mail to one means a list left the vault.

// DefaultCanaries is the number of canary contacts per list.
const DefaultCanaries = 3

// DefaultCanaryDomain is used when no canary domain is configured. It is
// reserved (RFC 2606); production deployments configure trap domains they
// own, whose mail server alerts on any delivery.
const DefaultCanaryDomain = "example.net"

const canaryKeyName = "canary"

// canaryPRF returns the canary tag key, creating it on first use.
func (v *Vault) canaryPRF(ctx context.Context) (*keys.SystemPRF, error) {
	v.canaryMu.Lock()
	defer v.canaryMu.Unlock()
	if v.canaryKey != nil {
		return v.canaryKey, nil
	}
	k, err := v.systemPRF(ctx, canaryKeyName)
	if err != nil {
		return nil, err
	}
	v.canaryKey = k
	return k, nil
}

// systemPRF loads the system PRF key named name, creating and storing it
// (wrapped by the KEK) on first use.
func (v *Vault) systemPRF(ctx context.Context, name string) (*keys.SystemPRF, error) {
	var wrapped string
	err := v.read.QueryRowContext(ctx, `SELECT wrapped FROM system_keys WHERE name = $1`, name).Scan(&wrapped)
	if isNoRows(err) {
		_, w, nerr := v.ring.NewSystemPRF(name)
		if nerr != nil {
			return nil, nerr
		}
		// Another node may have raced us: keep whichever was stored first.
		if _, err = v.write.ExecContext(ctx, `INSERT INTO system_keys (name, wrapped) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			name, base64.StdEncoding.EncodeToString(w)); err != nil {
			return nil, fmt.Errorf("store %s key: %w", name, err)
		}
		err = v.write.QueryRowContext(ctx, `SELECT wrapped FROM system_keys WHERE name = $1`, name).Scan(&wrapped)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s key: %w", name, err)
	}
	b, err := base64.StdEncoding.DecodeString(wrapped)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", name, err)
	}
	return v.ring.SystemPRF(name, b)
}

// CanaryIndex tells canary tokens from others. Only the detector holds one.
type CanaryIndex struct {
	prf *keys.SystemPRF
	db  *sql.DB
}

// CanaryIndex returns the detector's view of the canary index.
func (v *Vault) CanaryIndex(ctx context.Context) (*CanaryIndex, error) {
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return nil, err
	}
	return &CanaryIndex{prf: k, db: v.read}, nil
}

// Tag returns the index tag of a token.
func (c *CanaryIndex) Tag(token string) string {
	return hex.EncodeToString(c.prf.Tag("token/" + token))
}

// Tags returns every stored canary tag.
func (c *CanaryIndex) Tags(ctx context.Context) (map[string]bool, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT tag FROM canaries`)
	if err != nil {
		return nil, fmt.Errorf("read canaries: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out[t] = true
	}
	return out, rows.Err()
}

// readyCanaries loads (or creates) the canary key; call it before a
// transaction that plants canaries.
func (v *Vault) readyCanaries(ctx context.Context) error {
	if v.canaries <= 0 {
		return nil
	}
	_, err := v.canaryPRF(ctx)
	return err
}

// plantCanaries tops the list up to its canaries, in tx, as contacts
// created at now (ms). It is called with a list's contact writes, after
// readyCanaries.
func (v *Vault) plantCanaries(ctx context.Context, tx *sql.Tx, tenant, list string, now int64) error {
	if v.canaries <= 0 {
		return nil
	}
	v.canaryMu.Lock()
	k := v.canaryKey
	v.canaryMu.Unlock()
	if k == nil {
		// Callers load the key before their transaction: creating it
		// needs the write connection, which the transaction holds.
		return fmt.Errorf("plant canaries: canary key not loaded")
	}
	listTag := hex.EncodeToString(k.Tag("list/" + list))
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM canaries WHERE list_tag = $1`, listTag).Scan(&n); err != nil {
		return fmt.Errorf("count canaries: %w", err)
	}
	if n >= v.canaries {
		return nil
	}
	tk, err := v.listKeys(ctx, tenant, list)
	if err != nil {
		return err
	}
	for planted := n; planted < v.canaries; {
		first, email := v.canaryAddress()
		if taken, err := canaryTaken(ctx, tx, addrTag(k, email)); err != nil {
			return err
		} else if taken {
			continue // drawn before, for another list or an export: draw again
		}
		c := &custos.Contact{Token: custos.NewID(custos.PrefixContact), TenantID: tenant, ListID: list, Email: email,
			Attributes: []byte(fmt.Sprintf(`{"first_name":%q}`, strings.ToUpper(first[:1])+first[1:])), Consent: custos.ConsentSubscribed,
			CreatedAt: fromMS(now), UpdatedAt: fromMS(now)}
		s, err := seal(tk, c)
		if err != nil {
			return err
		}
		ok, err := insertSealed(ctx, tx, s)
		if err != nil {
			return err
		}
		if !ok {
			continue // the made-up address is taken in this list: draw another
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO canaries (tag, list_tag, addr_tag) VALUES ($1, $2, $3)`,
			hex.EncodeToString(k.Tag("token/"+c.Token)), listTag, addrTag(k, c.Email)); err != nil {
			return fmt.Errorf("index canary: %w", err)
		}
		planted++
	}
	return nil
}

var (
	canaryFirst = strings.Fields("james mary robert patricia john jennifer michael linda david elizabeth william barbara richard susan joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty anthony sandra mark margaret donald ashley steven kimberly andrew emily paul donna joshua michelle kenneth carol kevin amanda brian melissa george deborah timothy stephanie")
	canaryLast  = strings.Fields("smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter roberts")
)

// canaryAddress draws a realistic first name and address on a canary
// domain: 50 × 50 names × 10 000 numbers × 3 shapes, 75 million
// addresses a domain, so draws rarely meet (and a taken one is redrawn).
func (v *Vault) canaryAddress() (first, email string) {
	f, l := canaryFirst[randN(len(canaryFirst))], canaryLast[randN(len(canaryLast))]
	d := v.canaryDomains[randN(len(v.canaryDomains))]
	n := fmt.Sprint(randN(10_000))
	switch randN(3) {
	case 0:
		return f, f + "." + l + n + "@" + d
	case 1:
		return f, f[:1] + l + n + "@" + d
	}
	return f, f + "_" + l + n + "@" + d
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// canaryTaken reports whether an address tag is already a list's or an
// export's canary.
func canaryTaken(ctx context.Context, q rowQuerier, tag string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM canaries WHERE addr_tag = $1) + (SELECT count(*) FROM export_canaries WHERE addr_tag = $1)`, tag).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("canary lookup: %w", err)
	}
	return n > 0, nil
}

func randN(n int) int {
	b, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic("custos: crypto/rand failed: " + err.Error())
	}
	return int(b.Int64())
}

// isWatermark reports whether a normalised address is one of this
// server's canaries — a list's or an export's — so that an import of an
// export leaves them out. Canaries live on the canary domains only, so
// other addresses cost no lookup.
func (v *Vault) isWatermark(ctx context.Context, normalized string) (bool, error) {
	v.canaryMu.Lock()
	k := v.canaryKey
	v.canaryMu.Unlock()
	if k == nil {
		return false, nil
	}
	_, domain, _ := strings.Cut(normalized, "@")
	if !slices.ContainsFunc(v.canaryDomains, func(d string) bool { return strings.EqualFold(d, domain) }) {
		return false, nil
	}
	return canaryTaken(ctx, v.read, addrTag(k, normalized))
}

// addrTag is the trace tag of a normalised address.
func addrTag(k *keys.SystemPRF, normalized string) string {
	return hex.EncodeToString(k.Tag("addr/" + normalized))
}

// exportCanaries mints n fresh canary contacts for an export of list
// (created at listCreated): tokens and times drawn from the list's
// lifetime so they sort among the real contacts, sorted by token; each
// address not yet used by any canary.
func (v *Vault) exportCanaries(ctx context.Context, tenant, list string, listCreated time.Time, n int) ([]*custos.Contact, error) {
	now := v.now()
	span := now.Sub(listCreated)
	out := make([]*custos.Contact, 0, n)
	for range n {
		at := listCreated
		if span > time.Second {
			at = listCreated.Add(time.Duration(randN(int(span/time.Second))) * time.Second)
		}
		at = at.UTC().Truncate(time.Millisecond)
		first, email := v.canaryAddress()
		if taken, err := canaryTaken(ctx, v.read, addrTag(v.canaryKey, email)); err != nil {
			return nil, err
		} else if taken {
			continue
		}
		out = append(out, &custos.Contact{Token: custos.NewIDAt(custos.PrefixContact, at), TenantID: tenant, ListID: list, Email: email,
			Attributes: []byte(fmt.Sprintf(`{"first_name":%q}`, strings.ToUpper(first[:1])+first[1:])), Consent: custos.ConsentSubscribed, CreatedAt: at, UpdatedAt: at})
	}
	slices.SortFunc(out, func(a, b *custos.Contact) int { return strings.Compare(a.Token, b.Token) })
	return out, nil
}

// Trace tells security staff whether an address found outside — in a
// leaked file, on a spam list — is a canary, and whose: a fresh canary
// names the export and the principal who made it; a list canary names the
// list (it left the vault, by whatever route). The address is looked up by
// its keyed tag and never recorded.
func (v *Vault) Trace(ctx context.Context, email string) (*custos.TraceResult, error) {
	l, err := v.authorize(ctx, custos.ActionTrace, "")
	if err != nil {
		return nil, err
	}
	norm, err := addr.Normalize(email)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	res, err := v.traceTag(ctx, k, addrTag(k, norm))
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Detail = "canary trace: " + res.Kind
	if res.Kind == "export" {
		l.Detail += " by " + res.Principal + " request " + res.RequestID
	}
	if res.TenantID != "" {
		l.Tenant = res.TenantID
	}
	return res, v.record(ctx, l, nil)
}

// traceTag attributes the canary whose address tag is tag: the export it
// was minted into, the list it was planted in, or none.
func (v *Vault) traceTag(ctx context.Context, k *keys.SystemPRF, tag string) (*custos.TraceResult, error) {
	res := &custos.TraceResult{Kind: custos.TraceNone}
	var at int64
	err := v.read.QueryRowContext(ctx, `SELECT tenant_id, list_id, actor, key_id, source, request_id, exported_at FROM export_canaries WHERE addr_tag = $1`, tag).
		Scan(&res.TenantID, &res.ListID, &res.Principal, &res.KeyID, &res.Source, &res.RequestID, &at)
	switch {
	case err == nil:
		res.Kind, res.ExportedAt = custos.TraceExport, fromMS(at)
		return res, nil
	case !isNoRows(err):
		return nil, fmt.Errorf("trace: %w", err)
	}
	var listTag string
	err = v.read.QueryRowContext(ctx, `SELECT list_tag FROM canaries WHERE addr_tag = $1`, tag).Scan(&listTag)
	if isNoRows(err) {
		return res, nil
	} else if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	res.Kind = custos.TraceList
	// The list tag is keyed too: find the list it names.
	rows, err := v.read.QueryContext(ctx, `SELECT id, tenant_id FROM lists`)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, tn string
		if rows.Scan(&id, &tn) == nil && hex.EncodeToString(k.Tag("list/"+id)) == listTag {
			res.ListID, res.TenantID = id, tn
		}
	}
	return res, rows.Err()
}
