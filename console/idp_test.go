package console_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// idp is a real OpenID provider for tests: zitadel's op package on
// 127.0.0.1 with the smallest in-memory storage it needs, signing ID
// tokens with a fresh RSA key. Its modes make it misbehave in the ways a
// relying party must notice: another audience, a stale nonce, an expired
// token, a signature by a key it does not publish, an old auth_time.
type idp struct {
	issuer   string
	clientID string
	secret   string
	clients  map[string]string // client id → secret
	redirect string
	provider *op.Provider

	key, other *rsa.PrivateKey

	mu       sync.Mutex
	requests map[string]*idpRequest
	codes    map[string]string // code → request id
	users    map[string]string // subject → email
	modes    idpModes
}

// idpModes are the ways the provider can misbehave.
type idpModes struct {
	otherClient   bool          // answer the token request as if another client (of the same provider) had made it
	nonce         string        // the ID token's nonce instead of the request's
	lifetime      time.Duration // the ID token's lifetime (default 5m; negative: already expired)
	signWithOther bool          // sign with a key it does not publish, under the published key's id
	authTimeAgo   time.Duration // how long ago the sign-in it reports happened
}

type idpRequest struct {
	oidc.AuthRequest
	id       string
	subject  string
	authTime time.Time
	done     bool
	p        *idp
}

func (r *idpRequest) GetID() string          { return r.id }
func (r *idpRequest) GetACR() string         { return "" }
func (r *idpRequest) GetAMR() []string       { return []string{"pwd"} }
func (r *idpRequest) GetAuthTime() time.Time { return r.authTime }
func (r *idpRequest) GetClientID() string    { return r.ClientID }
func (r *idpRequest) GetCodeChallenge() *oidc.CodeChallenge {
	return &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod}
}
func (r *idpRequest) GetRedirectURI() string             { return r.RedirectURI }
func (r *idpRequest) GetResponseType() oidc.ResponseType { return r.ResponseType }
func (r *idpRequest) GetResponseMode() oidc.ResponseMode { return r.ResponseMode }
func (r *idpRequest) GetScopes() []string                { return r.Scopes }
func (r *idpRequest) GetState() string                   { return r.State }
func (r *idpRequest) GetSubject() string                 { return r.subject }
func (r *idpRequest) Done() bool                         { return r.done }

func (r *idpRequest) GetAudience() []string { return []string{r.ClientID} }

func (r *idpRequest) GetNonce() string {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	if r.p.modes.nonce != "" {
		return r.p.modes.nonce
	}
	return r.Nonce
}

// newIDP starts a provider on 127.0.0.1 for a relying party whose
// callback is redirect.
func newIDP(t testing.TB, redirect string) *idp {
	t.Helper()
	p := &idp{clientID: "custos-console", redirect: redirect, requests: map[string]*idpRequest{}, codes: map[string]string{}, users: map[string]string{}}
	var err error
	if p.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if p.other, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	p.secret = rand.Text()
	p.clients = map[string]string{p.clientID: p.secret, otherClient: rand.Text()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.issuer = "http://" + ln.Addr().String()
	var cryptoKey [32]byte
	rand.Read(cryptoKey[:])
	p.provider, err = op.NewOpenIDProvider(p.issuer, &op.Config{CryptoKey: cryptoKey, CodeMethodS256: true, SupportedScopes: []string{"openid", "email"}},
		(*idpStorage)(p), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", p.loginForm)
	mux.HandleFunc("POST /login", p.login)
	// In otherClient mode the token request is made as the other client:
	// the ID token that comes back is that client's (its audience).
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		other := p.modes.otherClient
		p.mu.Unlock()
		if other && r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
			r.SetBasicAuth(otherClient, p.clients[otherClient])
		}
		p.provider.ServeHTTP(w, r)
	}))
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

// user adds an account.
func (p *idp) user(subject, email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[subject] = email
}

func (p *idp) setModes(m idpModes) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.modes = m
}

// otherClient is a second client of the provider, with the console's
// redirect URL: a relying party that is not custos.
const otherClient = "another-client"

var loginPage = template.Must(template.New("login").Parse(`<!doctype html><title>Test IdP</title>
<form method="post" action="/login"><input type="hidden" name="id" value="{{.}}">
<label for="username">User</label><input id="username" name="username"><button id="idp-login" type="submit">Log in</button></form>`))

func (p *idp) loginForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	loginPage.Execute(w, r.URL.Query().Get("id"))
}

// login completes an authorization request as the account named (every
// sign-in is a fresh one: prompt=login is always honoured).
func (p *idp) login(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	id, user := r.PostForm.Get("id"), r.PostForm.Get("username")
	p.mu.Lock()
	req, ok := p.requests[id]
	_, known := p.users[user]
	if ok && known {
		req.subject, req.done = user, true
		req.authTime = time.Now().Add(-p.modes.authTimeAgo).UTC().Truncate(time.Second)
	}
	p.mu.Unlock()
	if !ok || !known {
		http.Error(w, "unknown user", http.StatusForbidden)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(p.provider)(op.ContextWithIssuer(r.Context(), p.issuer), id), http.StatusFound)
}

