// Package node assembles one custos node from its configuration: the
// store, the log's keys, the key-encryption key, the audit log, the vault,
// the detector, the notifier (the outbox's dispatcher with its sinks and
// the enrollment sink) and the HTTP API. custos serve, init, demo, the
// tests, the load tool and the benchmarks all get their stack from
// [Open]; nothing else wires it.
//
// A [Node] owns every goroutine it starts; [Node.Close] stops them in
// order: the HTTP server (letting in-flight requests finish), the API's
// refusal counter, the dispatcher and detector, the log (committing what is
// queued), then the database.
package node

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/console"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/internal/tlsfiles"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/relay"
	"github.com/custos-dev/custos/server"
	"github.com/custos-dev/custos/siem"
	"github.com/custos-dev/custos/sqlite"
	"github.com/custos-dev/custos/store"
	"github.com/custos-dev/custos/vault"
	"github.com/custos-dev/custos/witness"
)

// Options are what a caller adds to a [Config]: they never change what a
// deployment's data means, only how this process runs it.
type Options struct {
	// Logger is the service log (default: discarded).
	Logger *slog.Logger
	// Sinks replace the default service-log sink for notifications; the
	// sinks configured in Config.Detection and the enrollment sink are
	// always added.
	Sinks []notify.Sink
	// Server adjusts the API's configuration before it is built (limits
	// off for a load generator, short timeouts in tests).
	Server func(*server.Config)
	// Audit adjusts the audit log's configuration before it opens (a test
	// that changes stored entries on purpose turns the log's own verifier
	// off, so that what it checks is not pre-empted by the monitor).
	Audit func(*audit.Config)
	// BesideServer opens the data directory's SQLite database without
	// its lock (see [LockFile]), beside a server that may be running on
	// it: for a check that only reads (log verify --rows), never for a
	// second server.
	BesideServer bool
	// DB, if set, is used instead of opening Config's database; the
	// caller keeps it and closes it after the node.
	DB *store.DB
	// Handler, if set, wraps the API's handler in Listen (tests check
	// every exchange against the OpenAPI document this way).
	Handler func(http.Handler) http.Handler
	// Cosigner, if set, adjusts the witness cosigner before it starts
	// (its HTTP client, its polling interval in tests).
	Cosigner func(*witness.Cosigner)
	// NoMigrate opens the database only if its schema is current (serve
	// --migrate=false): pending migrations are refused, not applied.
	NoMigrate bool
	// CertPoll is how often the TLS files' modification times are checked
	// (default DefaultCertPoll; tests shorten it).
	CertPoll time.Duration
	// DetectorLagBound is how many entries the detector may trail the log
	// before /readyz says not ready (default DefaultDetectorLagBound).
	DetectorLagBound uint64
	// Drain bounds how long Close waits for in-flight requests (default
	// DefaultDrain); what is still running then is cut off.
	Drain time.Duration
	// ConsoleIdle and ConsoleMax, if set, override Config.Console's
	// session lifetimes (tests shorten them).
	ConsoleIdle, ConsoleMax time.Duration
}

// DefaultDrain is how long Close lets in-flight requests finish.
const DefaultDrain = 30 * time.Second

// DefaultCertPoll is how often a node checks its TLS files for a change.
const DefaultCertPoll = 10 * time.Second

