// Package console is custos's browser console under /ui: server-rendered
// pages (html/template, assets embedded, no JavaScript) on the API's own
// listener and TLS, mounted by the server behind its edge (request id,
// panic recovery, metrics, the tampered-log refusal).
//
// It has no authorization of its own. A signed-in browser holds a session
// ([vault.Vault.StartSession]) that re-authenticates its API key on every
// request, and each page calls the same vault function as the API route it
// mirrors, with the same principal and key in the context: the vault's
// checks decide and its audit entries record, exactly as for the API.
//
// What the console adds is the browser's own defences: HttpOnly,
// SameSite=Strict cookies (Secure unless the connection is plaintext on
// loopback), idle and absolute session lifetimes, a fresh session at each
// sign-in, a CSRF token plus an Origin/Sec-Fetch-Site check on every
// state change, and a Content-Security-Policy that allows no script and
// no framing.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/vault"
	"github.com/custos-dev/custos/witness"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of [Config].
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxSession  = 12 * time.Hour
)

// CSP is the console's Content-Security-Policy: its own stylesheet and
// images, forms posting to itself, no script, no plugin, no framing.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// maxForm bounds a form's body.
const maxForm = 64 << 10

// Config holds a console's dependencies.
type Config struct {
	Vault  *vault.Vault
	Logger *slog.Logger
	// IdleTimeout ends a session this long after its last request
	// (default DefaultIdleTimeout); MaxSession this long after sign-in
	// whatever its use (default DefaultMaxSession).
	IdleTimeout time.Duration
	MaxSession  time.Duration
	// OIDC, when set, offers single sign-on through an identity provider.
	OIDC *OIDC
	// Log and Witnesses feed the log health page (what /healthz says
	// publicly, for people); Witnesses may be nil (none configured).
	Log       *audit.Log
	Witnesses interface {
		Status(context.Context) []witness.Status
	}
}

// Console serves /ui.
type Console struct {
	cfg    Config
	vault  *vault.Vault
	logger *slog.Logger
	limits vault.SessionLimits
	pages  map[string]*template.Template
	mux    *http.ServeMux
	sso    *sso
	// blasts are the blast page's reports being computed (blast.go), and
	// blastWait how long the page waits for one before it shows progress.
	blasts    blastJobs
	blastWait time.Duration
}

