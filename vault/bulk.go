package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/internal/sqlq"
	"github.com/custos-dev/custos/keys"
)

// RowReader yields import rows; *ingest.Reader is one.
type RowReader interface {
	Next() (ingest.Row, error)
}

// ImportOptions tune [Vault.Import].
type ImportOptions struct {
	BatchSize int // rows per transaction and audit leaf; default DefaultImportBatch
	MaxErrors int // row errors listed in the result (all are counted); default 1000
	// Progress, if set, is called after each committed batch.
	Progress func(r *custos.ImportResult)
}

// DefaultImportBatch is the rows an import seals and (alone) commits at
// a time. Each commit inserts its rows at random places in the list's
// indexes (blind index, token), dirtying pages that the commit writes to
// the WAL and checkpoints back; in a large list a batch of a few thousand
// rows already dirties most of them, so larger batches write less per
// row (1M contacts on SQLite: 5 000 → 32 768 rows a batch, 50 → 39 s;
// docs/benchmarks.md (ax)). Two batches are held at once (one sealed
// ahead): the import's peak heap in use at 1M was 119 MiB under the
// node's default heap limit, against 25 MiB at 5 000. While reads run, a
// batch's commits still yield after ImportYield.
const DefaultImportBatch = 32768

// addError counts a refused row and lists it while fewer than max are.
func addError(r *custos.ImportResult, e ingest.RowError, max int) {
	r.Failed++
	if len(r.Errors) < max {
		r.Errors = append(r.Errors, e)
	}
}

// batch is a sealed, not yet committed group of rows.
type batch struct {
	rows      []*sealed
	lines     []int // line of each row
	errs      []ingest.RowError
	firstLine int
	lastLine  int            // last input line consumed, including refused rows
	rtag      string         // the importer's reader tag: rows on canaries' addresses become its (adoptMark)
	keys      *keys.DataKeys // the list's keys
	donors    donorSample
	fatal     error
}

// Import streams rows into a list. Each batch commits whole, together with
// its audit leaf (count and line range); invalid and duplicate rows are
// refused and reported by line. Memory is bounded by two batches whatever
// the input size: sealing of the next batch overlaps the commit of this one.
//
// The returned error is non-nil only when the import could not start
// (refused, unknown list); a failure midway is reported in the result,
// with Aborted set and what was committed before it.
func (v *Vault) Import(ctx context.Context, tenant, list string, rows RowReader, opts ImportOptions) (*custos.ImportResult, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultImportBatch
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = 1000
	}
	l, _, err := v.authorizeList(ctx, custos.ActionContactImport, tenant, list)
	if err != nil {
		return nil, err
	}
	k, err := v.listKeys(ctx, tenant, list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := v.readyCanaries(ctx); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	sees := seesMembership(ctx, tenant)
	// The importer's own watermark rows are rows of its view: a row of the
	// input with one's address is already in the list (watermark.go).
	rtag, err := v.viewTag(ctx, l, list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	own, err := v.ownMarkBlinds(ctx, k, rtag)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}

	defer v.bulkJob()()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *batch, 1)
	go func() {
		defer close(batches)
		v.sealBatches(ctx, k, tenant, list, rtag, own, rows, opts.BatchSize, batches)
	}()

	res := &custos.ImportResult{Errors: []ingest.RowError{}}
	others := othersMeter{size0: v.log.Size()}
	for b := range batches {
		if len(b.rows) > 0 {
			t0, n0 := time.Now(), res.Batches
			if err := v.commitBatch(ctx, l, b, res, opts.MaxErrors, sees); err != nil {
				abortImport(res, err)
				break
			}
			// A batch the body failed after is the last: no pause after it.
			if b.fatal == nil {
				if err := v.shareWith(ctx, others.saw(v.log.Size(), res.Batches-n0), time.Since(t0), ImportShare); err != nil {
					abortImport(res, err)
					break
				}
			}
		} else {
			for _, e := range b.errs {
				addError(res, e, opts.MaxErrors)
			}
		}
		res.CommittedThroughLine = b.lastLine
		if b.fatal != nil {
			abortImport(res, b.fatal)
			break
		}
		if opts.Progress != nil {
			opts.Progress(res)
		}
	}
	cancel()
	for range batches { // let the sealer exit
	}
	if res.Batches == 0 {
		// Nothing committed (every row refused, an empty body, or a body
		// that failed before its first row): the request still reached the
		// tenant's data, so it still leaves its one leaf.
		l.Detail = fmt.Sprintf("lines 1-%d, %d refused", res.CommittedThroughLine, res.Failed)
		var err error
		if res.Aborted {
			err = v.deny(ctx, l, custos.Errorf(res.AbortCode, "import stopped before any row was committed"))
		} else {
			err = v.record(ctx, l, nil)
		}
		if custos.ErrorCode(err) == custos.EUNAVAILABLE {
			return nil, err
		}
	}
	return res, nil
}

