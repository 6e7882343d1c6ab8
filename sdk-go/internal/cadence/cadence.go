// Package cadence says how often a worker heartbeats (HB-1, HB-2).
//
// The session heartbeat (a bare heartbeat frame, or a session heartbeat over long-poll) goes
// every 10 s after registration and renews no lease. The activity heartbeat of each attempt in
// flight goes every max(1000, floor(vt/3)) ms, or every 10 s when the task had no
// visibilityTimeout, so a lease is renewed about three times per visibility timeout.
package cadence

import (
	"math"
	"time"
)

// SessionHeartbeat is the default session heartbeat interval (HB-1).
const SessionHeartbeat = 10 * time.Second

const minActivityHeartbeatMs = 1000

// ActivityHeartbeat is the automatic activity-heartbeat interval for a task whose
// visibilityTimeout (ms) is vt, or nil when the task had none.
func ActivityHeartbeat(vt *float64) time.Duration {
	if vt == nil || math.IsNaN(*vt) || math.IsInf(*vt, 0) {
		return SessionHeartbeat
	}
	ms := max(minActivityHeartbeatMs, math.Floor(*vt/3))
	return time.Duration(ms) * time.Millisecond
}
