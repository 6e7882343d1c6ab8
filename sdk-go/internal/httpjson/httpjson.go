// Package httpjson makes the SDK's HTTP requests with JSON bodies: the Task API client and the
// worker-session transport share one encoder, one credential header and one bounded reader.
package httpjson

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
)

// MaxBodyBytes bounds how much of an answer is read (the WebSocket frame cap, FRAME-3).
const MaxBodyBytes = 4 << 20

// Auth is the credential header for an API key (SDK-3); empty when there is no key.
func Auth(apiKey string) http.Header {
	header := http.Header{}
	if apiKey != "" {
		header.Set("Authorization", "Bearer "+apiKey)
	}
	return header
}

// Do sends one request, body JSON-encoded when not nil, with header added, and returns the
// status and the (bounded) answer body.
func Do(ctx context.Context, client *http.Client, method, url string, header http.Header, body any) (int, []byte, error) {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, reader)
	if err != nil {
		return 0, nil, err
	}
	req.Header = header.Clone()
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, data, nil
}