// Node is an open custos node.
type Node struct {
	Config   Config
	DB       *store.DB
	Log      *audit.Log
	Vault    *vault.Vault
	Verifier note.Verifier
	Detector *detect.Detector
	// Notifier delivers the notification outbox while this node is the
	// log's sequencer.
	Notifier *notify.Dispatcher
	// Server is the HTTP API; [Node.Listen] serves it.
	Server *server.Server
	// Relay is the egress relay and inbound trap, nil when custos.json
	// configures none; [Node.ListenRelay] starts its listeners.
	Relay *relay.Relay
	// RelayAddrs are where ListenRelay listens, by custos.json field
	// ("listen", "listen_tls", "inbound_listen").
	RelayAddrs map[string]string
	// Cosigner sends checkpoints to the witnesses of custos.json's
	// log.witnesses and stores their cosignatures; nil without witnesses.
	Cosigner *witness.Cosigner
	// URL is where Listen serves, "" before.
	URL string
	// DiagnosticsURL is where ListenDiagnostics serves /metrics and
	// /debug/pprof/, "" before.
	DiagnosticsURL string

	logger *slog.Logger
	siem   []*siem.Sink

	// test hooks: stop RotateLogKey where a crash could
	testCrashBeforeStatement, testCrashAfterStatement bool
	relayWG                                           sync.WaitGroup
	wrap                                              func(http.Handler) http.Handler
	ownDB                                             bool
	unlock                                            func() // releases the data directory's lock (a no-op when it was not taken)
	// The sinks a reload keeps: the caller's (or the service log), and
	// after the configured ones, the SIEM forwarders and the people's.
	baseSinks, fixedSinks []notify.Sink
	reloadMu              sync.Mutex // one Reload at a time
	lifecycleMu           sync.Mutex // one operator-key lifecycle round at a time
	stop                  context.CancelFunc
	stopped               chan struct{}
	http                  *http.Server
	served                chan error
	once                  sync.Once
	err                   error

	// TLS (issue 21): the API's certificate files and their watcher.
	tlsFiles *tlsfiles.Files
	tlsPoll  time.Duration
	tlsStop  context.CancelFunc
	// relayTLS is the relay listeners' certificate files (nil: none).
	relayTLS     *tlsfiles.Files
	relayTLSStop context.CancelFunc
	tlsWG        sync.WaitGroup
	// The diagnostics listener (metrics.go).
	diag       *http.Server
	diagServed chan error
	// Shutdown bounds (Options.Drain).
	drain, flushTimeout time.Duration
}

var errListening = errors.New("node: already listening")

