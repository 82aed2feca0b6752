package vault

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Kinds of [DataFinding].
const (
	FindingInserted   = "inserted"    // a row custos never wrote (no MAC, or no entry creates it)
	FindingAltered    = "altered"     // a row custos wrote, changed since (its MAC fails)
	FindingDeleted    = "deleted"     // the log says the row exists; it does not
	FindingRolledBack = "rolled_back" // an older, validly MACed version of the row is back
	FindingUnchecked  = "unchecked"   // the row could not be checked (a key it needs did not answer)
)

// DataFinding is one row that disagrees with its MAC or with the log. It
// names tables, ids and entry indexes only.
type DataFinding struct {
	Kind  string `json:"kind"`
	Table string `json:"table"`
	Row   string `json:"row"`
	What  string `json:"what"`
}

func (f DataFinding) String() string {
	return fmt.Sprintf("%s: %s %s: %s", f.Kind, f.Table, f.Row, f.What)
}

// DataReport is what [Vault.VerifyData] found.
type DataReport struct {
	Rows     int           `json:"rows"`    // rows whose MAC was checked
	Entries  uint64        `json:"entries"` // log entries replayed
	Findings []DataFinding `json:"findings"`
}

// VerifyData checks every MACed row against its MAC and the rows against
// the log (read through [audit.Log.Entries], so each entry is checked
// against the tree first). It names what was inserted, altered, deleted or
// rolled back outside custos:
//
//   - every principals, api_keys, grants, enrollments, tenant_settings,
//     tenant_freezes, detector_state and contacts row: its MAC;
//   - a key or principal row with no entry that created it (enrollment,
//     key creation, principal or tenant creation, bootstrap);
//   - a contact token an entry names (created, read, listed, updated) that
//     has no row, and no entry deleted it or its list;
//   - a freeze the log applied and never lifted that has no row, and a
//     freeze row the log never applied;
//   - a suspension or key revocation in the log that the row does not show
//     (an old row restored: its MAC is valid, the log is newer).
//   - a keyed list's keyset row (list_keys) missing, or not the one its
//     list.create entry committed to, and a keyset row no entry created.
//   - a tenant's keyset row (tenant_keys) missing for a tenant the log
//     created and never deleted; back after the entry that destroyed it
//     (a backup restored after a deletion); for a tenant no entry created;
//     not opening as that tenant's under the KEK (swapped with another
//     tenant's, or written by hand); or naming another own KMS key than
//     the tenant's last tenant_key.set/clear entry did.
//
// What the log cannot say: a contact imported in bulk and never named by
// an entry since (import entries count rows, they do not list tokens) is
// covered by its MAC only, so its deletion goes unseen.
func (v *Vault) VerifyData(ctx context.Context) (*DataReport, error) {
	rep := &DataReport{Findings: []DataFinding{}}
	lg, err := v.replay(ctx)
	if err != nil {
		return nil, err
	}
	rep.Entries = lg.entries
	named := map[string]bool{}
	add := func(kind, table, row, what string) {
		if named[table+"/"+row] {
			return // one finding per row: the first says the most
		}
		named[table+"/"+row] = true
		rep.Findings = append(rep.Findings, DataFinding{Kind: kind, Table: table, Row: row, What: what})
	}
	k, err := v.rowKey(ctx, nil)
	if err != nil {
		return nil, err
	}
	present := map[string]map[string][]any{} // table → pk → values
	for _, spec := range rowSpecs {
		present[spec.table] = map[string][]any{}
		rows, err := v.read.QueryContext(ctx, `SELECT `+spec.columns()+`, mac FROM `+spec.table+` ORDER BY `+spec.pk)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", spec.table, err)
		}
		for rows.Next() {
			vals, mac, err := scanRow(rows, spec)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("verify %s: %w", spec.table, err)
			}
			id := fmt.Sprint(vals[0])
			present[spec.table][id] = vals
			rep.Rows++
			switch {
			case !mac.Valid:
				add(FindingInserted, spec.table, id, "no MAC: written outside custos")
			case !macOK(mac, k.MAC(spec.message(vals))):
				if lg.known(spec.table, id) {
					add(FindingAltered, spec.table, id, "MAC does not match: changed outside custos")
				} else {
					add(FindingInserted, spec.table, id, "MAC does not match and no entry creates it: written outside custos")
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("verify %s: %w", spec.table, err)
		}
	}
	tokens, err := v.verifyContacts(ctx, rep, add)
	if err != nil {
		return nil, err
	}
	// Watermark rows are never stored as contacts, yet the log names them:
	// a page's leaf names those it carried, and a create leaf names each
	// token reserved for them (canary.go). Their tokens are kept here.
	for _, q := range []string{`SELECT token FROM reader_canaries`, `SELECT token FROM canary_reserve`} {
		ids, err := queryIDs(ctx, v.read, q)
		if err != nil {
			return nil, fmt.Errorf("verify watermark tokens: %w", err)
		}
		for _, t := range ids {
			tokens[t] = true
		}
	}

	// Rows the log says were created: keys and principals need an entry.
	for _, t := range []string{"api_keys", "principals"} {
		for id := range present[t] {
			if !lg.known(t, id) {
				add(FindingInserted, t, id, "no entry creates it (no enrollment, key creation or principal creation)")
			}
		}
	}
	// Rolled back: the log is newer than the row.
	for id, at := range lg.revoked {
		if vals, ok := present["api_keys"][id]; ok && vals[6] == nil {
			add(FindingRolledBack, "api_keys", id, fmt.Sprintf("entry %d revoked it; the row is live", at))
		}
	}
	for id, at := range lg.suspended {
		if vals, ok := present["principals"][id]; ok && fmt.Sprint(vals[7]) == "0" {
			add(FindingRolledBack, "principals", id, fmt.Sprintf("entry %d suspended it and no entry lifted it; the row is not suspended", at))
		}
	}
	// Freezes: both directions.
	for t, at := range lg.frozen {
		if _, ok := present["tenant_freezes"][t]; !ok {
			add(FindingDeleted, "tenant_freezes", t, fmt.Sprintf("entry %d froze the tenant and no entry lifted it; there is no freeze row", at))
		}
	}
	for t := range present["tenant_freezes"] {
		if _, ok := lg.frozen[t]; !ok {
			add(FindingInserted, "tenant_freezes", t, "no entry froze the tenant (or an entry lifted it)")
		}
	}
	// List keysets: the log committed to each keyed list's keyset at its
	// creation. A missing row would make custos take the list for a legacy
	// one and seal its new contacts under the tenant's keys.
	if err := v.verifyListKeys(ctx, lg, add); err != nil {
		return nil, err
	}
	if err := v.verifyTenantKeys(ctx, lg, add); err != nil {
		return nil, err
	}
	// Contacts named by the log that have no row.
	for tok, c := range lg.tokens {
		if tokens[tok] || lg.deletedTokens[tok] || lg.deletedLists[c.list] || lg.deletedTenants[c.tenant] {
			continue
		}
		add(FindingDeleted, "contacts", tok, fmt.Sprintf("entry %d names it (%s) and no entry deleted it or its list; there is no row", c.at, c.action))
	}
	sort.Slice(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		return a.Row < b.Row
	})
	return rep, nil
}

