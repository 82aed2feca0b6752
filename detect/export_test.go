package detect

import "encoding/json"

// StateJSON returns the detector's whole evaluation state as JSON,
// windows' points included ("" before its first step).
func (d *Detector) StateJSON() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.engine == nil {
		return ""
	}
	b, _ := json.Marshal(d.engine.State)
	return string(b)
}
