// Package endpoint turns the configured server URL into the addresses a worker uses (SDK-2).
//
// The server URL is either a base (http(s)://host:port[/prefix], or ws(s)://) to which the
// worker appends /api/v1/tasks/<queue>/stream, or a full stream URL (…/v1/tasks/<queue>/stream,
// with or without /api, as Weft's conformance harness passes it). A stream URL whose queue
// differs from the configured queue is a configuration error.
package endpoint

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// QueuePattern is the grammar of queue names (WS-2).
var QueuePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

var streamPath = regexp.MustCompile(`^(.*?)(/api)?/v1/tasks/([^/]+)/stream/?$`)

// Endpoints are the addresses derived from one server URL.
type Endpoints struct {
	// Stream is the worker WebSocket (ws:// or wss://).
	Stream string
	// Base is the HTTP base (http:// or https://, with any path prefix, no trailing slash);
	// the worker-session and Task API paths (/api/v1/…) are appended to it.
	Base string
	// Queue is the queue: the configured one, or the stream URL's when none was configured.
	Queue string
}

// Resolve derives the endpoints for queue from raw. An empty queue means the stream URL's
// queue, or "default" for a base URL.
func Resolve(raw, queue string) (Endpoints, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Endpoints{}, errors.New("must look like http://host:port (or https, ws, wss)")
	}
	var httpScheme, wsScheme string
	switch u.Scheme {
	case "http", "ws":
		httpScheme, wsScheme = "http", "ws"
	case "https", "wss":
		httpScheme, wsScheme = "https", "wss"
	default:
		return Endpoints{}, errors.New("must look like http://host:port (or https, ws, wss)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Endpoints{}, errors.New("must not carry a query or a fragment")
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	prefix := path
	if m := streamPath.FindStringSubmatch(u.EscapedPath()); m != nil {
		if queue != "" && queue != m[3] {
			return Endpoints{}, fmt.Errorf("is the stream of queue %q, but the queue is %q", m[3], queue)
		}
		queue = m[3]
		prefix = m[1]
		path = strings.TrimSuffix(u.EscapedPath(), "/")
	} else {
		if queue == "" {
			queue = "default"
		}
		path = prefix + "/api/v1/tasks/" + queue + "/stream"
	}
	if !QueuePattern.MatchString(queue) {
		return Endpoints{}, fmt.Errorf("names queue %q, which does not match [A-Za-z0-9_-]+", queue)
	}
	return Endpoints{
		Stream: wsScheme + "://" + u.Host + path,
		Base:   httpScheme + "://" + u.Host + prefix,
		Queue:  queue,
	}, nil
}
