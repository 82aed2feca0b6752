// Command custos is the custos binary: the server, its setup, a demo,
// thin clients over the HTTP API, and the audit log's verifier.
//
// One command per file; the verb table below ([commands]) is the list
// "custos help" prints and the dispatcher follows, so adding a verb is
// one file and one row. docs/cli.md is generated from it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/witness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := NewMain().Exec(ctx, os.Args[1:])
	stop()
	os.Exit(code)
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

// The exit codes, as "custos help" documents them.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitPartial = 3
	exitRetry   = 4
	// exitUnwitnessed: the checkpoint lacks the witness policy's quorum of
	// cosignatures (not evidence of tampering: the witnesses may lag).
	exitUnwitnessed = 5
)

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errPartial marks a command that did part of its work (an import with
// refused rows): exit code 3.
var errPartial = errors.New("partly done")

// Exec runs one command and returns the process's exit code.
func (m *Main) Exec(ctx context.Context, args []string) int {
	err := m.Run(ctx, args)
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	fmt.Fprintln(m.Stderr, "custos:", errorText(err))
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, errPartial):
		return exitPartial
	case errors.Is(err, errUnavailable):
		return exitRetry
	case errors.Is(err, witness.ErrNotEnoughCosignatures):
		return exitUnwitnessed
	}
	return exitFailure
}

// command is a row of the verb table: a verb that runs, or a noun whose
// verbs are subs (the first of them the default when dflt is set).
type command struct {
	name    string
	summary string
	run     func(m *Main, ctx context.Context, args []string) error
	subs    []*command
	dflt    bool
}

// commands is the verb table, the whole command tree in one place: help,
// docs/cli.md and dispatch read it; each run function lives in its
// command's file. It is filled in init because usage texts read it.
var commands []*command

