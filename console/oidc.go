package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// OIDC single sign-on (issue 23; docs/console.md). The console is an
// OpenID Connect relying party: authorization code with PKCE (S256),
// state and nonce, the ID token's signature, issuer, audience and expiry
// checked by go-oidc. What the identity provider vouches for is an
// account, never a principal: an account signs in only once the holder
// of a custos key has linked it to that key ([vault.Vault.LinkSSO]).

// DefaultStepUpMaxAge is how old an identity provider's authentication
// may be when it comes back for a step-up.
const DefaultStepUpMaxAge = 2 * time.Minute

// OIDC configures single sign-on. Nothing here makes anyone a principal:
// it names the provider and the claim that identifies a person there.
type OIDC struct {
	Issuer       string
	ClientID     string
	ClientSecret string // never logged or shown
	RedirectURL  string // this console's /ui/oidc/callback as the provider knows it
	Scopes       []string
	// Claim identifies a person at the provider: "sub" (default), or
	// another string claim such as "email" (then email_verified must be
	// true) or "preferred_username".
	Claim string
	// Name labels the sign-in button ("Sign in with <Name>").
	Name string
	// StepUpMaxAge bounds a step-up's auth_time (DefaultStepUpMaxAge).
	StepUpMaxAge time.Duration
	// HTTPClient reaches the provider (default http.DefaultClient).
	HTTPClient *http.Client
}

// sso is the console's relying party; its provider metadata is fetched
// at first use, so a provider that is down does not keep custos from
// starting.
type sso struct {
	cfg OIDC

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
}

func newSSO(cfg *OIDC) *sso {
	if cfg == nil || cfg.Issuer == "" {
		return nil
	}
	c := *cfg
	if c.Claim == "" {
		c.Claim = "sub"
	}
	if c.Name == "" {
		c.Name = "single sign-on"
	}
	if c.StepUpMaxAge <= 0 {
		c.StepUpMaxAge = DefaultStepUpMaxAge
	}
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	scopes := []string{oidc.ScopeOpenID}
	for _, s := range c.Scopes {
		if s != oidc.ScopeOpenID {
			scopes = append(scopes, s)
		}
	}
	c.Scopes = scopes
	return &sso{cfg: c}
}

func (s *sso) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, s.cfg.HTTPClient)
}

// load discovers the provider once.
func (s *sso) load(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider == nil {
		p, err := oidc.NewProvider(s.ctx(ctx), s.cfg.Issuer)
		if err != nil {
			return nil, nil, custos.Errorf(custos.EUNAVAILABLE, "the identity provider cannot be reached: try again, or sign in with a key")
		}
		s.provider = p
		s.verifier = p.Verifier(&oidc.Config{ClientID: s.cfg.ClientID})
		s.oauth = &oauth2.Config{ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, Endpoint: p.Endpoint(),
			RedirectURL: s.cfg.RedirectURL, Scopes: s.cfg.Scopes}
	}
	return s.oauth, s.verifier, nil
}

// idClaims are the ID token's claims the console reads beyond go-oidc's.
type idClaims struct {
	AuthTime      int64 `json:"auth_time"`
	EmailVerified *bool `json:"email_verified"`
}

// flowCookie holds the state of the browser's flow in progress. It is
// SameSite=Lax, the one cookie that is: the provider's redirect back is a
// cross-site navigation, which a Strict cookie would not come with.
func flowCookie(r *http.Request) string {
	if secure(r) {
		return "__Host-custos_oidc"
	}
	return "custos_oidc"
}

