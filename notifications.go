package custos

// NotificationPrefs are one principal's mail preferences: the
// informational topics it chose not to be mailed about. Security topics
// (access asked for or used, break-glass, containment, new principals,
// deletions) cannot be muted; Mutable lists those that can.
type NotificationPrefs struct {
	PrincipalID string   `json:"principal_id"`
	Muted       []string `json:"muted"`
	Mutable     []string `json:"mutable"` // set by the server; ignored in a request
}

// MaxMutedTopics bounds a preferences request.
const MaxMutedTopics = 50
