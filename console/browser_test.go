package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/node"
)

// chrome starts Debian's chromium, headless, for one test. Without it the
// test is skipped — unless CUSTOS_REQUIRE_BROWSER=1 (.ci/run sets it), when
// a missing browser fails the run instead of hiding the tests.
func chrome(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CUSTOS_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium is not installed and CUSTOS_REQUIRE_BROWSER=1: install Debian's chromium package")
		}
		t.Skip("chromium is not installed (apt-get install chromium); CI sets CUSTOS_REQUIRE_BROWSER=1 and runs these")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("headless", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel3 := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

// screenshot writes the page to docs/console/name.png when
// CUSTOS_UPDATE_DOCS=1 (docs/console.md shows them).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("CUSTOS_UPDATE_DOCS") != "1" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "console", name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserApproveRevokeLog drives chromium through a tenant admin's
// day: sign in with the key, see the pending request with its reason and
// ticket, approve it, see the grant, revoke it, read the access log. After
// each decision the state is checked through the API.
func TestBrowserApproveRevokeLog(t *testing.T) {
	ctx := chrome(t)
	e := newEnv(t, node.Options{})
	tenant, admin := e.newTenant("Acme")
	api := e.api(admin)
	if _, err := api.CreateList(context.Background(), tenant, `newsletter <b>spring</b>`); err != nil {
		t.Fatal(err)
	}
	r, _ := e.supportRequest(tenant, admin, `customer reports bounces <img src=x onerror=alert(1)>`)

	must, text := steps(t, ctx)
	// A script in a reason or name would open a dialog: fail if one does.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	opened := make(chan struct{}, 1)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			select {
			case opened <- struct{}{}:
			default:
			}
		}
	}()

	must(chromedp.Navigate(e.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("key")))
	screenshot(t, ctx, "signin")
	must(chromedp.SendKeys(chromedp.ID("key"), admin), chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("count-pending")))
	if got := text("#count-pending"); got != "1" {
		t.Fatalf("overview's pending count %q", got)
	}
	if got := text(".list-name"); got != `newsletter <b>spring</b>` {
		t.Fatalf("list name shown as %q", got)
	}
	screenshot(t, ctx, "overview")

	must(chromedp.Navigate(e.url+"/ui/t/"+tenant+"/requests"), chromedp.WaitVisible(chromedp.ID("req-"+r.ID)))
	if got := text("#req-" + r.ID + " .reason"); got != r.Reason {
		t.Fatalf("reason shown as %q", got)
	}
	if got := text("#req-" + r.ID + " .ticket"); got != "SUP-42" {
		t.Fatalf("ticket shown as %q", got)
	}
	screenshot(t, ctx, "requests")
	// Approving asks for the key again (the step-up), then the form again.
	must(chromedp.Click(chromedp.CSS("#req-"+r.ID+" button.approve")), chromedp.WaitVisible(chromedp.ID("stepup-key")))
	screenshot(t, ctx, "stepup")
	must(chromedp.SendKeys(chromedp.ID("stepup-key"), admin), chromedp.Click(chromedp.ID("stepup")), chromedp.WaitVisible(chromedp.ID("req-"+r.ID)))
	must(chromedp.SendKeys(chromedp.ID("dur-"+r.ID), "2h"), chromedp.SendKeys(chromedp.ID("cmt-a-"+r.ID), "ok for today"),
		chromedp.Click(chromedp.CSS("#req-"+r.ID+" button.approve")), chromedp.WaitVisible(chromedp.CSS("button.revoke")))

	ctxAPI := context.Background()
	var grant *custos.Grant
	for g, err := range api.Grants(ctxAPI, tenant) {
		if err != nil {
			t.Fatal(err)
		}
		grant = g
	}
	if grant == nil || grant.Status != custos.GrantActive || grant.RequestID != r.ID || grant.ExpiresAt.Sub(grant.StartsAt) != 2*time.Hour {
		t.Fatalf("grant through the API after approving in the browser: %+v", grant)
	}
	if got := text("#grant-" + grant.ID + " .status"); got != "active" {
		t.Fatalf("grant's status on the page %q", got)
	}
	screenshot(t, ctx, "grants")
	must(chromedp.Click(chromedp.CSS("#grant-"+grant.ID+" button.revoke")), chromedp.WaitNotPresent(chromedp.CSS("button.revoke")))
	if got := text("#grant-" + grant.ID + " .status"); got != "revoked" {
		t.Fatalf("grant's status after revoking %q", got)
	}
	for g, err := range api.Grants(ctxAPI, tenant) {
		if err != nil {
			t.Fatal(err)
		}
		if g.Status != "revoked" {
			t.Fatalf("grant %s is %s through the API after revoking in the browser", g.ID, g.Status)
		}
	}

	// The access log shows the decision and the revocation once the
	// checkpoint covers them, as the API's feed does.
	waitFor(t, "the revocation in the access log", func() bool {
		must(chromedp.Navigate(e.url+"/ui/t/"+tenant+"/log"), chromedp.WaitVisible(chromedp.CSS("main")))
		got := text("main")
		return strings.Contains(got, string(custos.ActionGrantRevoke)) && strings.Contains(got, string(custos.ActionRequestDecide))
	})
	screenshot(t, ctx, "log")
	feed, err := api.AccessLog(ctxAPI, tenant, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var revoked bool
	for _, en := range feed.Entries {
		revoked = revoked || strings.Contains(string(en.Body), `"action":"grant.revoke"`)
	}
	if !revoked {
		t.Fatal("the API's access log has no grant.revoke entry")
	}
	select {
	case <-opened:
		t.Fatal("a script ran: a dialog opened")
	default:
	}

	// Sign out: the console is closed to this browser again.
	must(chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("key")))
	must(chromedp.Navigate(e.url+"/ui/t/"+tenant), chromedp.WaitVisible(chromedp.ID("key")))
}

// TestBrowserRefusesFraming: chromium itself refuses to show the console
// in a frame of another site's page (frame-ancestors 'none'), while the
// same page's frame of /healthz — which sets no such policy — loads: the
// control shows that the check can fail.
func TestBrowserRefusesFraming(t *testing.T) {
	ctx := chrome(t)
	e := newEnv(t, node.Options{})
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<iframe id="ui" src="%s/ui/signin"></iframe><iframe id="control" src="%s/healthz"></iframe>`, e.url, e.url)
	}))
	t.Cleanup(other.Close)
	var tree *page.FrameTree
	waitFor(t, "both frames to settle", func() bool {
		if err := chromedp.Do(ctx, chromedp.Navigate(other.URL)); err != nil {
			t.Fatal(err)
		}
		res, err := chromedp.Call(ctx, page.GetFrameTree, cdp.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		tree = res.FrameTree
		return len(tree.ChildFrames) == 2
	})
	urls := map[string]string{}
	for _, f := range tree.ChildFrames {
		urls[f.Frame.Name+string(f.Frame.ID)] = f.Frame.URL
	}
	var ui, control bool
	for _, u := range urls {
		ui = ui || strings.HasSuffix(u, "/ui/signin")
		control = control || strings.HasSuffix(u, "/healthz")
	}
	if !control {
		t.Fatalf("the control frame did not load: %v", urls)
	}
	if ui {
		t.Fatalf("the console loaded inside another site's frame: %v", urls)
	}
}

// steps returns the chromium tests' two helpers: must runs actions and
// fails the test on an error; text reads the trimmed text of a selector.
func steps(t *testing.T, ctx context.Context) (must func(...chromedp.Action[chromedp.Void]), text func(string) string) {
	must = func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	text = func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(v)
	}
	return must, text
}
