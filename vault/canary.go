package vault

import (
	"context"
	"slices"
	"time"

	"crypto/hmac"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"path"
	"strings"

	"github.com/custos-dev/custos/addr"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// Canary contacts. Every list gets Options.Canaries of them (default 3):
// realistic names on the configured canary domains, stored and served
// exactly like real contacts — planted in an import's transaction, sharing
// its creation time, or, in a list grown by single creates, created one at
// a time with create leaves of their own, at moments of their own
// (canarygrowth.go). Which tokens are
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
		if _, err = v.write.ExecContext(ctx, `INSERT INTO system_keys (name, wrapped, kek) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
			name, base64.StdEncoding.EncodeToString(w), v.kekTag); err != nil {
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
	if _, err := v.canaryPRF(ctx); err != nil {
		return err
	}
	_, err := v.canaryAEAD(ctx)
	return err
}

// plantCanaries tops the list up to its canaries, in tx, as contacts
// created at now (ms). It is called with a list's contact writes, after
// readyCanaries. Imports call it; creates plant canaries one at a time
// ([Vault.canaryEntry]). Canaries a single create planted before migration
// 0037 are provisional (0028): the list's first import retires them
// ([Vault.retireProvisionalCanaries]) and plants its own.
func (v *Vault) plantCanaries(ctx context.Context, tx *sql.Tx, tenant, list string, now int64, donors []canaryDonor, provisional bool) error {
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
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM canaries WHERE list_tag = $1 AND retired_at IS NULL`, listTag).Scan(&n); err != nil {
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
		c := v.canaryLike(donors)
		if taken, err := canaryTaken(ctx, tx, addrTag(k, c.Email)); err != nil {
			return err
		} else if taken {
			continue // drawn before, for another list or an export: draw again
		}
		c.Token, c.TenantID, c.ListID = custos.NewID(custos.PrefixContact), tenant, list
		c.CreatedAt, c.UpdatedAt = fromMS(now), fromMS(now)
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
		var prov sql.NullInt64
		if provisional {
			prov = sql.NullInt64{Int64: 1, Valid: true}
		}
		tag := hex.EncodeToString(k.Tag("token/" + c.Token))
		sealed, err := v.sealCanaryToken(tag, c.Token)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO canaries (tag, list_tag, addr_tag, provisional, token_sealed) VALUES ($1, $2, $3, $4, $5)`,
			tag, listTag, addrTag(k, c.Email), prov, sealed); err != nil {
			return fmt.Errorf("index canary: %w", err)
		}
		planted++
	}
	// Tokens for two readers' watermark rows, reserved at the import's
	// instant (no leaf names them: an import's names no row): updates
	// that echo the list's (canaryupdate.go) name them over time, so the
	// rows a reader's export makes of them have a history like the list's.
	var reserved int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM canary_reserve WHERE list_id = $1`, list).Scan(&reserved); err != nil {
		return fmt.Errorf("count reserved canary tokens: %w", err)
	}
	for ; reserved < 2*v.canaries; reserved++ {
		if _, err := tx.ExecContext(ctx, `INSERT INTO canary_reserve (token, tenant_id, list_id, created_at) VALUES ($1, $2, $3, $4)`,
			custos.NewID(custos.PrefixContact), tenant, list, now); err != nil {
			return fmt.Errorf("reserve canary token: %w", err)
		}
	}
	return nil
}