// startFlow stores f, sets the flow cookie, and sends the browser to the
// provider; extra adds parameters (a step-up's prompt=login, max_age=0).
func (c *Console) startFlow(w http.ResponseWriter, r *http.Request, f vault.OIDCFlow, extra ...oauth2.AuthCodeOption) error {
	oc, _, err := c.sso.load(r.Context())
	if err != nil {
		return err
	}
	if f.Nonce, err = randomToken(); err != nil {
		return err
	}
	f.Verifier = oauth2.GenerateVerifier()
	state, err := c.vault.BeginOIDCFlow(r.Context(), f)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie(r), Value: state, Path: "/", MaxAge: int(vault.OIDCFlowLifetime / time.Second),
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode})
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)}, extra...)
	to := oc.AuthCodeURL(state, opts...)
	if r.Method == http.MethodPost {
		// A form's redirect to another origin is what the CSP's
		// form-action 'self' forbids: a page of ours moves on instead.
		c.continueTo(w, r, to)
		return nil
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// ssoSignin starts a sign-in through the provider.
func (c *Console) ssoSignin(w http.ResponseWriter, r *http.Request) {
	if c.sso == nil {
		http.NotFound(w, r)
		return
	}
	if err := c.startFlow(w, r, vault.OIDCFlow{Purpose: "signin"}); err != nil {
		c.fail(w, r, nil, err)
	}
}

// errSSO is every refused callback, whatever went wrong: the browser
// learns no more than that.
var errSSO = custos.Errorf(custos.EUNAUTHORIZED, "single sign-on failed: the identity provider's answer was refused, or the account is not linked to a custos key")

// callback is where the provider sends the browser back: the flow is taken
// (once) by the state that must also be the browser's flow cookie, the
// code exchanged with the flow's PKCE verifier, the ID token verified and
// its nonce compared with the flow's. A refusal is recorded (naming no
// account) and creates no session.
func (c *Console) callback(w http.ResponseWriter, r *http.Request) {
	if c.sso == nil {
		http.NotFound(w, r)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie(r), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode})
	f, acct, claims, err := c.verifyCallback(r)
	if err != nil {
		if custos.ErrorCode(err) == custos.EUNAVAILABLE {
			c.fail(w, r, nil, err)
			return
		}
		c.logger.InfoContext(r.Context(), "single sign-on refused", "reason", err.Error())
		_ = c.vault.Reject(r.Context(), custos.ActionAuthenticate, "", errSSO)
		c.showSignin(w, r, http.StatusUnauthorized, custos.ErrorMessage(errSSO))
		return
	}
	switch f.Purpose {
	case "signin":
		token, _, _, _, err := c.vault.StartSSOSession(r.Context(), acct, c.limits)
		if err != nil {
			if custos.ErrorCode(err) == custos.EUNAUTHORIZED {
				c.showSignin(w, r, http.StatusUnauthorized, custos.ErrorMessage(errSSO))
				return
			}
			c.fail(w, r, nil, err)
			return
		}
		setCookie(w, r, sessionCookie(r), token, 0)
		c.continueTo(w, r, "/ui/")
	case "link", "stepup":
		s, p, k, err := c.vault.ResumeSessionID(r.Context(), f.SessionID, c.limits)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		req := *custos.RequestFromContext(r.Context())
		req.Principal, req.Key, req.SSO = p, k, s.SSOLink != ""
		ctx := custos.NewContext(r.Context(), &req)
		r = r.WithContext(ctx)
		if f.Purpose == "link" {
			if err := c.vault.UseStepUp(ctx, s, f.StepUp); err != nil {
				c.fail(w, r, s, err)
				return
			}
			if err := c.vault.LinkSSO(ctx, s, acct); err != nil {
				c.fail(w, r, s, err)
				return
			}
			c.continueTo(w, r, "/ui/account")
			return
		}
		// A step-up must be a fresh authentication of the very account
		// this session signed in with.
		fresh := claims.AuthTime > 0 && time.Since(time.Unix(claims.AuthTime, 0)) <= c.sso.cfg.StepUpMaxAge
		if !fresh {
			err = c.vault.Reject(ctx, custos.ActionStepUp, f.StepUp.Tenant, custos.Errorf(custos.EUNAUTHORIZED, "the identity provider did not authenticate afresh (auth_time missing or too old)"))
		} else {
			err = c.vault.GrantStepUpSSO(ctx, s, acct, f.StepUp)
		}
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		c.continueTo(w, r, backFor(f.StepUp))
	default:
		c.fail(w, r, nil, errSSO)
	}
}

// verifyCallback checks everything the provider's answer must satisfy and
// returns the flow and the account it names.
func (c *Console) verifyCallback(r *http.Request) (*vault.OIDCFlow, vault.SSOAccount, *idClaims, error) {
	q := r.URL.Query()
	ck, err := r.Cookie(flowCookie(r))
	state := q.Get("state")
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(state)) != 1 {
		return nil, vault.SSOAccount{}, nil, errors.New("state does not match the browser's flow")
	}
	f, err := c.vault.TakeOIDCFlow(r.Context(), state)
	if err != nil {
		return nil, vault.SSOAccount{}, nil, err
	}
	if q.Get("error") != "" {
		return nil, vault.SSOAccount{}, nil, errors.New("the provider returned an error")
	}
	oc, verifier, err := c.sso.load(r.Context())
	if err != nil {
		return nil, vault.SSOAccount{}, nil, err
	}
	ctx := c.sso.ctx(r.Context())
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return nil, vault.SSOAccount{}, nil, errors.New("code exchange refused")
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return nil, vault.SSOAccount{}, nil, errors.New("no id_token")
	}
	id, err := verifier.Verify(ctx, raw)
	if err != nil {
		return nil, vault.SSOAccount{}, nil, errors.New("id_token refused: " + verifyReason(err))
	}
	if subtle.ConstantTimeCompare([]byte(id.Nonce), []byte(f.Nonce)) != 1 {
		return nil, vault.SSOAccount{}, nil, errors.New("id_token nonce does not match the flow")
	}
	var claims idClaims
	var all map[string]any
	if err := id.Claims(&claims); err != nil {
		return nil, vault.SSOAccount{}, nil, errors.New("id_token claims malformed")
	}
	if err := id.Claims(&all); err != nil {
		return nil, vault.SSOAccount{}, nil, errors.New("id_token claims malformed")
	}
	subject := id.Subject
	if claim := c.sso.cfg.Claim; claim != "sub" {
		subject, _ = all[claim].(string)
		if claim == "email" && (claims.EmailVerified == nil || !*claims.EmailVerified) {
			subject = ""
		}
	}
	if subject == "" {
		return nil, vault.SSOAccount{}, nil, errors.New("id_token lacks the identifying claim")
	}
	return f, vault.SSOAccount{Issuer: id.Issuer, Subject: subject}, &claims, nil
}

