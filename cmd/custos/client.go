package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-dev/custos"
)

// client is a thin client of the HTTP API.
type client struct {
	base string
	key  string
	http *http.Client
}

// apiError is an error response from the server.
type apiError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (%d %s, request %s)", e.Message, e.Status, e.Code, e.RequestID)
}

func (c *client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb struct {
			Error     struct{ Code, Message string }
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, RequestID: eb.RequestID}
		}
		return &apiError{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(b))}
	}
	switch out := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
	case io.Writer:
		_, err = io.Copy(out, resp.Body)
	default:
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	return err
}

func (c *client) json(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	return c.do(ctx, method, path, ct, body, out)
}

// clientFlags registers --server, --key and --json.
func (m *Main) clientFlags(fs *flag.FlagSet) (func() *client, *bool) {
	server := fs.String("server", firstNonEmpty(m.Getenv("CUSTOS_SERVER"), "http://127.0.0.1:8750"), "custos server URL (env CUSTOS_SERVER)")
	// No secret as a flag default: -h would print it.
	key := fs.String("key", "", "API key cst_… (default: env CUSTOS_KEY)")
	asJSON := fs.Bool("json", false, "print JSON")
	return func() *client {
		return &client{base: strings.TrimRight(*server, "/"), key: firstNonEmpty(*key, m.Getenv("CUSTOS_KEY")), http: &http.Client{Timeout: 0}}
	}, asJSON
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

type multiFlag []string

func (f *multiFlag) String() string     { return strings.Join(*f, ",") }
func (f *multiFlag) Set(v string) error { *f = append(*f, v); return nil }

// allItems reads every page of an item list, following each page's
// "next" cursor with ?after=.
func allItems[T any](ctx context.Context, c *client, path string) (struct{ Items []T }, error) {
	out := struct{ Items []T }{Items: []T{}}
	after := ""
	for {
		p := path
		if after != "" {
			sep := "?"
			if strings.Contains(p, "?") {
				sep = "&"
			}
			p += sep + "after=" + url.QueryEscape(after)
		}
		var page struct {
			Items []T
			Next  string `json:"next"`
		}
		if err := c.json(ctx, "GET", p, nil, &page); err != nil {
			return out, err
		}
		out.Items = append(out.Items, page.Items...)
		if page.Next == "" || page.Next == after {
			return out, nil
		}
		after = page.Next
	}
}

// enrollmentState says in a line where an enrollment stands.
func enrollmentState(e *custos.Enrollment) string {
	switch e.Status {
	case custos.EnrollIssued:
		return "enrollment " + e.ID + " sent to the holder's address; they run custos enroll with the secret in it"
	case custos.EnrollPending:
		switch e.Approval {
		case custos.ApprovalTenantAdmin:
			return "enrollment " + e.ID + " waits for one of the tenant's admins (custos enrollment approve " + e.ID + ")"
		case custos.ApprovalRecovery:
			return "enrollment " + e.ID + " is a tenant admin recovery: a second operator may approve it after " + e.NotBefore.Format(time.RFC3339)
		}
		return "enrollment " + e.ID + " waits for a second operator or security identity (custos enrollment approve " + e.ID + ")"
	}
	return "enrollment " + e.ID + " " + e.Status
}

// runEnroll runs "custos enroll SECRET": the holder sets up its own key.
func (m *Main) runEnroll(ctx context.Context, args []string) error {
	fs := newFlagSet("enroll", m.Stderr)
	mk, asJSON := m.clientFlags(fs)
	expires := fs.String("expires-in", "", "key lifetime (e.g. 720h, or never; default 90 days)")
	var scopes multiFlag
	fs.Var(&scopes, "scope", "key scope (repeatable; default all the principal's kind allows)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("custos enroll: expected one argument, the cse_… secret from your enrollment mail")
	}
	var res struct {
		Key    custos.APIKey `json:"key"`
		Secret string        `json:"secret"`
	}
	if err := mk().json(ctx, "POST", "/v1/enroll", map[string]any{"secret": pos[0], "scopes": scopes, "expires_in": *expires}, &res); err != nil {
		return err
	}
	if *asJSON {
		return (&printer{w: m.Stdout, json: true}).one(res, "")
	}
	fmt.Fprintf(m.Stdout, "enrolled: key %s for %s (shown once; store it now):\n%s\n", res.Key.ID, res.Key.PrincipalID, res.Secret)
	return nil
}

// runClient runs a client command: "tenant create NAME" and the like.
func (m *Main) runClient(ctx context.Context, noun string, args []string) error {
	verb := ""
	if noun != "import" && noun != "export" {
		if len(args) == 0 {
			return usagef("custos %s: missing subcommand", noun)
		}
		verb, args = args[0], args[1:]
	}
	fs := newFlagSet(strings.TrimSpace(noun+" "+verb), m.Stderr)
	mk, asJSON := m.clientFlags(fs)
	tenant := fs.String("tenant", "", "tenant id")
	list := fs.String("list", "", "list id")
	kind := fs.String("kind", "", "principal kind")
	owner := fs.String("owner", "", "principal's team (a label)")
	email := fs.String("email", "", "the holder's address: where the enrollment goes")
	adminEmail := fs.String("admin-email", "", "the address the tenant registered for its first admin")
	status := fs.String("status", "", "enrollment status: pending, issued, used or denied")
	principal := fs.String("principal", "", "principal id")
	expires := fs.String("expires-in", "", "key lifetime (e.g. 720h, or never)")
	format := fs.String("format", "csv", "export format: csv or ndjson")
	out := fs.String("out", "", "export to this file instead of stdout")
	var attrs, scopes multiFlag
	fs.Var(&attrs, "attr", "attribute key=value (repeatable)")
	fs.Var(&scopes, "scope", "key scope (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	c := mk()
	arg := func(name string) (string, error) {
		if len(pos) != 1 {
			return "", usagef("custos %s %s: expected one argument, %s", noun, verb, name)
		}
		return pos[0], nil
	}
	need := func(name, v string) error {
		if v == "" {
			return usagef("custos %s %s: --%s is required", noun, verb, name)
		}
		return nil
	}
	pr := &printer{w: m.Stdout, json: *asJSON}
	tp := "/v1/tenants/" + url.PathEscape(*tenant)
	lp := tp + "/lists/" + url.PathEscape(*list)

	switch noun + " " + verb {
	case "tenant create":
		name, err := arg("NAME")
		if err != nil {
			return err
		}
		if err := need("admin-email", *adminEmail); err != nil {
			return err
		}
		var t struct {
			custos.Tenant
			AdminEnrollment custos.Enrollment `json:"admin_enrollment"`
		}
		if err := c.json(ctx, "POST", "/v1/tenants", map[string]string{"name": name, "admin_email": *adminEmail}, &t); err != nil {
			return err
		}
		return pr.one(t, "created tenant %s (%s); its admin %s enrolls from the mail sent to the registered address (enrollment %s)",
			t.ID, t.Name, t.AdminEnrollment.PrincipalID, t.AdminEnrollment.ID)
	case "tenant ls":
		page, err := allItems[custos.Tenant](ctx, c, "/v1/tenants")
		if err != nil {
			return err
		}
		return pr.table(page, "ID\tNAME\tCREATED", func(tw io.Writer) {
			for _, t := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.Format(time.RFC3339))
			}
		})
	case "list create":
		name, err := arg("NAME")
		if err != nil {
			return err
		}
		if err := need("tenant", *tenant); err != nil {
			return err
		}
		var l custos.List
		if err := c.json(ctx, "POST", tp+"/lists", map[string]string{"name": name}, &l); err != nil {
			return err
		}
		return pr.one(l, "created list %s (%s)", l.ID, l.Name)
	case "list ls":
		if err := need("tenant", *tenant); err != nil {
			return err
		}
		page, err := allItems[custos.List](ctx, c, tp+"/lists")
		if err != nil {
			return err
		}
		return pr.table(page, "ID\tNAME\tCREATED", func(tw io.Writer) {
			for _, l := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", l.ID, l.Name, l.CreatedAt.Format(time.RFC3339))
			}
		})
	case "contact add":
		email, err := arg("EMAIL")
		if err != nil {
			return err
		}
		if err := errors.Join(need("tenant", *tenant), need("list", *list)); err != nil {
			return err
		}
		body := map[string]any{"email": email}
		if len(attrs) > 0 {
			a := map[string]string{}
			for _, kv := range attrs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return usagef("--attr wants key=value")
				}
				a[k] = v
			}
			body["attributes"] = a
		}
		var ct custos.Contact
		if err := c.json(ctx, "POST", lp+"/contacts", body, &ct); err != nil {
			return err
		}
		return pr.one(ct, "created contact %s", ct.Token)
	case "contact get":
		token, err := arg("TOKEN")
		if err != nil {
			return err
		}
		if err := need("tenant", *tenant); err != nil {
			return err
		}
		var ct custos.Contact
		if err := c.json(ctx, "GET", tp+"/contacts/"+url.PathEscape(token), nil, &ct); err != nil {
			return err
		}
		return pr.contact(ct)
	case "contact lookup":
		email, err := arg("EMAIL")
		if err != nil {
			return err
		}
		if err := errors.Join(need("tenant", *tenant), need("list", *list)); err != nil {
			return err
		}
		var ct custos.Contact
		if err := c.json(ctx, "POST", lp+"/lookup", map[string]string{"email": email}, &ct); err != nil {
			return err
		}
		return pr.contact(ct)
	case "contact ls":
		if err := errors.Join(need("tenant", *tenant), need("list", *list)); err != nil {
			return err
		}
		var page custos.Page[custos.Contact]
		if err := c.json(ctx, "GET", lp+"/contacts?limit=100", nil, &page); err != nil {
			return err
		}
		return pr.table(page, "TOKEN\tEMAIL\tCONSENT\tUPDATED", func(tw io.Writer) {
			for _, ct := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ct.Token, ct.Email, ct.Consent, ct.UpdatedAt.Format(time.RFC3339))
			}
		})
	case "import ":
		file, err := arg("FILE")
		if err != nil {
			return err
		}
		if err := errors.Join(need("tenant", *tenant), need("list", *list)); err != nil {
			return err
		}
		return m.importFile(ctx, c, pr, lp, file)
	case "export ":
		if err := errors.Join(need("tenant", *tenant), need("list", *list)); err != nil {
			return err
		}
		w := m.Stdout
		if *out != "" {
			f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		return c.do(ctx, "GET", lp+"/export?format="+url.QueryEscape(*format), "", nil, w)
	case "principal create":
		name, err := arg("NAME")
		if err != nil {
			return err
		}
		if err := need("email", *email); err != nil {
			return err
		}
		var p struct {
			custos.Principal
			Enrollment custos.Enrollment `json:"enrollment"`
		}
		if err := c.json(ctx, "POST", "/v1/principals", map[string]string{"kind": *kind, "tenant_id": *tenant, "name": name, "owner": *owner, "email": *email}, &p); err != nil {
			return err
		}
		return pr.one(p, "created principal %s (%s); %s", p.ID, p.Kind, enrollmentState(&p.Enrollment))
	case "principal rekey":
		id, err := arg("PRINCIPAL")
		if err != nil {
			return err
		}
		var e custos.Enrollment
		if err := c.json(ctx, "POST", "/v1/principals/"+url.PathEscape(id)+"/enrollments", map[string]string{}, &e); err != nil {
			return err
		}
		return pr.one(e, "%s", enrollmentState(&e))
	case "enrollment ls":
		q := ""
		if *status != "" {
			q = "?status=" + url.QueryEscape(*status)
		}
		page, err := allItems[custos.Enrollment](ctx, c, "/v1/enrollments"+q)
		if err != nil {
			return err
		}
		return pr.table(page, "ID\tPRINCIPAL\tTENANT\tREQUESTED BY\tAPPROVAL\tSTATUS\tCREATED", func(tw io.Writer) {
			for _, e := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.PrincipalID, dash(e.TenantID), e.RequestedBy, e.Approval, e.Status, e.CreatedAt.Format(time.RFC3339))
			}
		})
	case "enrollment approve", "enrollment deny":
		id, err := arg("ENROLLMENT")
		if err != nil {
			return err
		}
		var e custos.Enrollment
		if err := c.json(ctx, "POST", "/v1/enrollments/"+url.PathEscape(id)+"/"+verb, map[string]string{}, &e); err != nil {
			return err
		}
		return pr.one(e, "%s", enrollmentState(&e))
	case "principal ls":
		page, err := allItems[custos.Principal](ctx, c, "/v1/principals")
		if err != nil {
			return err
		}
		return pr.table(page, "ID\tKIND\tTENANT\tNAME\tOWNER\tSUSPENDED", func(tw io.Writer) {
			for _, p := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", p.ID, p.Kind, p.TenantID, p.Name, p.Owner, p.Suspended)
			}
		})
	case "key create":
		if err := need("principal", *principal); err != nil {
			return err
		}
		var res struct {
			Key    custos.APIKey `json:"key"`
			Secret string        `json:"secret"`
		}
		req := map[string]any{"scopes": scopes, "expires_in": *expires}
		if err := c.json(ctx, "POST", "/v1/principals/"+url.PathEscape(*principal)+"/keys", req, &res); err != nil {
			return err
		}
		if pr.json {
			return pr.one(res, "")
		}
		fmt.Fprintf(m.Stdout, "created key %s for %s (shown once; store it now):\n%s\n", res.Key.ID, res.Key.PrincipalID, res.Secret)
		return nil
	case "key ls":
		q := ""
		if *principal != "" {
			q = "?principal=" + url.QueryEscape(*principal)
		}
		page, err := allItems[custos.APIKey](ctx, c, "/v1/keys"+q)
		if err != nil {
			return err
		}
		return pr.table(page, "ID\tPRINCIPAL\tHINT\tSCOPES\tEXPIRES\tLAST USED\tREVOKED", func(tw io.Writer) {
			for _, k := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", k.ID, k.PrincipalID, k.Hint, k.Scopes, fmtTime(k.ExpiresAt), fmtTime(k.LastUsedAt), fmtTime(k.RevokedAt))
			}
		})
	case "key revoke":
		id, err := arg("ID")
		if err != nil {
			return err
		}
		if err := c.json(ctx, "DELETE", "/v1/keys/"+url.PathEscape(id), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "revoked key %s\n", id)
		return nil
	}
	return usagef("unknown command: custos %s %s", noun, verb)
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// printer prints results as text or JSON.
type printer struct {
	w    io.Writer
	json bool
}

