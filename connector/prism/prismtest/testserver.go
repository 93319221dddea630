package prismtest

import (
	"net/http/httptest"
	"testing"
)

// TestServer is a Server listening on a loopback httptest.Server.
type TestServer struct {
	*Server
	// HTTP is the underlying listener; HTTP.Client() talks to it.
	HTTP *httptest.Server
	// URL is the base URL (no trailing slash), e.g. "http://127.0.0.1:41234".
	URL string
}

// NewServer starts a fake on a loopback port and shuts it down (releasing
// hung requests first) when the test ends.
func NewServer(t testing.TB, opts Options) *TestServer {
	t.Helper()
	s := New(opts)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return &TestServer{Server: s, HTTP: hs, URL: hs.URL}
}

// ImportURL is the import endpoint of an object type for team.
func (ts *TestServer) ImportURL(team, object string) string {
	return ts.URL + "/v2/prism/" + team + "/" + object + "/import"
}

// JobURL is the poll endpoint of a job for team.
func (ts *TestServer) JobURL(team, jobID string) string {
	return ts.URL + "/v2/prism/" + team + "/imports/" + jobID
}
