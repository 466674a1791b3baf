package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

const (
	fetchTimeout = 2 * time.Second
	// A query or PING that takes longer answers an error rather than holding the request.
	backendTimeout = 5 * time.Second
)

// app holds what the handlers answer from: the connections opened at start (nil when their URL
// is unset) and the environment.
type app struct {
	env   environment
	log   *logger
	fetch *http.Client

	dbMu sync.Mutex // a pgx.Conn serves one query at a time
	db   *pgx.Conn

	redis *redis.Client
}

func newApp(env environment, lg *logger) *app {
	return &app{
		env: env,
		log: lg,
		fetch: &http.Client{
			Timeout: fetchTimeout,
			// No proxy from the environment: /fetch reports what this pod's network lets through.
			Transport: &http.Transport{DisableKeepAlives: true},
			// The status U itself answered, not the one at the end of its redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (a *app) close() {
	if a.db != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		a.db.Close(ctx)
	}
	if a.redis != nil {
		a.redis.Close()
	}
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { answer(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /db", a.handleDB)
	mux.HandleFunc("GET /db/rows", a.handleRows)
	mux.HandleFunc("GET /redis", a.handleRedis)
	mux.HandleFunc("GET /fetch", a.handleFetch)
	mux.HandleFunc("GET /env", a.handleEnv)
	return mux
}

// answer writes body exactly (no trailing newline), so a test compares it as is.
func answer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// fail answers 503 with `error: ...` and logs the same (redacted) line.
func (a *app) fail(w http.ResponseWriter, path string, err error) {
	msg := redact(err.Error(), a.log.secrets)
	a.log.Printf("%s: %s", path, msg)
	answer(w, http.StatusServiceUnavailable, "error: "+msg)
}

var (
	errNoDatabase = errors.New("DATABASE_URL is not set")
	errNoRedis    = errors.New("REDIS_URL is not set")
)

func (a *app) handleDB(w http.ResponseWriter, r *http.Request) {
	if a.db == nil {
		a.fail(w, "/db", errNoDatabase)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	var user, database string
	a.dbMu.Lock()
	err := a.db.QueryRow(ctx, "select current_user, current_database()").Scan(&user, &database)
	a.dbMu.Unlock()
	if err != nil {
		a.fail(w, "/db", err)
		return
	}
	answer(w, http.StatusOK, user+"|"+database)
}

// tableName is what /db/rows counts: a plain lowercase name, so it goes into SQL unquoted.
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// handleRows answers the row count of ?table= over the open connection: what this pod's data
// holds (a restore's tests read it).
func (a *app) handleRows(w http.ResponseWriter, r *http.Request) {
	table := r.URL.Query().Get("table")
	if !tableName.MatchString(table) {
		answer(w, http.StatusBadRequest, "error: the table parameter must be a lowercase name")
		return
	}
	if a.db == nil {
		a.fail(w, "/db/rows", errNoDatabase)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	var rows int64
	a.dbMu.Lock()
	err := a.db.QueryRow(ctx, "select count(*) from "+table).Scan(&rows)
	a.dbMu.Unlock()
	if err != nil {
		a.fail(w, "/db/rows", err)
		return
	}
	answer(w, http.StatusOK, strconv.FormatInt(rows, 10))
}

func (a *app) handleRedis(w http.ResponseWriter, r *http.Request) {
	if a.redis == nil {
		a.fail(w, "/redis", errNoRedis)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	reply, err := a.redis.Ping(ctx).Result()
	if err != nil {
		a.fail(w, "/redis", err)
		return
	}
	answer(w, http.StatusOK, reply)
}

// handleFetch answers 200 with U's status, or with `error: ...` when U could not be reached: an
// unreachable URL is a result (a NetworkPolicy at work), not a failure of this app.
func (a *app) handleFetch(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("url")
	if target == "" {
		answer(w, http.StatusBadRequest, "error: the url parameter is required")
		return
	}
	resp, err := a.fetch.Get(target)
	if err != nil {
		msg := redact(err.Error(), a.log.secrets)
		a.log.Printf("/fetch: %s", msg)
		answer(w, http.StatusOK, "error: "+msg)
		return
	}
	// Drained so the server sees a complete exchange; bounded so a large body cannot hold us.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	answer(w, http.StatusOK, strconv.Itoa(resp.StatusCode))
}

// handleEnv answers a variable's value (empty when unset), or only `set`/`unset` for a name that
// may hold a credential.
func (a *app) handleEnv(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		answer(w, http.StatusBadRequest, "error: the key parameter is required")
		return
	}
	value, set := a.env[key]
	switch {
	case !sensitive(key):
		answer(w, http.StatusOK, value)
	case set:
		answer(w, http.StatusOK, "set")
	default:
		answer(w, http.StatusOK, "unset")
	}
}