// New returns a console for cfg.
func New(cfg Config) *Console {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxSession <= 0 {
		cfg.MaxSession = DefaultMaxSession
	}
	c := &Console{cfg: cfg, vault: cfg.Vault, logger: cfg.Logger, limits: vault.SessionLimits{Idle: cfg.IdleTimeout, Max: cfg.MaxSession},
		pages: parsePages(), mux: http.NewServeMux(), sso: newSSO(cfg.OIDC), blastWait: DefaultBlastWait}
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /ui/signin", c.signinForm)
	c.mux.HandleFunc("POST /ui/signin", c.signin)
	c.mux.HandleFunc("POST /ui/signout", c.session(c.signout))
	c.mux.HandleFunc("GET /ui/oidc/signin", c.ssoSignin)
	c.mux.HandleFunc("GET /ui/oidc/callback", c.callback)
	c.mux.HandleFunc("POST /ui/stepup", c.session(c.stepUp))
	c.mux.HandleFunc("GET /ui/account", c.session(c.account))
	c.mux.HandleFunc("POST /ui/account/unlink", c.session(c.unlink))
	c.mux.HandleFunc("GET /ui/account/notifications", c.session(c.notifications))
	c.mux.HandleFunc("POST /ui/account/notifications", c.session(c.setNotifications))
	c.mux.HandleFunc("GET /ui/{$}", c.session(c.home))
	const t = "/ui/t/{tenant}"
	c.mux.HandleFunc("GET "+t, c.session(c.overview))
	c.mux.HandleFunc("GET "+t+"/requests", c.session(c.requests))
	c.mux.HandleFunc("POST "+t+"/requests/{id}/approve", c.session(c.decide(true)))
	c.mux.HandleFunc("POST "+t+"/requests/{id}/deny", c.session(c.decide(false)))
	c.mux.HandleFunc("GET "+t+"/grants", c.session(c.grants))
	c.mux.HandleFunc("POST "+t+"/grants/{id}/revoke", c.session(c.revoke))
	c.mux.HandleFunc("GET "+t+"/log", c.session(c.accessLog))
	c.mux.HandleFunc("GET "+t+"/log/page", c.session(c.accessLogPage))
	c.mux.HandleFunc("GET /ui/security/alerts", c.session(c.alerts))
	c.mux.HandleFunc("POST /ui/security/alerts/{id}/ack", c.session(c.updateAlert(custos.AlertAcknowledged)))
	c.mux.HandleFunc("POST /ui/security/alerts/{id}/resolve", c.session(c.updateAlert(custos.AlertResolved)))
	c.mux.HandleFunc("GET /ui/security/containments", c.session(c.containments))
	c.mux.HandleFunc("GET /ui/security/keys", c.session(c.keyInventory))
	c.mux.HandleFunc("GET /ui/log", c.session(c.logHealth))
	c.mux.HandleFunc("GET /ui/security/blast", c.session(c.blast))
	c.mux.HandleFunc("GET /ui/security/blast/report", c.session(c.blastReport))
	c.mux.HandleFunc("GET /ui/security/review", c.session(c.review))
	c.mux.HandleFunc("POST /ui/security/review/revoke", c.session(c.reviewRevoke))
	c.mux.HandleFunc("POST /ui/security/containments/lift", c.session(c.lift))
	c.mux.HandleFunc("GET /ui/security/break-glass", c.session(c.breakGlass))
	c.mux.HandleFunc("GET /ui/security/entries/{index}", c.session(c.evidenceEntry))
	c.mux.HandleFunc("GET /ui/security/entries/{index}/proof", c.session(c.evidenceProof))
	c.mux.HandleFunc("POST /ui/security/break-glass/{tenant}/{id}/approve", c.session(c.approveBreakGlass))
	c.mux.HandleFunc("GET "+t+"/support", c.session(c.support))
	c.mux.HandleFunc("POST "+t+"/support", c.session(c.setSupport))
	c.mux.HandleFunc("GET "+t+"/principals", c.session(c.enrollments))
	c.mux.HandleFunc("POST "+t+"/principals/{id}/approve", c.session(c.decideEnrollment(true)))
	c.mux.HandleFunc("POST "+t+"/principals/{id}/deny", c.session(c.decideEnrollment(false)))
	c.mux.HandleFunc("GET "+t+"/deletion", c.session(c.deletion))
	c.mux.HandleFunc("POST "+t+"/deletion", c.session(c.scheduleDeletion))
	c.mux.HandleFunc("POST "+t+"/deletion/cancel", c.session(c.cancelDeletion))
	c.mux.HandleFunc("GET "+t+"/receipts/{id}", c.session(c.receipt))
	c.mux.HandleFunc("GET "+t+"/key", c.session(c.tenantKey))
	c.mux.HandleFunc("POST "+t+"/key/approve", c.session(c.approveKey))
	c.mux.HandleFunc("POST "+t+"/key/cancel", c.session(c.cancelKey))
	c.mux.HandleFunc("POST "+t+"/key", c.session(c.askKey))
	return c
}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"time":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"kindText": kindText,
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t := template.Must(template.Must(base.Clone()).ParseFS(templateFS, n))
		out[n[len("templates/"):len(n)-len(".html")]] = t
	}
	return out
}

// ServeHTTP sets the headers every console response carries and routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: under it a form post's Origin is "null", which sameOrigin refuses
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if secure(r) {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.mux.ServeHTTP(w, r)
}

// secure reports whether cookies must be Secure: always, except on a
// plaintext connection to a loopback address (as the API allows plain
// HTTP only there, or behind --insecure-plaintext, where a TLS proxy in
// front makes Secure cookies right again).
func secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return true
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// Cookie names. The __Host- prefix (Secure, Path=/, no Domain) is used
// whenever the cookie is Secure, so no sibling host can set or shadow it.
func sessionCookie(r *http.Request) string {
	if secure(r) {
		return "__Host-custos_session"
	}
	return "custos_session"
}

