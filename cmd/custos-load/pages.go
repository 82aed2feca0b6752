package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/loggen"
	"github.com/custos-dev/custos/node"
)

// pages measures the console's pages on a kept deployment (custos-load
// fill -dir): the tenant's pages as its admin and security's pages as a
// security engineer, each fetched -n times in turn after one warm-up,
// with the time from sending the request to the last byte on loopback
// (the server's time plus a loopback round trip). The tenant's log is
// first grown to -entries entries of its own (loggen through the log's
// write path, staff and services of the tenant acting on it, with one
// support engineer holding -subject of them for the blast-radius page),
// and the detector is let catch up before anything is timed.
func runPages(args []string) error {
	fs := flag.NewFlagSet("pages", flag.ExitOnError)
	dir := fs.String("dir", "/tmp/mem/10m", "directory of the kept deployment (custos-load fill)")
	entries := fs.Int("entries", 1_000_000, "entries of the tenant the log should hold")
	subject := fs.Int("subject", 10_000, "of them, entries of one support engineer (the blast page's subject)")
	n := fs.Int("n", 20, "timed fetches per page")
	fs.Parse(args)
	ctx := context.Background()
	nd, in, k, err := openKept(ctx, *dir)
	if err != nil {
		return err
	}
	defer nd.Close()
	var have int
	if err := nd.DB.Read.QueryRowContext(ctx, `SELECT count(*) FROM audit_leaves WHERE tenant_id = $1`, k.Tenant).Scan(&have); err != nil {
		return err
	}
	if have < *entries {
		if k.Subject == "" {
			k.Subject = custos.NewID(custos.PrefixPrincipal)
		}
		m := *entries - have
		t0 := time.Now()
		fmt.Printf("appending %d entries of tenant %s\n", m, k.Tenant)
		// A resumed run tops up: the subject keeps its share.
		_, err := loggen.Fill(ctx, nd.Log, loggen.Spec{Entries: m, TenantIDs: []string{k.Tenant}, Subject: k.Subject, SubjectEntries: int(int64(*subject) * int64(m) / int64(*entries)),
			Start: time.Now().Add(-time.Duration(m) * 50 * time.Millisecond), Progress: func(done int) {
				if done%(200*4096) < 4096 {
					fmt.Printf("  %d entries (%.0f/s)\n", done, float64(done)/time.Since(t0).Seconds())
				}
			}})
		if err != nil {
			return err
		}
		if err := k.save(*dir); err != nil {
			return err
		}
		fmt.Printf("appended %d entries in %s\n", m, time.Since(t0).Round(time.Second))
	}
	if err := waitDetector(ctx, nd); err != nil {
		return err
	}
	if k.Security == "" {
		if k.Security, err = in.staffSecurity(ctx); err != nil {
			return fmt.Errorf("a security engineer for its pages: %w", err)
		}
		if err := k.save(*dir); err != nil {
			return err
		}
	}
	var contacts, subjects int64
	nd.DB.Read.QueryRowContext(ctx, `SELECT count(*) FROM contacts`).Scan(&contacts)
	nd.DB.Read.QueryRowContext(ctx, `SELECT count(*) FROM audit_leaves WHERE tenant_id = $1`, k.Tenant).Scan(&have)
	nd.DB.Read.QueryRowContext(ctx, `SELECT count(*) FROM audit_leaves WHERE actor = $1`, k.Subject).Scan(&subjects)
	size := nd.Log.Size()
	fmt.Printf("deployment: %d contacts, %d log entries (%d of the tenant, %d of the blast page's subject); %d fetches per page after one warm-up\n",
		contacts, size, have, subjects, *n)
	fmt.Printf("%-44s %8s %8s %8s %9s\n", "page", "p50", "p90", "max", "bytes")
	admin, err := signedIn(nd.URL, k.Admin)
	if err != nil {
		return err
	}
	sec, err := signedIn(nd.URL, k.Security)
	if err != nil {
		return err
	}
	t := "/ui/t/" + k.Tenant
	// The access log's second page: the link the first page offers.
	_, first, err := admin.fetch(t + "/log")
	if err != nil {
		return err
	}
	next := t + "/log"
	if m := nextLink.FindStringSubmatch(first); m != nil {
		next = strings.ReplaceAll(m[1], "&amp;", "&")
	}
	for _, p := range []struct {
		who  *session
		path string
	}{
		{admin, t}, {admin, t + "/requests"}, {admin, t + "/grants"}, {admin, t + "/log"}, {admin, next},
		{admin, strings.Replace(next, "/log?", "/log/page?", 1)},
		{admin, t + "/support"}, {admin, t + "/principals"}, {admin, t + "/deletion"}, {admin, t + "/key"},
		{admin, "/ui/account/notifications"},
		{sec, "/ui/security/alerts"}, {sec, "/ui/security/containments"}, {sec, "/ui/security/review"},
		{sec, "/ui/security/keys"}, {sec, "/ui/log"}, {sec, "/ui/security/break-glass"},
		{sec, fmt.Sprintf("/ui/security/entries/%d", size/2)}, {sec, fmt.Sprintf("/ui/security/entries/%d/proof", size/2)},
		{sec, "/ui/security/blast?principal=" + url.QueryEscape(k.Subject)},
	} {
		if err := timePage(p.who, p.path, *n); err != nil {
			return err
		}
	}
	// The blast page answers with a progress page while its report is
	// computed: how long until the report itself is on it, following the
	// page's reloads as a browser would (at once here, not each second).
	blast := "/ui/security/blast?principal=" + url.QueryEscape(k.Subject)
	var ds []time.Duration
	for range min(*n, 5) {
		t0 := time.Now()
		for {
			_, body, err := sec.fetch(blast)
			if err != nil {
				return err
			}
			if strings.Contains(body, `id="blast-entries"`) {
				break
			}
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	fmt.Printf("%-44s %8s %8s %8s\n", "blast report on the page (following reloads)", ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	return nil
}

var nextLink = regexp.MustCompile(`<a rel="next" id="next" href="([^"]+)"`)

// timePage fetches path once, then n times, and prints the spread.
func timePage(s *session, path string, n int) error {
	if _, _, err := s.fetch(path); err != nil {
		return err
	}
	ds := make([]time.Duration, n)
	var bytes int
	for i := range ds {
		t0 := time.Now()
		b, _, err := s.fetch(path)
		ds[i] = time.Since(t0)
		if err != nil {
			return err
		}
		bytes = b
	}
	slices.Sort(ds)
	name := path
	if len(name) > 44 {
		name = name[:41] + "..."
	}
	fmt.Printf("%-44s %8s %8s %8s %9d\n", name, ds[n/2].Round(100*time.Microsecond), ds[n*9/10].Round(100*time.Microsecond), ds[n-1].Round(100*time.Microsecond), bytes)
	return nil
}

// session is a console session signed in with an API key.
type session struct {
	base string
	hc   *http.Client
}

func signedIn(base, key string) (*session, error) {
	jar, _ := cookiejar.New(nil)
	s := &session{base: base, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	_, form, err := s.fetch("/ui/signin")
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(form)
	if m == nil {
		return nil, errors.New("the sign-in form has no CSRF token")
	}
	res, err := s.hc.PostForm(base+"/ui/signin", url.Values{"csrf": {m[1]}, "key": {key}})
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("sign-in: status %d", res.StatusCode)
	}
	return s, nil
}

// fetch GETs path and returns the body's length and text; anything but
// 200 is an error.
func (s *session) fetch(path string) (int, string, error) {
	res, err := s.hc.Get(s.base + path)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, "", err
	}
	if res.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("GET %s: status %d", path, res.StatusCode)
	}
	return len(b), string(b), nil
}

// waitDetector waits until the detector has evaluated the whole log, so
// that what is timed does not share the cores with it.
func waitDetector(ctx context.Context, nd *node.Node) error {
	t0 := time.Now()
	for last := time.Now(); ; {
		next, size := nd.Detector.Next(), nd.Log.Size()
		if next+8 >= size {
			fmt.Printf("detector caught up (%d of %d) after %s\n", next, size, time.Since(t0).Round(time.Second))
			return nil
		}
		if time.Since(last) > 10*time.Second {
			fmt.Printf("  detector at %d of %d\n", next, size)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// staffSecurity creates and enrolls a security engineer, approved by the
// operator (a second person to a principal the operator did not create
// for itself), and returns its key.
func (in *instance) staffSecurity(ctx context.Context) (string, error) {
	p, err := in.as(in.op).CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: custos.KindStaffSecurity, Name: "sec", Owner: "security", Email: "sec@load.test"})
	if err != nil {
		return "", err
	}
	if p.Enrollment.Status == custos.EnrollPending {
		if _, err := in.as(in.op).ApproveEnrollment(ctx, p.Enrollment.ID); err != nil {
			return "", err
		}
	}
	return in.enroll(ctx, p.Enrollment.ID)
}
