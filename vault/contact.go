package vault

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/addr"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// MaxPageSize bounds a page of contacts or tokens.
const MaxPageSize = 500

// sealed is a contact as stored: ciphertexts and the blind index.
type sealed struct {
	token, tenant, list string
	blind, email, attrs []byte
	consent             custos.Consent
	created, updated    int64
	mac                 sql.NullString // under the list's keys (rowmac.go)
	// oldBlinds are the address's indexes under the PRF keys a rotation
	// retires, while it re-indexes (rotate.go): a duplicate is looked for
	// under them too. Not stored.
	oldBlinds [][]byte
	// reader is set for a reader's watermark row (reader_canaries): the
	// reader tag it is kept under; deleted, for its tombstone
	// (watermark.go). Not stored with contacts.
	reader  string
	deleted sql.NullInt64
	// present marks an import's row whose address is one of the
	// importer's own watermark rows: a duplicate, like a stored row's;
	// adopt, one on a canary's address the list does not hold, which
	// becomes the importer's watermark row (watermark.go).
	present, adopt bool
}

// associated data binds each ciphertext to its tenant, contact and field,
// so a ciphertext copied to another row or column fails to decrypt.
func adEmail(tenant, token string) []byte { return []byte(tenant + "/" + token + "/email") }
func adAttrs(tenant, token string) []byte { return []byte(tenant + "/" + token + "/attributes") }
func adReveal(tenant, id string) []byte   { return []byte(tenant + "/" + id + "/reveal-reason") }

// seal normalises and encrypts c under k, its list's keys ([Vault.listKeys]).
// c.Token must be set.
func seal(k *keys.DataKeys, c *custos.Contact) (*sealed, error) {
	norm, err := addr.Normalize(c.Email)
	if err != nil {
		return nil, err
	}
	if c.Consent == "" {
		c.Consent = custos.ConsentUnknown
	}
	if !c.Consent.Valid() {
		return nil, custos.Errorf(custos.EINVALID, "consent must be unknown, subscribed or unsubscribed")
	}
	if err := custos.ValidateAttributes(c.Attributes); err != nil {
		return nil, err
	}
	c.Email = norm
	s := &sealed{token: c.Token, tenant: c.TenantID, list: c.ListID, consent: c.Consent,
		created: ms(c.CreatedAt), updated: ms(c.UpdatedAt), blind: k.BlindIndex(norm)}
	if k.Reindexing() {
		s.oldBlinds = k.BlindIndexes(norm)[1:]
	}
	if s.email, err = k.Seal([]byte(norm), adEmail(c.TenantID, c.Token)); err != nil {
		return nil, fmt.Errorf("seal email: %w", err)
	}
	if len(c.Attributes) > 0 {
		if s.attrs, err = k.Seal(c.Attributes, adAttrs(c.TenantID, c.Token)); err != nil {
			return nil, fmt.Errorf("seal attributes: %w", err)
		}
	}
	macContact(k, s)
	return s, nil
}

// open decrypts a stored contact with its list's keys, refusing a row
// whose MAC fails.
func open(k *keys.DataKeys, s *sealed) (*custos.Contact, error) {
	if !contactOK(k, s) {
		return nil, fmt.Errorf("open %s: %w", s.token, errForged)
	}
	email, err := k.Open(s.email, adEmail(s.tenant, s.token))
	if err != nil {
		return nil, fmt.Errorf("open email of %s: %w", s.token, err)
	}
	c := &custos.Contact{Token: s.token, TenantID: s.tenant, ListID: s.list, Email: string(email), Consent: s.consent,
		CreatedAt: fromMS(s.created), UpdatedAt: fromMS(s.updated)}
	if len(s.attrs) > 0 {
		a, err := k.Open(s.attrs, adAttrs(s.tenant, s.token))
		if err != nil {
			return nil, fmt.Errorf("open attributes of %s: %w", s.token, err)
		}
		c.Attributes = json.RawMessage(a)
	}
	return c, nil
}