func signinCookie(r *http.Request) string {
	if secure(r) {
		return "__Host-custos_signin"
	}
	return "custos_signin"
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode})
}

// view is what every page's layout reads.
type view struct {
	Title     string
	Principal *custos.Principal
	Tenant    string
	CSRF      string
	Nav       string
	Data      any
}

// sessionHandler is a page that runs with a resumed session: the request's
// context carries its principal and key as a bearer request's would.
type sessionHandler func(w http.ResponseWriter, r *http.Request, s *vault.Session) error

// session resumes the request's session, checks a state change's CSRF
// token and origin, and runs h; errors are rendered as pages.
func (c *Console) session(h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie(r))
		if err != nil || ck.Value == "" {
			c.unauthenticated(w, r)
			return
		}
		s, p, k, err := c.vault.ResumeSession(r.Context(), ck.Value, c.limits)
		if err != nil {
			if custos.ErrorCode(err) == custos.EUNAUTHORIZED {
				setCookie(w, r, sessionCookie(r), "", -1)
				c.unauthenticated(w, r)
				return
			}
			c.fail(w, r, nil, err)
			return
		}
		req := *custos.RequestFromContext(r.Context())
		req.Principal, req.Key, req.SSO = p, k, s.SSOLink != ""
		r = r.WithContext(custos.NewContext(r.Context(), &req))
		if r.Method == http.MethodPost {
			if err := c.checkPost(w, r, s.CSRF); err != nil {
				// Refused before the operation: recorded as the API
				// records a request it could not decode.
				c.fail(w, r, s, c.vault.Reject(r.Context(), postAction(r), r.PathValue("tenant"), err))
				return
			}
		}
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	}
}

// postAction is the action a refused form post is recorded under: the
// one of the API route the page mirrors.
func postAction(r *http.Request) custos.Action {
	switch r.Pattern {
	case "POST /ui/t/{tenant}/requests/{id}/approve", "POST /ui/t/{tenant}/requests/{id}/deny":
		return custos.ActionRequestDecide
	case "POST /ui/t/{tenant}/grants/{id}/revoke":
		return custos.ActionGrantRevoke
	case "POST /ui/stepup":
		return custos.ActionStepUp
	case "POST /ui/account/unlink":
		return custos.ActionSSOLink
	}
	return custos.ActionAuthenticate
}

// errCrossSite is a state change that did not come from the console's
// own form.
var errCrossSite = custos.Errorf(custos.EFORBIDDEN, "form refused: it did not come from this console (missing or wrong CSRF token, or a cross-site origin); reload the page and try again")

// checkPost admits a form post only from the console itself: not
// cross-site by the browser's own account (Sec-Fetch-Site, Origin), and
// carrying the token only the console's pages hold.
func (c *Console) checkPost(w http.ResponseWriter, r *http.Request, token string) error {
	if !sameOrigin(r) {
		return errCrossSite
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return custos.Errorf(custos.EINVALID, "malformed form")
	}
	if got := r.PostForm.Get("csrf"); token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
		return errCrossSite
	}
	return nil
}

// sameOrigin refuses what the browser says came from elsewhere. Browsers
// send Sec-Fetch-Site and Origin with every form post; when one is there
// it must say this site. (A client that sends neither is no browser a
// page could drive, and still needs the CSRF token.)
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host != r.Host {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme || (u.Scheme == "https" && secure(r))
}

func (c *Console) unauthenticated(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusUnauthorized, "error", view{Title: "Sign in again", Data: errorView{Status: http.StatusUnauthorized,
		Message: "Your session has ended. Sign in again."}})
}

// statuses maps domain codes to statuses, as the API's one table does.
var statuses = map[string]int{
	custos.ECONFLICT:     http.StatusConflict,
	custos.EFORBIDDEN:    http.StatusForbidden,
	custos.EINVALID:      http.StatusBadRequest,
	custos.EREASON:       http.StatusBadRequest,
	custos.ENOTFOUND:     http.StatusNotFound,
	custos.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	custos.ETOOMANY:      http.StatusTooManyRequests,
	custos.EUNAUTHORIZED: http.StatusUnauthorized,
	custos.EUNAVAILABLE:  http.StatusServiceUnavailable,
	custos.EGONE:         http.StatusGone,
}

