// Command testapp is the small service the end-to-end tests deploy (SPEC §8.1): it proves what a
// pod received (environment, database credentials, network reach) over plain HTTP, and
// `testapp migrate` is the migration command of SPEC §11.
//
// It writes nothing to disk and logs only to stderr, one line per start, per error and per stop;
// every line passes through a redactor, so neither a password nor a URL's credentials reach a log.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// Bounds a start against an unreachable server, so a bad address crash-loops instead of hanging.
	connectTimeout = 10 * time.Second
	// Longer than /fetch's own timeout, so a request in flight at SIGTERM still gets its answer.
	shutdownTimeout = 3 * time.Second
)

const usage = "usage: testapp          serve HTTP on $PORT (default 8080)\n" +
	"       testapp migrate  apply $MIGRATIONS_DIR/*.sql (or the built-in demo) to $DATABASE_URL\n"

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stderr))
}

// environment is the process environment as a map: `KEY=value` lines parsed once.
type environment map[string]string

func parseEnviron(environ []string) environment {
	env := environment{}
	for _, kv := range environ {
		if key, value, ok := strings.Cut(kv, "="); ok {
			env[key] = value
		}
	}
	return env
}

// run is main without the process: it returns the exit code.
func run(args []string, environ []string, stderr io.Writer) int {
	env := parseEnviron(environ)
	lg := newLogger(stderr, env)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch {
	case len(args) == 0:
		return serve(ctx, env, lg)
	case len(args) == 1 && args[0] == "migrate":
		return migrate(ctx, env, lg)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
}

func serve(ctx context.Context, env environment, lg *logger) int {
	if on, _ := strconv.ParseBool(env["FAIL_AT_START"]); on {
		lg.Printf("FAIL_AT_START is set: exiting 1")
		return 1
	}
	a := newApp(env, lg)
	defer a.close()
	var err error
	var pgDesc, redisDesc = "postgres off", "redis off"
	if raw := env["DATABASE_URL"]; raw != "" {
		if a.db, pgDesc, err = connectPostgres(ctx, raw); err != nil {
			return startFailed(ctx, lg, err)
		}
	}
	if raw := env["REDIS_URL"]; raw != "" {
		if a.redis, redisDesc, err = connectRedis(ctx, raw); err != nil {
			return startFailed(ctx, lg, err)
		}
	}
	port := env["PORT"]
	if port == "" {
		port = "8080"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		lg.Printf("start failed: %v", err)
		return 1
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	lg.Printf("started: listening on %s; %s; %s", ln.Addr(), pgDesc, redisDesc)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		lg.Printf("serving failed: %v", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running after the grace period are cut; the exit stays clean.
		srv.Close()
	}
	lg.Printf("stopped on signal")
	return 0
}

// startFailed is exit 1, unless the failure is a SIGTERM cutting the start short: that is a clean stop.
func startFailed(ctx context.Context, lg *logger, err error) int {
	if ctx.Err() != nil {
		lg.Printf("stopped on signal while starting")
		return 0
	}
	lg.Printf("start failed: %v", err)
	return 1
}

// connectPostgres opens the one connection the app keeps; the description is for the start line.
func connectPostgres(ctx context.Context, raw string) (*pgx.Conn, string, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	// The simple protocol prepares nothing on the server, so it also works through any pooler.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	desc := fmt.Sprintf("postgres user=%s database=%s host=%s port=%d tls=%t",
		cfg.User, cfg.Database, cfg.Host, cfg.Port, cfg.TLSConfig != nil)
	return conn, desc, nil
}

func connectRedis(ctx context.Context, raw string) (*redis.Client, string, error) {
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, "", fmt.Errorf("redis: %w", err)
	}
	// RESP2 with AUTH user password works on every server and ACL; no client-side extras that
	// send commands a least-privilege ACL user may lack.
	opt.Protocol = 2
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	opt.DialTimeout = connectTimeout
	// A failed PING must fail the start, not be retried against the same wrong password.
	opt.MaxRetries = -1
	client := redis.NewClient(opt)
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := client.Ping(cctx).Err(); err != nil {
		client.Close()
		return nil, "", fmt.Errorf("redis: %w", err)
	}
	desc := fmt.Sprintf("redis user=%s addr=%s db=%d tls=%t",
		opt.Username, opt.Addr, opt.DB, opt.TLSConfig != nil)
	return client, desc, nil
}

// logger writes one timestamped line per call, with every secret it knows replaced.
type logger struct {
	out     *log.Logger
	secrets []string
}

func newLogger(w io.Writer, env environment) *logger {
	lg := &logger{
		out:     log.New(w, "testapp: ", log.LstdFlags|log.LUTC|log.Lmsgprefix),
		secrets: secretsOf(env),
	}
	// go-redis would log each failure a second time (every one also reaches us as an error),
	// unredacted.
	redis.SetLogger(&logging.VoidLogger{})
	return lg
}

func (lg *logger) Printf(format string, v ...any) {
	line := redact(fmt.Sprintf(format, v...), lg.secrets)
	lg.out.Print(strings.ReplaceAll(line, "\n", " "))
}