const contactColumns = `token, tenant_id, list_id, blind_index, email, attributes, consent, created_at, updated_at, mac`

func scanSealed(row interface{ Scan(...any) error }) (*sealed, error) {
	var s sealed
	var consent string
	if err := row.Scan(&s.token, &s.tenant, &s.list, &s.blind, &s.email, &s.attrs, &consent, &s.created, &s.updated, &s.mac); err != nil {
		return nil, err
	}
	s.consent = custos.Consent(consent)
	return &s, nil
}

func insertSealed(ctx context.Context, tx *sql.Tx, s *sealed) (bool, error) {
	if dup, err := oldDuplicate(ctx, tx, s); err != nil || dup {
		return false, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO contacts (`+contactColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (list_id, blind_index) DO NOTHING`,
		s.token, s.tenant, s.list, s.blind, s.email, s.attrs, string(s.consent), s.created, s.updated, s.mac)
	if err != nil {
		return false, fmt.Errorf("insert contact: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

var errDuplicate = custos.Errorf(custos.ECONFLICT, "a contact with this address already exists in the list")

// CreateContact adds a contact to a list. c.TenantID and c.ListID name the
// list; Token and timestamps are set on success.
func (v *Vault) CreateContact(ctx context.Context, c *custos.Contact) error {
	c.Token = custos.NewID(custos.PrefixContact)
	l, err := v.authorize(ctx, custos.ActionContactCreate, c.TenantID)
	if err != nil {
		return err
	}
	l.List = safeID(custos.PrefixList, c.ListID)
	if _, err := v.findList(ctx, c.TenantID, c.ListID); err != nil {
		return v.deny(ctx, l, err)
	}
	k, err := v.listKeys(ctx, c.TenantID, c.ListID)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	c.CreatedAt = v.now().UTC().Truncate(1e6)
	c.UpdatedAt = c.CreatedAt
	s, err := seal(k, c)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	l.Tokens = []string{c.Token}
	l.Mark = createMark(nil, c.Token)
	if err := v.readyCanaries(ctx); err != nil {
		return v.deny(ctx, l, err)
	}
	g, err := v.canaryGrowth(ctx, c.ListID)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	// The creator's own watermark rows are rows of its view: an address
	// one of them holds is already in the list for it (watermark.go).
	rtag, err := v.viewTag(ctx, l, c.ListID)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	blinds := append([][]byte{s.blind}, s.oldBlinds...)
	apply := func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		m, err := v.ownMarkByAddress(ctx, tx, k, rtag, blinds, "")
		if err != nil {
			return fmt.Errorf("insert contact: %w", err)
		}
		var tok string
		if m != nil {
			tok = m.token
		} else {
			ok, err := insertSealed(ctx, tx, s)
			if err != nil {
				return err
			}
			if ok {
				if g != nil {
					return v.advance(ctx, tx, g, l, c.TenantID, c.ListID, c.CreatedAt)
				}
				return nil
			}
		}
		if seesMembership(ctx, c.TenantID) {
			return errDuplicate
		}
		// A key that cannot read the list must not learn that the address
		// is in it: it gets the same answer as for a new address, naming
		// the contact that holds the address, which is left unchanged.
		if tok == "" {
			tok, err = tokenByIndexes(ctx, tx, s.list, "", blinds)
			if err != nil || tok == "" {
				return fmt.Errorf("find existing contact: %v", err)
			}
		}
		c.Token = tok
		leaf.Tokens = []string{c.Token}
		leaf.Detail = "address already in the list, left unchanged; answered as created (key without read scope)"
		return nil
	}
	if g != nil && g.due != nil {
		// A canary rides only a create that will add a row: one beside a
		// refused duplicate would be the only success at its instant.
		if tok, err := tokenByIndexes(ctx, v.read, s.list, "", blinds); err != nil {
			return v.deny(ctx, l, fmt.Errorf("find existing contact: %w", err))
		} else if tok != "" {
			g.due = nil
		} else if m, err := v.ownMarkByAddress(ctx, v.read, k, rtag, blinds, ""); err != nil {
			return v.deny(ctx, l, fmt.Errorf("find existing contact: %w", err))
		} else if m != nil {
			g.due = nil
		}
	}
	if g == nil || g.due == nil {
		err = v.record(ctx, l, apply)
	} else {
		// The list's first canary rides its first create: created through
		// this path, with a leaf of its own like this one (canarygrowth.go).
		cl, capply, cerr := v.canaryEntry(ctx, l, c.TenantID, c.ListID, c.CreatedAt, g.due.kind, g.listTag, v.ridingDonors(ctx, c, k), k)
		if cerr != nil {
			return v.deny(ctx, l, cerr)
		}
		err = v.recordBeside(ctx, l, apply, cl, capply)
	}
	if err == nil && !seesMembership(ctx, c.TenantID) {
		// Nor does it get a token, new address or not: a token's ID
		// carries the second it was minted (custos.NewIDAt), so a
		// member's older token would tell it from a new one. The leaf
		// names the token for the tenant; a reader finds it by lookup.
		c.Token = ""
	}
	return err
}

// seesMembership reports whether the caller may already learn which
// addresses tenant's lists hold: it may look addresses up, list tokens,
// or send (a send's answer per token tells a member's consent from the
// one just given). Writes by a caller that may not answer alike for
// members and non-members, so that they are no membership oracle.
func seesMembership(ctx context.Context, tenant string) bool {
	r := custos.RequestFromContext(ctx)
	return custos.Authorize(r, custos.ActionContactLookup, tenant) == nil ||
		custos.Authorize(r, custos.ActionTokenList, tenant) == nil ||
		custos.Authorize(r, custos.ActionSend, tenant) == nil
}

// Contact returns one contact, decrypted, after recording the read.
func (v *Vault) Contact(ctx context.Context, tenant, token string) (*custos.Contact, error) {
	l, s, err := v.authorizeContact(ctx, custos.ActionContactRead, tenant, token)
	if err != nil {
		return nil, err
	}
	return v.reveal(ctx, l, tenant, s)
}

// authorizeContact is [Vault.authorize] for an operation on one contact
// of tenant: the leaf names it, and a missing one is recorded as a refusal.
func (v *Vault) authorizeContact(ctx context.Context, action custos.Action, tenant, token string) (audit.Leaf, *sealed, error) {
	l, err := v.authorize(ctx, action, tenant)
	if err != nil {
		return l, nil, err
	}
	if (action == custos.ActionContactUpdate || action == custos.ActionContactDelete) && !seesMembership(ctx, tenant) {
		// A create by such a key answers a member's address with the
		// member's token: changing or deleting by token would let it read
		// (an update returns the contact), overwrite or erase a member it
		// cannot see, and tell members apart by the answer.
		return l, nil, v.deny(ctx, l, custos.Errorf(custos.EFORBIDDEN, "a key that can neither look contacts up, list tokens nor send may not change or delete contacts"))
	}
	s, err := v.namedContact(ctx, &l, tenant, token, action)
	return l, s, err
}

// namedContact finds the contact token of tenant and names it in l; a
// missing one is recorded (with l) as a refusal. A reader's watermark row
// is found by its token too, so that a token from a page answers alike for
// real and watermark rows (issue 20): by a read, any reader's row of the
// tenant (a send resolves them alike); by an update or a delete, only the
// reader's own ([Vault.ownMark]), which it then changes in its own view
// (watermark.go). Any other action ("": a staff reveal) finds stored
// contacts only.
func (v *Vault) namedContact(ctx context.Context, l *audit.Leaf, tenant, token string, action custos.Action) (*sealed, error) {
	s, err := v.findContact(ctx, tenant, token)
	mine := action == custos.ActionContactUpdate || action == custos.ActionContactDelete
	if mine && custos.ErrorCode(err) == custos.ENOTFOUND {
		var m *sealed
		if m, err = v.ownMark(ctx, *l, tenant, token); err == nil {
			if s = m; s == nil {
				err = notFound("contact")
			} else if k, kerr := v.listKeys(ctx, tenant, s.list); kerr != nil {
				err = kerr
			} else {
				_, err = v.checkContact(ctx, k, s)
			}
		}
	}
	if action == custos.ActionContactRead && custos.ErrorCode(err) == custos.ENOTFOUND {
		var m map[string]*sealed
		if m, err = v.watermarkRecipients(ctx, tenant, []string{token}); err == nil {
			if s = m[token]; s == nil {
				err = notFound("contact")
			} else if k, kerr := v.listKeys(ctx, tenant, s.list); kerr != nil {
				err = kerr
			} else {
				_, err = v.checkContact(ctx, k, s)
			}
		}
	}
	if err != nil {
		return nil, v.deny(ctx, *l, err)
	}
	l.List, l.Tokens = s.list, []string{s.token}
	return s, nil
}

// reveal records l and only then decrypts and returns the contact.
func (v *Vault) reveal(ctx context.Context, l audit.Leaf, tenant string, s *sealed) (*custos.Contact, error) {
	k, err := v.listKeys(ctx, tenant, s.list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return open(k, s)
}

func (v *Vault) findContact(ctx context.Context, tenant, token string) (*sealed, error) {
	if !custos.ValidID(custos.PrefixContact, token) || !custos.ValidID(custos.PrefixTenant, tenant) {
		return nil, notFound("contact")
	}
	// A deleted tenant's rows stay until they are purged (docs/deletion.md):
	// they are not found, even by a node that still caches its keys.
	s, err := scanSealed(v.queryRow(ctx, `SELECT `+contactColumns+` FROM contacts WHERE token = $1 AND tenant_id = $2
		AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = $2 AND t.deleted_at IS NOT NULL)`, token, tenant))
	if isNoRows(err) {
		return nil, v.gone(ctx, tenant, "", token, notFound("contact"))
	} else if err != nil {
		return nil, fmt.Errorf("find contact: %w", err)
	}
	k, err := v.listKeys(ctx, tenant, s.list)
	if err != nil {
		return nil, err
	}
	if _, err := v.checkContact(ctx, k, s); err != nil {
		return nil, err
	}
	return s, nil
}

// Contacts returns a page of a list's contacts, in token order, after the
// token "after". Every token returned is named in the audit leaf.
//
// Paging a whole list is an export by other means, so its pages carry the
// reader's watermark rows too (issue 20): the same rows, kept per person
// (else principal) and list, that the reader's exports carry, each on the
// page its token falls in, within the page's limit, named in the page's
// leaf like the real rows. A file assembled from pages therefore traces to
// its reader ([Vault.Trace]) exactly like an export.
func (v *Vault) Contacts(ctx context.Context, tenant, list, after string, limit int) (*custos.Page[*custos.Contact], error) {
	l, ls, err := v.authorizeList(ctx, custos.ActionContactList, tenant, list, checkPage(after, limit))
	if err != nil {
		return nil, err
	}
	if v.canaries <= 0 {
		ss, next, k, err := v.loadPage(ctx, &l, tenant, list, after, limit, nil)
		if err != nil {
			return nil, err
		}
		return openPage(k, ss, next, func(c *custos.Contact) *custos.Contact { return c })
	}
	marks, keep, rtag, err := v.pageMarks(ctx, l, ls, tenant, list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	// The marks after the cursor, merged with the real rows by token: the
	// page takes the first limit of both, so its size says nothing.
	i := sort.Search(len(marks), func(i int) bool { return marks[i].Token > after })
	marks = marks[i:]
	real, err := queryIDs(ctx, v.read, `SELECT token FROM contacts WHERE list_id = $1 AND token > $2 ORDER BY token LIMIT $3`, list, after, limit+1)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list contacts: %w", err))
	}
	nReal, nMarks := 0, 0
	for nReal+nMarks < limit && (nReal < len(real) || nMarks < len(marks)) {
		if nMarks < len(marks) && (nReal == len(real) || marks[nMarks].Token < real[nReal]) {
			nMarks++
		} else {
			nReal++
		}
	}
	more := nReal < len(real) || nMarks < len(marks)
	shown := marks[:nMarks]
	r := custos.RequestFromContext(ctx)
	lk, err := v.listKeys(ctx, tenant, list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	apply := func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if err := keepReaderCanaries(ctx, tx, lk, rtag, keep); err != nil {
			return err
		}
		for _, c := range shown {
			leaf.Tokens = append(leaf.Tokens, c.Token)
			if _, err := tx.ExecContext(ctx, insertExportCanary, addrTag(v.canaryKey, c.Email), tenant, list, leaf.Actor, leaf.KeyID, r.Source, r.ID, ms(v.now())); err != nil {
				return fmt.Errorf("record page canaries: %w", err)
			}
		}
		leaf.Count += len(shown)
		slices.Sort(leaf.Tokens)
		return nil
	}
	var ss []*sealed
	var k *keys.DataKeys
	if nReal > 0 {
		ss, _, k, err = v.loadPage(ctx, &l, tenant, list, after, nReal, apply)
	} else {
		k, err = lk, v.record(ctx, l, apply)
	}
	if err != nil {
		return nil, err
	}
	page, err := openPage(k, ss, "", func(c *custos.Contact) *custos.Contact { return c })
	if err != nil {
		return nil, err
	}
	page.Items = append(page.Items, shown...)
	slices.SortFunc(page.Items, func(a, b *custos.Contact) int { return strings.Compare(a.Token, b.Token) })
	if more && len(page.Items) > 0 {
		page.Next = page.Items[len(page.Items)-1].Token
	}
	return page, nil
}

// pageMarks returns the reader's watermark rows for list, sorted by token:
// the live ones kept for it (its updates applied, those it deleted left
// out, those its imports adopted in), topped up with fresh ones (returned
// as keep, to be kept with the page's leaf) while fewer than the list's
// canaries were ever minted for it (watermark.go).
func (v *Vault) pageMarks(ctx context.Context, l audit.Leaf, ls *custos.List, tenant, list string) (marks, keep []*custos.Contact, rtag string, err error) {
	if err := v.readyCanaries(ctx); err != nil {
		return nil, nil, "", err
	}
	k, err := v.listKeys(ctx, tenant, list)
	if err != nil {
		return nil, nil, "", err
	}
	rtag = readerTag(v.canaryKey, list, l)
	kept, minted, err := v.readerCanaries(ctx, k, rtag)
	if err != nil {
		return nil, nil, "", err
	}
	marks = kept
	if n := v.canaries - minted; n > 0 {
		snap, err := v.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, nil, "", err
		}
		donors, err := exportDonors(ctx, snap, k, list)
		snap.Rollback()
		if err != nil {
			return nil, nil, "", err
		}
		if len(donors) == 0 {
			return nil, nil, rtag, nil // an empty list: nothing to watermark yet
		}
		if keep, err = v.exportCanaries(ctx, tenant, list, ls.CreatedAt, n, donors); err != nil {
			return nil, nil, "", err
		}
		marks = append(slices.Clone(kept), keep...)
	}
	slices.SortFunc(marks, func(a, b *custos.Contact) int { return strings.Compare(a.Token, b.Token) })
	return marks, keep, rtag, nil
}

// openPage opens a page of sealed contacts that [Vault.loadPage] has
// recorded, shown to the caller through view.
func openPage[T any](k *keys.DataKeys, ss []*sealed, next string, view func(*custos.Contact) T) (*custos.Page[T], error) {
	page := &custos.Page[T]{Items: []T{}, Next: next}
	for _, s := range ss {
		c, err := open(k, s)
		if err != nil {
			return nil, err
		}
		page.Items = append(page.Items, view(c))
	}
	return page, nil
}

// loadPage reads one page of a list's sealed contacts, names them in l
// (tokens and count) and records l with apply (may be nil); only then may
// the caller open them with the returned keys. Any failure is recorded as
// a refusal.
func (v *Vault) loadPage(ctx context.Context, l *audit.Leaf, tenant, list, after string, limit int, apply func(context.Context, *sql.Tx, *audit.Leaf) error) ([]*sealed, string, *keys.DataKeys, error) {
	rows, err := v.read.QueryContext(ctx, `SELECT `+contactColumns+` FROM contacts WHERE list_id = $1 AND token > $2 ORDER BY token LIMIT $3`, list, after, limit+1)
	if err != nil {
		return nil, "", nil, v.deny(ctx, *l, fmt.Errorf("list contacts: %w", err))
	}
	var ss []*sealed
	for rows.Next() {
		s, err := scanSealed(rows)
		if err != nil {
			rows.Close()
			return nil, "", nil, v.deny(ctx, *l, fmt.Errorf("scan contact: %w", err))
		}
		ss = append(ss, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", nil, v.deny(ctx, *l, fmt.Errorf("list contacts: %w", err))
	}
	next := ""
	if len(ss) > limit {
		ss = ss[:limit]
		next = ss[limit-1].token
	}
	k, err := v.listKeys(ctx, tenant, list)
	if err != nil {
		return nil, "", nil, v.deny(ctx, *l, err)
	}
	for _, s := range ss {
		if k, err = v.checkContact(ctx, k, s); err != nil {
			return nil, "", nil, v.deny(ctx, *l, err)
		}
	}
	l.Count = len(ss)
	for _, s := range ss {
		l.Tokens = append(l.Tokens, s.token)
	}
	if err := v.record(ctx, *l, apply); err != nil {
		return nil, "", nil, err
	}
	return ss, next, k, nil
}

func checkPage(after string, limit int) error {
	if limit < 1 || limit > MaxPageSize {
		return custos.Errorf(custos.EINVALID, "limit must be between 1 and %d", MaxPageSize)
	}
	if after != "" && !custos.ValidID(custos.PrefixContact, after) {
		return custos.Errorf(custos.EINVALID, "after must be a contact token")
	}
	return nil
}

// UpdateContact changes a contact and returns it as stored.
func (v *Vault) UpdateContact(ctx context.Context, tenant, token string, u custos.ContactUpdate) (*custos.Contact, error) {
	l, s, err := v.authorizeContact(ctx, custos.ActionContactUpdate, tenant, token)
	if err != nil {
		return nil, err
	}
	k, err := v.listKeys(ctx, tenant, s.list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	c, err := open(k, s)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	before := *c
	if u.Email != nil {
		c.Email = *u.Email
	}
	if u.Attributes != nil {
		c.Attributes = *u.Attributes
		if string(c.Attributes) == "null" {
			c.Attributes = nil
		}
	}
	if u.Consent != nil {
		c.Consent = *u.Consent
	}
	c.UpdatedAt = v.now().UTC().Truncate(1e6)
	ns, err := seal(k, c)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	// The reader's own watermark rows are rows of its view: an address one
	// of them holds is taken, as a stored contact's is (watermark.go).
	rtag, err := v.viewTag(ctx, l, s.list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	blinds := append([][]byte{ns.blind}, ns.oldBlinds...)
	// One of the list's canaries may be updated alike, later
	// (canaryupdate.go): a real row's update only.
	var canaryEcho *echo
	if s.reader == "" {
		canaryEcho = v.prepareEcho(ctx, l, &before, c)
	}
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if m, err := v.ownMarkByAddress(ctx, tx, k, rtag, blinds, token); err != nil {
			return fmt.Errorf("update contact: %w", err)
		} else if m != nil {
			return errDuplicate
		}
		if s.reader != "" {
			// The reader's watermark row: changed in its view only, kept
			// re-sealed with its row MAC.
			if tok, err := tokenByIndexes(ctx, tx, s.list, "", blinds); err != nil {
				return fmt.Errorf("update contact: %w", err)
			} else if tok != "" {
				return errDuplicate
			}
			return updateMark(ctx, tx, s, ns)
		}
		if len(ns.oldBlinds) > 0 {
			// During a re-index, another contact may hold the address under the old index key.
			if tok, err := tokenByIndexes(ctx, tx, s.list, token, ns.oldBlinds); err != nil {
				return fmt.Errorf("update contact: %w", err)
			} else if tok != "" {
				return errDuplicate
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE contacts SET blind_index = $1, email = $2, attributes = $3, consent = $4, updated_at = $5, mac = $9
			WHERE token = $6 AND tenant_id = $7 AND NOT EXISTS (
				SELECT 1 FROM contacts o WHERE o.list_id = $8 AND o.blind_index = $1 AND o.token <> $6)`,
			ns.blind, ns.email, ns.attrs, string(ns.consent), ns.updated, token, tenant, s.list, ns.mac)
		if err != nil {
			return fmt.Errorf("update contact: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			var exists int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM contacts WHERE token = $1`, token).Scan(&exists); err != nil {
				return fmt.Errorf("update contact: %w", err)
			}
			if exists == 0 {
				return notFound("contact")
			}
			return errDuplicate
		}
		if canaryEcho != nil {
			return v.queueEcho(ctx, tx, canaryEcho)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Lookup finds a contact of a list by address, through the blind index.
// Tenant users get the contact; a service gets only the token and
// non-personal fields (it resolves addresses only at the egress relay).
func (v *Vault) Lookup(ctx context.Context, tenant, list, email string) (*custos.Contact, error) {
	l, _, err := v.authorizeList(ctx, custos.ActionContactLookup, tenant, list)
	if err != nil {
		return nil, err
	}
	norm, err := addr.Normalize(email)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	tk, err := v.tenantKeys(ctx, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Detail = lookupShape(tk, norm)
	k, err := v.listKeys(ctx, tenant, list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	var s *sealed
	blinds := [][]byte{k.BlindIndex(norm)}
	if k.Reindexing() {
		// A rotation re-indexes the list: the row may be under either key.
		blinds = k.BlindIndexes(norm)
		args := []any{list}
		for _, b := range blinds {
			args = append(args, b)
		}
		s, err = scanSealed(v.read.QueryRowContext(ctx, `SELECT `+contactColumns+` FROM contacts WHERE list_id = $1 AND `+blindIn(2, len(blinds))+` LIMIT 1`, args...))
	} else {
		s, err = scanSealed(v.read.QueryRowContext(ctx, `SELECT `+contactColumns+` FROM contacts WHERE list_id = $1 AND blind_index = $2`, list, blinds[0]))
	}
	if isNoRows(err) {
		// Not stored: one of the reader's own watermark rows is a row of
		// its view, found by its blind index like a contact (watermark.go);
		// another reader's is not.
		var rtag string
		if rtag, err = v.viewTag(ctx, l, list); err == nil {
			if s, err = v.ownMarkByAddress(ctx, v.read, k, rtag, blinds, ""); err == nil && s == nil {
				err = notFound("contact")
			}
		}
		if custos.ErrorCode(err) == custos.ENOTFOUND {
			return nil, v.deny(ctx, l, err)
		}
	}
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("lookup contact: %w", err))
	}
	if _, err := v.checkContact(ctx, k, s); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Tokens = []string{s.token}
	if custos.PrincipalFromContext(ctx).Kind == custos.KindService {
		l.Detail += " token only"
		if err := v.record(ctx, l, nil); err != nil {
			return nil, err
		}
		return &custos.Contact{Token: s.token, TenantID: s.tenant, ListID: s.list, Consent: s.consent,
			CreatedAt: fromMS(s.created), UpdatedAt: fromMS(s.updated)}, nil
	}
	return v.reveal(ctx, l, tenant, s)
}

// lookupShape is a lookup's detail for the detector (issue 20): what the
// guessed address looks like, never the address — its class (role
// mailbox, lone first name, other) and short keyed digests, under the
// tenant's PRF and shredded with it, of its numbered stem (only when the
// local part has digits), its local part and its domain: "shape role
// l:… d:…", "shape other s:… l:… d:…". Enough to count numbered guesses
// of one stem, one local part tried across domains and dictionary words
// across domains; 48 bits each, too short to serve as an index of
// addresses.
func lookupShape(k *keys.TenantKeys, norm string) string {
	sh := addr.ShapeOf(norm)
	digest := func(kind, s string) string {
		return hex.EncodeToString(k.BlindIndex("custos/lookup-" + kind + "\x00" + s))[:12]
	}
	out := "shape " + sh.Class
	if sh.Stem != "" {
		out += " s:" + digest("stem", sh.Stem+"@"+sh.Domain)
	}
	return out + " l:" + digest("local", sh.Local) + " d:" + digest("domain", sh.Domain)
}

// Tokens returns a page of a list's tokens with non-personal fields only:
// what the vendor's pipeline needs to refer to contacts without reading them.
func (v *Vault) Tokens(ctx context.Context, tenant, list, after string, limit int) (*custos.Page[custos.TokenEntry], error) {
	l, _, err := v.authorizeList(ctx, custos.ActionTokenList, tenant, list, checkPage(after, limit))
	if err != nil {
		return nil, err
	}
	rows, err := v.read.QueryContext(ctx, `SELECT token, consent, created_at, updated_at FROM contacts WHERE list_id = $1 AND token > $2 ORDER BY token LIMIT $3`, list, after, limit+1)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list tokens: %w", err))
	}
	page := &custos.Page[custos.TokenEntry]{Items: []custos.TokenEntry{}}
	for rows.Next() {
		var e custos.TokenEntry
		var consent string
		var created, updated int64
		if err := rows.Scan(&e.Token, &consent, &created, &updated); err != nil {
			rows.Close()
			return nil, v.deny(ctx, l, fmt.Errorf("scan token: %w", err))
		}
		e.Consent, e.CreatedAt, e.UpdatedAt = custos.Consent(consent), fromMS(created), fromMS(updated)
		page.Items = append(page.Items, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list tokens: %w", err))
	}
	// The reader's own watermark rows — kept by its pages and exports, or
	// adopted by its imports — are rows of its view (watermark.go): merged
	// by token within the limit, as pages merge them. None is minted here:
	// a page of tokens carries no address to trace.
	marks, err := v.ownMarksAfter(ctx, l, tenant, list, after)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if len(marks) > 0 {
		for _, c := range marks {
			page.Items = append(page.Items, custos.TokenEntry{Token: c.Token, Consent: c.Consent, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt})
		}
		slices.SortFunc(page.Items, func(a, b custos.TokenEntry) int { return strings.Compare(a.Token, b.Token) })
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		page.Next = page.Items[limit-1].Token
	}
	l.Count = len(page.Items)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return page, nil
}

// safeID returns id if it is well-formed, else a placeholder: leaves never
// carry caller-controlled strings.
func safeID(prefix, id string) string {
	if custos.ValidID(prefix, id) {
		return id
	}
	if id == "" {
		return ""
	}
	return "invalid"
}

// openBase64 opens a base64 AEAD ciphertext sealed with k under ad.
func openBase64(k *keys.TenantKeys, s string, ad []byte) (string, error) {
	ct, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", err
	}
	pt, err := k.Open(ct, ad)
	if err != nil {
		return "", err
	}
	return string(pt), nil
}
