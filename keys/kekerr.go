package keys

import "errors"

// ErrKEKUnavailable is wrapped by every error of a KMS call that did not
// answer, refused custos's credentials, or does not know the key: the
// data it guards is unreadable until the KMS answers again (fail
// closed). A ciphertext the KMS merely refuses to open is not this.
var ErrKEKUnavailable = errors.New("key-encryption key unavailable")

// ErrKEKAccessDenied is wrapped (beside [ErrKEKUnavailable]) when the KMS
// refused custos's credentials or their permission on the key.
var ErrKEKAccessDenied = errors.New("access to the key-encryption key denied")