func listenTCP(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// Open opens the data directory cfg names as a node: it reads the log's
// keys and the KEK, opens the database (creating the SQLite file), the
// log and the vault, seals rows written before sealing, and starts the
// notifier and the detector. It does not listen; [Node.Listen] does.
func Open(ctx context.Context, cfg Config, opts Options) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(cfg.Path(ConfigFile)); err != nil {
		return nil, fmt.Errorf("%s is not a custos data directory (no %s): run custos init", cfg.DataDir, ConfigFile)
	}
	// It holds the KEK (by default), the log's signing key and the
	// database: nobody but custos enters it (sqlite.Open checks the
	// database files themselves).
	if err := sqlite.CheckDir(cfg.DataDir); err != nil {
		return nil, err
	}
	signer, err := readSigner(cfg)
	if err != nil {
		return nil, err
	}
	var verifier note.Verifier
	verifier, err = OpenVerifier(cfg)
	if err != nil {
		return nil, err
	}
	kek, err := keys.OpenKEK(ctx, cfg.KEK)
	if err != nil {
		return nil, err
	}
	tenantKeyTTL, err := cfg.tenantKeyTTL()
	if err != nil {
		return nil, err
	}
	ring := keys.NewKeyring(kek)
	if cfg.KEKPrevious != "" {
		if cfg.KEKPrevious == cfg.KEK {
			return nil, fmt.Errorf("kek_previous is the same URI as kek")
		}
		prev, err := keys.OpenKEK(ctx, cfg.KEKPrevious)
		if err != nil {
			return nil, fmt.Errorf("kek_previous: %w", err)
		}
		ring = keys.NewRotatingKeyring(kek, prev)
	}
	rules, err := loadRules(cfg.Detection.RulesDir)
	if err != nil {
		return nil, err
	}
	policy := cfg.Detection.Policy
	if err := policy.Validate(rules, time.Now()); err != nil {
		return nil, err
	}
	configured, err := cfg.Detection.sinks()
	if err != nil {
		return nil, err
	}
	expiryNotice, err := cfg.Detection.expiryNotice()
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
	base := append([]notify.Sink(nil), opts.Sinks...)
	if len(base) == 0 {
		base = []notify.Sink{notify.LogSink{Logger: logger}}
	}
	sinks := slices.Concat(base, configured)
	forwarders, err := cfg.Detection.openSyslog(logger)
	if err != nil {
		return nil, err
	}
	closeSIEM := func() {
		for _, f := range forwarders {
			f.Close()
		}
	}
	for _, f := range forwarders {
		sinks = append(sinks, f)
	}
	if err := notify.CheckSinks(sinks); err != nil {
		closeSIEM()
		return nil, fmt.Errorf("detection: %w", err)
	}
	trusted, err := readVerified(cfg)
	if err != nil {
		return nil, err
	}
	db, ownDB, unlock := opts.DB, false, func() {}
	if db == nil {
		if !store.IsPostgres(cfg.DSN()) && !opts.BesideServer {
			if unlock, err = lockDataDir(cfg); err != nil {
				closeSIEM()
				return nil, err
			}
		}
		if db, err = store.Open(ctx, cfg.DSN(), store.Options{NoMigrate: opts.NoMigrate, Memory: cfg.Memory.SQLite()}); err != nil {
			unlock()
			closeSIEM()
			return nil, err
		}
		ownDB = true
	}
	closeDB := func() {
		closeSIEM()
		if ownDB {
			db.Close()
		}
		unlock()
	}
	// A checkpoint that cannot be signed, or a log that fails its own
	// verifier, becomes a system entry the detector alerts on
	// (log-integrity); the detector exists once the log does.
	var detector atomic.Pointer[detect.Detector]
	var tamper sync.Once
	interval, retention, err := cfg.Log.durations()
	if err != nil {
		closeDB()
		return nil, err
	}
	// A log key rotation a crash interrupted is finished or undone
	// before the log opens with log.key (node/logkey.go).
	if _, err := os.Stat(cfg.Path(logNextKey)); err == nil {
		if err := settleLogKey(ctx, cfg, db.Read, verifier); err != nil {
			closeDB()
			return nil, err
		}
		if signer, err = readSigner(cfg); err != nil {
			closeDB()
			return nil, err
		}
	}
	commits := newCommitMetrics()
	acfg := audit.Config{OnCommit: commits.observe, Origin: cfg.Origin, Signer: signer, Verifier: verifier, Logger: logger, Placeholders: db.Placeholders, Queued: db.Queued,
		CheckpointInterval: interval, CheckpointRetention: retention,
		OnSignError: func(err error) {
			if d := detector.Load(); d != nil {
				d.Observe("log.checkpoint", err)
			}
		},
		Trusted:    trusted,
		OnVerified: (&verifiedKeeper{path: cfg.Path(VerifiedFile), logger: logger}).keep,
		OnTamper: func(err error) {
			if d := detector.Load(); d != nil {
				tamper.Do(func() { observeTamper(d, err, logger) })
			}
		}}
	if opts.Audit != nil {
		opts.Audit(&acfg)
	}
	lg, err := audit.Open(ctx, db.Read, db.Write, acfg)
	if err != nil {
		closeDB()
		return nil, err
	}
	// From here on the log's keys are its chain from log.pub (it follows
	// rotations, in this process too) and the key in force.
	verifier, signer = lg.Keys(), lg.Signer()
	var cos *witness.Cosigner
	var witnessed func(context.Context) (*audit.Checkpoint, bool, error)
	if len(cfg.Log.Witnesses) > 0 {
		if cos, err = witness.New(lg, verifier, cfg.Log.Witnesses, cfg.Log.WitnessQuorum); err != nil {
			lg.Close()
			closeDB()
			return nil, fmt.Errorf("log.witnesses: %w", err)
		}
		cos.Logger = logger
		if opts.Cosigner != nil {
			opts.Cosigner(cos)
		}
		witnessed = cos.Witnessed
	}
	d := &notify.Dispatcher{DB: db.Write, Sinks: sinks, Active: lg.IsLeader, Logger: logger}
	var prevKEK, prevTag string
	if cfg.KEKPrevious != "" {
		prevKEK, prevTag = keys.DescribeKEK(cfg.KEKPrevious), keys.KEKTag(cfg.KEKPrevious)
	}
	v := vault.New(db.Read, db.Write, lg, ring, vault.Options{KEKTag: keys.KEKTag(cfg.KEK), PreviousKEK: prevKEK, PreviousKEKTag: prevTag, Logger: logger, Placeholders: db.Placeholders, Notified: d.Kick,
		Canaries: cfg.Detection.Canaries, CanaryDomains: cfg.Detection.CanaryDomains, LogSigner: signer, LogVerifier: verifier, Witnessed: witnessed,
		KEK:            keys.DescribeKEK(cfg.KEK), // receipts say what kind of KEK wrapped destroyed keys
		KEKURI:         cfg.KEK,
		TenantKeyTTL:   tenantKeyTTL,
		WriterCacheKiB: db.WriterCacheKiB, BulkCacheKiB: db.BulkCacheKiB,
		ServiceNetworks: policy.NetworksFor(string(custos.KindService)), // service keys default to the pipeline's ranges
		TicketSecret:    cfg.Detection.TicketWebhookSecret, TicketNetworks: cfg.Detection.TicketWebhookNetworks})
	// Enrollment mails go only to the holder's address, by their own sink;
	// notices to tenant admins and named principals go to the people
	// behind them (vault/people.go), through the same mailer.
	people := []notify.Sink{&vault.EnrollmentSink{Vault: v, Mailer: mailer}, &vault.PeopleSink{Vault: v, Mailer: mailer, Link: server.NoticeLink, Decide: console.DecisionPath, LinkBase: cfg.Mail.LinkBase}}
	d.Sinks = append(d.Sinks, people...)
	// Free text written before it was sealed at rest is sealed now; if the
	// database refuses (a full disk), the rows stay readable as they are
	// and the next start tries again.
	if n, err := v.SealFreeText(ctx); err != nil {
		logger.Warn("could not seal free text written before sealing; will retry at the next start", "err", err)
	} else if n > 0 {
		logger.Info("sealed free text written before sealing", "rows", n)
	}
	// Keysets from before migration 0032 are under this KEK, unless a
	// rotation is in progress (vault.TagKEK).
	if err := v.TagKEK(ctx); err != nil {
		lg.Close()
		closeDB()
		return nil, err
	}
	// Rows from before row MACs get theirs, once (vault.SealRows).
	if n, err := v.SealRows(ctx); err != nil {
		lg.Close()
		closeDB()
		return nil, fmt.Errorf("seal rows: %w", err)
	} else if n > 0 {
		logger.Info("sealed rows that predate row MACs", "rows", n)
	}
	// Client-certificate bindings made before principals carried their
	// pin are copied onto them, once (vault.SealCertPins).
	if n, err := v.SealCertPins(ctx); err != nil {
		lg.Close()
		closeDB()
		return nil, fmt.Errorf("seal certificate pins: %w", err)
	} else if n > 0 {
		logger.Info("copied client-certificate bindings onto their principals", "principals", n)
	}
	// Every exception's owner is a principal; the detector learns its
	// person now, and an exception that would silence a principal of its
	// owner's own person stops the start.
	if err := checkOwners(ctx, v, &policy); err != nil {
		lg.Close()
		closeDB()
		return nil, err
	}
	// Principals' addresses written before they were sealed are sealed now (after
	// the row MACs: a principal whose MAC fails is left as it is).
	if n, err := v.SealIdentities(ctx); err != nil {
		logger.Warn("could not seal identities written before sealing; will retry at the next start", "err", err)
	} else if n > 0 {
		logger.Info("sealed principals' addresses written before sealing", "principals", n)
	}
	canaries, err := v.CanaryIndex(ctx)
	if err != nil {
		lg.Close()
		closeDB()
		return nil, err
	}
	det := &detect.Detector{Log: lg, Read: db.Read, Write: db.Write, Rules: rules, Policy: &policy, Canaries: canaries, Rows: v.Rows(), Active: lg.IsLeader, Notified: d.Kick, Logger: logger}
	// A detection configuration that differs from the last one recorded
	// (the default pack with an empty policy, until one is) goes into the
	// log before the detector starts: a change of rules, allowlists or
	// exceptions is on record, and the detector alerts on it
	// (detection-config-changed).
	if err := recordDetectionConfig(ctx, lg, db.Read, rules, &policy); err != nil {
		lg.Close()
		closeDB()
		return nil, err
	}
	if len(forwarders) > 0 {
		det.OnEntry = func(index uint64, l *audit.Leaf) {
			for _, f := range forwarders {
				f.Audit(index, l)
			}
		}
	}
	detector.Store(det)
	if err := lg.Integrity(); err != nil { // found by Open, before the detector existed
		tamper.Do(func() { go observeTamper(det, err, logger) })
	}
	rl, relayTLS, err := openRelay(ctx, cfg, v, logger)
	if err != nil {
		lg.Close()
		closeDB()
		return nil, err
	}
	idle, maxSession, err := cfg.Console.durations()
	if err != nil {
		lg.Close()
		closeDB()
		return nil, err
	}
	if opts.ConsoleIdle > 0 {
		idle = opts.ConsoleIdle
	}
	if opts.ConsoleMax > 0 {
		maxSession = opts.ConsoleMax
	}
	ssoCfg, err := cfg.Console.OIDC.console()
	if err != nil {
		lg.Close()
		closeDB()
		return nil, err
	}
	ccfg := console.Config{Vault: v, Logger: logger, IdleTimeout: idle, MaxSession: maxSession, OIDC: ssoCfg, Log: lg}
	if cos != nil {
		ccfg.Witnesses = cos
	}
	scfg := server.Config{Vault: v, Log: lg, Logger: logger, Console: console.New(ccfg)}
	if cos != nil {
		scfg.Witnesses = cos
	}
	if rl != nil && cfg.Relay.Upstream.Addr != "" {
		scfg.Relay = rl
	}
	scfg.Ready = readyChecks(cfg, db, lg, kek, det, opts.DetectorLagBound)
	if opts.Server != nil {
		opts.Server(&scfg)
	}
	bg, stop := context.WithCancel(context.Background())
	n := &Node{Config: cfg, DB: db, Log: lg, Vault: v, Verifier: verifier, Detector: det, Notifier: d, Server: server.New(scfg), Relay: rl, Cosigner: cos,
		logger: logger, siem: forwarders, wrap: opts.Handler, ownDB: ownDB, unlock: unlock, stop: stop, baseSinks: base, relayTLS: relayTLS, stopped: make(chan struct{}), tlsPoll: opts.CertPoll}
	for _, f := range forwarders {
		n.fixedSinks = append(n.fixedSinks, f)
	}
	n.fixedSinks = append(n.fixedSinks, people...)
	if n.tlsPoll <= 0 {
		n.tlsPoll = DefaultCertPoll
	}
	n.drain, n.flushTimeout = opts.Drain, 5*time.Second
	if n.drain <= 0 {
		n.drain = DefaultDrain
	}
	n.Server.Registry().MustRegister(commits.collectors()...)
	n.Server.Registry().MustRegister(&nodeCollector{log: lg, read: db.Read, detector: det, notifier: d, siem: forwarders})
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); n.runLifecycle(bg) }() // operator key lifecycle (lifecycle.go)
	go func() { defer wg.Done(); d.Run(bg) }()
	go func() { defer wg.Done(); det.Run(bg) }()
	go func() { defer wg.Done(); runDeletions(bg, v, logger) }()
	go func() { defer wg.Done(); runExpiry(bg, v, lg.IsLeader, expiryNotice, logger) }()
	wg.Go(func() { runRewraps(bg, v, lg.IsLeader, cfg.RewrapRate, logger) })
	wg.Go(func() { runCanaryPlanter(bg, v, lg.IsLeader, logger) })
	if cos != nil { // beside the log, never in its path: appends do not wait for witnesses
		wg.Go(func() { cos.Run(bg) })
	}
	go func() { wg.Wait(); close(n.stopped) }()
	return n, nil
}