// retireProvisionalCanaries removes, in tx, the contact rows of the
// list's provisional canaries (planted by its first single create) and
// marks their index rows retired at now: the caller, an import, then
// plants the list's canaries at its own instant. The index rows stay, so
// mail to a retired canary's address still traces to the list. It finds
// the canaries' rows by tagging the list's tokens: once per list, before
// its first import.
func (v *Vault) retireProvisionalCanaries(ctx context.Context, tx *sql.Tx, list string, now int64) error {
	v.canaryMu.Lock()
	k := v.canaryKey
	v.canaryMu.Unlock()
	if v.canaries <= 0 || k == nil {
		return nil
	}
	listTag := hex.EncodeToString(k.Tag("list/" + list))
	tags, err := queryIDs(ctx, tx, `SELECT tag FROM canaries WHERE list_tag = $1 AND provisional IS NOT NULL AND retired_at IS NULL`, listTag)
	if err != nil {
		return fmt.Errorf("find provisional canaries: %w", err)
	}
	if len(tags) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, t := range tags {
		want[t] = true
	}
	tokens, err := queryIDs(ctx, tx, `SELECT token FROM contacts WHERE list_id = $1`, list)
	if err != nil {
		return fmt.Errorf("find provisional canaries: %w", err)
	}
	for _, tk := range tokens {
		tag := hex.EncodeToString(k.Tag("token/" + tk))
		if !want[tag] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM contacts WHERE token = $1`, tk); err != nil {
			return fmt.Errorf("retire canary: %w", err)
		}
	}
	for _, t := range tags {
		if _, err := tx.ExecContext(ctx, `UPDATE canaries SET retired_at = $1 WHERE tag = $2`, now, t); err != nil {
			return fmt.Errorf("retire canary: %w", err)
		}
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

// canaryDonor is a real row whose shape canaries copy: its attribute
// keys and values, its consent, its address's domain.
type canaryDonor struct {
	email   string
	attrs   map[string]json.RawMessage
	consent custos.Consent
	created time.Time // set for export donors: fresh canaries join their instant
}

// maxDonors bounds the sample of rows canaries are shaped after.
const maxDonors = 64

// donorSample keeps a uniform sample (reservoir) of up to maxDonors rows
// of a batch.
type donorSample struct {
	rows []canaryDonor
	seen int
}

// offer considers one row for the sample.
func (d *donorSample) offer(email string, attrs []byte, consent custos.Consent) {
	d.seen++
	i := len(d.rows)
	if i >= maxDonors {
		if i = randN(d.seen); i >= maxDonors {
			return
		}
	}
	var m map[string]json.RawMessage
	if len(attrs) > 0 && json.Unmarshal(attrs, &m) != nil {
		m = nil
	}
	r := canaryDonor{email: email, attrs: m, consent: consent}
	if i == len(d.rows) {
		d.rows = append(d.rows, r)
	} else {
		d.rows[i] = r
	}
}

// canaryLike draws a canary shaped like the list: a random donor's
// attribute key set and consent, each attribute's value taken from a
// random donor holding that key (so no real row is copied whole), and an
// address on the canary domain that masks most like the donor's domain.
// Without donors it falls back to a made-up name.
func (v *Vault) canaryLike(donors []canaryDonor) *custos.Contact {
	first, email := v.canaryAddress()
	if len(donors) == 0 {
		return &custos.Contact{Email: email, Consent: custos.ConsentSubscribed,
			Attributes: []byte(fmt.Sprintf(`{"first_name":%q}`, strings.ToUpper(first[:1])+first[1:]))}
	}
	d := donors[randN(len(donors))]
	c := &custos.Contact{Consent: d.consent}
	if len(d.attrs) > 0 {
		attrs := make(map[string]json.RawMessage, len(d.attrs))
		for key, val := range d.attrs {
			for range 8 { // a value for key from another donor that has it
				if o := donors[randN(len(donors))]; o.attrs[key] != nil {
					val = o.attrs[key]
					break
				}
			}
			attrs[key] = commonValue(donors, key, val)
		}
		c.Attributes, _ = json.Marshal(attrs)
	}
	local, _, _ := strings.Cut(email, "@")
	if f, l := nameLetters(c.Attributes, "first_name"), nameLetters(c.Attributes, "last_name"); f != "" {
		local = f + fmt.Sprint(randN(10_000))
		if l != "" {
			local = f + "." + l + fmt.Sprint(randN(10_000))
		}
	}
	c.Email = local + "@" + v.canaryDomainLike(d.email)
	return c
}

// commonValue returns val if at least two donors hold it for key (a
// plan, a city, a common first name); a value only one row holds may be
// personal (a phone number, an id), so it is redrawn in its shape: each
// digit and letter replaced by a random one of its kind (a name key —
// first_name, last_name — gets a common name instead).
func commonValue(donors []canaryDonor, key string, val json.RawMessage) json.RawMessage {
	n := 0
	for _, d := range donors {
		if string(d.attrs[key]) == string(val) {
			n++
		}
	}
	if n >= 2 {
		return val
	}
	// A rare name is redrawn as a common one, not as letters at random.
	for part, names := range map[string][]string{"first": canaryFirst, "last": canaryLast} {
		if strings.Contains(strings.ToLower(key), part) {
			n := names[randN(len(names))]
			b, _ := json.Marshal(strings.ToUpper(n[:1]) + n[1:])
			return b
		}
	}
	var s string
	if json.Unmarshal(val, &s) != nil {
		// A number, boolean or object: redraw its digits in place.
		return json.RawMessage(redraw(string(val), false))
	}
	b, _ := json.Marshal(redraw(s, true))
	return b
}

// redraw replaces each ASCII digit (and, if letters, each ASCII letter)
// of s with a random one of the same kind and case. A leading digit
// stays non-zero so numbers stay valid JSON.
func redraw(s string, letters bool) string {
	out := []byte(s)
	for i, c := range out {
		switch {
		case c >= '0' && c <= '9':
			if i == 0 || out[i-1] < '0' || out[i-1] > '9' {
				out[i] = '1' + byte(randN(9))
			} else {
				out[i] = '0' + byte(randN(10))
			}
		case letters && c >= 'a' && c <= 'z':
			out[i] = 'a' + byte(randN(26))
		case letters && c >= 'A' && c <= 'Z':
			out[i] = 'A' + byte(randN(26))
		}
	}
	return string(out)
}

// nameLetters returns the lower-case ASCII letters of a string attribute.
func nameLetters(attrs []byte, key string) string {
	var m map[string]any
	if json.Unmarshal(attrs, &m) != nil {
		return ""
	}
	s, _ := m[key].(string)
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r
		}
		return -1
	}, strings.ToLower(s))
}

// canaryDomainLike picks the canary domain whose masked form ("g***.com")
// is the donor's, else one with the donor's last label, else any.
func (v *Vault) canaryDomainLike(email string) string {
	_, domain, _ := strings.Cut(email, "@")
	mask := func(d string) string { return strings.SplitN(addr.Mask("x@"+d), "@", 2)[1] }
	var same, tld []string
	for _, d := range v.canaryDomains {
		switch {
		case mask(d) == mask(domain):
			same = append(same, d)
		case path.Ext(d) == path.Ext(domain):
			tld = append(tld, d)
		}
	}
	for _, pool := range [][]string{same, tld, v.canaryDomains} {
		if len(pool) > 0 {
			return pool[randN(len(pool))]
		}
	}
	return DefaultCanaryDomain
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
// (created at listCreated), each shaped like a random donor from the list
// and created at that donor's instant (so it joins a real import's or
// create's group), sorted by token; each address not yet used by any
// canary. Without donors, times are drawn from the list's lifetime.
func (v *Vault) exportCanaries(ctx context.Context, tenant, list string, listCreated time.Time, n int, donors []canaryDonor) ([]*custos.Contact, error) {
	now := v.now()
	span := now.Sub(listCreated)
	out := make([]*custos.Contact, 0, n)
	// Reserved tokens come first: a list grown by creates named each by
	// a create leaf at its instant; any list's echoed updates name them
	// over time, like the list's rows (canaryupdate.go).
	reserved, err := v.reservedTokens(ctx, list, n)
	if err != nil {
		return nil, err
	}
	for range n {
		// An address drawn before (a list canary of a list whose rows all
		// share one first name draws from 10,000 local parts) is drawn
		// again: a slot left empty here would be minted by the reader's
		// next export or page, and a diff of the two would name it.
		var c *custos.Contact
		for try := 0; c == nil; try++ {
			if try == 16 {
				return nil, fmt.Errorf("export canaries: no free address drawn")
			}
			c = v.canaryLike(donors)
			if taken, err := canaryTaken(ctx, v.read, addrTag(v.canaryKey, c.Email)); err != nil {
				return nil, err
			} else if taken {
				c = nil
			}
		}
		if len(reserved) > 0 {
			r := reserved[0]
			reserved = reserved[1:]
			c.Token, c.TenantID, c.ListID, c.CreatedAt, c.UpdatedAt = r.Token, tenant, list, r.CreatedAt, r.UpdatedAt
			out = append(out, c)
			continue
		}
		at := listCreated
		if len(donors) > 0 {
			at = donors[randN(len(donors))].created
		} else if span > time.Second {
			at = listCreated.Add(time.Duration(randN(int(span/time.Second))) * time.Second)
		}
		at = at.UTC().Truncate(time.Millisecond)
		c.Token, c.TenantID, c.ListID, c.CreatedAt, c.UpdatedAt = custos.NewIDAt(custos.PrefixContact, at), tenant, list, at, at
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *custos.Contact) int { return strings.Compare(a.Token, b.Token) })
	return out, nil
}

// exportDonors samples up to maxDonors contacts of list from the export's
// snapshot, opened, for the export's fresh canaries to copy the shape of.
func exportDonors(ctx context.Context, snap *sql.Tx, k *keys.DataKeys, list string) ([]canaryDonor, error) {
	rows, err := snap.QueryContext(ctx, `SELECT `+contactColumns+` FROM contacts WHERE list_id = $1 ORDER BY random() LIMIT `+fmt.Sprint(maxDonors), list)
	if err != nil {
		return nil, fmt.Errorf("canary donors: %w", err)
	}
	defer rows.Close()
	var out []canaryDonor
	for rows.Next() {
		s, err := scanSealed(rows)
		if err != nil {
			return nil, fmt.Errorf("canary donors: %w", err)
		}
		c, err := open(k, s)
		if err != nil {
			return nil, err
		}
		d := donorOf(c)
		d.created = c.CreatedAt
		out = append(out, d)
	}
	return out, rows.Err()
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

// donorOf is c as a canary donor.
func donorOf(c *custos.Contact) canaryDonor {
	var d donorSample
	d.offer(c.Email, c.Attributes, c.Consent)
	return d.rows[0]
}

// readerTag is the keyed tag of a list and its reader (the person behind
// the principal, else the principal), under which the reader's export
// watermark rows are kept.
func readerTag(k *keys.SystemPRF, list string, l audit.Leaf) string {
	reader := "principal/" + l.Actor
	if l.Person != "" {
		reader = "person/" + l.Person
	}
	return hex.EncodeToString(k.Tag("reader/" + list + "/" + reader))
}

// readerCanaries returns the live watermark rows kept for tag, opened
// with the list's keys, and how many were minted for the reader, live or
// deleted (tombstones, watermark.go): those it deleted count among its
// rows, so none is minted in their place, and rows its imports adopted
// do not. A row or tombstone whose MAC fails refuses the export or page
// (fail closed).
func (v *Vault) readerCanaries(ctx context.Context, k *keys.DataKeys, tag string) ([]*custos.Contact, int, error) {
	rows, err := v.read.QueryContext(ctx, `SELECT `+readerCanaryColumns+`, COALESCE(adopted, 0) FROM reader_canaries WHERE reader_tag = $1 ORDER BY token`, tag)
	if err != nil {
		return nil, 0, fmt.Errorf("reader canaries: %w", err)
	}
	defer rows.Close()
	var out []*custos.Contact
	minted := 0
	for rows.Next() {
		var adopted int64
		s, err := scanReaderCanary(scanExtra{rows, []any{&adopted}})
		if err != nil {
			return nil, 0, err
		}
		if adopted == 0 {
			minted++
		}
		if s.deleted.Valid {
			if !tombstoneOK(k, s) {
				v.rowIntegrity("reader_canaries", s.token)
				return nil, 0, fmt.Errorf("open %s: %w", s.token, errForged)
			}
			continue
		}
		c, err := open(k, s)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, c)
	}
	return out, minted, rows.Err()
}

// keepReaderCanaries stores fresh watermark rows under tag, in tx.
func keepReaderCanaries(ctx context.Context, tx *sql.Tx, k *keys.DataKeys, tag string, fresh []*custos.Contact) error {
	for _, c := range fresh {
		cc := *c
		s, err := seal(k, &cc)
		if err != nil {
			return err
		}
		b64 := base64.StdEncoding.EncodeToString
		// A reserved token an echo updated (canaryupdate.go) keeps when.
		var updated sql.NullInt64
		if s.updated != s.created {
			updated = sql.NullInt64{Int64: s.updated, Valid: true}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reader_canaries (reader_tag, token, tenant_id, list_id, blind, email, attrs, consent, created_at, mac, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (reader_tag, token) DO NOTHING`,
			tag, s.token, s.tenant, s.list, b64(s.blind), b64(s.email), b64(s.attrs), string(s.consent), s.created, s.mac.String, updated); err != nil {
			return fmt.Errorf("keep reader canaries: %w", err)
		}
		// A reserved token becomes this reader's (no-op for others).
		if _, err := tx.ExecContext(ctx, `UPDATE canary_reserve SET reader_tag = $1 WHERE token = $2 AND reader_tag IS NULL`, tag, c.Token); err != nil {
			return fmt.Errorf("keep reader canaries: %w", err)
		}
	}
	return nil
}

