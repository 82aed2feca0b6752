package detect

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// The windows' points are stored apart from the rest of the state
// (migration 0038): under an alert storm the windows hold most of it —
// up to maxWindow points each — and re-marshalling them with the cursor
// every second wrote tens of megabytes a second. Now each point is one
// row of detector_points, inserted in the transaction that moves the
// cursor past its event and deleted in the one after it left its window;
// detector_state.state keeps only each window's span (first point seq,
// number of points). A load rebuilds the windows from the rows and
// checks them against the spans and their MACs.

const pointsTable = "detector_points"

// storedState is the JSON of s as stored with the cursor: the windows'
// spans in place of their points.
func storedState(s *State) ([]byte, error) {
	cp := *s
	cp.Windows = nil
	cp.Spans = make(map[string][2]int64, len(s.Windows))
	for k, w := range s.Windows {
		if len(w.Points) > 0 {
			cp.Spans[k] = [2]int64{w.Points[0].seq, int64(len(w.Points))}
		}
	}
	return json.Marshal(&cp)
}

// pointsPerInsert bounds the rows of one INSERT (5 parameters each).
const pointsPerInsert = 100

// writePoints writes, in tx, what changed in the windows since they were
// last stored: the points of removed windows and those that left their
// window are deleted, new points inserted. Nothing in memory changes
// until [Detector.pointsStored] is called after tx committed.
func (d *Detector) writePoints(ctx context.Context, tx *sql.Tx) error {
	st := d.engine.State
	for k := range st.gone {
		if st.Windows[k] != nil {
			continue // recreated since: written as dirty below
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM detector_points WHERE name = $1 AND wkey = $2`, d.Name, k); err != nil {
			return fmt.Errorf("detector: delete window: %w", err)
		}
	}
	keys := make([]string, 0, len(st.dirty))
	for k := range st.dirty {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same statements in the same order on every engine and run
	var batch []any
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var err error
		if stmt := d.pointsInsert(ctx, tx, len(batch)/5); stmt != nil {
			_, err = stmt.ExecContext(ctx, batch...)
		} else {
			_, err = tx.ExecContext(ctx, pointsSQL(len(batch)/5), batch...)
		}
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("detector: insert window points: %w", err)
		}
		return nil
	}
	for _, k := range keys {
		w := st.Windows[k]
		if w == nil || len(w.Points) == 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM detector_points WHERE name = $1 AND wkey = $2`, d.Name, k); err != nil {
				return fmt.Errorf("detector: delete window: %w", err)
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM detector_points WHERE name = $1 AND wkey = $2 AND seq < $3`, d.Name, k, w.Points[0].seq); err != nil {
			return fmt.Errorf("detector: delete window points: %w", err)
		}
		for _, p := range w.Points {
			if p.seq <= w.saved {
				continue
			}
			body, err := json.Marshal(p)
			if err != nil {
				return err
			}
			var mac sql.NullString
			if d.Rows != nil {
				m, err := d.Rows.Sum(ctx, tx, pointsTable, d.Name, p.seq, k, string(body))
				if err != nil {
					return err
				}
				mac = sql.NullString{String: m, Valid: true}
			}
			batch = append(batch, d.Name, p.seq, k, string(body), mac)
			if len(batch) == 5*pointsPerInsert {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// pointsInsert returns the INSERT of n window points: the full one
// (pointsPerInsert rows) prepared once by [Detector.preparePoints],
// others made for the call.
func (d *Detector) pointsInsert(ctx context.Context, tx *sql.Tx, n int) *sql.Stmt {
	if n == pointsPerInsert && d.pointsFull != nil {
		return tx.StmtContext(ctx, d.pointsFull)
	}
	return nil
}

// pointsSQL is the INSERT of n window points.
func pointsSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO detector_points (name, seq, wkey, point, mac) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "($%d, $%d, $%d, $%d, $%d)", 5*i+1, 5*i+2, 5*i+3, 5*i+4, 5*i+5)
	}
	return b.String()
}

// preparePoints prepares the full INSERT of window points on the write
// pool, once. It must run while the detector holds no transaction (on
// SQLite the pool is the one writer connection): Step calls it first.
func (d *Detector) preparePoints(ctx context.Context) {
	if d.pointsFull != nil {
		return
	}
	if s, err := d.Write.PrepareContext(ctx, pointsSQL(pointsPerInsert)); err == nil {
		d.pointsFull = s
	}
}

// pointsStored records that what [Detector.writePoints] wrote committed.
func (d *Detector) pointsStored() {
	st := d.engine.State
	for k := range st.dirty {
		if w := st.Windows[k]; w != nil && len(w.Points) > 0 {
			w.saved = w.Points[len(w.Points)-1].seq
		}
	}
	st.stored()
}

// stored forgets which windows changed since they were last stored.
func (s *State) stored() { s.dirty, s.gone = nil, nil }

// errPointsForged is a window point row that fails its MAC, or a window
// missing points its span counts.
type errPointsForged struct{ window string }

func (e errPointsForged) Error() string { return "detector: window points fail their integrity check" }

// loadWindows rebuilds st.Windows from the rows of detector_points and the
// spans the cursor row stored. A state stored before migration 0038 has
// its points in the JSON instead: they are numbered and written at the
// next save.
func (d *Detector) loadWindows(ctx context.Context, st *State) error {
	if st.Windows == nil {
		st.Windows = map[string]*Window{}
	}
	spans := st.Spans
	st.Spans = nil
	if len(st.Windows) > 0 { // a state of before 0038
		keys := make([]string, 0, len(st.Windows))
		for k := range st.Windows {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			w := st.Windows[k]
			for i := range w.Points {
				st.Seq++
				w.Points[i].seq = st.Seq
			}
			st.touch(k)
		}
		return nil
	}
	if len(spans) == 0 {
		return nil
	}
	rows, err := d.Write.QueryContext(ctx, `SELECT seq, wkey, point, mac FROM detector_points WHERE name = $1 ORDER BY seq`, d.Name)
	if err != nil {
		return fmt.Errorf("detector: read window points: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var k, body string
		var mac sql.NullString
		if err := rows.Scan(&seq, &k, &body, &mac); err != nil {
			return fmt.Errorf("detector: read window points: %w", err)
		}
		span, ok := spans[k]
		if !ok || seq < span[0] || seq > st.Seq {
			continue // left its window; its deletion is in the next save
		}
		if d.Rows != nil {
			ok, err := d.Rows.OK(ctx, pointsTable, mac, d.Name, seq, k, body)
			if err != nil {
				return err
			}
			if !ok {
				return errPointsForged{k}
			}
		}
		var p Point
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			return fmt.Errorf("detector: window point: %w", err)
		}
		p.seq = seq
		w := st.Windows[k]
		if w == nil {
			w = &Window{Counts: map[string]int{}}
			st.Windows[k] = w
		}
		w.Points = append(w.Points, p)
		if p.Value != "" {
			w.Counts[p.Value]++
		}
		w.Sum += p.N
		w.saved = seq
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("detector: read window points: %w", err)
	}
	for k, span := range spans {
		w := st.Windows[k]
		if w == nil || int64(len(w.Points)) != span[1] || w.Points[0].seq != span[0] {
			return errPointsForged{k}
		}
	}
	return nil
}