type errorView struct {
	Status    int
	Message   string
	RequestID string
}

// fail renders err as a page: a domain error's message (which never holds
// personal data), or, for anything else, a logged generic 500.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *vault.Session, err error) {
	req := custos.RequestFromContext(r.Context())
	status, ok := statuses[custos.ErrorCode(err)]
	msg := custos.ErrorMessage(err)
	if _, domain := errors.AsType[*custos.Error](err); !ok || !domain {
		status, msg = http.StatusInternalServerError, "internal error"
		c.logger.ErrorContext(r.Context(), "console internal error", "request_id", req.ID, "err", err)
	}
	v := view{Title: http.StatusText(status), Principal: req.Principal, Tenant: tenantOf(r, req.Principal),
		Data: errorView{Status: status, Message: msg, RequestID: req.ID}}
	if s != nil {
		v.CSRF = s.CSRF
	}
	c.render(w, r, status, "error", v)
}

func tenantOf(r *http.Request, p *custos.Principal) string {
	if t := r.PathValue("tenant"); t != "" && custos.ValidID(custos.PrefixTenant, t) {
		return t
	}
	if p != nil && p.Kind.TenantBound() {
		return p.TenantID
	}
	return ""
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	t, ok := c.pages[page]
	if !ok {
		panic("console: no page " + page)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, "layout.html", v); err != nil {
		c.logger.ErrorContext(r.Context(), "render console page", "page", page, "err", err)
	}
}

// signinForm shows the sign-in form with a fresh pre-session token (the
// login form's own CSRF defence: a page elsewhere cannot sign a browser
// in under the attacker's key).
func (c *Console) signinForm(w http.ResponseWriter, r *http.Request) {
	c.showSignin(w, r, http.StatusOK, "")
}

func (c *Console) showSignin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	token, err := randomToken()
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	setCookie(w, r, signinCookie(r), token, 600)
	v := signinView{Message: msg}
	if c.sso != nil {
		v.Provider = c.sso.cfg.Name
	}
	c.render(w, r, status, "signin", view{Title: "Sign in", CSRF: token, Data: v})
}

type signinView struct{ Message, Provider string }

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(signinCookie(r))
	if err != nil || c.checkPost(w, r, ck.Value) != nil {
		c.showSignin(w, r, http.StatusForbidden, "The sign-in form expired or did not come from this console. Try again.")
		return
	}
	// Whatever session cookie came with the form ends here: the session
	// signed in is always a new one (no fixation).
	if old, err := r.Cookie(sessionCookie(r)); err == nil {
		if err := c.vault.EndSession(r.Context(), old.Value); err != nil {
			c.fail(w, r, nil, err)
			return
		}
	}
	token, _, _, _, err := c.vault.StartSession(r.Context(), r.PostForm.Get("key"), c.limits)
	if err != nil {
		if custos.ErrorCode(err) == custos.EUNAUTHORIZED {
			c.showSignin(w, r, http.StatusUnauthorized, "Sign-in failed: the key is not valid, or it is revoked, expired, or not allowed from here.")
			return
		}
		c.fail(w, r, nil, err)
		return
	}
	setCookie(w, r, signinCookie(r), "", -1)
	// A browser-session cookie (no Max-Age): closing the browser drops
	// it; the server's limits end the session itself.
	setCookie(w, r, sessionCookie(r), token, 0)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	ck, err := r.Cookie(sessionCookie(r))
	if err == nil {
		if err := c.vault.EndSession(r.Context(), ck.Value); err != nil {
			return err
		}
	}
	setCookie(w, r, sessionCookie(r), "", -1)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
	return nil
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// principal returns the signed-in principal of a session request.
func principal(ctx context.Context) *custos.Principal {
	return custos.RequestFromContext(ctx).Principal
}
