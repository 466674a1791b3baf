package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the program: with this variable set it runs main, so the tests
// below see real exit codes, real signals and the real stderr.
const beMain = "TESTAPP_TEST_BE_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(beMain) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// program is the app as a process with exactly env (nothing inherited from the test's environment).
func program(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append([]string{beMain + "=1"}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// exitOf runs the program to its end (at most 15 s) and returns its exit code, its stderr and
// how long it ran.
func exitOf(t *testing.T, env []string, args ...string) (int, string, time.Duration) {
	t.Helper()
	cmd, stderr := program(t, env, args...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(15*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	cmd.Wait()
	return cmd.ProcessState.ExitCode(), stderr.String(), time.Since(start)
}

// silentServer accepts connections and never answers, as a host behind a dropping firewall would
// after the handshake; accepted reports each connection.
func silentServer(t *testing.T) (addr string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 16)
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
			ch <- struct{}{}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String(), ch
}

func TestFailAtStartExitsOneBeforeConnecting(t *testing.T) {
	addr, accepted := silentServer(t)
	code, stderr, took := exitOf(t, []string{
		"FAIL_AT_START=1",
		"DATABASE_URL=postgresql://app:hunter2@" + addr + "/app?sslmode=require",
	})
	if code != 1 || !strings.Contains(stderr, "FAIL_AT_START") || took > 2*time.Second {
		t.Fatalf("exit %d after %s, stderr %q", code, took, stderr)
	}
	select {
	case <-accepted:
		t.Fatal("it connected to the database before failing")
	default:
	}
}

func TestUnreachableServersFailTheStartWithoutLeakingCredentials(t *testing.T) {
	closed := closedPort(t)
	for name, env := range map[string][]string{
		"postgres":              {"DATABASE_URL=postgresql://app:hun%40ter2@" + closed + "/app?sslmode=require"},
		"postgres unparseable":  {"DATABASE_URL=postgresql://app:hun@ter2@db:port/app?sslmode=require"},
		"postgres bad sslmode":  {"DATABASE_URL=postgresql://app:hun%40ter2@" + closed + "/app?sslmode=bogus"},
		"redis":                 {"REDIS_URL=redis://app:hun%40ter2@" + closed + "/0"},
		"redis unparseable":     {"REDIS_URL=redis://app:hun@ter2@cache:port/0"},
		"redis with bad scheme": {"REDIS_URL=http://app:hun%40ter2@" + closed + "/0"},
	} {
		t.Run(name, func(t *testing.T) {
			code, stderr, _ := exitOf(t, append(env, "PORT=0"))
			if code != 1 || !strings.Contains(stderr, "start failed: "+strings.Fields(name)[0]+": ") {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			if strings.Contains(stderr, "hun") || strings.Contains(stderr, "ter2") {
				t.Fatalf("the password leaked: %q", stderr)
			}
			if strings.Count(stderr, "\n") != 1 {
				t.Fatalf("want one log line, got %q", stderr)
			}
		})
	}
}

func TestAPortInUseFailsTheStart(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	code, stderr, _ := exitOf(t, []string{"PORT=" + port})
	if code != 1 || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"migrate", "now"}} {
		code, stderr, _ := exitOf(t, nil, args...)
		if code != 2 || !strings.HasPrefix(stderr, "usage: testapp") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestMigrateFailsBeforeConnectingWhenItHasNothingToApply(t *testing.T) {
	addr, accepted := silentServer(t)
	cases := map[string]struct {
		env  []string
		want string
	}{
		"no database": {nil, "migrate failed: DATABASE_URL is not set"},
		"missing dir": {
			[]string{"DATABASE_URL=postgresql://app:hunter2@" + addr + "/app", "MIGRATIONS_DIR=/nonexistent"},
			"migrate failed: open /nonexistent: no such file or directory",
		},
	}
	for name, c := range cases {
		code, stderr, _ := exitOf(t, c.env, "migrate")
		if code != 1 || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "hunter2") {
			t.Errorf("%s: exit %d, stderr %q", name, code, stderr)
		}
	}
	select {
	case <-accepted:
		t.Fatal("migrate connected although it had no migrations to read")
	default:
	}
}

var listening = regexp.MustCompile(`started: listening on \S+:(\d+); postgres off; redis off`)

func TestServesUntilSIGTERMThenExitsZero(t *testing.T) {
	cmd, _ := program(t, []string{"PORT=0"})
	cmd.Stderr = nil
	stderr, err := cmd.StderrPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewReader(stderr)
	first, err := lines.ReadString('\n')
	m := listening.FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("start line %q (%v)", first, err)
	}
	resp, err := http.Get("http://127.0.0.1:" + m[1] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("/healthz = %d %q", resp.StatusCode, body)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(lines)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 0 || time.Since(start) > time.Second {
		t.Fatalf("exit %d after %s", code, time.Since(start))
	}
	if !strings.Contains(string(rest), "stopped on signal") {
		t.Fatalf("no stop line in %q", rest)
	}
}

func TestSIGTERMWhileConnectingExitsZeroPromptly(t *testing.T) {
	addr, accepted := silentServer(t)
	cmd, stderr := program(t, []string{"DATABASE_URL=postgresql://app:hunter2@" + addr + "/app?sslmode=disable"})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case <-accepted:
	case <-ctx.Done():
		t.Fatal("it never connected")
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 0 || time.Since(start) > time.Second {
		t.Fatalf("exit %d after %s, stderr %q", code, time.Since(start), stderr)
	}
	if !strings.Contains(stderr.String(), "stopped on signal while starting") {
		t.Fatalf("stderr %q", stderr)
	}
}