// Listen serves the API on addr (":0" picks a free port; [Node.URL] says
// which) on its own http.Server: header and idle timeouts, a deadline on
// request bodies, and a connection cap that closes idle connections first
// (server.Config has the limits). Close stops it.
func (n *Node) Listen(addr string) error {
	if n.http != nil {
		return errors.New("node: already listening")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen: %q is not host:port", addr)
	}
	// Plain HTTP carries API keys and addresses in clear: only on loopback
	// (a sidecar proxy terminates TLS) or when the operator says so.
	tlsOn := n.Config.TLS.Enabled()
	if !tlsOn && !isLoopback(host) {
		if !n.Config.InsecurePlaintext {
			return fmt.Errorf("listen: %s is not a loopback address and tls is not configured: API keys and addresses would cross the network in clear (configure tls in %s, or pass --insecure-plaintext)", addr, ConfigFile)
		}
		n.logger.Warn("serving plain HTTP on a non-loopback address (--insecure-plaintext): API keys and addresses cross the network in clear", "addr", addr)
	}
	var files *tlsfiles.Files
	if tlsOn {
		t := n.Config.TLS
		files = &tlsfiles.Files{Cert: t.CertFile, Key: t.KeyFile, ClientCA: t.ClientCAFile, RequireClient: t.RequireClientCert}
		if err := files.Load(); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	n.http = n.Server.HTTPServer(slog.NewLogLogger(n.logger.Handler(), slog.LevelWarn))
	if n.wrap != nil {
		n.http.Handler = n.wrap(n.http.Handler)
	}
	scheme := "http://"
	if files != nil {
		// The connection cap sees the *tls.Conn, as the http.Server does.
		ln, scheme = tls.NewListener(ln, files.Config()), "https://"
		n.tlsFiles = files
		wctx, stop := context.WithCancel(context.Background())
		n.tlsStop = stop
		n.tlsWG.Go(func() {
			files.Watch(wctx, n.tlsPoll, func(err error) { n.certsReloaded(context.Background(), "API", files, "file change", err) })
		})
	}
	ln = n.Server.Listener(ln)
	n.URL = scheme + ln.Addr().String()
	n.served = make(chan error, 1)
	go func() { n.served <- n.http.Serve(ln) }()
	return nil
}

// ReloadCertificates reads the API's certificate, key and client CA files
// again, and the relay listeners' (SIGHUP). A failed reload keeps serving
// the previous pair.
func (n *Node) ReloadCertificates(ctx context.Context) error {
	var errs []error
	for _, f := range []struct {
		which string
		files *tlsfiles.Files
	}{{"API", n.tlsFiles}, {"relay", n.relayTLS}} {
		if f.files == nil {
			continue
		}
		err := f.files.Reload()
		n.certsReloaded(ctx, f.which, f.files, "signal", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// certsReloaded logs a reload and records it (a system entry naming the
// new certificate's fingerprint, a public value): which certificate the
// API (or the relay) served, and since when, is on record.
func (n *Node) certsReloaded(ctx context.Context, which string, files *tlsfiles.Files, why string, err error) {
	if err != nil {
		n.logger.Error("could not reload the TLS certificate; still serving the previous one", "listener", which, "trigger", why, "err", err)
		return
	}
	fp := files.Fingerprint()
	n.logger.Info("TLS certificate reloaded", "trigger", why, "listener", which, "sha256", fp)
	detail := "certificate sha256:" + fp + " (" + why + ")"
	if which != "API" {
		detail = which + " " + detail
	}
	if _, err := n.Log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: ActionTLSReload, Outcome: audit.OutcomeOK,
		Detail: detail}}); err != nil {
		n.logger.Error("could not record the certificate reload", "err", err)
	}
}

// ActionTLSReload is the system entry of a reloaded API certificate.
const ActionTLSReload = "tls.reload"

// Close stops the certificate watcher, stops accepting requests and lets
// in-flight ones finish (up to Options.Drain, default 30 s), stops the
// diagnostics listener and the relay, records the refusals still being
// counted, stops the notifier and the detector, gives the outbox one last
// delivery pass (on the sequencer, up to 5 s), then closes the log
// (committing what is queued) and the database (unless Options.DB gave
// it). A second Close returns the first one's result.
func (n *Node) Close() error {
	n.once.Do(func() {
		var errs []error
		if n.relayTLSStop != nil {
			n.relayTLSStop()
		}
		if n.tlsStop != nil {
			n.tlsStop()
		}
		n.tlsWG.Wait() // the certificate watchers
		if n.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), n.drain)
			errs = append(errs, n.http.Shutdown(ctx))
			cancel()
			if err := <-n.served; !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, err)
			}
		}
		if n.diag != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, n.diag.Shutdown(ctx))
			cancel()
			if err := <-n.diagServed; !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, err)
			}
		}
		if n.Relay != nil { // its sessions finish their entries before the log closes
			errs = append(errs, n.Relay.Close())
			n.relayWG.Wait()
		}
		// The refusals still being counted are recorded before the log closes.
		errs = append(errs, n.Server.Close())
		n.stop()
		<-n.stopped
		// What the detector raised last, and what waits in the outbox, is
		// delivered once more before the process goes (bounded; the rest
		// stays in the outbox for the next sequencer).
		if n.Log.IsLeader() {
			ctx, cancel := context.WithTimeout(context.Background(), n.flushTimeout)
			if _, err := n.Notifier.Flush(ctx); err != nil && ctx.Err() == nil {
				n.logger.Warn("outbox flush at shutdown", "err", err)
			}
			cancel()
		}
		for _, f := range n.siem { // after the detector and notifier that feed them
			errs = append(errs, f.Close())
		}
		errs = append(errs, n.Log.Close())
		if n.ownDB {
			errs = append(errs, n.DB.Close())
		}
		n.unlock()
		n.err = errors.Join(errs...)
	})
	return n.err
}