func (p *printer) one(v any, format string, args ...any) error {
	if p.json {
		enc := json.NewEncoder(p.w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	_, err := fmt.Fprintf(p.w, format+"\n", args...)
	return err
}

func (p *printer) table(v any, header string, rows func(io.Writer)) error {
	if p.json {
		return p.one(v, "")
	}
	tw := tabwriter.NewWriter(p.w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	return tw.Flush()
}

func (p *printer) contact(c custos.Contact) error {
	if p.json {
		return p.one(c, "")
	}
	fmt.Fprintf(p.w, "token       %s\n", c.Token)
	if c.Email != "" {
		fmt.Fprintf(p.w, "email       %s\n", c.Email)
	}
	if len(c.Attributes) > 0 {
		fmt.Fprintf(p.w, "attributes  %s\n", c.Attributes)
	}
	fmt.Fprintf(p.w, "consent     %s\nupdated     %s\n", c.Consent, c.UpdatedAt.Format(time.RFC3339))
	return nil
}

// importFile streams a CSV or NDJSON file to the import route with a
// progress bar on a terminal.
func (m *Main) importFile(ctx context.Context, c *client, pr *printer, listPath, file string) error {
	ct := ""
	switch strings.ToLower(filepath.Ext(file)) {
	case ".csv":
		ct = "text/csv"
	case ".ndjson", ".jsonl":
		ct = "application/x-ndjson"
	default:
		return usagef("import: %s: the file must end in .csv or .ndjson", file)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	bar := newProgress(m.Stderr, "import", uint64(st.Size()))
	var res custos.ImportResult
	err = c.do(ctx, "POST", listPath+"/import", ct, &countingReader{r: f, progress: bar}, &res)
	bar.done()
	if err != nil {
		return err
	}
	if pr.json {
		return pr.one(res, "")
	}
	fmt.Fprintf(m.Stdout, "imported %d contacts in %d batches; %d rows refused\n", res.Imported, res.Batches, res.Failed)
	for _, e := range res.Errors {
		fmt.Fprintf(m.Stdout, "  line %d: %s (%s)\n", e.Line, e.Message, e.Code)
	}
	if res.Failed > len(res.Errors) {
		fmt.Fprintf(m.Stdout, "  … and %d more\n", res.Failed-len(res.Errors))
	}
	if res.Aborted {
		return fmt.Errorf("import stopped: %s (%s); every line up to %d was processed, nothing after it: resume from line %d",
			res.AbortReason, res.AbortCode, res.CommittedThroughLine, res.CommittedThroughLine+1)
	}
	return nil
}

type countingReader struct {
	r        io.Reader
	n        uint64
	progress *progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	c.progress.set(c.n)
	return n, err
}