func init() {
	commands = []*command{
		{name: "init", summary: "create a data directory: keys, database, first operator key", run: (*Main).runInit},
		{name: "serve", summary: "serve the API", run: (*Main).runServe},
		{name: "config", summary: "custos.json: check a file strictly, show the effective configuration (docs/config.md)", subs: []*command{
			{name: "check", summary: "check a custos.json: unknown keys, types, enumerations (file:line), and what serve validates", run: (*Main).runConfigCheck},
			{name: "show", summary: "print the effective configuration (flags, environment, file, defaults), secrets redacted", run: (*Main).runConfigShow},
		}},
		{name: "backup", summary: "an online, consistent, verified copy of the SQLite database (PostgreSQL: pg_dump, docs/backup.md)", run: (*Main).runBackup},
		{name: "restore", summary: "put a backup in place (server stopped); refuses one older than the log seen; --check-db checks a pg_dump restore", run: (*Main).runRestore},
		{name: "migrate", summary: "apply pending schema migrations (forward-only; serve does at start unless --migrate=false); --status", run: (*Main).runMigrate},
		{name: "version", summary: "print the module version, commit and build time", run: (*Main).runVersion},
		{name: "demo", summary: "a guided tour in a temporary data directory", run: (*Main).runDemo},
		{name: "log", summary: "the audit log", subs: []*command{
			{name: "verify", summary: "recompute the whole log and check it against its checkpoints", run: (*Main).runLogVerify},
			{name: "checkpoint", summary: "print the latest signed checkpoint", run: (*Main).runLogCheckpoint},
			{name: "proof", summary: "print and check an inclusion proof", run: (*Main).runLogProof},
			{name: "watch", summary: "follow a remote custos's log, proving each checkpoint consistent with the last", run: (*Main).runLogWatch},
			{name: "witness-config", summary: "print what a witness operator needs to witness this log: its origin and verifier key", run: (*Main).runLogWitnessConfig},
			{name: "rotate-key", summary: "on the host: replace the log's signing key; a statement signed by the old key naming the new one is recorded, and verifiers follow it", run: (*Main).runLogRotateKey},
		}},
		{name: "verify-proof", summary: "check a proof file offline", run: (*Main).runVerifyProof},
		{name: "verify-receipt", summary: "check a deletion receipt offline", run: (*Main).runVerifyReceipt},
		{name: "delete", summary: "verified deletion: a tenant (after a grace period), a list or a contact, with a signed receipt", subs: []*command{
			{name: "tenant", summary: "schedule, approve (second operator) or cancel a tenant's deletion", run: (*Main).runDeleteTenant},
			{name: "list", summary: "delete a list and its contacts; write the receipt", run: (*Main).runDeleteList},
			{name: "contact", summary: "delete a contact (erasure); write the receipt", run: (*Main).runDeleteContact},
			{name: "receipt", summary: "fetch a receipt by id, or list a tenant's (also once it is gone)", run: (*Main).runDeleteReceipt},
		}},
		{name: "audit", summary: "the tenant's side of the audit log", subs: []*command{{name: "pull", summary: "the tenant's side: fetch and verify the tenant's access feed", run: (*Main).runAuditPull}}},
		{name: "tenant", summary: "tenants (operators)", subs: []*command{
			{name: "create", summary: "create a tenant; its first admin enrolls from the mail to its address", run: (*Main).runTenantCreate},
			{name: "ls", summary: "list the tenants", run: (*Main).runTenantLs},
			{name: "key", summary: "a tenant's key: show it, or (tenant admins) ask to --set its own KMS key (BYOK) or --clear it, --approve or --cancel", run: (*Main).runTenantKey},
		}},
		{name: "list", summary: "contact lists of a tenant", subs: []*command{
			{name: "create", summary: "create a list", run: (*Main).runListCreate},
			{name: "ls", summary: "list a tenant's lists", run: (*Main).runListLs},
		}},
		{name: "contact", summary: "contacts of a list", subs: []*command{
			{name: "add", summary: "add a contact", run: (*Main).runContactAdd},
			{name: "get", summary: "show a contact by token", run: (*Main).runContactGet},
			{name: "lookup", summary: "find a contact by address", run: (*Main).runContactLookup},
			{name: "ls", summary: "list a list's contacts", run: (*Main).runContactLs},
		}},
		{name: "import", summary: "import a CSV or NDJSON file into a list (exit 3 if rows were refused)", run: (*Main).runImport},
		{name: "export", summary: "export a list as CSV or NDJSON", run: (*Main).runExport},
		{name: "principal", summary: "principals: who holds keys", subs: []*command{
			{name: "create", summary: "create a principal; its holder enrolls from the mail (after a second party approves)", run: (*Main).runPrincipalCreate},
			{name: "ls", summary: "list the principals", run: (*Main).runPrincipalLs},
			{name: "rekey", summary: "a new enrollment to a principal's holder (same approvals as creation)", run: (*Main).runPrincipalRekey},
			{name: "bind-cert", summary: "bind your own principal to the client certificate you present (mTLS): its keys then need it", run: (*Main).runPrincipalBindCert},
			{name: "unbind-cert", summary: "remove your own principal's certificate binding (presenting the bound certificate)", run: (*Main).runPrincipalUnbindCert},
		}},
		{name: "enrollment", summary: "enrollments: the second party's approvals", subs: []*command{
			{name: "ls", summary: "list enrollments", run: (*Main).runEnrollmentLs},
			{name: "approve", summary: "approve an enrollment another party requested", run: enrollmentDecide("approve")},
			{name: "deny", summary: "deny an enrollment", run: enrollmentDecide("deny")},
		}},
		{name: "enroll", summary: "the holder sets up its own key with the secret from its enrollment mail", run: (*Main).runEnroll},
		{name: "key", summary: "API keys (a key only for yourself)", subs: []*command{
			{name: "create", summary: "create another key for your own principal", run: (*Main).runKeyCreate},
			{name: "ls", summary: "list keys (hints, never secrets)", run: (*Main).runKeyLs},
			{name: "revoke", summary: "revoke a key", run: (*Main).runKeyRevoke},
			{name: "networks", summary: "set the CIDR ranges a key may be used from", run: (*Main).runKeyNetworks},
			{name: "rotate", summary: "replace your own key: a new one, the old one valid for an overlap (default 24h); both audited", run: (*Main).runKeyRotate},
		}},
		{name: "keys", summary: "keysets: inventory, tenants' data-key rotation and rewrap, the KEK's rewrap (docs/keys.md)", subs: []*command{
			{name: "ls", summary: "security staff: every keyset, what wraps it, primary key ids, age, pending re-wraps (never key material)", run: (*Main).runKeysLs},
			{name: "rotate", summary: "tenant admin or security: give a tenant's data keys a new primary (--tenant); without --tenant, replace your own API key (as key rotate)", run: (*Main).runKeysRotate},
			{name: "rewrap", summary: "re-encrypt and re-index a tenant's contacts under its new keys, in the background at a bounded rate, with a progress bar", run: (*Main).runKeysRewrap},
			{name: "rewrap-kek", summary: "on the host: re-wrap every keyset under the new KEK (resumable, audited); see kek_previous", run: (*Main).runKeysRewrapKEK},
		}},
		{name: "operator", summary: "operators' break-glass (docs/operator-keys.md)", subs: []*command{
			{name: "recover", summary: "on the host: recover a locked-out operator or security principal; a second person approves, the secret goes to its address", run: (*Main).runOperatorRecover},
		}},
		{name: "support", summary: "support access to a tenant's contacts", subs: []*command{
			{name: "on", summary: "tenant admin: allow support access", run: (*Main).runSupportOn},
			{name: "off", summary: "tenant admin: refuse support access", run: (*Main).runSupportOff},
			{name: "sso-issuer", summary: "tenant admin: name your own identity provider for console step-ups, or none", run: (*Main).runSupportSSOIssuer},
			{name: "request", summary: "staff: ask a tenant admin for access", run: supportRequest("request")},
			{name: "break-glass", summary: "staff: emergency access two security staff approve (if the tenant allows it)", run: supportRequest("break-glass")},
			{name: "requests", summary: "tenant admin: list access requests", run: (*Main).runSupportRequests},
			{name: "approve", summary: "tenant admin: approve a request, opening a grant", run: (*Main).runSupportApprove},
			{name: "deny", summary: "tenant admin: deny a request", run: (*Main).runSupportDeny},
			{name: "break-glass-requests", summary: "security: break-glass requests of every tenant awaiting approval", run: (*Main).runSupportBreakGlassRequests},
			{name: "approve-break-glass", summary: "security: approve a break-glass request (two approvers open the grant)", run: (*Main).runSupportApproveBreakGlass},
			{name: "grants", summary: "tenant admin: list grants", run: (*Main).runSupportGrants},
			{name: "grant", summary: "tenant admin: grant a staff member access unasked", run: (*Main).runSupportGrant},
			{name: "revoke", summary: "end a grant early (the tenant admin or the staff member)", run: (*Main).runSupportRevoke},
			{name: "view", summary: "staff: masked contacts of a list, or one by token", run: (*Main).runSupportView},
			{name: "reveal", summary: "staff: reveal one contact, with a reason", run: (*Main).runSupportReveal},
			{name: "reveals", summary: "tenant admin: who saw what, and why", run: (*Main).runSupportReveals},
		}},
		{name: "notifications", summary: "your notification preferences: mute or unmute informational notices", run: (*Main).runNotifications},
		{name: "review", summary: "the access review: every principal and key, flagged; --revoke by flag", run: (*Main).runReview},
		{name: "rules", summary: "detection rules (docs/detection.md)", subs: []*command{
			{name: "check", summary: "validate rule files (file:line errors); no DIR: the default pack", run: (*Main).runRulesCheck},
			{name: "backtest", summary: "replay the stored log (or an NDJSON event file) through a rule pack: what would have fired, with its evidence; contains and notifies nobody", run: (*Main).runRulesBacktest},
		}},
		{name: "alerts", summary: "detection alerts (security staff)", dflt: true, subs: []*command{
			{name: "ls", summary: "list alerts (the default verb)", run: (*Main).runAlertsLs},
			{name: "ack", summary: "acknowledge an alert", run: alertsSet("ack")},
			{name: "resolve", summary: "resolve an alert", run: alertsSet("resolve")},
		}},
		{name: "contain", summary: "containment: suspended principals, frozen tenants (security staff)", subs: []*command{
			{name: "ls", summary: "what is contained now", run: (*Main).runContainLs},
			{name: "suspend", summary: "suspend a principal: its keys stop working", run: containSet("suspend", "PRINCIPAL")},
			{name: "unsuspend", summary: "lift a principal's suspension", run: containSet("unsuspend", "PRINCIPAL")},
			{name: "freeze", summary: "freeze a tenant's exports and reveals", run: containSet("freeze", "TENANT")},
			{name: "unfreeze", summary: "lift a tenant's freeze", run: containSet("unfreeze", "TENANT")},
		}},
		{name: "trace", summary: "is an address (or a saved message's recipients) a canary? whose export or list?", run: (*Main).runTrace},
		{name: "blast-radius", summary: "security: a proven report of what a principal, key or network touched, or who touched a tenant", run: (*Main).runBlastRadius},
		{name: "verify-report", summary: "check a blast-radius report offline with the log's key", run: (*Main).runVerifyReport},
		{name: "evidence", summary: "security: a message the canary trap kept (--raw FILE writes it)", run: (*Main).runEvidence},
		{name: "send", summary: "send one message to contact tokens through the relay (exit 3 if any were not sent)", run: (*Main).runSend},
		{name: "relay", summary: "the egress relay and the inbound canary trap", subs: []*command{
			{name: "serve", summary: "serve only the relay's SMTP listeners (no HTTP API)", run: (*Main).runRelayServe},
			{name: "upstreams", summary: "security: list the relay's upstream mail servers", run: (*Main).runRelayUpstreams},
			{name: "approve", summary: "security: approve an upstream; the relay sends nothing through it before", run: (*Main).runRelayApprove},
		}},
	}
}