// readSigner reads the log's signing key in force from the data directory.
func readSigner(cfg Config) (note.Signer, error) {
	skey, err := os.ReadFile(cfg.Path("log.key"))
	if err != nil {
		return nil, fmt.Errorf("read log signing key: %w", err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, fmt.Errorf("log signing key: %w", err)
	}
	return signer, nil
}

// OpenVerifier reads the log's public key from the data directory: the
// key the log began with, the root of its key chain (a rotated log's
// later keys are in its transition statements, audit/keychain.go).
func OpenVerifier(cfg Config) (note.Verifier, error) {
	b, err := os.ReadFile(cfg.Path("log.pub"))
	if err != nil {
		return nil, fmt.Errorf("read log verifier key: %w (is %s a custos data directory? run custos init)", err, cfg.DataDir)
	}
	return note.NewVerifier(strings.TrimSpace(string(b)))
}

// OpenDB opens an existing data directory's database only (no keys, no
// log), for commands that read it.
func OpenDB(ctx context.Context, cfg Config) (*store.DB, error) {
	return store.Open(ctx, cfg.DSN(), store.Options{MustExist: true})
}

// loadRules loads the rule files in dir, or the default pack.
// recordDetectionConfig appends a detection.config system entry with the
// digest of the running rules and policy, if it differs from the last one
// the detector saw recorded.
func recordDetectionConfig(ctx context.Context, lg *audit.Log, read *sql.DB, rules []*detect.Rule, policy *detect.Policy) error {
	digest := policy.Digest(rules)
	last, err := detect.LastDigest(ctx, read)
	if err != nil {
		return fmt.Errorf("record the detection configuration: %w", err)
	}
	if last == digest {
		return nil
	}
	detail := fmt.Sprintf("rules %d, known networks %d, known keys %d, exceptions %d, baseline days %d",
		len(rules), len(policy.KnownNetworks), len(policy.KnownKeys), len(policy.Exceptions), policy.BaselineDaysOrDefault())
	if _, err := lg.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: detect.ActionConfig, Outcome: audit.OutcomeOK,
		Digest: digest, Count: len(policy.Exceptions), Detail: detail}}); err != nil {
		return fmt.Errorf("record the detection configuration: %w", err)
	}
	return nil
}

