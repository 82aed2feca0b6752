// Package witness gets the log's checkpoints cosigned by independent
// witnesses and checks cosignatures for those who verify the log.
//
// A witness (C2SP tlog-witness, https://c2sp.org/tlog-witness) remembers
// the newest checkpoint it cosigned for the log and cosigns a new one only
// with a consistency proof from that one: it never cosigns two
// checkpoints that are not one history. A [Cosigner] sends each new
// checkpoint to every configured witness and stores the cosignatures
// (C2SP tlog-cosignature, cosignature/v1) it gets back; a [Policy] — k of
// n named witnesses — is what a client requires of a checkpoint before it
// trusts it. With the policy, a vendor holding log.key can no longer show
// one tenant a history the others do not see, roll the log back to an
// older backup, or re-sign a rewritten history: the witnesses refuse to
// cosign it, and a checkpoint without their cosignatures is not trusted.
//
// Cosignatures are made and checked with golang.org/x/mod/sumdb/note and
// github.com/transparency-dev/formats/note; this package builds no
// signed message itself.
package witness

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Witness is one witness as custos.json's log.witnesses names it.
type Witness struct {
	// Name is the witness's name; it must be the name in Key.
	Name string `json:"name"`
	// URL is the witness's submission prefix: add-checkpoint is POSTed to
	// URL + "/add-checkpoint".
	URL string `json:"url"`
	// Key is the witness's verifier key (C2SP signed-note vkey): an
	// Ed25519 key, or the same key in its cosignature/v1 form.
	Key string `json:"key"`
}

// Verifier checks w's configuration and returns the cosignature/v1
// verifier of its key. Only Ed25519 cosignature/v1 keys are supported;
// any other key type is refused rather than skipped, so that a policy
// never silently counts fewer witnesses than it names.
func (w Witness) Verifier() (note.Verifier, error) {
	if w.Name == "" {
		return nil, errors.New("name is required")
	}
	v, err := ParseKey(w.Key)
	if err != nil {
		return nil, fmt.Errorf("witness %q: %w", w.Name, err)
	}
	if v.Name() != w.Name {
		return nil, fmt.Errorf("witness %q: the key is named %q: name and key must agree", w.Name, v.Name())
	}
	if w.URL != "" {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("witness %q: url %q must be an http(s) URL with a host and no query, fragment or credentials", w.Name, w.URL)
		}
	}
	return v, nil
}

// ParseKey parses a witness's verifier key: "name+hash+base64", an
// Ed25519 (algorithm 1) or Ed25519 cosignature/v1 (algorithm 4) key.
func ParseKey(vkey string) (note.Verifier, error) {
	vkey = strings.TrimSpace(vkey)
	if vkey == "" {
		return nil, errors.New("key is required")
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("key: %w (only Ed25519 cosignature/v1 witness keys are supported)", err)
	}
	return v, nil
}