const helpHead = `custos keeps contact lists where no single insider can quietly take them,
and proves every access.

Usage: custos <command> [<verb>] [flags] [arguments]
       custos <command> [<verb>] -h    its flags and an example

`

const helpTail = `
Client commands talk to a server: --server URL (env CUSTOS_SERVER, default
http://127.0.0.1:8750) and --key cst_… (env CUSTOS_KEY); --json prints JSON.

Exit codes: 0 ok, 1 failure, 2 usage error, 3 partly done (an import with
refused rows, a send with refused or deferred recipients), 4 server
unreachable (audit pull: nothing proved wrong; retry), 5 not witnessed (the
checkpoint lacks the --witness policy's quorum of cosignatures; retry later).

Environment: CUSTOS_DATA (data directory, default ./custos-data), CUSTOS_ADDR,
CUSTOS_SERVER, CUSTOS_KEY, CUSTOS_LOG_KEY. Every command: docs/cli.md.
`

func printHelp(w io.Writer) {
	fmt.Fprint(w, helpHead, "Commands:\n")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, c := range commands {
		if c.subs == nil {
			fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
		}
		for _, s := range c.subs {
			fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, s.name, s.summary)
		}
	}
	tw.Flush()
	fmt.Fprint(w, helpTail)
}

// Run runs one command.
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		printHelp(m.Stderr)
		return usagef("no command given")
	}
	if isHelp(args[0]) || args[0] == "help" {
		printHelp(m.Stdout)
		return nil
	}
	i := slices.IndexFunc(commands, func(c *command) bool { return c.name == args[0] })
	if i < 0 {
		printHelp(m.Stderr)
		return usagef("unknown command %q", args[0])
	}
	return m.runCommand(ctx, "", commands[i], args[1:])
}

