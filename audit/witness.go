package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
)

// This file keeps the witnesses' cosignatures of the log's checkpoints
// (C2SP tlog-cosignature lines) in audit_cosignatures; the witness package
// collects them and decides which checkpoint to serve. The lines are
// stored as the witnesses returned them and are checked again by whoever
// reads a checkpoint: the database is not trusted to hold only valid ones.

// AddCosignature records a witness's cosignature line ("— name base64")
// of the checkpoint of the given size. A second line from the same
// witness for the same size keeps the first: either is a valid
// cosignature of the same checkpoint.
func (l *Log) AddCosignature(ctx context.Context, size uint64, witness, line string) error {
	if _, err := l.w.ExecContext(ctx, `INSERT INTO audit_cosignatures (size, witness, signature, cosigned_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (size, witness) DO NOTHING`, int64(size), witness, line, l.cfg.Now().UnixMilli()); err != nil {
		return fmt.Errorf("store cosignature: %w", err)
	}
	// A cosigned checkpoint outlives the retention horizon: clients
	// holding a witness policy are served it (/log/checkpoint), and it is
	// what receipts and reports are proved against.
	return l.Keep(ctx, size, KeptWitness)
}

// Cosigned is the newest cosignature stored of one witness.
type Cosigned struct {
	Size uint64    // the size of the checkpoint it cosigned
	At   time.Time // when it was stored
}

// CosignedSizes returns, by witness name, the newest checkpoint the
// witness cosigned for this log and when its cosignature was stored.
func (l *Log) CosignedSizes(ctx context.Context) (map[string]Cosigned, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT c.witness, c.size, c.cosigned_at FROM audit_cosignatures c
		WHERE c.size = (SELECT MAX(size) FROM audit_cosignatures WHERE witness = c.witness)`)
	if err != nil {
		return nil, fmt.Errorf("read cosigned sizes: %w", err)
	}
	defer rows.Close()
	out := map[string]Cosigned{}
	for rows.Next() {
		var name string
		var size, at int64
		if err := rows.Scan(&name, &size, &at); err != nil {
			return nil, fmt.Errorf("read cosigned sizes: %w", err)
		}
		out[name] = Cosigned{Size: uint64(size), At: time.UnixMilli(at)}
	}
	return out, rows.Err()
}

// CosignedCheckpoint returns the newest checkpoint that at least quorum of
// the named witnesses cosigned, with the cosignature lines of those
// witnesses appended to the log's signature (a signed note with extra
// signature lines). When no checkpoint has the quorum yet it returns the
// newest checkpoint with whatever lines of those witnesses it has, so a
// client holding a witness policy reports too few cosignatures rather
// than no checkpoint. The log's signature is verified; the cosignatures
// are the client's to verify.
func (l *Log) CosignedCheckpoint(ctx context.Context, witnesses []string, quorum int) (*Checkpoint, error) {
	return ReadCosignedCheckpoint(ctx, l.r, l.cfg.Verifier, witnesses, quorum)
}

// ReadCosignedCheckpoint is [Log.CosignedCheckpoint] from a log's
// database, its log signature verified with v (custos log verify).
func ReadCosignedCheckpoint(ctx context.Context, read *sql.DB, v note.Verifier, witnesses []string, quorum int) (*Checkpoint, error) {
	if len(witnesses) == 0 {
		return ReadCheckpoint(ctx, read, v)
	}
	in := make([]string, len(witnesses))
	args := []any{int64(quorum)}
	for i, w := range witnesses {
		in[i] = "$" + strconv.Itoa(i+2)
		args = append(args, w)
	}
	names := strings.Join(in, ", ")
	var size int64
	err := read.QueryRowContext(ctx, `SELECT size FROM audit_cosignatures WHERE witness IN (`+names+`)
		GROUP BY size HAVING COUNT(*) >= $1 ORDER BY size DESC LIMIT 1`, args...).Scan(&size)
	var msg []byte
	switch {
	case errors.Is(err, sql.ErrNoRows) || quorum <= 0:
		if msg, err = latestCheckpointNote(ctx, read); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("read cosigned checkpoint: %w", err)
	default:
		err := read.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints WHERE size = $1`, size).Scan(&msg)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, custos.Errorf(custos.ENOTFOUND, "the cosigned checkpoint of size %d is no longer stored", size)
		} else if err != nil {
			return nil, fmt.Errorf("read cosigned checkpoint: %w", err)
		}
	}
	if v, err = chainFor(ctx, read, v); err != nil {
		return nil, err
	}
	cp, err := ParseCheckpoint(msg, v)
	if err != nil {
		return nil, err
	}
	rows, err := read.QueryContext(ctx, `SELECT signature FROM audit_cosignatures WHERE size = $1 AND witness IN (`+names+`) ORDER BY witness`,
		append([]any{int64(cp.Size)}, args[1:]...)...)
	if err != nil {
		return nil, fmt.Errorf("read cosignatures: %w", err)
	}
	defer rows.Close()
	msg = bytes.Clone(cp.Note)
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, fmt.Errorf("read cosignatures: %w", err)
		}
		msg = append(append(msg, strings.TrimSuffix(line, "\n")...), '\n')
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cosignatures: %w", err)
	}
	// The whole note is parsed again: the log's signature still opens it,
	// and what is handed on is exactly what was checked.
	return ParseCheckpoint(msg, v)
}
