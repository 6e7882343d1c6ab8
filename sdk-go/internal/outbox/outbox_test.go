package outbox

import "testing"

func key(op string) Key { return Key{OperationID: op, AttemptToken: "t-" + op} }

func TestOutboxKeepsInsertionOrderUntilSettled(t *testing.T) {
	o := New(3)
	for _, op := range []string{"a", "b", "c"} {
		o.Put(Result{Key: key(op), Status: "completed"})
	}
	if !o.Full() || o.Len() != 3 {
		t.Fatalf("len %d full %v", o.Len(), o.Full())
	}
	o.Put(Result{Key: key("b"), Status: "failed"}) // the first result of an attempt is the one owed
	if r, _ := o.Get(key("b")); r.Status != "completed" {
		t.Fatalf("replaced: %+v", r)
	}
	if _, ok := o.Settle(key("b")); !ok {
		t.Fatal("b not held")
	}
	if _, ok := o.Settle(key("b")); ok {
		t.Fatal("b settled twice")
	}
	if _, ok := o.Settle(Key{OperationID: "a", AttemptToken: "other"}); ok {
		t.Fatal("settled by operation id alone")
	}
	var order []string
	for _, r := range o.Pending() {
		order = append(order, r.OperationID)
	}
	if len(order) != 2 || order[0] != "a" || order[1] != "c" || o.Full() {
		t.Fatalf("pending %v full %v", order, o.Full())
	}
}

func TestOutboxKeepsResultsPastTheBound(t *testing.T) {
	o := New(1)
	o.Put(Result{Key: key("a")})
	o.Put(Result{Key: key("b")})
	if o.Len() != 2 || !o.Full() {
		t.Fatalf("len %d", o.Len())
	}
	if New(0).limit != DefaultLimit {
		t.Fatal("default limit")
	}
}
