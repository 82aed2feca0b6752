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

// Ungate drops the gates of rules (gate.go): every rule's program then
// runs on every event, as before gates.
func Ungate(rules []*Rule) {
	for _, r := range rules {
		r.gate = nil
	}
}

// RaceDetector is set under the race detector (race_on_test.go).
const RaceDetector = raceDetector
