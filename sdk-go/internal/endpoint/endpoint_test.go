package endpoint

import "testing"

func TestResolve(t *testing.T) {
	cases := []struct {
		raw, queue          string
		stream, base, wantQ string
	}{
		{"http://h:7233", "", "ws://h:7233/api/v1/tasks/default/stream", "http://h:7233", "default"},
		{"https://h/prefix/", "q1", "wss://h/prefix/api/v1/tasks/q1/stream", "https://h/prefix", "q1"},
		{"ws://h:1", "q", "ws://h:1/api/v1/tasks/q/stream", "http://h:1", "q"},
		{"ws://127.0.0.1:9/v1/tasks/conformance/stream", "", "ws://127.0.0.1:9/v1/tasks/conformance/stream", "http://127.0.0.1:9", "conformance"},
		{"wss://h/p/api/v1/tasks/c/stream", "c", "wss://h/p/api/v1/tasks/c/stream", "https://h/p", "c"},
	}
	for _, c := range cases {
		got, err := Resolve(c.raw, c.queue)
		if err != nil {
			t.Fatalf("%s: %v", c.raw, err)
		}
		if got.Stream != c.stream || got.Base != c.base || got.Queue != c.wantQ {
			t.Errorf("%s %q: got %+v", c.raw, c.queue, got)
		}
	}
	for _, bad := range [][2]string{
		{"ftp://h", ""},
		{"h:7233", ""},
		{"http://h/v1/tasks/a/stream", "b"},
		{"http://h?x=1", ""},
		{"http://h", "bad queue"},
	} {
		if _, err := Resolve(bad[0], bad[1]); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}
