// Command custos is the custos binary: the server, its setup, a demo,
// thin clients over the HTTP API, and the audit log's verifier.
//
//	custos init                 create a data directory, keys and the first operator
//	custos serve                serve the API
//	custos demo                 a guided tour in a temporary directory
//	custos log verify           recompute and check the whole audit log
//	custos tenant|list|contact|import|export|principal|key …   API clients
//
// Run "custos help" for the full list.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	if err := m.Run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, errHelp) {
			os.Exit(0)
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "custos:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "custos:", err)
		os.Exit(1)
	}
}

// Main is the program, with its streams and environment injectable so
// tests drive it in-process exactly as a user types it.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// NewMain returns a Main on the process's streams and environment.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usage = `custos keeps contact lists where no single insider can quietly take them,
and proves every access.

Usage: custos <command> [flags]

Server:
  init        create a data directory: keys, database, first operator key
  serve       serve the API (--addr, --data, --kek)
  demo        run a guided tour in a temporary data directory

Audit log:
  log verify      recompute the whole log and check it against its checkpoints
  log checkpoint  print the latest signed checkpoint
  log proof       print and check an inclusion proof (--index N [--out FILE.tlog-proof])
  log watch URL   follow a remote custos's log, proving each checkpoint consistent
                  with the last (--key log.pub [--state FILE]); exits non-zero on a
                  fork or rollback
  verify-proof    check a proof file offline: custos verify-proof FILE --key log.pub
  audit pull      on the tenant's side: fetch and verify the tenant's access feed
                  (--tenant T --log-key log.pub [--state FILE]); fails on a gap,
                  a bad proof, a fork or rollback, or a bad signature

Clients (--server URL, --key cst_…, or CUSTOS_SERVER, CUSTOS_KEY):
  tenant create --admin-email E NAME | tenant ls   (its first admin enrolls from the mail)
  list create --tenant T NAME | list ls --tenant T
  contact add --tenant T --list L EMAIL [--attr k=v]… | contact get --tenant T TOKEN
  contact lookup --tenant T --list L EMAIL | contact ls --tenant T --list L
  import --tenant T --list L FILE.csv|FILE.ndjson
  export --tenant T --list L [--format csv|ndjson] [--out FILE]
  principal create --kind K [--tenant T] --email E [--owner TEAM] NAME | principal ls
  principal rekey P              a new enrollment to P's holder (same approvals as creation)
  enrollment ls [--status pending] | enrollment approve|deny ID   (the second party)
  enroll SECRET [--scope S]… [--expires-in 720h]   the holder sets up its own key
  key create --principal ME [--scope S]… | key ls | key revoke ID   (a key only for yourself)

Support access (--tenant T):
  tenant admin: support on [--max-grant 24h] [--accept CODE]… | support off
                support requests | support approve REQ [--duration] [--reveal-budget N]
                support deny REQ | support grants | support grant --staff P | support revoke GRANT
  staff:        support request --reason R --ticket T [--scope view_masked+reveal] [--duration 8h]
                support view --list L | support view TOKEN | support reveal TOKEN --reason-code C --reason R
                support revoke GRANT  (end your own grant early)
                support break-glass --reason R --ticket T [--duration 1h]  (if the tenant allows it)
  tenant admin: support on --break-glass | support reveals  (who saw what, and why)
  security:     support approve-break-glass REQ  (two different approvers open the grant)

Access review (operators, security staff):
  review [--flag F]… [--json]    every principal and key: owner, scopes, created,
                                 expires, last used, active grants; flags unused_30d,
                                 no_expiry, no_owner, suspended_with_live_keys
  review --flag F --revoke --yes revoke every live key carrying flag F (operators)

Detection (docs/detection.md):
  rules check [DIR]              validate rule files (file:line errors); no DIR: the default pack
  alerts [ls] [--status S] | alerts ack|resolve ALERT [--note N]      (security staff)
  contain ls | contain suspend|unsuspend PRINCIPAL --reason R | contain freeze|unfreeze TENANT --reason R
  trace EMAIL                    is an address found outside a canary? whose export or list?

Environment: CUSTOS_DATA (data directory, default ./custos-data), CUSTOS_ADDR,
CUSTOS_SERVER, CUSTOS_KEY.
`

// Run runs one command.
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	case "init":
		return m.runInit(ctx, rest)
	case "serve":
		return m.runServe(ctx, rest)
	case "demo":
		return m.runDemo(ctx, rest)
	case "log":
		return m.runLog(ctx, rest)
	case "audit":
		return m.runAudit(ctx, rest)
	case "verify-proof":
		return m.runVerifyProof(ctx, rest)
	case "support":
		return m.runSupport(ctx, rest)
	case "review":
		return m.runReview(ctx, rest)
	case "rules":
		return m.runRules(ctx, rest)
	case "alerts":
		return m.runAlerts(ctx, rest)
	case "contain":
		return m.runContain(ctx, rest)
	case "trace":
		return m.runTrace(ctx, rest)
	case "enroll":
		return m.runEnroll(ctx, rest)
	case "tenant", "list", "contact", "import", "export", "principal", "key", "enrollment":
		return m.runClient(ctx, cmd, rest)
	}
	fmt.Fprint(m.Stderr, usage)
	return usagef("unknown command %q", cmd)
}
