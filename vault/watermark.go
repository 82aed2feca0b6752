package vault

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// Watermark rows as stored rows for their reader (issue 20, "active
// probes"; migration 0055). A reader's watermark rows (canary.go,
// reader_canaries) are its own: no other reader sees them. Before this, a
// reader that may write or look up could test the rows of its file one
// by one — an update or delete by token answered not found, a lookup of
// the address found nothing, a create or re-import of the address
// succeeded — and so strip them before passing the file on. Now, for the
// reader they are kept for (the same reader tag: [readerTag]) and no
// other, a watermark row answers every one of those like a stored row:
//
//   - an update by token changes it (same validation, same answer, the
//     same contact.update leaf naming its token), kept re-sealed with
//     its row MAC, so the reader's next export, page or read shows it;
//   - a delete by token leaves a tombstone — the ciphertexts and blind
//     index erased, a MAC over the tombstone — and answers with a
//     receipt like a contact's (docs/detection.md says why that receipt
//     is true); the reader's next export or page neither shows the row
//     nor mints one in its place, and a read of the token answers gone;
//   - a lookup of its address finds it, by its blind index;
//   - a create, an update of another row or an import holding its
//     address meets it as a duplicate;
//   - a page of tokens lists it; a bounce suppresses it.
//
// An import no longer skips rows on canaries' addresses (which told the
// importer, by line and count, which rows of its file were canaries):
// one the list does not hold becomes the importer's own watermark row
// ([Vault.adoptMark]). Another reader's paths never meet a reader's rows:
// lookups, creates, updates, deletes, imports and token pages of other
// readers see only the list and their own rows.

// readerCanaryColumns are the columns [scanReaderCanary] reads.
const readerCanaryColumns = `token, tenant_id, list_id, blind, email, attrs, consent, created_at, mac, COALESCE(updated_at, created_at), reader_tag, deleted_at`

// scanReaderCanary reads a reader_canaries row (readerCanaryColumns) as a
// sealed contact, with its reader tag and, for a tombstone, when it was
// deleted.
func scanReaderCanary(r rowScanner) (*sealed, error) {
	var s sealed
	var blind, email, attrs, consent string
	if err := r.Scan(&s.token, &s.tenant, &s.list, &blind, &email, &attrs, &consent, &s.created, &s.mac, &s.updated, &s.reader, &s.deleted); err != nil {
		return nil, fmt.Errorf("reader canaries: %w", err)
	}
	s.consent = custos.Consent(consent)
	for _, f := range []struct {
		dst *[]byte
		src string
	}{{&s.blind, blind}, {&s.email, email}, {&s.attrs, attrs}} {
		var err error
		if *f.dst, err = base64.StdEncoding.DecodeString(f.src); err != nil {
			return nil, fmt.Errorf("reader canary %s: %w", s.token, err)
		}
	}
	return &s, nil
}

// tombstoneMessage is the MAC message of a deleted watermark row: its
// reader, token, tenant, list and when it was deleted. A live row's MAC
// is a contact's (contactMessage), so a tombstone revived by hand (its
// deleted_at cleared) or a live row buried by hand does not check.
func tombstoneMessage(s *sealed) []byte {
	return rowMessage("reader_canaries/tombstone", s.reader, s.token, s.tenant, s.list, s.deleted.Int64)
}

// tombstoneOK reports whether a tombstone carries its valid MAC, under
// the list's row MAC key or one a rotation retires.
func tombstoneOK(k *keys.DataKeys, s *sealed) bool {
	return rowMACOK(k, tombstoneMessage(s), s.mac)
}

// viewTag is the reader tag of l's reader for list: the tag its watermark
// rows are kept under ([readerTag]).
func (v *Vault) viewTag(ctx context.Context, l audit.Leaf, list string) (string, error) {
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return "", err
	}
	return readerTag(k, list, l), nil
}