// abortImport marks r as stopped by err.
func abortImport(r *custos.ImportResult, err error) {
	r.Aborted = true
	r.AbortCode = custos.ErrorCode(err)
	r.AbortReason = custos.ErrorMessage(err)
}

// sealBatches reads, validates and encrypts rows into batches. A row
// whose address is one of own (the blind indexes of the importer's
// watermark rows, kept under rtag) is marked present: a duplicate, like a
// stored row's. A row on a canary's address the list does not hold is
// marked adopt: it becomes the importer's watermark row (adoptMark).
func (v *Vault) sealBatches(ctx context.Context, k *keys.DataKeys, tenant, list, rtag string, own map[string]bool, rows RowReader, size int, out chan<- *batch) {
	now := ms(v.now())
	b := &batch{rtag: rtag, keys: k}
	send := func() bool {
		select {
		case out <- b:
			b = &batch{rtag: rtag, keys: k}
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		if ctx.Err() != nil {
			return
		}
		row, err := rows.Next()
		if err == io.EOF {
			if len(b.rows) > 0 || len(b.errs) > 0 {
				send()
			}
			return
		}
		var rowErr *ingest.RowError
		if errors.As(err, &rowErr) {
			b.errs = append(b.errs, *rowErr)
			b.lastLine = max(b.lastLine, rowErr.Line)
			continue
		}
		if err != nil {
			b.fatal = err
			send()
			return
		}
		if b.firstLine == 0 {
			b.firstLine = row.Line
		}
		b.lastLine = row.Line
		c := &custos.Contact{Token: custos.NewID(custos.PrefixContact), TenantID: tenant, ListID: list,
			Email: row.Email, Attributes: row.Attributes, Consent: row.Consent}
		s, err := seal(k, c)
		if err != nil {
			b.errs = append(b.errs, ingest.RowError{Line: row.Line, Code: custos.ErrorCode(err), Message: custos.ErrorMessage(err)})
			continue
		}
		s.created, s.updated = now, now
		if hasBlind(own, s) {
			s.present = true
			b.rows = append(b.rows, s)
			b.lines = append(b.lines, row.Line)
			if len(b.rows) >= size && !send() {
				return
			}
			continue
		}
		if wm, err := v.isWatermark(ctx, c.Email); err != nil {
			b.fatal = err
			send()
			return
		} else if wm {
			// A canary's address. One already in the list (one of its
			// own) is a duplicate like any stored row; another is added
			// for the importer alone, as its own watermark row: skipped,
			// as before 0055, either would be told from a real row by its
			// line and the count (watermark.go).
			tok, err := tokenByIndexes(ctx, v.read, list, "", append([][]byte{s.blind}, s.oldBlinds...))
			if err != nil {
				b.fatal = fmt.Errorf("import: %w", err)
				send()
				return
			}
			// Either way no canary's shape is offered to the list's next
			// canaries.
			s.adopt = tok == ""
			b.rows = append(b.rows, s)
			b.lines = append(b.lines, row.Line)
			if len(b.rows) >= size && !send() {
				return
			}
			continue
		}
		b.donors.offer(c.Email, c.Attributes, c.Consent)
		b.rows = append(b.rows, s)
		b.lines = append(b.lines, row.Line)
		if len(b.rows) >= size {
			if !send() {
				return
			}
		}
	}
}

const insertContacts = `INSERT INTO contacts (` + contactColumns + `) VALUES `

func (v *Vault) insertSQL() string {
	return insertContacts + v.placeholders.Values(1, 10) + ` ON CONFLICT (list_id, blind_index) DO NOTHING`
}

// ImportShare is the share of the time an import may take while other
// entries are being appended (docs/design.md, "Imports yield to reads"):
// after a batch whose commits carried others' entries too, the import
// pauses for (1-ImportShare)/ImportShare times the batch's duration —
// its sealer stops too, one batch ahead — so that audited reads keep
// about 1-ImportShare of the CPU, which the import's two busy goroutines
// (sealing, inserting) otherwise take from them on two cores. Alone it
// never pauses.
const ImportShare = 0.25

// ImportYield is how long an import's chunk may insert rows inside the
// sequencer's transaction while other entries wait for it (docs/design.md,
// "Imports yield to reads").
const ImportYield = 2 * time.Millisecond

// pgChunk is how many rows one PostgreSQL insert carries.
const pgChunk = 256

// insertArrays inserts rows in one statement (PostgreSQL: the columns as
// arrays, unnested in order) and reports which were inserted; the others
// have an address already in the list or earlier in rows.
func (v *Vault) insertArrays(ctx context.Context, tx *sql.Tx, rows []*sealed) ([]bool, error) {
	n := len(rows)
	tokens, consents, macs := make([]string, n), make([]string, n), make([]*string, n)
	blinds, emails, attrs := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	created, updated := make([]int64, n), make([]int64, n)
	at := make(map[string]int, n)
	for i, s := range rows {
		tokens[i], consents[i] = s.token, string(s.consent)
		if s.mac.Valid {
			macs[i] = &s.mac.String
		}
		blinds[i], emails[i], attrs[i] = s.blind, s.email, s.attrs
		created[i], updated[i] = s.created, s.updated
		at[s.token] = i
	}
	q, err := tx.QueryContext(ctx, `INSERT INTO contacts (`+contactColumns+`)
		SELECT t, $1, $2, b, e, a, c, cr, up, m
		FROM unnest($3::text[], $4::bytea[], $5::bytea[], $6::bytea[], $7::text[], $8::bigint[], $9::bigint[], $10::text[]) WITH ORDINALITY AS u(t, b, e, a, c, cr, up, m, ord)
		ORDER BY ord
		ON CONFLICT (list_id, blind_index) DO NOTHING RETURNING token`,
		rows[0].tenant, rows[0].list, tokens, blinds, emails, attrs, consents, created, updated, macs)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	ins := make([]bool, n)
	for q.Next() {
		var tok string
		if err := q.Scan(&tok); err != nil {
			return nil, err
		}
		if i, ok := at[tok]; ok {
			ins[i] = true
		}
	}
	return ins, q.Err()
}

// yield reports whether an import's chunk that began at t0 should stop
// here: it has inserted for ImportYield and entries wait behind it.
func (v *Vault) yield(t0 time.Time) bool {
	return time.Since(t0) >= ImportYield && v.log.Waiting()
}

// insertChunkRows inserts b.rows from start on (SQLite) until they are
// all in or the chunk yields, and returns where it stopped.
func (v *Vault) insertChunkRows(ctx context.Context, tx *sql.Tx, b *batch, start int, t0 time.Time, inserted, adopted *int, dups *[]ingest.RowError) (int, error) {
	// One prepared single-row insert per row: a statement that writes
	// several rows and may abort on a constraint makes SQLite keep a
	// statement journal, a copy of every page it touches, which cost a
	// third of an import's time.
	stmt, err := tx.PrepareContext(ctx, v.insertSQL())
	if err != nil {
		return start, fmt.Errorf("insert contacts: %w", err)
	}
	defer stmt.Close()
	end := start
	for ; end < len(b.rows); end++ {
		if end > start && (end-start)%16 == 0 && v.yield(t0) {
			break // the rest goes into the next commit
		}
		s := b.rows[end]
		if s.present {
			*dups = append(*dups, ingest.RowError{Line: b.lines[end], Code: custos.ECONFLICT, Message: "duplicate address in the list"})
			continue
		}
		if s.adopt {
			if ok, err := v.adoptMark(ctx, tx, b.keys, b.rtag, s); err != nil {
				return end, err
			} else if ok {
				*inserted++
				*adopted++
			} else {
				*dups = append(*dups, ingest.RowError{Line: b.lines[end], Code: custos.ECONFLICT, Message: "duplicate address in the list"})
			}
			continue
		}
		if dup, err := oldDuplicate(ctx, tx, s); err != nil {
			return end, err
		} else if dup {
			*dups = append(*dups, ingest.RowError{Line: b.lines[end], Code: custos.ECONFLICT, Message: "duplicate address in the list"})
			continue
		}
		r, err := stmt.ExecContext(ctx, s.token, s.tenant, s.list, s.blind, s.email, s.attrs, string(s.consent), s.created, s.updated, s.mac)
		if err != nil {
			return end, fmt.Errorf("insert contacts: %w", err)
		}
		if n, err := r.RowsAffected(); err != nil {
			return end, fmt.Errorf("insert contacts: %w", err)
		} else if n == 1 {
			*inserted++
		} else {
			*dups = append(*dups, ingest.RowError{Line: b.lines[end], Code: custos.ECONFLICT, Message: "duplicate address in the list"})
		}
	}
	return end, nil
}

// insertChunkArrays is insertChunkRows for PostgreSQL, where a round trip
// per row was most of an import's time: rows go pgChunk at a time.
func (v *Vault) insertChunkArrays(ctx context.Context, tx *sql.Tx, b *batch, start int, t0 time.Time, inserted, adopted *int, dups *[]ingest.RowError) (int, error) {
	end := start
	for end < len(b.rows) {
		if end > start && v.yield(t0) {
			break // the rest goes into the next commit
		}
		n := min(pgChunk, len(b.rows)-end)
		chunk := b.rows[end : end+n]
		var err error
		// During a re-index (rotate.go) an address may be in the list under
		// the old index key: those rows are duplicates, not inserted; so
		// are the rows present as the importer's watermark rows. Rows on a
		// canary's address become the importer's (adoptMark).
		var pre []int8 // per row: 0 insert, 1 duplicate, 2 adopted
		if len(chunk[0].oldBlinds) > 0 || slices.ContainsFunc(chunk, func(s *sealed) bool { return s.present || s.adopt }) {
			pre = make([]int8, n)
			var keep []*sealed
			for i, s := range chunk {
				switch {
				case s.present:
					pre[i] = 1
				case s.adopt:
					ok, err := v.adoptMark(ctx, tx, b.keys, b.rtag, s)
					if err != nil {
						return end, err
					}
					pre[i] = 1
					if ok {
						pre[i] = 2
						*adopted++
					}
				default:
					dup, err := oldDuplicate(ctx, tx, s)
					if err != nil {
						return end, err
					}
					if dup {
						pre[i] = 1
					} else {
						keep = append(keep, s)
					}
				}
			}
			chunk = keep
		}
		var ins []bool
		if len(chunk) > 0 {
			ins, err = v.insertArrays(ctx, tx, chunk)
			if err != nil {
				return end, fmt.Errorf("insert contacts: %w", err)
			}
		}
		if pre != nil {
			all, j := make([]bool, n), 0
			for i := range all {
				switch pre[i] {
				case 0:
					all[i], j = ins[j], j+1
				case 2:
					all[i] = true
				}
			}
			ins = all
		}
		for i, ok := range ins {
			if ok {
				*inserted++
			} else {
				*dups = append(*dups, ingest.RowError{Line: b.lines[end+i], Code: custos.ECONFLICT, Message: "duplicate address in the list"})
			}
		}
		end += n
	}
	return end, nil
}

// commitBatch inserts a sealed batch in one or more chunks, each committed
// with a leaf of its own (its line range and counts) in one transaction.
// A chunk runs inside the sequencer's commit: it stops after ImportYield
// of inserting when other entries are waiting behind it, and the rest of
// the batch goes into the next commit, so that an audited read never
// waits behind more than that. With nothing waiting a chunk takes the
// whole batch. Rows whose address is already in the list (or earlier in
// the batch) are not inserted and are reported as duplicates by line.
func (v *Vault) commitBatch(ctx context.Context, l audit.Leaf, b *batch, res *custos.ImportResult, maxErrors int, sees bool) error {
	ei := 0 // b.errs[:ei] are reported
	for start := 0; start < len(b.rows); {
		var dups []ingest.RowError
		inserted, end, hi := 0, start, 0
		err := v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
			if err := v.bulkTx(ctx, tx); err != nil {
				return err
			}
			adopted := 0
			dups, inserted, end = dups[:0], 0, start
			t0 := time.Now()
			var err error
			if v.placeholders == sqlq.Dollar {
				end, err = v.insertChunkArrays(ctx, tx, b, start, t0, &inserted, &adopted, &dups)
			} else {
				end, err = v.insertChunkRows(ctx, tx, b, start, t0, &inserted, &adopted, &dups)
			}
			if err != nil {
				return err
			}
			lo := b.firstLine
			if start > 0 {
				lo = b.lines[start]
			} else if len(b.errs) > 0 && b.errs[0].Line < lo {
				lo = b.errs[0].Line // the batch began with refused rows
			}
			hi = b.lastLine
			if end < len(b.rows) {
				hi = b.lines[end-1]
			}
			refused := 0
			for _, e := range b.errs[ei:] {
				if e.Line > hi {
					break
				}
				refused++
			}
			// Rows on canaries' addresses the importer now holds count as
			// added, like the rows they hide among (watermark.go): the
			// importer reads this leaf.
			leaf.Count = inserted
			leaf.Detail = fmt.Sprintf("lines %d-%d, %d refused, %d already in the list", lo, hi, refused, len(dups))
			if inserted == adopted {
				return nil
			}
			if err := v.retireProvisionalCanaries(ctx, tx, b.rows[0].list, b.rows[0].created); err != nil {
				return err
			}
			return v.plantCanaries(ctx, tx, b.rows[0].tenant, b.rows[0].list, b.rows[0].created, b.donors.rows, false)
		})
		if err != nil {
			return err
		}
		res.Batches++
		res.Imported += inserted
		if !sees {
			// A key that cannot read the list must not learn which rows were
			// already in it: an address already present counts as imported
			// (the existing contact is left unchanged), like a new one.
			res.Imported += len(dups)
			dups = nil
		}
		// Report errors in line order: validation errors and duplicates interleave.
		j := 0
		for (ei < len(b.errs) && b.errs[ei].Line <= hi) || j < len(dups) {
			if j >= len(dups) || (ei < len(b.errs) && b.errs[ei].Line <= hi && b.errs[ei].Line < dups[j].Line) {
				addError(res, b.errs[ei], maxErrors)
				ei++
			} else {
				addError(res, dups[j], maxErrors)
				j++
			}
		}
		if end < len(b.rows) {
			res.CommittedThroughLine = hi
		}
		start = end
	}
	for _, e := range b.errs[ei:] { // refused rows after the batch's last valid row
		addError(res, e, maxErrors)
	}
	return nil
}

