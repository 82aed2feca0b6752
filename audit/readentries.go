package audit

import (
	"context"
	"database/sql"
	"fmt"
)

// ReadEntries reads up to n entries from index from, in order, from a
// log's database without opening the log (custos rules backtest): each
// body and salt must open its stored commitment, and no index may be
// missing, or it is a [*VerifyError]. That the commitments are the
// tree's leaves is for [Verify] to say: a caller that needs the entries
// proven verifies the log first, up to the size it then reads.
func ReadEntries(ctx context.Context, read *sql.DB, from uint64, n int) ([]Stored, error) {
	if n <= 0 {
		return nil, nil
	}
	rows, err := read.QueryContext(ctx, selectStored+` WHERE idx >= $1 AND idx < $2 ORDER BY idx`, int64(from), int64(from)+int64(n))
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	defer rows.Close()
	out := make([]Stored, 0, n)
	for rows.Next() {
		s, err := scanStored(rows)
		if err != nil {
			return nil, fmt.Errorf("read entries: %w", err)
		}
		if want := from + uint64(len(out)); s.Index != want {
			return nil, &VerifyError{Index: want, Reason: "entry missing"}
		}
		if err := s.check(); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	return out, nil
}