// checkOwners looks up each exception's owner (and the principal it
// silences, if it names one) and gives the policy the owner's person.
func checkOwners(ctx context.Context, v *vault.Vault, policy *detect.Policy) error {
	var errs []error
	for i, x := range policy.Exceptions {
		_, person, err := v.PrincipalPerson(ctx, x.Owner)
		if custos.ErrorCode(err) == custos.ENOTFOUND {
			errs = append(errs, fmt.Errorf("detection.exceptions[%d].owner: there is no principal %s", i, x.Owner))
			continue
		} else if err != nil {
			return fmt.Errorf("detection.exceptions[%d].owner: %w", i, err)
		}
		policy.SetOwner(x.Owner, person)
		if x.Actor == "" {
			continue
		}
		if _, ap, err := v.PrincipalPerson(ctx, x.Actor); err == nil && ap == person {
			errs = append(errs, fmt.Errorf("detection.exceptions[%d]: its owner %s and the principal it silences, %s, are the same person; an exception never silences its owner", i, x.Owner, x.Actor))
		}
	}
	return errors.Join(errs...)
}

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

// VerifiedFile keeps, in the data directory, the last checkpoint this
// node's log verifier accepted, so that the next start catches a log that
// was truncated, restored from an older backup or rewritten and re-signed
// while custos was down (audit.Config.Trusted). It is not a witness: an
// attacker who can write the data directory can replace it too.
const VerifiedFile = "log-verified.checkpoint"

