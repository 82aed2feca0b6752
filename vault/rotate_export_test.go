package vault

import "context"

// RewrapStep runs one step of a started rewrap from its stored cursor, as
// a rewrap cut short by a crash leaves it: batch rows at most. It reports
// whether the step ended a pass.
func RewrapStep(ctx context.Context, v *Vault, tenant string, batch int) (bool, error) {
	r, err := v.loadRotation(ctx, tenant)
	if err != nil {
		return false, err
	}
	p := v.prepareRewrap(ctx, tenant, rewrapCursor{r.cursorList, r.cursorTok}, batch)
	if p.err != nil || p.end {
		return p.end, p.err
	}
	_, err = v.commitPrepared(ctx, tenant, p, &rewrapPass{})
	return false, err
}
