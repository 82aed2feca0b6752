package console

import (
	"net/http"
	"slices"

	"github.com/custos-dev/custos/vault"
)

// Notification preferences (GET and PUT /v1/principals/{id}/notifications):
// each principal mutes its own informational topics; security notices
// cannot be muted (the vault refuses, and the page offers only the topics
// that may be).

type notificationsView struct {
	Topics []mutedTopic
}

type mutedTopic struct {
	Topic string
	Muted bool
}

func (c *Console) notifications(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	prefs, err := c.vault.NotificationPrefs(r.Context(), principal(r.Context()).ID)
	if err != nil {
		return err
	}
	v := notificationsView{}
	for _, t := range prefs.Mutable {
		v.Topics = append(v.Topics, mutedTopic{t, slices.Contains(prefs.Muted, t)})
	}
	c.render(w, r, http.StatusOK, "notifications", c.view(r, s, "Notifications", "account", v))
	return nil
}

func (c *Console) setNotifications(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	mute := r.PostForm["mute"]
	if mute == nil {
		mute = []string{}
	}
	if _, err := c.vault.SetNotificationPrefs(r.Context(), principal(r.Context()).ID, mute); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/account/notifications", http.StatusSeeOther)
	return nil
}