func (m *Main) runCommand(ctx context.Context, parent string, c *command, args []string) error {
	name := strings.TrimSpace(parent + " " + c.name)
	if c.subs != nil {
		if c.dflt && (len(args) == 0 || strings.HasPrefix(args[0], "-") && !isHelp(args[0])) {
			return m.runCommand(ctx, name, c.subs[0], args)
		}
		if len(args) > 0 && isHelp(args[0]) {
			printVerbs(m.Stdout, name, c.subs)
			return errHelp
		}
		for _, s := range c.subs {
			if len(args) > 0 && s.name == args[0] {
				return m.runCommand(ctx, name, s, args[1:])
			}
		}
		printVerbs(m.Stderr, name, c.subs)
		if len(args) == 0 {
			return usagef("custos %s: missing verb", name)
		}
		return usagef("custos %s: unknown verb %q", name, args[0])
	}
	return c.run(m, ctx, args)
}

func printVerbs(w io.Writer, name string, subs []*command) {
	fmt.Fprintf(w, "Usage: custos %s <verb> [flags] [arguments]\n\nVerbs:\n", name)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, s := range subs {
		fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun \"custos %s <verb> -h\" for a verb's flags and an example.\n", name)
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// flagSet is one command's flags and usage.
type flagSet struct {
	*flag.FlagSet
	m             *Main
	args, example string
}

// flags starts the FlagSet of command name ("tenant create"), which
// takes args; example is a command line using it.
func (m *Main) flags(name, args, example string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse prints the usage itself, to stdout for -h
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, m: m, args: args, example: example}
}

