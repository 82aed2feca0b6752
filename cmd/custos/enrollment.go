package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/custos-dev/custos"
)

func (m *Main) runEnrollmentLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("enrollment ls", `[--status S]`, `custos enrollment ls --status pending`)
	status := fs.String("status", "", "only these: pending, issued, used or denied")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	return listing(a, a.client().Enrollments(ctx, *status), "ID\tPRINCIPAL\tTENANT\tREQUESTED BY\tAPPROVAL\tSTATUS\tCREATED", func(tw io.Writer, e *custos.Enrollment) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.PrincipalID, dash(e.TenantID), e.RequestedBy, e.Approval, e.Status, e.CreatedAt.Format(time.RFC3339))
	})
}

// enrollmentDecide runs "custos enrollment approve|deny ID".
func enrollmentDecide(verb string) func(*Main, context.Context, []string) error {
	return func(m *Main, ctx context.Context, args []string) error {
		fs, a := m.clientFlags("enrollment "+verb, `ENROLLMENT`, `custos enrollment `+verb+` en_…`)
		pos, err := fs.parse(args, 1, 1)
		if err != nil {
			return err
		}
		decide := a.client().ApproveEnrollment
		if verb == "deny" {
			decide = a.client().DenyEnrollment
		}
		return a.printer().enrollment(decide(ctx, pos[0]))
	}
}

// enrollment prints where an enrollment a call returned stands, or the
// call's error.
func (p *printer) enrollment(e *custos.Enrollment, err error) error {
	if err != nil {
		return err
	}
	return p.one(e, "%s", enrollmentState(e))
}

// enrollmentState says in a line where an enrollment stands.
func enrollmentState(e *custos.Enrollment) string {
	switch e.Status {
	case custos.EnrollIssued:
		return "enrollment " + e.ID + " sent to the holder's address; they run custos enroll with the secret in it"
	case custos.EnrollPending:
		switch e.Approval {
		case custos.ApprovalTenantAdmin:
			return "enrollment " + e.ID + " waits for one of the tenant's admins (custos enrollment approve " + e.ID + ")"
		case custos.ApprovalRecovery:
			return "enrollment " + e.ID + " is a tenant admin recovery: a second operator may approve it after " + e.NotBefore.Format(time.RFC3339)
		}
		return "enrollment " + e.ID + " waits for a second operator or security identity (custos enrollment approve " + e.ID + ")"
	}
	return "enrollment " + e.ID + " " + e.Status
}
