package prismtest

import (
	"net"
	"net/http"
	"time"
)

// TB is the part of testing.TB that NewServer needs; *testing.T, *testing.B
// and *testing.F satisfy it. It is declared here rather than taken from
// package testing, so that programs that serve the fake (prismsync demo and
// bench) do not link the testing package.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// TestServer is a Server listening on a loopback port.
type TestServer struct {
	*Server
	// URL is the base URL (no trailing slash), e.g. "http://127.0.0.1:41234".
	URL string
	// Client sends requests to the fake; its idle connections are closed
	// with the server.
	Client *http.Client
}

// NewServer starts a fake on a loopback port and shuts it down (releasing
// hung requests first) when the test ends.
func NewServer(t TB, opts Options) *TestServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if ln, err = net.Listen("tcp6", "[::1]:0"); err != nil {
			t.Fatalf("prismtest: listen on a loopback port: %v", err)
		}
	}
	s := New(opts)
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // ErrServerClosed once the test ends
	tr := &http.Transport{}
	t.Cleanup(func() {
		s.Close() // first, so hung handlers answer instead of holding connections
		hs.Close()
		tr.CloseIdleConnections()
	})
	return &TestServer{Server: s, URL: "http://" + ln.Addr().String(), Client: &http.Client{Transport: tr}}
}

// ImportURL is the import endpoint of an object type for team.
func (ts *TestServer) ImportURL(team, object string) string {
	return ts.URL + "/v2/prism/" + team + "/" + object + "/import"
}

// JobURL is the poll endpoint of a job for team.
func (ts *TestServer) JobURL(team, jobID string) string {
	return ts.URL + "/v2/prism/" + team + "/imports/" + jobID
}
