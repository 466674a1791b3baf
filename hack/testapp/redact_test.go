package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRedactHidesPasswordsInAnyForm(t *testing.T) {
	env := environment{
		// Percent-encoded, as the operator writes it; the decoded form must be hidden as well.
		"DATABASE_URL": "postgresql://app:p%40ss%2Fw0rd@db:5432/app?sslmode=require",
		// Unencoded '@' and '/' make this URL unparseable, yet its password is still found.
		"REDIS_URL":      "redis://cache:a@b/c@redis:6379/0",
		"PGPASSWORD":     "plain-secret",
		"LOG_LEVEL":      "debug",
		"REDIS_KEY_PREF": "svc:",
	}
	secrets := secretsOf(env)
	line := "connect postgresql://app:p%40ss%2Fw0rd@db:5432/app failed for p@ss/w0rd; " +
		"redis a@b/c rejected; PGPASSWORD=plain-secret; level debug; " +
		"fetch `https://other:xyz@host/path` and \"ftp://u:v@h\"; mail ops@example.org"
	got := redact(line, secrets)
	for _, leak := range []string{"p%40ss%2Fw0rd", "p@ss/w0rd", "a@b/c", "plain-secret", "xyz", "u:v"} {
		if strings.Contains(got, leak) {
			t.Errorf("%q survived: %s", leak, got)
		}
	}
	for _, kept := range []string{"postgresql://***@db:5432/app", "level debug", "https://***@host/path", "ops@example.org"} {
		if !strings.Contains(got, kept) {
			t.Errorf("%q lost: %s", kept, got)
		}
	}
}

func TestLoggerWritesOneRedactedLinePerCall(t *testing.T) {
	var out bytes.Buffer
	lg := newLogger(&out, environment{"REDIS_PASSWORD": "hunter2"})
	lg.Printf("first: %s", "auth hunter2\nfailed")
	lg.Printf("second")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "testapp: first: auth *** failed") ||
		!strings.HasSuffix(lines[1], "testapp: second") {
		t.Fatalf("log = %q", out.String())
	}
}
