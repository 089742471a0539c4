// Package forgetest serves a forge's documented API responses to an
// adapter under a contract test, and records what the adapter sent. Test
// only: the end-to-end tests run a real Gitea instead.
package forgetest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Request is one request the adapter made.
type Request struct {
	Method, Path, Body string
}

// Server answers "METHOD /path" (the decoded path) with a file of testdata,
// 201 to a POST, 404 to any other route, 401 when authorized says no.
type Server struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []Request
}

// Serve starts a server for the test.
func Serve(t *testing.T, routes map[string]string, authorized func(*http.Request) bool) *Server {
	t.Helper()
	s := &Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, Request{r.Method, r.URL.Path, string(body)})
		s.mu.Unlock()
		file, ok := routes[r.Method+" "+r.URL.Path]
		switch {
		case !ok:
			http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
			return
		case !authorized(r):
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

// Last is the last request made.
func (s *Server) Last() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return Request{}
	}
	return s.reqs[len(s.reqs)-1]
}
