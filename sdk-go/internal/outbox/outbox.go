// Package outbox keeps a worker's results until the server answers for them (OUTBOX-1…5).
//
// Every result goes in before it is sent and stays until the server answers for that exact
// (operationId, attemptToken): a taskResultAck of any disposition, or a correlated refusal (a
// protocolError naming the pair over a WebSocket, a 403 naming it over long-poll). Nothing
// else removes an entry, not a timeout and not a close, so after every (re)registration
// Pending gives back everything still owed, in the order it was produced.
//
// The outbox is bounded: when Full, the worker takes no new task. Results of attempts that
// are already running are always kept, even past the bound. An Outbox is not safe for
// concurrent use; its owner locks around it.
package outbox

import "encoding/json"

// DefaultLimit is Weft's bound on unacknowledged results (OUTBOX-4).
const DefaultLimit = 1000

// Key identifies one attempt's result.
type Key struct {
	OperationID  string
	AttemptToken string
}

// Result is one attempt's outcome, in a form every transport can encode.
type Result struct {
	Key
	// Status is "completed", "failed" or "cancelled".
	Status string
	// Value is the completed value's JSON.
	Value json.RawMessage
	// Error is the failure text or the cancellation reason.
	Error string
	// WorkflowRevision is echoed from the task when it had one (DISPATCH-7).
	WorkflowRevision *string
	// Via names the worker identity that held the attempt (a long-poll session id), if any.
	Via string
}

// Outbox holds unacknowledged results in insertion order.
type Outbox struct {
	limit   int
	order   []Key
	entries map[Key]Result
}

// New makes an outbox bounded at limit entries (DefaultLimit when limit < 1).
func New(limit int) *Outbox {
	if limit < 1 {
		limit = DefaultLimit
	}
	return &Outbox{limit: limit, entries: make(map[Key]Result)}
}

// Len is the number of results still owed.
func (o *Outbox) Len() int { return len(o.entries) }

// Full reports whether the worker must take no new task until acknowledgements arrive.
func (o *Outbox) Full() bool { return len(o.entries) >= o.limit }

// Put keeps r until it is settled. The same key again changes nothing: the first result of
// an attempt is the one owed, since a resend must carry the same content (RESULT-7).
func (o *Outbox) Put(r Result) {
	if _, ok := o.entries[r.Key]; ok {
		return
	}
	o.entries[r.Key] = r
	o.order = append(o.order, r.Key)
}

// Settle forgets the result for k: the server answered for it. It reports whether k was held.
func (o *Outbox) Settle(k Key) (Result, bool) {
	r, ok := o.entries[k]
	if !ok {
		return Result{}, false
	}
	delete(o.entries, k)
	for i, key := range o.order {
		if key == k {
			o.order = append(o.order[:i], o.order[i+1:]...)
			break
		}
	}
	return r, true
}

// Get returns the result held for k.
func (o *Outbox) Get(k Key) (Result, bool) {
	r, ok := o.entries[k]
	return r, ok
}

// Pending returns every result still owed, oldest first (OUTBOX-3).
func (o *Outbox) Pending() []Result {
	out := make([]Result, 0, len(o.order))
	for _, k := range o.order {
		out = append(out, o.entries[k])
	}
	return out
}