// ExportFunc receives each exported contact in token order.
type ExportFunc func(*custos.Contact) error

// Export streams every contact of a list to fn, with fresh watermark rows
// (canaries of this export) merged in token order; tenant admins only.
//
// The count and every page are read from one snapshot, a read-only
// transaction, so contacts written meanwhile change nothing: the export
// sends exactly the rows counted. The export's leaf — list, rows sent and,
// in its detail, how many were real and how many watermarks — is
// recorded after the count and before the first contact is handed over
// (log before reveal), and it is exact.
//
// The snapshot is held for the whole export. On SQLite a reader holding
// an old snapshot keeps every WAL frame written since: checkpoints cannot
// reset the WAL past it, so the WAL grows with the writes made during a
// long export and is truncated by the first idle checkpoint after it. On
// PostgreSQL it holds back vacuum for as long. Both are the price of an
// exact record; paging without it let the leaf and the file disagree.
func (v *Vault) Export(ctx context.Context, tenant, list, format string, fn ExportFunc) error {
	l, ls, err := v.authorizeList(ctx, custos.ActionContactExport, tenant, list)
	if err != nil {
		return err
	}
	k, err := v.listKeys(ctx, tenant, list)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	if err := v.readyCanaries(ctx); err != nil {
		return v.deny(ctx, l, err)
	}
	// SQLite: ReadOnly makes the driver issue a plain (deferred) BEGIN on
	// a reader, whose snapshot is taken at its first read, the count;
	// the isolation level is ignored. PostgreSQL: BEGIN ISOLATION LEVEL
	// REPEATABLE READ, READ ONLY, likewise from its first statement.
	snap, err := v.read.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return v.deny(ctx, l, fmt.Errorf("export snapshot: %w", err))
	}
	defer snap.Rollback()
	var stored int
	if err := snap.QueryRowContext(ctx, `SELECT count(*) FROM contacts WHERE list_id = $1`, list).Scan(&stored); err != nil {
		return v.deny(ctx, l, fmt.Errorf("count contacts: %w", err))
	}
	// Every export carries watermark rows of its reader, recorded with
	// the export's leaf: an address from a leaked file names the export
	// that first carried it and its reader. The same reader's next export
	// carries the same rows, so two of its exports differ only by the list.
	// Rows the reader deleted stay deleted: they count among its rows, so
	// none is minted in their place; rows its imports adopted do not count
	// (watermark.go).
	var fresh, kept, more []*custos.Contact
	var rtag string
	if v.canaries > 0 {
		rtag = readerTag(v.canaryKey, list, l)
		var minted int
		if kept, minted, err = v.readerCanaries(ctx, k, rtag); err != nil {
			return v.deny(ctx, l, err)
		}
		fresh = kept
		if n := v.canaries - minted; n > 0 {
			donors, err := exportDonors(ctx, snap, k, list)
			if err != nil {
				return v.deny(ctx, l, err)
			}
			more, err = v.exportCanaries(ctx, tenant, list, ls.CreatedAt, n, donors)
			if err != nil {
				return v.deny(ctx, l, err)
			}
			fresh = append(slices.Clone(kept), more...)
			slices.SortFunc(fresh, func(a, b *custos.Contact) int { return strings.Compare(a.Token, b.Token) })
		}
	}
	r := custos.RequestFromContext(ctx)
	sent := stored + len(fresh)
	l.Count = sent
	// The detail does not say how many rows were watermarks: the reader
	// reads its own leaves, and a count that fell by one after it deleted
	// a row would tell it the row was one (watermark.go).
	l.Detail = fmt.Sprintf("format %s, %d rows", format, sent)
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if err := frozenTx(ctx, tx, tenant); err != nil {
			leaf.Count, leaf.Detail = 0, "format "+format // refused: nothing left
			return err
		}
		if err := keepReaderCanaries(ctx, tx, k, rtag, more); err != nil {
			return err
		}
		for _, c := range fresh {
			// ON CONFLICT: an address drawn twice by racing exports keeps
			// its first owner (75 million addresses a domain make it rare).
			if _, err := tx.ExecContext(ctx, insertExportCanary, addrTag(v.canaryKey, c.Email), tenant, list, l.Actor, l.KeyID, r.Source, r.ID, ms(v.now())); err != nil {
				return fmt.Errorf("record export canaries: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// emit hands fn the real contacts with the fresh canaries merged in
	// token order.
	emit := func(c *custos.Contact) error {
		for len(fresh) > 0 && fresh[0].Token < c.Token {
			if err := fn(fresh[0]); err != nil {
				return err
			}
			fresh = fresh[1:]
		}
		return fn(c)
	}
	// Pages of the snapshot, each read whole before fn sees its rows: a
	// slow client holds the transaction open, not a half-read result.
	after := ""
	for {
		rows, err := snap.QueryContext(ctx, `SELECT `+contactColumns+` FROM contacts WHERE list_id = $1 AND token > $2 ORDER BY token LIMIT 1000`, list, after)
		if err != nil {
			return fmt.Errorf("export contacts: %w", err)
		}
		var page []*sealed
		for rows.Next() {
			s, err := scanSealed(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("export contacts: %w", err)
			}
			page = append(page, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("export contacts: %w", err)
		}
		if len(page) == 0 {
			for _, c := range fresh {
				if err := fn(c); err != nil {
					return err
				}
			}
			return nil
		}
		for _, s := range page {
			c, err := open(k, s)
			if err != nil {
				return err
			}
			if err := emit(c); err != nil {
				return err
			}
		}
		after = page[len(page)-1].token
	}
}
