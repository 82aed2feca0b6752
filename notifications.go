package custos

// NotificationPrefs are one principal's mail preferences: the
// informational topics it chose not to be mailed about. Security topics
// (access asked for or used, break-glass, containment, new principals,
// deletions) cannot be muted; Mutable lists those that can.
type NotificationPrefs struct {
	PrincipalID string   `json:"principal_id"`
	Muted       []string `json:"muted"`
	Mutable     []string `json:"mutable"` // the topics that may be muted
}

// NotificationPrefsRequest replaces a principal's muted topics.
type NotificationPrefsRequest struct {
	Muted []string `json:"muted"`
}

// MaxMutedTopics bounds a preferences request.
const MaxMutedTopics = 50