// createMark is a create leaf's mark: random for a real contact, a keyed
// tag of the token for a canary (k non-nil).
func createMark(k *keys.SystemPRF, token string) string {
	if k != nil {
		return hex.EncodeToString(k.Tag("create-mark/" + token)[:16])
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("custos: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// Planted reports whether a contact.create leaf created a canary (a list
// canary or a reserved watermark token): its mark is the token's keyed
// tag. Compared in constant time.
func (c *CanaryIndex) Planted(l audit.Leaf) bool {
	if l.Action != string(custos.ActionContactCreate) || len(l.Tokens) != 1 || len(l.Mark) != 32 {
		return false
	}
	return hmac.Equal([]byte(l.Mark), []byte(createMark(c.prf, l.Tokens[0])))
}

// reservedTokens returns up to n of list's reserved canary tokens no
// reader has taken yet, with their creation instants and the instant an
// echoed update last named them.
func (v *Vault) reservedTokens(ctx context.Context, list string, n int) ([]*custos.Contact, error) {
	rows, err := v.read.QueryContext(ctx, `SELECT token, created_at, COALESCE(updated_at, created_at) FROM canary_reserve WHERE list_id = $1 AND reader_tag IS NULL ORDER BY random() LIMIT `+fmt.Sprint(n), list)
	if err != nil {
		return nil, fmt.Errorf("reserved canary tokens: %w", err)
	}
	defer rows.Close()
	var out []*custos.Contact
	for rows.Next() {
		var c custos.Contact
		var at, upd int64
		if err := rows.Scan(&c.Token, &at, &upd); err != nil {
			return nil, fmt.Errorf("reserved canary tokens: %w", err)
		}
		c.CreatedAt, c.UpdatedAt = fromMS(at), fromMS(upd)
		out = append(out, &c)
	}
	return out, rows.Err()
}