func readVerified(cfg Config) ([]byte, error) {
	b, err := os.ReadFile(cfg.Path(VerifiedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", VerifiedFile, err)
	}
	return b, nil
}

// verifiedKeeper writes VerifiedFile when the verified size grew. Several
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
	if err := WriteFileAtomic(k.path, cp.Note); err != nil {
		k.logger.Warn("could not keep the verified checkpoint", "err", err)
		return
	}
	k.size = cp.Size
}

// WriteFileAtomic replaces path with b: a reader sees the old file or the
// new one, never a torn one.
func WriteFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".custos-state-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// deletionInterval is how often a node executes tenant deletions and
// tenant key changes that came due (and drops deleted tenants' keys from
// its caches).
const deletionInterval = 30 * time.Second

// runDeletions calls [vault.Vault.RunDueDeletions] and
// [vault.Vault.RunDueKeyChanges] until ctx ends.
func runDeletions(ctx context.Context, v *vault.Vault, logger *slog.Logger) {
	t := time.NewTicker(deletionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n, err := v.RunDueDeletions(ctx, now); err != nil {
				logger.Warn("due deletions", "err", err)
			} else if n > 0 {
				logger.Info("tenant deletions executed", "count", n)
			}
			if n, err := v.RunDueKeyChanges(ctx, now); err != nil {
				logger.Warn("due tenant key changes", "err", err)
			} else if n > 0 {
				logger.Info("tenant key changes applied", "count", n)
			}
		}
	}
}

