package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The wire format of C2SP tlog-witness add-checkpoint
// (https://c2sp.org/tlog-witness).

// maxProofLines is the most consistency proof lines a request may carry.
const maxProofLines = 63

// AddCheckpointBody is the body of an add-checkpoint request: the old size
// line, one base64 hash per consistency proof line, an empty line, and the
// signed checkpoint.
func AddCheckpointBody(oldSize uint64, proof tlog.TreeProof, checkpoint []byte) ([]byte, error) {
	if len(proof) > maxProofLines {
		return nil, fmt.Errorf("consistency proof of %d hashes: at most %d", len(proof), maxProofLines)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", oldSize)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(checkpoint)
	return b.Bytes(), nil
}

// maxResponseBytes bounds what is read of a witness's answer.
const maxResponseBytes = 64 << 10

// ParseSize parses the body of a 409 Conflict answer (text/x.tlog.size):
// the witness's latest cosigned size in decimal and a newline.
func ParseSize(body []byte) (uint64, error) {
	s, ok := bytes.CutSuffix(body, []byte("\n"))
	if !ok || len(s) == 0 || len(s) > 20 {
		return 0, errors.New("witness size: not a decimal size and a newline")
	}
	n, err := strconv.ParseUint(string(s), 10, 63)
	if err != nil || strconv.FormatUint(n, 10) != string(s) {
		return 0, errors.New("witness size: not a decimal size without leading zeroes")
	}
	return n, nil
}

// ParseCosignature finds, in the body of a 200 answer to add-checkpoint
// (note signature lines), the cosignature of checkpoint by the witness v,
// and returns its line ("— name base64", no newline). Lines of other keys
// are ignored, as the protocol asks; a line of v that does not verify, or
// no line of v, is an error.
func ParseCosignature(body, checkpoint []byte, v note.Verifier) (string, error) {
	if len(body) == 0 || body[len(body)-1] != '\n' {
		return "", errors.New("cosignature: the answer is not signature lines")
	}
	// The answer's lines appended to the checkpoint form a signed note
	// whose signatures note.Open checks (the protocol's own advice).
	n, err := note.Open(append(bytes.Clone(checkpoint), body...), note.VerifierList(v))
	if err != nil {
		return "", fmt.Errorf("cosignature: %w", err)
	}
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			return "— " + s.Name + " " + s.Base64, nil
		}
	}
	return "", errors.New("cosignature: none by the witness's key")
}
