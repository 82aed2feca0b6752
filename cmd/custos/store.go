package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/internal/sqlq"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/postgres"
	"github.com/custos-dev/custos/sqlite"
	"github.com/custos-dev/custos/vault"
)

// database is an open SQLite or PostgreSQL store.
type database struct {
	Write, Read  *sql.DB
	Placeholders sqlq.Style
	Queued       bool // PostgreSQL: the audit log's queued mode
	close        func() error
}

// openDB opens cfg's database: PostgreSQL if cfg.DB is a URL, else the
// data directory's SQLite file (created if create is set).
func openDB(ctx context.Context, cfg Config, create bool) (*database, error) {
	if cfg.DB != "" {
		db, err := postgres.Open(ctx, cfg.DB)
		if err != nil {
			return nil, err
		}
		return &database{Write: db.Write, Read: db.Read, Placeholders: db.Placeholders, Queued: true, close: db.Close}, nil
	}
	path := cfg.path("custos.db")
	if !create {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no database at %s: %w", path, err)
		}
	}
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	return &database{Write: db.Write, Read: db.Read, Placeholders: db.Placeholders, close: db.Close}, nil
}

// store is an opened data directory.
type store struct {
	db       *database
	log      *audit.Log
	vault    *vault.Vault
	verifier note.Verifier
	// notifier delivers the notification outbox while this node is the
	// log's sequencer; stop ends it.
	notifier *notify.Dispatcher
	detector *detect.Detector
	stop     context.CancelFunc
	stopped  chan struct{}
}

func (s *store) Close() error {
	s.stop()
	<-s.stopped
	err := s.log.Close()
	return errors.Join(err, s.db.close())
}

// openVerifier reads the log's public key.
func openVerifier(cfg Config) (note.Verifier, error) {
	b, err := os.ReadFile(cfg.path("log.pub"))
	if err != nil {
		return nil, fmt.Errorf("read log verifier key: %w (is %s a custos data directory? run custos init)", err, cfg.DataDir)
	}
	return note.NewVerifier(strings.TrimSpace(string(b)))
}

