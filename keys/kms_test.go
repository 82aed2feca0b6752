//go:build !custos_nokms

package keys_test

// The built-in KMS clients (Vault transit, AWS KMS, GCP Cloud KMS) run
// here as they run in production — the real Tink integrations and the
// real Vault, AWS and Google client libraries, credentials from the
// environment — against local servers on 127.0.0.1 that answer each
// wire protocol's encrypt and decrypt calls with real AES-GCM bound to
// the associated data. TestVaultTransitLive runs the same against a real
// Vault or OpenBao when CUSTOS_TEST_VAULT_ADDR is set.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/custos-dev/custos/keys"
)

// fakeKMS is the key and the failure switches behind each fake server.
type fakeKMS struct {
	aead tink.AEAD

	mu       sync.Mutex
	deny     bool // answer every call "access denied"
	failNext int  // answer the next calls "unavailable"
	calls    int
}

func newFakeKMS(t *testing.T) *fakeKMS {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeKMS{aead: a}
}

// gate counts a call and says how it must fail: "" (it must not),
// "deny" or "unavailable".
func (f *fakeKMS) gate() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	switch {
	case f.deny:
		return "deny"
	case f.failNext > 0:
		f.failNext--
		return "unavailable"
	}
	return ""
}

func (f *fakeKMS) set(deny bool, failNext int) {
	f.mu.Lock()
	f.deny, f.failNext = deny, failNext
	f.mu.Unlock()
}

func (f *fakeKMS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func writeJSON(w http.ResponseWriter, ct string, status int, v any) {
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func b64(s string) []byte {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b
		}
	}
	return nil
}

