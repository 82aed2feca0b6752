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
	_, end, err := v.rewrapStep(ctx, tenant, rewrapCursor{r.cursorList, r.cursorTok}, batch, &rewrapPass{})
	return end, err
}