// verifyReason names the class of a go-oidc refusal for the log, without
// the token.
func verifyReason(err error) string {
	var exp *oidc.TokenExpiredError
	switch {
	case errors.As(err, &exp):
		return "expired"
	case strings.Contains(err.Error(), "audience"):
		return "audience"
	case strings.Contains(err.Error(), "issuer"):
		return "issuer"
	case strings.Contains(err.Error(), "signature"):
		return "signature"
	}
	return "invalid"
}

// continueTo ends a callback with a page that moves on to a console page.
// The move is the console's own navigation, so the SameSite=Strict
// session cookie comes with it (a redirect would still be part of the
// provider's cross-site navigation, and arrive without it).
func (c *Console) continueTo(w http.ResponseWriter, r *http.Request, to string) {
	refresh := template.HTMLAttr(`content="0;url=` + html.EscapeString(to) + `"`)
	c.render(w, r, http.StatusOK, "continue", view{Title: "One moment", Data: continueView{To: to, Refresh: refresh}})
}

type continueView struct {
	To      string
	Refresh template.HTMLAttr // built from To, escaped
}

// stepUpActions are the actions a step-up can be earned for.
var stepUpActions = map[custos.Action]bool{
	custos.ActionRequestDecide:    true, // approving access
	custos.ActionBreakGlassOK:     true, // approving break-glass
	custos.ActionDeletionRequest:  true, // scheduling a deletion
	custos.ActionLift:             true, // lifting a containment
	custos.ActionSSOLink:          true, // linking an identity-provider account
	custos.ActionTenantKeyApprove: true, // approving a change of the tenant's own key
	custos.ActionPrincipalDecide:  true, // approving a principal's access to the tenant
	custos.ActionSupportSettings:  true, // turning break-glass on
}

// backFor is the page a step-up returns to.
func backFor(su vault.StepUp) string {
	switch su.Action {
	case custos.ActionRequestDecide:
		if custos.ValidID(custos.PrefixTenant, su.Tenant) {
			return "/ui/t/" + url.PathEscape(su.Tenant) + "/requests?stepped=" + url.QueryEscape(su.Target) + "#req-" + url.PathEscape(su.Target)
		}
	case custos.ActionSSOLink:
		return "/ui/account"
	case custos.ActionLift:
		return "/ui/security/containments"
	case custos.ActionBreakGlassOK:
		if custos.ValidID(custos.PrefixAccessReq, su.Target) {
			return "/ui/security/break-glass?stepped=" + url.QueryEscape(su.Target) + "#bg-" + url.PathEscape(su.Target)
		}
		return "/ui/security/break-glass"
	case custos.ActionSupportSettings:
		if custos.ValidID(custos.PrefixTenant, su.Tenant) {
			return "/ui/t/" + url.PathEscape(su.Tenant) + "/support"
		}
	case custos.ActionPrincipalDecide:
		if custos.ValidID(custos.PrefixTenant, su.Tenant) {
			return "/ui/t/" + url.PathEscape(su.Tenant) + "/principals#enr-" + url.PathEscape(su.Target)
		}
	case custos.ActionDeletionRequest:
		if custos.ValidID(custos.PrefixTenant, su.Tenant) {
			return "/ui/t/" + url.PathEscape(su.Tenant) + "/deletion"
		}
	case custos.ActionTenantKeyApprove:
		if custos.ValidID(custos.PrefixTenant, su.Tenant) {
			return "/ui/t/" + url.PathEscape(su.Tenant) + "/key"
		}
	}
	return "/ui/"
}