// verifyContacts checks every contact row's MAC under its list's keys
// and returns the tokens present.
func (v *Vault) verifyContacts(ctx context.Context, rep *DataReport, add func(kind, table, row, what string)) (map[string]bool, error) {
	// A deleted tenant's rows awaiting their purge have no keys to check.
	rows, err := v.read.QueryContext(ctx, `SELECT `+contactColumns+` FROM contacts c
		WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = c.tenant_id AND t.deleted_at IS NOT NULL) ORDER BY tenant_id, list_id, token`)
	if err != nil {
		return nil, fmt.Errorf("verify contacts: %w", err)
	}
	defer rows.Close()
	tokens := map[string]bool{}
	var tenant, list string
	var k *keys.DataKeys
	for rows.Next() {
		s, err := scanSealed(rows)
		if err != nil {
			return nil, fmt.Errorf("verify contacts: %w", err)
		}
		tokens[s.token] = true
		rep.Rows++
		if s.tenant != tenant || s.list != list || k == nil {
			tenant, list = s.tenant, s.list
			if k, err = v.listKeys(ctx, tenant, list); err != nil {
				k = nil
				add(FindingInserted, "contacts", s.token, "its list or tenant has no keys: written outside custos")
				continue
			}
		}
		if !s.mac.Valid {
			add(FindingInserted, "contacts", s.token, "no MAC: written outside custos")
		} else if !contactOK(k, s) {
			add(FindingAltered, "contacts", s.token, "MAC does not match: inserted or changed outside custos")
		}
	}
	return tokens, rows.Err()
}