// printUsage prints a command's usage: its arguments, its summary from
// the verb table and an example. Its flags follow.
func printUsage(w io.Writer, name, args, example string) {
	summary, cs := "", commands
	for _, word := range strings.Fields(name) {
		if i := slices.IndexFunc(cs, func(c *command) bool { return c.name == word }); i >= 0 {
			summary, cs = cs[i].summary, cs[i].subs
		}
	}
	fmt.Fprintf(w, "Usage: custos %s %s\n\n%s.\n\nExample:\n  %s\n\nFlags:\n", name, args, summary, example)
}

func (f *flagSet) printUsage(w io.Writer) {
	printUsage(w, f.Name(), f.args, f.example)
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
}

// parse parses args, flags before or after the positional arguments, and
// requires between min and max of those (max < 0: any number) and a
// value for each flag in required. -h prints the usage to stdout; an
// error prints it to stderr and is a usage error.
func (f *flagSet) parse(args []string, min, max int, required ...string) ([]string, error) {
	pos, err := parse(f.FlagSet, args)
	if errors.Is(err, errHelp) {
		f.printUsage(f.m.Stdout)
		return nil, err
	}
	if err == nil && (len(pos) < min || max >= 0 && len(pos) > max) {
		err = usagef("custos %s: wrong number of arguments", f.Name())
	}
	for _, r := range required {
		if err == nil && f.Lookup(r).Value.String() == "" {
			err = usagef("custos %s: --%s is required", f.Name(), r)
		}
	}
	if err != nil {
		f.printUsage(f.m.Stderr)
		return nil, usageError{err.Error()}
	}
	return pos, nil
}

type multiFlag []string

func (f *multiFlag) String() string     { return strings.Join(*f, ",") }
func (f *multiFlag) Set(v string) error { *f = append(*f, v); return nil }

// key is the key that --scope flags and --expires-in ask for.
func (f multiFlag) key(expiresIn string) custos.KeyRequest {
	var scopes []custos.Scope
	for _, s := range f {
		scopes = append(scopes, custos.Scope(s))
	}
	return custos.KeyRequest{Scopes: scopes, ExpiresIn: expiresIn}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// printer prints results as text or, with --json, as JSON: the one way
// every command prints.
type printer struct {
	w    io.Writer
	json bool
}

// one prints v as JSON, or the formatted line.
func (p *printer) one(v any, format string, args ...any) error {
	if p.json {
		enc := json.NewEncoder(p.w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	_, err := fmt.Fprintf(p.w, format+"\n", args...)
	return err
}

// table prints v as JSON, or a table of header and the rows the function writes.
func (p *printer) table(v any, header string, rows func(io.Writer)) error {
	if p.json {
		return p.one(v, "")
	}
	tw := tabwriter.NewWriter(p.w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	return tw.Flush()
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func day(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format("2006-01-02")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
