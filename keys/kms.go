//go:build !custos_nokms

package keys

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/smithy-go"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/tink-crypto/tink-go-awskms/v3/integration/awskms"
	"github.com/tink-crypto/tink-go-gcpkms/v2/integration/gcpkms"
	"github.com/tink-crypto/tink-go-hcvault/v2/integration/hcvault"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// The KMS clients built into custos, selected by the KEK URI's scheme.
// Each takes its credentials from its environment's usual places; see
// docs/keys.md.
const (
	schemeHCVault = "hcvault"
	schemeAWSKMS  = "aws-kms"
	schemeGCPKMS  = "gcp-kms"
)

// builtinKMS reports whether custos has a client of its own for uri's
// scheme, and opens it.
func builtinKMS(ctx context.Context, uri string) (tink.AEAD, bool, error) {
	scheme, _, _ := strings.Cut(uri, "://")
	var (
		a       tink.AEAD
		err     error
		retries int
	)
	switch scheme {
	case schemeHCVault:
		a, err = openHCVault(uri)
	case schemeAWSKMS:
		a, err = openAWSKMS(ctx, uri)
	case schemeGCPKMS:
		// The REST client of Cloud KMS does not retry; the Vault and
		// AWS clients do (retryablehttp, the SDK's standard retryer).
		a, err = openGCPKMS(ctx, uri)
		retries = 3
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("open KEK %s: %w", uri, err)
	}
	return &kmsAEAD{uri: uri, aead: a, attempts: 1 + retries}, true, nil
}

// openHCVault opens a Vault (or OpenBao) transit key,
// hcvault://HOST[:PORT]/transit/keys/NAME (any mount path before
// /keys/NAME). The address is https://HOST:PORT; VAULT_ADDR is used
// instead when the URI has no host or names the same host (so a dev
// server on http:// works). The token is VAULT_TOKEN, or an AppRole
// login with VAULT_ROLE_ID and VAULT_SECRET_ID (repeated when the token
// is refused, so an expired token renews itself). VAULT_CACERT,
// VAULT_NAMESPACE, VAULT_MAX_RETRIES and the other VAULT_* settings of
// Vault's own client apply.
func openHCVault(uri string) (tink.AEAD, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, errors.New("malformed hcvault URI")
	}
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault settings: %w", cfg.Error)
	}
	envAddr := os.Getenv(vaultapi.EnvVaultAddress)
	switch {
	case u.Host == "" && envAddr == "":
		return nil, errors.New("the URI names no Vault host and VAULT_ADDR is not set")
	case u.Host == "":
		// cfg.Address is VAULT_ADDR already.
	default:
		if ea, err := url.Parse(envAddr); envAddr == "" || err != nil || ea.Host != u.Host {
			cfg.Address = "https://" + u.Host
		}
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	v := &vaultAEAD{client: c, roleID: os.Getenv("VAULT_ROLE_ID"), secretID: os.Getenv("VAULT_SECRET_ID")}
	if c.Token() == "" {
		if v.roleID == "" || v.secretID == "" {
			return nil, errors.New("no Vault credentials: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID for an AppRole login")
		}
		if err := v.login(); err != nil {
			return nil, err
		}
	} else {
		v.roleID, v.secretID = "", "" // a token given is used as given
	}
	kc, err := hcvault.NewClientWithAEADOptions("hcvault://", c.Logical())
	if err != nil {
		return nil, err
	}
	// The default AEAD option sends the associated data as transit's
	// associated_data (Vault 1.13+, OpenBao): AES-GCM binds it, so a
	// wrapped keyset does not unwrap under another tenant's name.
	v.aead, err = kc.GetAEAD("hcvault://" + u.Host + u.EscapedPath())
	if err != nil {
		return nil, err
	}
	return v, nil
}

// vaultAEAD logs in again with AppRole when Vault refuses the token.
type vaultAEAD struct {
	aead             tink.AEAD
	client           *vaultapi.Client
	roleID, secretID string
	mu               sync.Mutex
}

func (v *vaultAEAD) login() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, err := v.client.Logical().Write("auth/approle/login", map[string]any{"role_id": v.roleID, "secret_id": v.secretID})
	if err != nil {
		return fmt.Errorf("vault AppRole login: %w", err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return errors.New("vault AppRole login: no token in the answer")
	}
	v.client.SetToken(s.Auth.ClientToken)
	return nil
}

func (v *vaultAEAD) call(f func() ([]byte, error)) ([]byte, error) {
	out, err := f()
	if err != nil && v.roleID != "" && httpStatus(err) == http.StatusForbidden {
		if lerr := v.login(); lerr != nil {
			return nil, err
		}
		return f()
	}
	return out, err
}