// openStore opens the database, the KEK, the log and the vault, and
// starts delivering notifications to sinks (the service log if none).
func openStore(ctx context.Context, cfg Config, logger *slog.Logger, sinks ...notify.Sink) (*store, error) {
	if _, err := os.Stat(cfg.path(configFile)); err != nil {
		return nil, fmt.Errorf("%s is not a custos data directory (no %s): run custos init", cfg.DataDir, configFile)
	}
	// It holds the KEK (by default), the log's signing key and the
	// database: nobody but custos enters it (sqlite.Open checks the
	// database files themselves).
	if err := sqlite.CheckDir(cfg.DataDir); err != nil {
		return nil, err
	}
	skey, err := os.ReadFile(cfg.path("log.key"))
	if err != nil {
		return nil, fmt.Errorf("read log signing key: %w", err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, fmt.Errorf("log signing key: %w", err)
	}
	verifier, err := openVerifier(cfg)
	if err != nil {
		return nil, err
	}
	kek, err := keys.OpenKEK(ctx, cfg.KEK)
	if err != nil {
		return nil, err
	}
	rules, err := loadRules(cfg.Detection.RulesDir)
	if err != nil {
		return nil, err
	}
	configured, err := cfg.Detection.sinks()
	if err != nil {
		return nil, err
	}
	mailer, localMail, err := cfg.mailer()
	if err != nil {
		return nil, err
	}
	if localMail {
		logger.Warn("enrollment mails are written to a local directory: for trying custos out only; set mail.smtp in custos.json for production")
	}
	if len(sinks) == 0 {
		sinks = []notify.Sink{notify.LogSink{Logger: logger}}
	}
	sinks = append(sinks, configured...)
	if err := notify.CheckSinks(sinks); err != nil {
		return nil, fmt.Errorf("detection: %w", err)
	}
	db, err := openDB(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	// A checkpoint that cannot be signed, or a log that fails its own
	// verifier, becomes a system entry the detector alerts on
	// (log-integrity); the detector exists once the log does.
	var detector atomic.Pointer[detect.Detector]
	trusted, err := readVerified(cfg)
	if err != nil {
		db.close()
		return nil, err
	}
	var tamper sync.Once
	lg, err := audit.Open(ctx, db.Write, db.Read, audit.Config{Origin: cfg.Origin, Signer: signer, Verifier: verifier, Logger: logger, Placeholders: db.Placeholders, Queued: db.Queued,
		OnSignError: func(err error) {
			if d := detector.Load(); d != nil {
				d.Observe("log.checkpoint", err)
			}
		},
		Trusted:    trusted,
		OnVerified: (&verifiedKeeper{path: cfg.path(verifiedFile), logger: logger}).keep,
		OnTamper: func(err error) {
			if d := detector.Load(); d != nil {
				tamper.Do(func() { observeTamper(d, err, logger) })
			}
		}})
	if err != nil {
		db.close()
		return nil, err
	}
	d := &notify.Dispatcher{DB: db.Write, Sinks: sinks, Active: lg.IsLeader, Logger: logger}
	v := vault.New(db.Read, db.Write, lg, keys.NewKeyring(kek), vault.Options{Logger: logger, Placeholders: db.Placeholders, Notified: d.Kick,
		Canaries: cfg.Detection.Canaries, CanaryDomains: cfg.Detection.CanaryDomains})
	// Enrollment mails go only to the holder's address, by their own sink.
	d.Sinks = append(d.Sinks, &vault.EnrollmentSink{Vault: v, Mailer: mailer})
	// Free text written before it was sealed at rest is sealed now; if the
	// database refuses (a full disk), the rows stay readable as they are
	// and the next start tries again.
	if n, err := v.SealFreeText(ctx); err != nil {
		logger.Warn("could not seal free text written before sealing; will retry at the next start", "err", err)
	} else if n > 0 {
		logger.Info("sealed free text written before sealing", "rows", n)
	}
	// Rows from before row MACs get theirs, once (vault.SealRows).
	if n, err := v.SealRows(ctx); err != nil {
		lg.Close()
		db.close()
		return nil, fmt.Errorf("seal rows: %w", err)
	} else if n > 0 {
		logger.Info("sealed rows that predate row MACs", "rows", n)
	}
	canaries, err := v.CanaryIndex(ctx)
	if err != nil {
		lg.Close()
		db.close()
		return nil, err
	}
	det := &detect.Detector{Log: lg, Read: db.Read, Write: db.Write, Rules: rules, Canaries: canaries, Rows: v.Rows(), Active: lg.IsLeader, Notified: d.Kick, Logger: logger}
	detector.Store(det)
	if err := lg.Integrity(); err != nil { // found by Open, before the detector existed
		tamper.Do(func() { go observeTamper(det, err, logger) })
	}
	bg, stop := context.WithCancel(context.Background())
	st := &store{db: db, log: lg, vault: v, verifier: verifier, notifier: d, detector: det, stop: stop, stopped: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.Run(bg) }()
	go func() { defer wg.Done(); det.Run(bg) }()
	go func() { wg.Wait(); close(st.stopped) }()
	return st, nil
}

// loadRules loads the rule files in dir, or the default pack.
func loadRules(dir string) ([]*detect.Rule, error) {
	if dir == "" {
		return detect.DefaultRules()
	}
	rules, err := detect.LoadFS(os.DirFS(dir), ".")
	if err != nil {
		return nil, fmt.Errorf("rules in %s: %w", dir, err)
	}
	return rules, nil
}

// observeTamper raises the log-integrity alert for a mismatch the log's
// verifier found.
func observeTamper(d *detect.Detector, err error, logger *slog.Logger) {
	if oerr := d.ObserveTamper(context.Background(), err); oerr != nil {
		logger.Error("could not raise the log-integrity alert", "err", oerr)
	}
}

// verifiedFile keeps, in the data directory, the last checkpoint this
// node's log verifier accepted, so that the next start catches a log that
// was truncated, restored from an older backup or rewritten and re-signed
// while custos was down (audit.Config.Trusted). It is not a witness: an
// attacker who can write the data directory can replace it too.
const verifiedFile = "log-verified.checkpoint"

func readVerified(cfg Config) ([]byte, error) {
	b, err := os.ReadFile(cfg.path(verifiedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", verifiedFile, err)
	}
	return b, nil
}

// verifiedKeeper writes verifiedFile when the verified size grew. Several
// nodes sharing a data directory may each write it; any of their
// checkpoints is one the log must extend. Only the log's verifier calls
// it, one round at a time.
type verifiedKeeper struct {
	path   string
	size   uint64
	logger *slog.Logger
}

func (k *verifiedKeeper) keep(cp *audit.Checkpoint) {
	if k.size != 0 && cp.Size <= k.size {
		return
	}
	if err := writeFileAtomic(k.path, cp.Note); err != nil {
		k.logger.Warn("could not keep the verified checkpoint", "err", err)
		return
	}
	k.size = cp.Size
}
