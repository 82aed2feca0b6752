package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
)

// The local mailbox: with no SMTP relay configured, enrollment mails are
// files under the data directory's mail/ (notify.MailDir). The demo and
// the tests read them there, as a holder would read its inbox.

// awaitEnrollment waits up to 10 s for a new enrollment mail to email in
// mailDir (one not in seen) and returns the secret in it.
func awaitEnrollment(ctx context.Context, mailDir, email string, seen map[string]bool) (string, error) {
	addr, err := custos.NormalizeIdentity(email)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(60 * time.Second) // generous: CI runs packages in parallel on 2 cores
	for {
		files, _ := filepath.Glob(filepath.Join(mailDir, addr, "*.eml"))
		sort.Strings(files)
		for _, f := range files {
			if seen[f] {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return "", err
			}
			if s := custos.FindEnrollmentSecret(string(b)); s != "" {
				seen[f] = true
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no enrollment mail for %s in %s", addr, mailDir)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// enrollFrom reads the next enrollment mail of email and sets up a key
// with it, as `custos enroll` does; it returns the key.
func enrollFrom(ctx context.Context, c *client.Client, mailDir, email string, seen map[string]bool, scopes ...custos.Scope) (string, error) {
	secret, err := awaitEnrollment(ctx, mailDir, email, seen)
	if err != nil {
		return "", err
	}
	res, err := c.Enroll(ctx, custos.EnrollRequest{Secret: secret, KeyRequest: custos.KeyRequest{Scopes: scopes, ExpiresIn: "24h"}})
	if err != nil {
		return "", err
	}
	return res.Secret, nil
}
