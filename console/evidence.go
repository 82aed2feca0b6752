package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/vault"
)

// An alert's evidence is log indexes; each links here: the entry, checked
// against the log before it is shown (its body and salt open its leaf,
// the inclusion proof leads to the signed root of the checkpoint receipts
// use), and the proof to download for custos verify-proof. The vault reads
// and records it (log.evidence), for security staff only.

type entryView struct {
	Index     uint64
	Leaf      audit.Leaf
	Size      uint64 // the checkpoint it is proved in
	Failed    string // why it does not check, if it does not
	Uncovered bool   // not yet in a checkpoint
}

func parseIndex(r *http.Request) (uint64, error) {
	i, err := strconv.ParseUint(r.PathValue("index"), 10, 63)
	if err != nil {
		return 0, custos.Errorf(custos.EINVALID, "index: a log entry's index, a whole number")
	}
	return i, nil
}

// tampered reports whether err says the entry or its proof does not check
// (rather than that it could not be read).
func tampered(err error) bool {
	var ve *audit.VerifyError
	return errors.Is(err, audit.ErrBadProof) || errors.As(err, &ve)
}

func (c *Console) evidenceEntry(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	idx, err := parseIndex(r)
	if err != nil {
		return c.vault.Reject(r.Context(), custos.ActionEvidenceEntry, "", err)
	}
	v := entryView{Index: idx}
	p, cp, err := c.vault.ProvenEntry(r.Context(), idx)
	switch {
	case err == nil:
		if err := json.Unmarshal(p.Body(), &v.Leaf); err != nil {
			return err
		}
		v.Size = cp.Size
	case tampered(err):
		v.Failed = err.Error()
	case custos.ErrorCode(err) == custos.EINVALID:
		v.Uncovered = true
	default:
		return err
	}
	status := http.StatusOK
	if v.Failed != "" {
		status = http.StatusConflict
	}
	c.render(w, r, status, "entry", c.view(r, s, "Log entry "+strconv.FormatUint(idx, 10), "alerts", v))
	return nil
}

// evidenceProof downloads the entry's proof in the tlog-proof format:
// custos verify-proof FILE --log-key log.pub checks it with no server.
func (c *Console) evidenceProof(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	idx, err := parseIndex(r)
	if err != nil {
		return c.vault.Reject(r.Context(), custos.ActionEvidenceEntry, "", err)
	}
	p, _, err := c.vault.ProvenEntry(r.Context(), idx)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="entry-`+strconv.FormatUint(idx, 10)+`.proof"`)
	_, err = w.Write(p.Marshal())
	return err
}
