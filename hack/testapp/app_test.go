package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// get serves one request through the app's handler and returns the status and the body.
func get(t *testing.T, a *app, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec.Code, rec.Body.String()
}

func testApp(env environment) (*app, *bytes.Buffer) {
	var logs bytes.Buffer
	return newApp(env, newLogger(&logs, env)), &logs
}

// closedPort is an address nothing listens on: connecting to it is refused at once.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRowsCountsOnlyAPlainTableName(t *testing.T) {
	a, _ := testApp(environment{})
	for _, table := range []string{"", "Users", "x;drop table y", "public.users", "a b"} {
		path := "/db/rows?table=" + url.QueryEscape(table)
		if code, _ := get(t, a, path); code != 400 {
			t.Errorf("%s = %d, want 400", path, code)
		}
	}
}

func TestHealthz(t *testing.T) {
	a, _ := testApp(environment{})
	if code, body := get(t, a, "/healthz"); code != 200 || body != "ok" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
}

func TestDatabaseEndpointsWithoutTheirURLAnswerAnError(t *testing.T) {
	a, logs := testApp(environment{})
	for path, want := range map[string]string{
		"/db":                "error: DATABASE_URL is not set",
		"/db/rows?table=x_1": "error: DATABASE_URL is not set",
		"/redis":             "error: REDIS_URL is not set",
	} {
		if code, body := get(t, a, path); code != 503 || body != want {
			t.Errorf("%s = %d %q, want 503 %q", path, code, body, want)
		}
		logged := strings.SplitN(path, "?", 2)[0] + ": " + strings.TrimPrefix(want, "error: ")
		if !strings.Contains(logs.String(), logged) {
			t.Errorf("%s: no log line for the error in %q", path, logs.String())
		}
	}
}

func TestSensitiveKeys(t *testing.T) {
	for key, want := range map[string]bool{
		"PGPASSWORD": true, "CLIENT_SECRET": true, "API_TOKEN": true, "REDIS_KEY_PREFIX": true,
		"DATABASE_URL": true, "database_url": true, "Api_Key": true,
		"PGUSER": false, "LOG_LEVEL": false, "PORT": false, "KE": false,
	} {
		if got := sensitive(key); got != want {
			t.Errorf("sensitive(%q) = %t, want %t", key, got, want)
		}
	}
}

func TestEnvAnswersValuesButOnlyWhetherCredentialsAreSet(t *testing.T) {
	a, _ := testApp(environment{
		"LOG_LEVEL":    "debug",
		"EMPTY":        "",
		"DATABASE_URL": "postgresql://u:hunter2@db:5432/app?sslmode=require",
		"PGPASSWORD":   "hunter2",
		"EMPTY_TOKEN":  "",
	})
	for key, want := range map[string]string{
		"LOG_LEVEL":    "debug",
		"EMPTY":        "",
		"NOT_THERE":    "",
		"DATABASE_URL": "set",
		"PGPASSWORD":   "set",
		"pgpassword":   "unset", // names are case-sensitive; only the rule is not
		"EMPTY_TOKEN":  "set",   // present, though empty
		"API_TOKEN":    "unset",
	} {
		if code, body := get(t, a, "/env?key="+url.QueryEscape(key)); code != 200 || body != want {
			t.Errorf("/env?key=%s = %d %q, want 200 %q", key, code, body, want)
		}
	}
	if code, _ := get(t, a, "/env"); code != 400 {
		t.Errorf("/env without a key = %d, want 400", code)
	}
}

func TestFetchAnswersTheStatusOfTheURLItself(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/teapot", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, strings.Repeat("x", 100000))
	}))
	defer target.Close()
	a, _ := testApp(environment{})
	for path, want := range map[string]string{"/teapot": "418", "/moved": "302"} {
		code, body := get(t, a, "/fetch?url="+url.QueryEscape(target.URL+path))
		if code != 200 || body != want {
			t.Errorf("/fetch %s = %d %q, want 200 %q", path, code, body, want)
		}
	}
	if code, _ := get(t, a, "/fetch"); code != 400 {
		t.Errorf("/fetch without a url = %d, want 400", code)
	}
}

func TestFetchReportsARefusedConnectionWithoutItsCredentials(t *testing.T) {
	a, logs := testApp(environment{})
	u := "http://probe:hunter2@" + closedPort(t) + "/"
	code, body := get(t, a, "/fetch?url="+url.QueryEscape(u))
	if code != 200 || !strings.HasPrefix(body, "error: ") || !strings.Contains(body, "refused") {
		t.Fatalf("/fetch of a closed port = %d %q", code, body)
	}
	if strings.Contains(body+logs.String(), "hunter2") {
		t.Fatalf("the URL's password leaked: %q / %q", body, logs.String())
	}
}

func TestFetchGivesUpAfterTwoSeconds(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	a, _ := testApp(environment{})
	start := time.Now()
	code, body := get(t, a, "/fetch?url="+url.QueryEscape(slow.URL))
	took := time.Since(start)
	if code != 200 || !strings.HasPrefix(body, "error: ") || !strings.Contains(body, "Timeout") {
		t.Fatalf("/fetch of a silent server = %d %q", code, body)
	}
	if took < fetchTimeout || took > fetchTimeout+time.Second {
		t.Fatalf("/fetch gave up after %s, want %s", took, fetchTimeout)
	}
}

func TestOnlyGetIsServed(t *testing.T) {
	a, _ := testApp(environment{})
	rec := httptest.NewRecorder()
	a.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz = %d", rec.Code)
	}
	if code, _ := get(t, a, "/nothing"); code != 404 {
		t.Fatalf("/nothing = %d", code)
	}
}