// keyedList is a list whose creation entry committed to its keyset.
type keyedList struct {
	at     uint64
	tenant string
	digest string
}

type namedToken struct {
	at     uint64
	tenant string
	list   string
	action string
}

// replayed is what the log says about the rows.
type replayed struct {
	entries        uint64
	principals     map[string]bool
	keys           map[string]bool
	revoked        map[string]uint64 // key → entry
	suspended      map[string]uint64 // principal → entry, not lifted since
	frozen         map[string]uint64 // tenant → entry, not lifted since
	tokens         map[string]namedToken
	deletedTokens  map[string]bool
	deletedLists   map[string]bool
	deletedTenants map[string]bool      // tenant.delete: its rows go, by crypto-shredding and purge
	tenants        map[string]uint64    // tenant → the entry that created it
	shredded       map[string]uint64    // tenant → the tenant.delete that destroyed its keyset
	tenantKMS      map[string]string    // tenant → digest of its own KMS key's URI (tenant_key.set), while set
	keyedLists     map[string]keyedList // list.create with its keyset's digest
	ids            map[string]bool      // every id any entry names
}

func (r *replayed) known(table, id string) bool {
	switch table {
	case "principals":
		return r.principals[id]
	case "api_keys":
		return r.keys[id]
	case "tenant_freezes":
		_, ok := r.frozen[id]
		return ok || r.ids[id]
	}
	return r.ids[id]
}

// verifyListKeys checks the list_keys rows against the list.create
// entries that committed to them: a keyed list the log says exists (not
// deleted, nor its tenant) must have its row, with the digest the entry
// names; a row no entry created was written outside custos.
func (v *Vault) verifyListKeys(ctx context.Context, lg *replayed, add func(kind, table, row, what string)) error {
	rows, err := v.read.QueryContext(ctx, `SELECT list_id, keyset FROM list_keys ORDER BY list_id`)
	if err != nil {
		return fmt.Errorf("verify list keys: %w", err)
	}
	defer rows.Close()
	present := map[string]string{}
	for rows.Next() {
		var list, stored string
		if err := rows.Scan(&list, &stored); err != nil {
			return fmt.Errorf("verify list keys: %w", err)
		}
		wrapped, err := base64.StdEncoding.DecodeString(stored)
		if err != nil {
			wrapped = []byte(stored) // malformed: its digest matches nothing
		}
		present[list] = keysetDigest(wrapped)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify list keys: %w", err)
	}
	for list, k := range lg.keyedLists {
		if lg.deletedLists[list] || lg.deletedTenants[k.tenant] {
			continue
		}
		switch d, ok := present[list]; {
		case !ok:
			add(FindingDeleted, "list_keys", list, fmt.Sprintf("entry %d created the list with its own keyset and no entry deleted it; there is no keyset row", k.at))
		case d != k.digest:
			add(FindingAltered, "list_keys", list, fmt.Sprintf("the keyset row is not the one entry %d created the list with", k.at))
		}
	}
	for list := range present {
		if _, ok := lg.keyedLists[list]; !ok {
			add(FindingInserted, "list_keys", list, "no entry created the list with this keyset")
		}
	}
	return nil
}