// runRewraps runs the started rewraps of tenants' contacts after a
// rotation of their data keys ([vault.Vault.Rewrap]), on the log's leader
// only, at rate contacts a second: at once when this node started one,
// else on the deletions' interval (a rewrap cut short by a crash, or
// started on another node, resumes from its stored cursor).
func runRewraps(ctx context.Context, v *vault.Vault, leader func() bool, rate int, logger *slog.Logger) {
	if rate <= 0 {
		rate = vault.DefaultRewrapRate
	}
	onLeader(ctx, deletionInterval, leader, v.RewrapKicks(), func(time.Time) {
		tenants, err := v.PendingRewraps(ctx)
		if err != nil {
			logger.Warn("pending rewraps", "err", err)
			return
		}
		for _, tenant := range tenants {
			res, err := v.Rewrap(ctx, tenant, rate)
			if err != nil {
				if ctx.Err() == nil {
					logger.Warn("rewrap", "tenant", tenant, "err", err)
				}
				continue
			}
			logger.Info("rewrap", "tenant", tenant, "rewrapped", res.Rewrapped, "passes", res.Passes, "finished", res.Finished, "stuck", res.Stuck,
				"waited", res.Waited.Round(time.Millisecond), "committed", res.Committed.Round(time.Millisecond), "paused", res.Paused.Round(time.Millisecond))
		}
	})
}

// onLeader calls fn every interval, and at each kick, while this node
// leads the log (leader), until ctx ends; now is the tick's time.
func onLeader(ctx context.Context, every time.Duration, leader func() bool, kicks <-chan struct{}, fn func(now time.Time)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := time.Now()
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		case <-kicks:
		}
		if leader() {
			fn(now)
		}
	}
}

// canaryPlanterInterval is how often the leader plants the canaries of
// create-grown lists whose moment has come ([vault.Vault.PlantCanaries]):
// a canary lands at most this late after the moment drawn for it.
const canaryPlanterInterval = time.Second

// runCanaryPlanter plants due canaries on the log's leader only.
func runCanaryPlanter(ctx context.Context, v *vault.Vault, leader func() bool, logger *slog.Logger) {
	onLeader(ctx, canaryPlanterInterval, leader, nil, func(time.Time) {
		// Nothing is logged of what was planted: a line at the moment
		// of a plant would tell which create leaf was a canary to whoever
		// reads the node's logs beside the audit log.
		if _, _, err := v.PlantCanaries(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("canary planter", "err", err)
		}
	})
}

// runExpiry announces expiring and expired grants and keys
// ([vault.Vault.RunExpiry]) on the deletions' interval, on the log's
// leader only: one node announces each.
func runExpiry(ctx context.Context, v *vault.Vault, leader func() bool, notice time.Duration, logger *slog.Logger) {
	onLeader(ctx, deletionInterval, leader, nil, func(now time.Time) {
		if n, err := v.RunExpiry(ctx, now, notice); err != nil {
			logger.Warn("expiry check", "err", err)
		} else if n > 0 {
			logger.Info("expiries announced", "count", n)
		}
	})
}
