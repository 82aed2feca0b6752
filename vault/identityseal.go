package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/custos-dev/custos"
)

// Identities at rest. A principal's verified address is personal data
// like a contact's, so the database does not hold it in clear:
// principals.identity holds the person pseudonym of the address ("pe_…",
// a keyed PRF under a system key the database does not hold unwrapped),
// which is all the two-person checks need — equal addresses give equal
// pseudonyms — and principals.identity_sealed holds the address sealed
// with the system AEAD, bound to the principal's id. Only the mail sinks
// open it, to send a mail. Columns that copy an identity (a principal's
// creator_identity, an enrollment's requester_identity, a break-glass
// approval's approver_owner) hold the pseudonym too.

func adIdentity(principal string) []byte { return []byte("principal/" + principal + "/identity") }

// isPseudonym reports whether an identity column already holds a pseudonym.
func isPseudonym(s string) bool { return custos.ValidID(custos.PrefixPerson, s) }

// sealIdentity replaces p.Identity, a normalised address, by its person
// pseudonym and returns the address sealed for identity_sealed. Call it
// outside a transaction: the first use creates the system keys.
func (v *Vault) sealIdentity(ctx context.Context, p *custos.Principal) (string, error) {
	address := p.Identity
	tag, err := v.person(ctx, address)
	if err != nil {
		return "", fmt.Errorf("identity pseudonym: %w", err)
	}
	sealed, err := v.sealSystemText(ctx, address, adIdentity(p.ID))
	if err != nil {
		return "", fmt.Errorf("seal identity: %w", err)
	}
	p.Identity = tag
	return sealed, nil
}

// errNoAddress is a principal whose address cannot be opened, or whose
// sealed address is not the one its pseudonym names (a row changed
// behind custos's back): nothing is sent to it.
var errNoAddress = errors.New("the principal's address does not open or does not match its identity")

// identityAddress opens p's address, for the mail sinks only.
func (v *Vault) identityAddress(ctx context.Context, p *custos.Principal) (string, error) {
	var sealed sql.NullString
	if err := v.read.QueryRowContext(ctx, `SELECT identity_sealed FROM principals WHERE id = $1`, p.ID).Scan(&sealed); err != nil {
		return "", fmt.Errorf("read identity: %w", err)
	}
	if !sealed.Valid {
		if isPseudonym(p.Identity) || strings.HasPrefix(p.Identity, "legacy:") {
			return "", errNoAddress
		}
		return p.Identity, nil // not converted yet (SealIdentities runs at start)
	}
	address, err := v.openText(ctx, "", sealed.String, adIdentity(p.ID))
	if err != nil || !strings.HasPrefix(sealed.String, sealedSystem) {
		return "", errNoAddress
	}
	if tag, err := v.person(ctx, address); err != nil || tag != p.Identity {
		return "", errNoAddress
	}
	return address, nil
}

// SealIdentities converts rows written before identities were sealed: each
// principal whose identity is an address gets its pseudonym and its sealed
// address, and the columns that copied an address get the pseudonym; the
// rows' MACs are renewed. A row whose MAC fails is left as it is (and
// raises the row-integrity alert). It returns how many principals it
// converted; node.Open calls it at every start.
func (v *Vault) SealIdentities(ctx context.Context) (int, error) {
	type row struct{ id, identity, creator string }
	rows, err := queryAll(ctx, v, func(r scanner) (row, error) {
		var x row
		var creator sql.NullString
		err := r.Scan(&x.id, &x.identity, &creator)
		x.creator = creator.String
		return x, err
	}, `SELECT id, identity, creator_identity FROM principals WHERE identity_sealed IS NULL AND identity LIKE '%@%'`)
	if err != nil {
		return 0, fmt.Errorf("principals to seal: %w", err)
	}
	pseudonym := func(s string) (string, error) {
		if !strings.Contains(s, "@") || strings.HasPrefix(s, "legacy:") {
			return s, nil
		}
		return v.person(ctx, s)
	}
	done := 0
	for _, r := range rows {
		p := &custos.Principal{ID: r.id, Identity: r.identity}
		sealed, err := v.sealIdentity(ctx, p)
		if err != nil {
			return done, err
		}
		creator, err := pseudonym(r.creator)
		if err != nil {
			return done, err
		}
		tx, err := v.write.BeginTx(ctx, nil)
		if err != nil {
			return done, err
		}
		if _, err := v.findPrincipalTx(ctx, tx, r.id); err != nil { // its MAC must hold before it is renewed
			tx.Rollback()
			continue
		}
		_, err = tx.ExecContext(ctx, `UPDATE principals SET identity = $1, identity_sealed = $2, creator_identity = $3 WHERE id = $4 AND identity = $5`,
			p.Identity, sealed, nullString(creator), r.id, r.identity)
		if err == nil {
			err = v.reseal(ctx, tx, "principals", r.id)
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			return done, fmt.Errorf("seal identity of %s: %w", r.id, err)
		}
		done++
	}
	// Copies of addresses in other rows: enrollments (MACed) and
	// break-glass approvals.
	type copyRow struct{ id, value string }
	ens, err := queryAll(ctx, v, func(r scanner) (copyRow, error) {
		var x copyRow
		return x, r.Scan(&x.id, &x.value)
	}, `SELECT id, requester_identity FROM enrollments WHERE requester_identity LIKE '%@%'`)
	if err != nil {
		return done, fmt.Errorf("enrollments to seal: %w", err)
	}
	for _, e := range ens {
		tag, err := pseudonym(e.value)
		if err != nil {
			return done, err
		}
		tx, err := v.write.BeginTx(ctx, nil)
		if err != nil {
			return done, err
		}
		if err := v.checkRow(ctx, tx, "enrollments", e.id); err != nil {
			tx.Rollback()
			continue
		}
		_, err = tx.ExecContext(ctx, `UPDATE enrollments SET requester_identity = $1 WHERE id = $2`, tag, e.id)
		if err == nil {
			err = v.reseal(ctx, tx, "enrollments", e.id)
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			return done, fmt.Errorf("seal enrollment %s: %w", e.id, err)
		}
	}
	aps, err := queryAll(ctx, v, func(r scanner) (copyRow, error) {
		var x copyRow
		return x, r.Scan(&x.id, &x.value)
	}, `SELECT DISTINCT approver_owner, approver_owner FROM request_approvals WHERE approver_owner LIKE '%@%'`)
	if err != nil {
		return done, fmt.Errorf("approvals to seal: %w", err)
	}
	for _, a := range aps {
		tag, err := pseudonym(a.value)
		if err != nil {
			return done, err
		}
		if _, err := v.write.ExecContext(ctx, `UPDATE request_approvals SET approver_owner = $1 WHERE approver_owner = $2`, tag, a.value); err != nil {
			return done, fmt.Errorf("seal approvals: %w", err)
		}
	}
	return done, nil
}