func (v *vaultAEAD) Encrypt(p, ad []byte) ([]byte, error) {
	return v.call(func() ([]byte, error) { return v.aead.Encrypt(p, ad) })
}

func (v *vaultAEAD) Decrypt(c, ad []byte) ([]byte, error) {
	return v.call(func() ([]byte, error) { return v.aead.Decrypt(c, ad) })
}

// openAWSKMS opens an AWS KMS key, aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID
// (or an alias ARN), with the AWS SDK's default chain: AWS_ACCESS_KEY_ID
// and friends, ~/.aws, web identity, ECS and EC2 roles. AWS_ENDPOINT_URL_KMS
// points it at another endpoint (a VPC endpoint, a test server).
func openAWSKMS(ctx context.Context, uri string) (tink.AEAD, error) {
	kc, err := awskms.NewClientWithOptions(ctx, uri)
	if err != nil {
		return nil, err
	}
	return kc.GetAEAD(uri)
}

// openGCPKMS opens a Cloud KMS key,
// gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K, over REST
// with Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
// gcloud's, or the metadata server). CUSTOS_GCP_KMS_ENDPOINT points it at
// another endpoint (Private Service Connect, a test server).
func openGCPKMS(ctx context.Context, uri string) (tink.AEAD, error) {
	var opts []option.ClientOption
	if ep := os.Getenv("CUSTOS_GCP_KMS_ENDPOINT"); ep != "" {
		opts = append(opts, option.WithEndpoint(ep))
	}
	// The token source outlives the call that opens the KEK.
	kc, err := gcpkms.NewClient(context.WithoutCancel(ctx), uri, gcpkms.WithTransport(gcpkms.TransportREST), gcpkms.WithGoogleAPIClientOptions(opts...))
	if err != nil {
		return nil, err
	}
	return kc.GetAEAD(uri)
}

// kmsAEAD turns a KMS client's errors into ones that name the KEK's URI
// and say what an operator should check, and retries what may pass.
type kmsAEAD struct {
	uri      string
	aead     tink.AEAD
	attempts int
}

func (k *kmsAEAD) Encrypt(p, ad []byte) ([]byte, error) {
	return k.do("encrypt", func() ([]byte, error) { return k.aead.Encrypt(p, ad) })
}

func (k *kmsAEAD) Decrypt(c, ad []byte) ([]byte, error) {
	return k.do("decrypt", func() ([]byte, error) { return k.aead.Decrypt(c, ad) })
}

func (k *kmsAEAD) do(op string, f func() ([]byte, error)) ([]byte, error) {
	var err error
	for i := range k.attempts {
		if i > 0 {
			time.Sleep(time.Duration(100<<i) * time.Millisecond)
		}
		var out []byte
		out, err = f()
		if err == nil {
			return out, nil
		}
		if s := httpStatus(err); s != 0 && s != http.StatusTooManyRequests && s < 500 {
			break
		}
	}
	return nil, kmsError(k.uri, op, err)
}

// kmsError classifies a KMS client's error. The message names the URI
// and the operation; the KMS's own words follow for the operator (KMS
// errors carry request ids and key names, never key material).
func kmsError(uri, op string, err error) error {
	status, code := httpStatus(err), apiCode(err)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden || code == "AccessDeniedException" ||
		code == "UnrecognizedClientException" || code == "InvalidSignatureException" || code == "ExpiredTokenException":
		return fmt.Errorf("KEK %s: %s: %w (HTTP %d): check custos's credentials and their permission on this key: %w: %v", uri, op, ErrKEKAccessDenied, status, ErrKEKUnavailable, err)
	case status == http.StatusNotFound || code == "NotFoundException" || code == "DisabledException" || code == "KMSInvalidStateException":
		return fmt.Errorf("KEK %s: %s: the KMS has no usable key by that name (HTTP %d): %w: %v", uri, op, status, ErrKEKUnavailable, err)
	case status == http.StatusBadRequest || code == "InvalidCiphertextException":
		return fmt.Errorf("KEK %s: %s: the KMS refused the request (HTTP %d): %v", uri, op, status, err)
	default:
		return fmt.Errorf("KEK %s: %s: the KMS did not answer (HTTP %d): %w: %v", uri, op, status, ErrKEKUnavailable, err)
	}
}

// httpStatus is the HTTP status of a KMS client's error, 0 if none.
func httpStatus(err error) int {
	var ve *vaultapi.ResponseError
	if errors.As(err, &ve) {
		return ve.StatusCode
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	var ae interface{ HTTPStatusCode() int }
	if errors.As(err, &ae) {
		return ae.HTTPStatusCode()
	}
	return 0
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