// ownMark returns the live watermark row token of tenant when it is kept
// for l's reader, else nil: another reader's row is not in this reader's
// view.
func (v *Vault) ownMark(ctx context.Context, l audit.Leaf, tenant, token string) (*sealed, error) {
	if !custos.ValidID(custos.PrefixContact, token) {
		return nil, nil
	}
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := v.read.QueryContext(ctx, `SELECT `+readerCanaryColumns+` FROM reader_canaries WHERE token = $1 AND tenant_id = $2 AND deleted_at IS NULL`, token, tenant)
	if err != nil {
		return nil, fmt.Errorf("reader canaries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		s, err := scanReaderCanary(rows)
		if err != nil {
			return nil, err
		}
		if s.reader == readerTag(k, s.list, l) {
			return s, nil
		}
	}
	return nil, rows.Err()
}

// ownMarkByAddress returns the live watermark row kept under rtag whose
// address has one of blinds as its blind index (during a re-index an
// address has several), other than the row except; nil if none. A row
// whose MAC fails under k, the list's keys, fails the request (fail
// closed): a row written by hand must not make an address taken.
func (v *Vault) ownMarkByAddress(ctx context.Context, q rowQuerier, k *keys.DataKeys, rtag string, blinds [][]byte, except string) (*sealed, error) {
	args := []any{rtag, except}
	ps := make([]string, len(blinds))
	for i, b := range blinds {
		ps[i] = fmt.Sprintf("$%d", 3+i)
		args = append(args, base64.StdEncoding.EncodeToString(b))
	}
	s, err := scanReaderCanary(q.QueryRowContext(ctx, `SELECT `+readerCanaryColumns+` FROM reader_canaries
		WHERE reader_tag = $1 AND token <> $2 AND deleted_at IS NULL AND blind IN (`+strings.Join(ps, ", ")+`) LIMIT 1`, args...))
	if isNoRows(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if _, err := v.checkContact(ctx, k, s); err != nil {
		return nil, fmt.Errorf("watermark row %s: %w", s.token, errForged)
	}
	return s, nil
}

// ownMarkBlinds returns the blind indexes (base64, as stored) of the live
// watermark rows kept under rtag: an import meets their addresses as
// already in the list. A row whose MAC fails under k fails the import.
func (v *Vault) ownMarkBlinds(ctx context.Context, k *keys.DataKeys, rtag string) (map[string]bool, error) {
	rows, err := v.read.QueryContext(ctx, `SELECT `+readerCanaryColumns+` FROM reader_canaries WHERE reader_tag = $1 AND deleted_at IS NULL`, rtag)
	if err != nil {
		return nil, fmt.Errorf("reader canaries: %w", err)
	}
	var ss []*sealed
	for rows.Next() {
		s, err := scanReaderCanary(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		ss = append(ss, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reader canaries: %w", err)
	}
	out := make(map[string]bool, len(ss))
	for _, s := range ss {
		if _, err := v.checkContact(ctx, k, s); err != nil {
			return nil, fmt.Errorf("watermark row %s: %w", s.token, errForged)
		}
		out[base64.StdEncoding.EncodeToString(s.blind)] = true
	}
	return out, nil
}

// hasBlind reports whether s's address (under any of its index keys) is
// in blinds, a set of base64 blind indexes.
func hasBlind(blinds map[string]bool, s *sealed) bool {
	if len(blinds) == 0 {
		return false
	}
	for _, b := range append([][]byte{s.blind}, s.oldBlinds...) {
		if blinds[base64.StdEncoding.EncodeToString(b)] {
			return true
		}
	}
	return false
}

// updateMark stores ns, the re-sealed watermark row s, in tx.
func updateMark(ctx context.Context, tx *sql.Tx, s, ns *sealed) error {
	b64 := base64.StdEncoding.EncodeToString
	res, err := tx.ExecContext(ctx, `UPDATE reader_canaries SET blind = $1, email = $2, attrs = $3, consent = $4, updated_at = $5, mac = $6
		WHERE reader_tag = $7 AND token = $8 AND deleted_at IS NULL`,
		b64(ns.blind), b64(ns.email), b64(ns.attrs), string(ns.consent), ns.updated, ns.mac.String, s.reader, s.token)
	if err != nil {
		return fmt.Errorf("update contact: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return notFound("contact")
	}
	return nil
}

// buryMark turns the watermark row s into its tombstone at now (ms), in
// tx: its ciphertexts and blind index are erased, its MAC made over the
// tombstone. The row stays, so the reader's next export or page counts it
// among its rows and mints none in its place.
func buryMark(ctx context.Context, tx *sql.Tx, k *keys.DataKeys, s *sealed, now int64) error {
	t := *s
	t.deleted = sql.NullInt64{Int64: now, Valid: true}
	mac := encodeMAC(k.RowMAC(tombstoneMessage(&t)))
	res, err := tx.ExecContext(ctx, `UPDATE reader_canaries SET blind = '', email = '', attrs = '', consent = '', updated_at = $1, deleted_at = $1, mac = $2
		WHERE reader_tag = $3 AND token = $4 AND deleted_at IS NULL`, now, mac, s.reader, s.token)
	if err != nil {
		return fmt.Errorf("delete contact: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return notFound("contact")
	}
	return nil
}

// adoptMark keeps the import's row s, on a canary's address the list does
// not hold, as a watermark row of the importer (rtag), created at the
// import's instant, in tx; false if the importer's view holds the address
// already (a duplicate). Skipping such rows, as imports did before, told
// the importer which rows of its file were canaries — its own watermark
// rows once deleted or moved, a list's canaries imported into another
// list — by its line and the count. An adopted row is the importer's
// alone, like any watermark row; it keeps tracing to whoever its address
// was first minted for, and it does not count towards the watermark rows
// minted for the importer (adopted), so a file re-imported into a new list
// still gets the importer's own.
func (v *Vault) adoptMark(ctx context.Context, tx *sql.Tx, k *keys.DataKeys, rtag string, s *sealed) (bool, error) {
	blinds := append([][]byte{s.blind}, s.oldBlinds...)
	if m, err := v.ownMarkByAddress(ctx, tx, k, rtag, blinds, ""); err != nil || m != nil {
		return false, err
	}
	if tok, err := tokenByIndexes(ctx, tx, s.list, "", blinds); err != nil || tok != "" {
		return false, err
	}
	b64 := base64.StdEncoding.EncodeToString
	res, err := tx.ExecContext(ctx, `INSERT INTO reader_canaries (reader_tag, token, tenant_id, list_id, blind, email, attrs, consent, created_at, mac, adopted)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1) ON CONFLICT (reader_tag, token) DO NOTHING`,
		rtag, s.token, s.tenant, s.list, b64(s.blind), b64(s.email), b64(s.attrs), string(s.consent), s.created, s.mac.String)
	if err != nil {
		return false, fmt.Errorf("import: keep watermark row: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// scanExtra is a row scanner that scans extra columns after the caller's.
type scanExtra struct {
	r     rowScanner
	extra []any
}

func (e scanExtra) Scan(dest ...any) error { return e.r.Scan(append(dest, e.extra...)...) }

// insertExportCanary records that an export or page carried a watermark
// row's address ($1, its tag) with the request that did: the first keeps
// it (ON CONFLICT). A list canary's address, which a reader's import may
// have adopted as its row, keeps tracing to its list.
const insertExportCanary = `INSERT INTO export_canaries (addr_tag, tenant_id, list_id, actor, key_id, source, request_id, exported_at)
	SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM canaries WHERE addr_tag = $1)
	ON CONFLICT (addr_tag) DO NOTHING`

// ownMarksAfter returns the live watermark rows of list kept for l's
// reader whose tokens sort after after, in token order.
func (v *Vault) ownMarksAfter(ctx context.Context, l audit.Leaf, tenant, list, after string) ([]*custos.Contact, error) {
	rtag, err := v.viewTag(ctx, l, list)
	if err != nil {
		return nil, err
	}
	k, err := v.listKeys(ctx, tenant, list)
	if err != nil {
		return nil, err
	}
	kept, _, err := v.readerCanaries(ctx, k, rtag)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(kept, func(c *custos.Contact) bool { return c.Token <= after }), nil
}

// resealMarks seals the watermark rows of list kept for its readers
// again under k's primary keys, and MACs its tombstones again, in tx: the
// rewrap re-seals contacts only, and retiring the old index key (the
// caller, in tx) would otherwise leave every kept row failing its MAC —
// each reader's next export or page refused. A row that checks under none
// of k's keys is left as it is (it refuses, as before) and reported.
func (v *Vault) resealMarks(ctx context.Context, tx *sql.Tx, k *keys.DataKeys, list string) error {
	ss, err := queryAllOn(ctx, tx, func(r scanner) (*sealed, error) { return scanReaderCanary(r) },
		`SELECT `+readerCanaryColumns+` FROM reader_canaries WHERE list_id = $1`, list)
	if err != nil {
		return fmt.Errorf("reseal reader canaries: %w", err)
	}
	b64 := base64.StdEncoding.EncodeToString
	for _, s := range ss {
		if s.deleted.Valid {
			if !tombstoneOK(k, s) {
				v.rowIntegrity("reader_canaries", s.token)
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE reader_canaries SET mac = $1 WHERE reader_tag = $2 AND token = $3`,
				encodeMAC(k.RowMAC(tombstoneMessage(s))), s.reader, s.token); err != nil {
				return fmt.Errorf("reseal reader canaries: %w", err)
			}
			continue
		}
		if !contactOK(k, s) {
			v.rowIntegrity("reader_canaries", s.token)
			continue
		}
		ns, err := reseal(k, s)
		if err != nil {
			return fmt.Errorf("reseal reader canary %s: %w", s.token, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE reader_canaries SET blind = $1, email = $2, attrs = $3, mac = $4 WHERE reader_tag = $5 AND token = $6`,
			b64(ns.blind), b64(ns.email), b64(ns.attrs), ns.mac.String, s.reader, s.token); err != nil {
			return fmt.Errorf("reseal reader canaries: %w", err)
		}
	}
	return nil
}