// vaultServer answers Vault's transit encrypt and decrypt and its AppRole
// login. Tokens are valid while in tokens.
func vaultServer(t *testing.T, f *fakeKMS, tokens *sync.Map) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const ct = "application/json"
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		if r.URL.Path == "/v1/auth/approle/login" {
			if body["role_id"] != "role-1" || body["secret_id"] != "secret-1" {
				writeJSON(w, ct, 400, map[string]any{"errors": []string{"invalid role or secret ID"}})
				return
			}
			tok := "hvs.approle-" + rand.Text()
			tokens.Store(tok, true)
			writeJSON(w, ct, 200, map[string]any{"auth": map[string]any{"client_token": tok}})
			return
		}
		if _, ok := tokens.Load(r.Header.Get("X-Vault-Token")); !ok {
			writeJSON(w, ct, 403, map[string]any{"errors": []string{"permission denied"}})
			return
		}
		switch f.gate() {
		case "deny":
			writeJSON(w, ct, 403, map[string]any{"errors": []string{"1 error occurred:\n\t* permission denied\n\n"}})
			return
		case "unavailable":
			writeJSON(w, ct, 503, map[string]any{"errors": []string{"Vault is sealed"}})
			return
		}
		ad, ok := body["associated_data"]
		if !ok {
			writeJSON(w, ct, 400, map[string]any{"errors": []string{"no associated_data"}})
			return
		}
		switch r.URL.Path {
		case "/v1/transit/encrypt/custos-kek":
			c, _ := f.aead.Encrypt(b64(body["plaintext"]), b64(ad))
			writeJSON(w, ct, 200, map[string]any{"data": map[string]any{"ciphertext": "vault:v1:" + base64.StdEncoding.EncodeToString(c)}})
		case "/v1/transit/decrypt/custos-kek":
			c := b64(strings.TrimPrefix(body["ciphertext"], "vault:v1:"))
			p, err := f.aead.Decrypt(c, b64(ad))
			if err != nil {
				writeJSON(w, ct, 400, map[string]any{"errors": []string{"cipher: message authentication failed"}})
				return
			}
			writeJSON(w, ct, 200, map[string]any{"data": map[string]any{"plaintext": base64.StdEncoding.EncodeToString(p)}})
		default:
			writeJSON(w, ct, 404, map[string]any{"errors": []string{"no handler for route"}})
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// awsServer answers AWS KMS's JSON protocol (TrentService.Encrypt and
// .Decrypt) for one key id, and checks that requests are signed with the
// access key the default chain found in the environment.
func awsServer(t *testing.T, f *fakeKMS, keyID string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const ct = "application/x-amz-json-1.1"
		fail := func(status int, typ, msg string) {
			writeJSON(w, ct, status, map[string]string{"__type": typ, "message": msg})
		}
		if !strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDCUSTOSTEST/") {
			fail(400, "UnrecognizedClientException", "The security token included in the request is invalid.")
			return
		}
		var body struct {
			KeyId             string
			Plaintext         []byte
			CiphertextBlob    []byte
			EncryptionContext map[string]string
		}
		json.NewDecoder(r.Body).Decode(&body)
		switch f.gate() {
		case "deny":
			fail(400, "AccessDeniedException", "User is not authorized to perform: kms:Decrypt")
			return
		case "unavailable":
			fail(500, "KMSInternalException", "internal error")
			return
		}
		if body.KeyId != keyID {
			fail(400, "NotFoundException", "Key not found")
			return
		}
		ad := []byte(body.EncryptionContext["associatedData"])
		switch r.Header.Get("X-Amz-Target") {
		case "TrentService.Encrypt":
			c, _ := f.aead.Encrypt(body.Plaintext, ad)
			writeJSON(w, ct, 200, map[string]any{"CiphertextBlob": c, "KeyId": keyID, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
		case "TrentService.Decrypt":
			p, err := f.aead.Decrypt(body.CiphertextBlob, ad)
			if err != nil {
				fail(400, "InvalidCiphertextException", "")
				return
			}
			writeJSON(w, ct, 200, map[string]any{"Plaintext": p, "KeyId": keyID, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
		default:
			fail(400, "UnknownOperationException", "")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func crc32c(b []byte) string {
	return strconv.FormatUint(uint64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))), 10)
}

// gcpServer answers Cloud KMS's REST :encrypt and :decrypt for one key,
// with its checksums, and the OAuth token endpoint of the service account
// that Application Default Credentials read from the environment.
func gcpServer(t *testing.T, f *fakeKMS, keyName string) *httptest.Server {
	const token = "ya29.custos-test"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const ct = "application/json"
		fail := func(status int, s, msg string) {
			writeJSON(w, ct, status, map[string]any{"error": map[string]any{"code": status, "status": s, "message": msg}})
		}
		if r.URL.Path == "/token" {
			r.ParseForm()
			if r.Form.Get("assertion") == "" {
				fail(400, "INVALID_ARGUMENT", "no assertion")
				return
			}
			writeJSON(w, ct, 200, map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": 3600})
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			fail(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
			return
		}
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		switch f.gate() {
		case "deny":
			fail(403, "PERMISSION_DENIED", "Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied on resource (or it may not exist).")
			return
		case "unavailable":
			fail(503, "UNAVAILABLE", "The service is currently unavailable.")
			return
		}
		str := func(k string) string { s, _ := body[k].(string); return s }
		ad := b64(str("additionalAuthenticatedData"))
		if str("additionalAuthenticatedDataCrc32c") != crc32c(ad) {
			fail(400, "INVALID_ARGUMENT", "checksum")
			return
		}
		switch r.URL.Path {
		case "/v1/" + keyName + ":encrypt":
			p := b64(str("plaintext"))
			c, _ := f.aead.Encrypt(p, ad)
			writeJSON(w, ct, 200, map[string]any{"name": keyName + "/cryptoKeyVersions/1", "ciphertext": base64.StdEncoding.EncodeToString(c),
				"ciphertextCrc32c": crc32c(c), "verifiedPlaintextCrc32c": str("plaintextCrc32c") == crc32c(p), "verifiedAdditionalAuthenticatedDataCrc32c": true})
		case "/v1/" + keyName + ":decrypt":
			p, err := f.aead.Decrypt(b64(str("ciphertext")), ad)
			if err != nil {
				fail(400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
				return
			}
			writeJSON(w, ct, 200, map[string]any{"plaintext": base64.StdEncoding.EncodeToString(p), "plaintextCrc32c": crc32c(p)})
		default:
			fail(404, "NOT_FOUND", "CryptoKey not found.")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// gcpCredentials writes a service-account key file whose token endpoint
// is tokenURL, for GOOGLE_APPLICATION_CREDENTIALS.
func gcpCredentials(t *testing.T, tokenURL string) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "p", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "custos@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": tokenURL,
	})
	path := filepath.Join(t.TempDir(), "adc.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// isolateEnv keeps the host's own cloud and Vault settings out of a test.
func isolateEnv(t *testing.T) {
	for _, k := range []string{"VAULT_ADDR", "VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_NAMESPACE", "VAULT_CACERT",
		"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CUSTOS_GCP_KMS_ENDPOINT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("VAULT_CONFIG_PATH", none)
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", none)
	t.Setenv("HOME", t.TempDir())
}

// kmsCase is one built-in KMS behind its fake server, its environment set.
type kmsCase struct {
	name string
	uri  string
	kms  *fakeKMS
}

func kmsCases(t *testing.T) []func(t *testing.T) kmsCase {
	return []func(t *testing.T) kmsCase{
		func(t *testing.T) kmsCase {
			f := newFakeKMS(t)
			tokens := &sync.Map{}
			tokens.Store("hvs.custos-test", true)
			srv := vaultServer(t, f, tokens)
			host := strings.TrimPrefix(srv.URL, "http://")
			t.Setenv("VAULT_ADDR", srv.URL) // same host as the URI: its http:// scheme is used
			t.Setenv("VAULT_TOKEN", "hvs.custos-test")
			t.Setenv("VAULT_MAX_RETRIES", "2")
			return kmsCase{"hcvault", "hcvault://" + host + "/transit/keys/custos-kek", f}
		},
		func(t *testing.T) kmsCase {
			f := newFakeKMS(t)
			arn := "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
			srv := awsServer(t, f, arn)
			t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCUSTOSTEST")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
			t.Setenv("AWS_ENDPOINT_URL_KMS", srv.URL)
			return kmsCase{"aws-kms", "aws-kms://" + arn, f}
		},
		func(t *testing.T) kmsCase {
			f := newFakeKMS(t)
			name := "projects/p/locations/europe-west1/keyRings/custos/cryptoKeys/kek"
			srv := gcpServer(t, f, name)
			t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", gcpCredentials(t, srv.URL+"/token"))
			t.Setenv("CUSTOS_GCP_KMS_ENDPOINT", srv.URL+"/")
			return kmsCase{"gcp-kms", "gcp-kms://" + name, f}
		},
	}
}

// TestBuiltinKMS wraps and unwraps tenant and system keysets through each
// built-in client, and checks binding, retries and errors.
func TestBuiltinKMS(t *testing.T) {
	for _, setup := range kmsCases(t) {
		isolateEnv(t)
		c := setup(t)
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			kek, err := keys.OpenKEK(ctx, c.uri)
			if err != nil {
				t.Fatal(err)
			}
			ring := keys.NewKeyring(kek)
			a, wrappedA, err := ring.NewTenantKeys("tn_a")
			if err != nil {
				t.Fatal(err)
			}
			_, wrappedB, err := ring.NewTenantKeys("tn_b")
			if err != nil {
				t.Fatal(err)
			}
			_, wrappedSys, err := ring.NewSystemAEAD("notes")
			if err != nil {
				t.Fatal(err)
			}
			ct, _ := a.Seal([]byte("jane@example.com"), []byte("ad"))

			// A new process: a fresh client and keyring unwrap through the KMS.
			kek2, err := keys.OpenKEK(ctx, c.uri)
			if err != nil {
				t.Fatal(err)
			}
			ring2 := keys.NewKeyring(kek2)
			before := c.kms.count()
			a2, err := ring2.Tenant("tn_a", wrappedA)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := a2.Open(ct, []byte("ad")); err != nil || string(pt) != "jane@example.com" {
				t.Fatalf("round trip through %s: %q, %v", c.name, pt, err)
			}
			if n := c.kms.count() - before; n != 2 {
				t.Errorf("unwrapping a tenant made %d KMS calls, want 2 (its AEAD and PRF keysets)", n)
			}
			if _, err := ring2.SystemAEAD("notes", wrappedSys); err != nil {
				t.Fatal(err)
			}
			// The KMS binds the associated data: B's blob does not open as A's.
			ring2.Forget("tn_a")
			if _, err := ring2.Tenant("tn_a", wrappedB); err == nil {
				t.Fatal("tenant B's keys unwrapped as tenant A's through the KMS")
			} else if errors.Is(err, keys.ErrKEKUnavailable) {
				t.Errorf("a refused ciphertext reported as an unavailable KEK: %v", err)
			}

			// One transient failure is retried.
			c.kms.set(false, 1)
			before = c.kms.count()
			if _, err := ring2.Tenant("tn_a", wrappedA); err != nil {
				t.Fatalf("one unavailable answer was not retried: %v", err)
			}
			if n := c.kms.count() - before; n != 3 {
				t.Errorf("%d KMS calls for one retried unwrap, want 3", n)
			}

			// Access denied: a clear error naming the URI, never key material.
			ring2.Forget("tn_a")
			c.kms.set(true, 0)
			_, err = ring2.Tenant("tn_a", wrappedA)
			if !errors.Is(err, keys.ErrKEKUnavailable) || !errors.Is(err, keys.ErrKEKAccessDenied) {
				t.Fatalf("access denied by the KMS: %v; want ErrKEKAccessDenied", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.uri) || !strings.Contains(msg, "check custos's credentials") {
				t.Errorf("access-denied error does not name the URI and what to check: %s", msg)
			}
			for _, secret := range [][]byte{wrappedA, wrappedA[4:40]} {
				for _, enc := range []string{string(secret), base64.StdEncoding.EncodeToString(secret), hex.EncodeToString(secret)} {
					if strings.Contains(msg, enc) {
						t.Errorf("error carries the wrapped keyset: %s", msg)
					}
				}
			}
			if strings.Contains(msg, "not-a-real-secret") || strings.Contains(msg, "hvs.custos-test") {
				t.Errorf("error carries a credential: %s", msg)
			}
			if _, err := ring2.SystemAEAD("other", wrappedSys); !errors.Is(err, keys.ErrKEKUnavailable) {
				t.Errorf("system keyset under a denied KEK: %v; want ErrKEKUnavailable", err)
			}
			// Access restored: reads work again.
			c.kms.set(false, 0)
			if _, err := ring2.Tenant("tn_a", wrappedA); err != nil {
				t.Fatalf("after access was restored: %v", err)
			}
		})
	}
}

// TestVaultAppRole logs in with AppRole when no token is given, and again
// when Vault stops accepting the token it got.
func TestVaultAppRole(t *testing.T) {
	isolateEnv(t)
	f := newFakeKMS(t)
	tokens := &sync.Map{}
	srv := vaultServer(t, f, tokens)
	uri := "hcvault://" + strings.TrimPrefix(srv.URL, "http://") + "/transit/keys/custos-kek"
	t.Setenv("VAULT_ADDR", srv.URL)
	ctx := context.Background()
	if _, err := keys.OpenKEK(ctx, uri); err == nil || !strings.Contains(err.Error(), "VAULT_ROLE_ID") {
		t.Fatalf("no credentials: %v; want an error naming what to set", err)
	}
	t.Setenv("VAULT_ROLE_ID", "role-1")
	t.Setenv("VAULT_SECRET_ID", "wrong")
	if _, err := keys.OpenKEK(ctx, uri); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("bad AppRole secret: %v; want a refusal that does not echo the secret", err)
	}
	t.Setenv("VAULT_SECRET_ID", "secret-1")
	kek, err := keys.OpenKEK(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	ring := keys.NewKeyring(kek)
	_, wrapped, err := ring.NewTenantKeys("tn_a")
	if err != nil {
		t.Fatal(err)
	}
	tokens.Clear() // every token expired
	ring.Forget("tn_a")
	if _, err := ring.Tenant("tn_a", wrapped); err != nil {
		t.Fatalf("expired AppRole token was not renewed: %v", err)
	}
}

// TestKMSHostOnly refuses a Vault URI with no host when VAULT_ADDR is
// unset, and never sends a token to a host other than the URI's.
func TestKMSHostOnly(t *testing.T) {
	isolateEnv(t)
	t.Setenv("VAULT_TOKEN", "hvs.custos-test")
	if _, err := keys.OpenKEK(context.Background(), "hcvault:///transit/keys/k"); err == nil || !strings.Contains(err.Error(), "VAULT_ADDR") {
		t.Fatalf("hcvault URI with no host and no VAULT_ADDR: %v", err)
	}
	f := newFakeKMS(t)
	tokens := &sync.Map{}
	tokens.Store("hvs.custos-test", true)
	srv := vaultServer(t, f, tokens)
	t.Setenv("VAULT_ADDR", srv.URL) // another host than the URI's: not used
	t.Setenv("VAULT_MAX_RETRIES", "0")
	kek, err := keys.OpenKEK(context.Background(), "hcvault://127.0.0.1:1/transit/keys/custos-kek")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kek.Encrypt([]byte("x"), []byte("ad")); err == nil || !errors.Is(err, keys.ErrKEKUnavailable) {
		t.Fatalf("encrypt against the URI's (closed) host: %v", err)
	}
	if f.count() != 0 {
		t.Fatal("the token went to VAULT_ADDR's host, not the URI's")
	}
}

// TestVaultTransitLive runs against a real Vault or OpenBao transit
// engine: CUSTOS_TEST_VAULT_ADDR (e.g. http://127.0.0.1:8200 of
// `bao server -dev`) and CUSTOS_TEST_VAULT_TOKEN; it mounts transit if
// needed and creates the key custos-test.
func TestVaultTransitLive(t *testing.T) {
	addr, token := os.Getenv("CUSTOS_TEST_VAULT_ADDR"), os.Getenv("CUSTOS_TEST_VAULT_TOKEN")
	if addr == "" || token == "" {
		t.Skip("set CUSTOS_TEST_VAULT_ADDR and CUSTOS_TEST_VAULT_TOKEN to run against a real Vault/OpenBao")
	}
	isolateEnv(t)
	t.Setenv("VAULT_ADDR", addr)
	t.Setenv("VAULT_TOKEN", token)
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, strings.TrimSuffix(addr, "/")+"/v1/"+path, strings.NewReader(body))
		req.Header.Set("X-Vault-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	do("POST", "sys/mounts/transit", `{"type":"transit"}`) // 400 if mounted already
	if s := do("POST", "transit/keys/custos-test", `{"type":"aes256-gcm96"}`); s >= 300 {
		t.Fatalf("create transit key: HTTP %d", s)
	}
	host := addr[strings.Index(addr, "://")+3:]
	host = strings.TrimSuffix(host, "/")
	uri := "hcvault://" + host + "/transit/keys/custos-test"
	kek, err := keys.OpenKEK(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	ring := keys.NewKeyring(kek)
	_, wrappedA, err := ring.NewTenantKeys("tn_a")
	if err != nil {
		t.Fatal(err)
	}
	_, wrappedB, _ := ring.NewTenantKeys("tn_b")
	ring.Forget("tn_a")
	if _, err := ring.Tenant("tn_a", wrappedA); err != nil {
		t.Fatal(err)
	}
	ring.Forget("tn_a")
	if _, err := ring.Tenant("tn_a", wrappedB); err == nil {
		t.Fatal("the transit engine ignored the associated data: B's keys unwrapped as A's")
	}
	t.Setenv("VAULT_TOKEN", "hvs.not-a-token")
	kek, err = keys.OpenKEK(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.NewKeyring(kek).Tenant("tn_a", wrappedA); !errors.Is(err, keys.ErrKEKAccessDenied) || !strings.Contains(err.Error(), uri) {
		t.Fatalf("bad token: %v; want ErrKEKAccessDenied naming the URI", err)
	}
}
