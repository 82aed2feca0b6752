package main

import (
	"context"
	"slices"
	"strings"
)

// runNotifications runs "custos notifications": shows your notification
// preferences and, with --mute or --unmute, changes them. Only
// informational topics can be muted; security notices always go out.
func (m *Main) runNotifications(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("notifications", `--principal ME [--mute TOPIC]… [--unmute TOPIC]…`, `custos notifications --principal pr_… --mute grant.expiring`)
	principal := fs.String("principal", "", "your principal id (required): nobody sets another's preferences")
	var mute, unmute multiFlag
	fs.Var(&mute, "mute", "stop mails about this informational topic (repeatable)")
	fs.Var(&unmute, "unmute", "mail this topic again (repeatable)")
	if _, err := fs.parse(args, 0, 0, "principal"); err != nil {
		return err
	}
	c := a.client()
	p, err := c.NotificationPrefs(ctx, *principal)
	if err != nil {
		return err
	}
	if len(mute)+len(unmute) > 0 {
		muted := slices.DeleteFunc(append(slices.Clone(p.Muted), mute...), func(t string) bool { return slices.Contains(unmute, t) })
		if p, err = c.SetNotificationPrefs(ctx, *principal, muted); err != nil {
			return err
		}
	}
	return a.printer().one(p, "muted: %s\nmay be muted: %s\nevery other notice (security) always goes out", orNone(p.Muted), strings.Join(p.Mutable, " "))
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, " ")
}