// verifyTenantKeys checks the tenant_keys rows against the log and the
// keys: a row for every tenant the log created and did not delete, none
// for a deleted one (its tenant.delete destroyed it: a row back is a
// backup restored after the deletion) or for a tenant no entry created,
// each opening as its own tenant's under the KEK (the keyset is bound to
// the tenant's id, so one swapped from another tenant does not open), and
// wrapped under the own KMS key the tenant's last tenant_key.set named,
// or under none after a tenant_key.clear. A row whose key did not answer
// (the tenant's KMS down or revoked) is unchecked, not passed.
func (v *Vault) verifyTenantKeys(ctx context.Context, lg *replayed, add func(kind, table, row, what string)) error {
	type row struct {
		wrapped []byte
		uri     sql.NullString
	}
	present := map[string]row{}
	if err := v.eachRow(ctx, `SELECT tenant_id, keyset, kms_uri FROM tenant_keys`, nil, func(rs *sql.Rows) error {
		var id string
		var r row
		if err := rs.Scan(&id, &r.wrapped, &r.uri); err != nil {
			return err
		}
		present[id] = r
		return nil
	}); err != nil {
		return fmt.Errorf("verify tenant keys: %w", err)
	}
	for id, r := range present {
		if at, ok := lg.shredded[id]; ok {
			add(FindingRolledBack, "tenant_keys", id, fmt.Sprintf("entry %d deleted the tenant and destroyed this keyset; the row is back (a backup restored after the deletion?)", at))
			continue
		}
		if _, ok := lg.tenants[id]; !ok {
			add(FindingInserted, "tenant_keys", id, "no entry created the tenant")
			continue
		}
		want, got := lg.tenantKMS[id], ""
		if r.uri.Valid {
			got = uriDigest(r.uri.String)
		}
		if got != want {
			add(FindingAltered, "tenant_keys", id, "the row names another own KMS key than the tenant's last tenant_key entry set (or one after it was cleared)")
			continue
		}
		var tkms tink.AEAD
		if r.uri.Valid {
			var err error
			if tkms, err = keys.OpenTenantKMS(r.uri.String); err != nil {
				add(FindingUnchecked, "tenant_keys", id, "the tenant's own KMS key could not be opened: the keyset was not checked")
				continue
			}
		}
		if _, err := v.ring.Unwrap(id, r.wrapped, tkms); err != nil {
			if errors.Is(err, keys.ErrKeyUnavailable) || errors.Is(err, keys.ErrKEKUnavailable) {
				add(FindingUnchecked, "tenant_keys", id, "a key wrapping the keyset did not answer: the keyset was not checked")
			} else {
				add(FindingAltered, "tenant_keys", id, "the keyset does not open as this tenant's under the KEK: swapped with another tenant's, or written outside custos")
			}
		}
	}
	for id, at := range lg.tenants {
		if _, gone := lg.shredded[id]; gone {
			continue
		}
		if _, ok := present[id]; !ok {
			add(FindingDeleted, "tenant_keys", id, fmt.Sprintf("entry %d created the tenant and no entry deleted it; there is no keyset row (its data opens under no key)", at))
		}
	}
	return nil
}

// wordAfter returns the word after the first word w in words, or "".
func wordAfter(words []string, w string) string {
	for i := 0; i+1 < len(words); i++ {
		if words[i] == w {
			return words[i+1]
		}
	}
	return ""
}