// idpStorage is the provider's op.Storage: what an authorization-code
// flow needs, nothing more.
type idpStorage idp

var errNotHere = errors.New("not supported by the test provider")

func (s *idpStorage) p() *idp { return (*idp)(s) }

func (s *idpStorage) CreateAuthRequest(_ context.Context, ar *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	p := s.p()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &idpRequest{AuthRequest: *ar, id: rand.Text(), p: p}
	p.requests[r.id] = r
	return r, nil
}

func (s *idpStorage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	p := s.p()
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.requests[id]; ok {
		return r, nil
	}
	return nil, errors.New("no such request")
}

func (s *idpStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	p := s.p()
	p.mu.Lock()
	id, ok := p.codes[code]
	p.mu.Unlock()
	if !ok {
		return nil, errors.New("no such code")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *idpStorage) SaveAuthCode(_ context.Context, id, code string) error {
	p := s.p()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.codes[code] = id
	return nil
}

// DeleteAuthRequest ends a request once its code is exchanged: a code
// works once.
func (s *idpStorage) DeleteAuthRequest(_ context.Context, id string) error {
	p := s.p()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.requests, id)
	for c, x := range p.codes {
		if x == id {
			delete(p.codes, c)
		}
	}
	return nil
}

func (s *idpStorage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return rand.Text(), time.Now().Add(5 * time.Minute), nil
}

func (s *idpStorage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errNotHere
}

func (s *idpStorage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, errNotHere
}
func (s *idpStorage) TerminateSession(context.Context, string, string) error { return nil }
func (s *idpStorage) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return nil
}
func (s *idpStorage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", errNotHere
}

type idpKey struct {
	key *rsa.PrivateKey
}

func (k idpKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k idpKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k idpKey) ID() string                                  { return "k1" }
func (k idpKey) Use() string                                 { return "sig" }

// Key is the private key to sign with (SigningKey) or, published, the
// public one (Key).
func (k idpKey) Key() any { return k.key }

type idpPublicKey struct{ idpKey }

func (k idpPublicKey) Key() any { return &k.key.PublicKey }

func (s *idpStorage) SigningKey(context.Context) (op.SigningKey, error) {
	p := s.p()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.modes.signWithOther {
		return idpKey{p.other}, nil
	}
	return idpKey{p.key}, nil
}

func (s *idpStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *idpStorage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{idpPublicKey{idpKey{s.p().key}}}, nil
}

func (s *idpStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if _, ok := s.clients[id]; !ok {
		return nil, errors.New("no such client")
	}
	return &idpClient{p: s.p(), id: id}, nil
}

func (s *idpStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if want, ok := s.clients[id]; !ok || secret != want {
		return errors.New("wrong client credentials")
	}
	return nil
}

func (s *idpStorage) SetUserinfoFromScopes(_ context.Context, u *oidc.UserInfo, subject, _ string, scopes []string) error {
	p := s.p()
	p.mu.Lock()
	defer p.mu.Unlock()
	u.Subject = subject
	for _, sc := range scopes {
		if sc == oidc.ScopeEmail {
			u.Email, u.EmailVerified = p.users[subject], true
		}
	}
	return nil
}

func (s *idpStorage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errNotHere
}
func (s *idpStorage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errNotHere
}
func (s *idpStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}
func (s *idpStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNotHere
}
func (s *idpStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errNotHere
}
func (s *idpStorage) Health(context.Context) error { return nil }

// idpClient is a relying party as the provider knows it.
type idpClient struct {
	p  *idp
	id string
}

func (c *idpClient) GetID() string                       { return c.id }
func (c *idpClient) RedirectURIs() []string              { return []string{c.p.redirect} }
func (c *idpClient) PostLogoutRedirectURIs() []string    { return nil }
func (c *idpClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *idpClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *idpClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *idpClient) GrantTypes() []oidc.GrantType         { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c *idpClient) LoginURL(id string) string            { return "/login?id=" + id }
func (c *idpClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *idpClient) DevMode() bool                        { return true }
func (c *idpClient) IsScopeAllowed(string) bool           { return false }
func (c *idpClient) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *idpClient) ClockSkew() time.Duration             { return 0 }
func (c *idpClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *idpClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *idpClient) IDTokenLifetime() time.Duration {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.modes.lifetime != 0 {
		return p.modes.lifetime
	}
	return 5 * time.Minute
}

// strip keeps a URL's path and query (for the test browser's own requests).
func strip(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
			return u[i+3+j:]
		}
	}
	return u
}
