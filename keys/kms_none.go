//go:build custos_nokms

package keys

import (
	"context"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// builtinKMS, in a build with the tag custos_nokms, has no KMS client:
// such a binary takes local:// KEKs and clients registered with
// [RegisterKMSClient] only. It exists to measure what the clients cost
// (docs/benchmarks.md, aa) and for builds that want none.
func builtinKMS(context.Context, string) (tink.AEAD, bool, error) { return nil, false, nil }