// parseStepUp reads what a step-up form asks for: one of the actions a
// step-up can be for, a tenant id or none, and a target id (at most 64
// characters, no slash, no space or control character).
func parseStepUp(form url.Values) (vault.StepUp, bool) {
	su := vault.StepUp{Action: custos.Action(form.Get("action")), Tenant: form.Get("tenant"), Target: form.Get("target")}
	if !stepUpActions[su.Action] || su.Target == "" || len(su.Target) > 64 || (su.Tenant != "" && !custos.ValidID(custos.PrefixTenant, su.Tenant)) {
		return vault.StepUp{}, false
	}
	for _, r := range su.Target {
		if r <= ' ' || r >= 0x7f || r == '/' {
			return vault.StepUp{}, false
		}
	}
	return su, true
}

type stepUpView struct {
	Action, Tenant, Target string
	SSO                    bool // step up at the provider
	KeyOnly                bool // signed in through a provider its tenant has not named: the key instead
	Provider               string
	Message                string
}

// RequireStepUp spends the session's step-up for su, or shows the page
// that earns one and returns false: an action page calls it just before
// the vault call it guards, and goes on only on true. A step-up is for
// this session, this action and this target, and works once.
func (c *Console) RequireStepUp(w http.ResponseWriter, r *http.Request, s *vault.Session, su vault.StepUp) (bool, error) {
	err := c.vault.UseStepUp(r.Context(), s, su)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, vault.ErrStepUp) {
		return false, err
	}
	c.showStepUp(w, r, s, su, http.StatusForbidden, "")
	return false, nil
}

func (c *Console) showStepUp(w http.ResponseWriter, r *http.Request, s *vault.Session, su vault.StepUp, status int, msg string) {
	v := stepUpView{Action: string(su.Action), Tenant: su.Tenant, Target: su.Target, Message: msg}
	sso, err := c.stepUpAtProvider(r, s)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if sso {
		v.SSO, v.Provider = true, c.sso.cfg.Name
	} else if s.SSOLink != "" {
		v.KeyOnly = true
	}
	c.render(w, r, status, "stepup", c.view(r, s, "Confirm it is you", "", v))
}

// stepUpAtProvider reports whether session s steps up at the identity
// provider: it signed in there, and its principal's tenant named that
// provider as its own ([vault.Vault.SSOStepUpTrusted]). Otherwise the key
// is entered again.
func (c *Console) stepUpAtProvider(r *http.Request, s *vault.Session) (bool, error) {
	if s.SSOLink == "" || c.sso == nil {
		return false, nil
	}
	return c.vault.SSOStepUpTrusted(r.Context(), c.sso.cfg.Issuer)
}

// stepUp earns a step-up: an API-key session enters its key again; a
// single sign-on session goes back to the provider with prompt=login and
// max_age=0.
func (c *Console) stepUp(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	su, ok := parseStepUp(r.PostForm)
	if !ok {
		return c.vault.Reject(r.Context(), custos.ActionStepUp, "", custos.Errorf(custos.EINVALID, "no step-up for that"))
	}
	sso, err := c.stepUpAtProvider(r, s)
	if err != nil {
		return err
	}
	if sso && r.PostForm.Get("key") == "" {
		return c.startFlow(w, r, vault.OIDCFlow{Purpose: "stepup", SessionID: s.ID, StepUp: su},
			oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"))
	}
	if err := c.vault.StepUpWithKey(r.Context(), s, r.PostForm.Get("key"), su); err != nil {
		if custos.ErrorCode(err) == custos.EUNAUTHORIZED {
			c.showStepUp(w, r, s, su, http.StatusUnauthorized, "That is not the key this session signed in with.")
			return nil
		}
		return err
	}
	if su.Action == custos.ActionSSOLink {
		// Linking goes on to the provider at once.
		return c.startFlow(w, r, vault.OIDCFlow{Purpose: "link", SessionID: s.ID, StepUp: su}, oauth2.SetAuthURLParam("prompt", "login"))
	}
	http.Redirect(w, r, backFor(su), http.StatusSeeOther)
	return nil
}

type accountView struct {
	SSO         bool // this session came through the provider
	Provider    string
	PrincipalID string
}

// account shows how the session signed in, and lets an API-key session
// link the provider's account to its key (after entering the key again).
func (c *Console) account(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	v := accountView{SSO: s.SSOLink != "", PrincipalID: s.Principal}
	if c.sso != nil {
		v.Provider = c.sso.cfg.Name
	}
	c.render(w, r, http.StatusOK, "account", c.view(r, s, "Account", "account", v))
	return nil
}

// unlink removes the principal's identity-provider links.
func (c *Console) unlink(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	if err := c.vault.UnlinkSSO(r.Context()); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/account", http.StatusSeeOther)
	return nil
}