// replay reads the whole log in order.
func (v *Vault) replay(ctx context.Context) (*replayed, error) {
	r := &replayed{principals: map[string]bool{}, keys: map[string]bool{}, revoked: map[string]uint64{}, suspended: map[string]uint64{},
		frozen: map[string]uint64{}, tokens: map[string]namedToken{}, deletedTokens: map[string]bool{}, deletedLists: map[string]bool{}, deletedTenants: map[string]bool{}, keyedLists: map[string]keyedList{}, ids: map[string]bool{},
		tenants: map[string]uint64{}, shredded: map[string]uint64{}, tenantKMS: map[string]string{}}
	size := v.log.Size()
	for from := uint64(0); from < size; {
		es, err := v.log.Entries(ctx, from, 1000)
		if err != nil {
			return nil, fmt.Errorf("read the log at entry %d: %w", from, err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			var l audit.Leaf
			if err := json.Unmarshal(e.Data, &l); err != nil {
				return nil, fmt.Errorf("entry %d: %w", e.Index, err)
			}
			r.apply(e.Index, &l)
		}
		from = es[len(es)-1].Index + 1
		r.entries = from
	}
	return r, nil
}

func (r *replayed) apply(i uint64, l *audit.Leaf) {
	words := strings.Fields(l.Detail)
	for _, w := range words {
		r.ids[strings.TrimRight(w, ",;:")] = true
	}
	if l.Outcome != audit.OutcomeOK {
		return
	}
	if l.Tenant != "" {
		r.ids[l.Tenant] = true
	}
	ids := func(prefix string) []string {
		var out []string
		for _, w := range words {
			w = strings.TrimRight(w, ",;:")
			if custos.ValidID(prefix, w) {
				out = append(out, w)
			}
		}
		return out
	}
	switch custos.Action(l.Action) {
	case custos.ActionPrincipalCreate, custos.ActionTenantCreate:
		for _, p := range ids(custos.PrefixPrincipal) {
			r.principals[p] = true
		}
		for _, k := range ids(custos.PrefixKey) { // bootstrap
			r.keys[k] = true
		}
	case custos.ActionEnroll:
		r.keys[l.KeyID] = true
	case custos.ActionKeyCreate:
		for _, k := range ids(custos.PrefixKey) {
			r.keys[k] = true
		}
	case custos.ActionKeyRevoke, custos.ActionReviewRevoke:
		for _, k := range ids(custos.PrefixKey) {
			r.revoked[k] = i
		}
	case custos.ActionContactDelete:
		for _, t := range l.Tokens {
			r.deletedTokens[t] = true
		}
	case custos.ActionListCreate:
		if d, ok := strings.CutPrefix(l.Detail, "keyset "); ok && l.List != "" {
			r.keyedLists[l.List] = keyedList{at: i, tenant: l.Tenant, digest: d}
		}
	case custos.ActionDataKeysRotate, custos.ActionDataKeysRewrap:
		// A rotation (or the retirement of its old index key) replaces a
		// keyed list's keyset: the entry commits to the new one (rotate.go).
		if d, ok := strings.CutPrefix(l.Detail, "keyset "); ok && l.Outcome == audit.OutcomeOK {
			if k, keyed := r.keyedLists[l.List]; keyed && k.tenant == l.Tenant {
				k.digest = d
				r.keyedLists[l.List] = k
			}
		}
	case custos.ActionListDelete:
		r.deletedLists[l.List] = true
	case custos.ActionTenantDelete:
		if l.Outcome == audit.OutcomeOK && l.Tenant != "" {
			r.deletedTenants[l.Tenant] = true
			r.shredded[l.Tenant] = i
		}
	case custos.ActionTenantKeySet, custos.ActionTenantKeyClear, custos.ActionTenantKeyApprove:
		// A request's entry changes nothing; the entry that applies the
		// change (the second admin's approval, or the system's when due)
		// says what the keyset is now wrapped under (keychange.go).
		switch {
		case strings.HasPrefix(l.Detail, keysWrappedUnder) && l.Tenant != "":
			if d := wordAfter(words, "uri"); d != "" {
				r.tenantKMS[l.Tenant] = d
			}
		case strings.HasPrefix(l.Detail, keysBackUnder):
			delete(r.tenantKMS, l.Tenant)
		}
	case custos.ActionContain:
		switch {
		case strings.HasPrefix(l.Detail, "suspend "):
			for _, p := range ids(custos.PrefixPrincipal) {
				r.suspended[p] = i
			}
		case strings.HasPrefix(l.Detail, "freeze ") && l.Tenant != "":
			r.frozen[l.Tenant] = i
		}
	case custos.ActionLift:
		switch {
		case strings.HasPrefix(l.Detail, "lift suspension "):
			for _, p := range ids(custos.PrefixPrincipal) {
				delete(r.suspended, p)
			}
		case strings.HasPrefix(l.Detail, "lift the freeze") && l.Tenant != "":
			delete(r.frozen, l.Tenant)
		}
	case "alert.raise", "alert.update": // the detector's containment: "suspended pr_…", "froze t_…"
		for j := 0; j+1 < len(words); j++ {
			w, next := words[j], strings.TrimRight(words[j+1], ",;:")
			switch strings.TrimLeft(w, ":,;") {
			case "suspended":
				if custos.ValidID(custos.PrefixPrincipal, next) {
					r.suspended[next] = i
				}
			case "froze":
				if custos.ValidID(custos.PrefixTenant, next) {
					r.frozen[next] = i
				}
			}
		}
	}
	if custos.Action(l.Action) == custos.ActionTenantCreate && l.Tenant != "" {
		if _, seen := r.tenants[l.Tenant]; !seen {
			r.tenants[l.Tenant] = i
		}
	}
	if l.Tenant != "" && l.Action != string(custos.ActionContactDelete) {
		for _, t := range l.Tokens {
			if _, seen := r.tokens[t]; !seen {
				r.tokens[t] = namedToken{at: i, tenant: l.Tenant, list: l.List, action: l.Action}
			}
		}
	}
}
