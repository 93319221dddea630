package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lmittmann/tint"
	"github.com/robfig/cron/v3"
	"github.com/sethvargo/go-envconfig"
	"golang.org/x/term"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
)

// Config is everything prismsync reads from the environment. Every variable
// is listed, with its default, in config.example.env.
type Config struct {
	DatabaseURL     string        `env:"DATABASE_URL"`
	DatabaseURLFile string        `env:"DATABASE_URL_FILE"`
	APIKey          string        `env:"MICRO_API_KEY"`
	APIKeyFile      string        `env:"MICRO_API_KEY_FILE"`
	TeamID          string        `env:"MICRO_TEAM_ID"`
	BaseURL         string        `env:"MICRO_BASE_URL, default=https://developers.micro.so"`
	MappingFile     string        `env:"MAPPING_FILE, default=mapping.yaml"`
	Schedule        string        `env:"SYNC_SCHEDULE, default=@every 5m"`
	CheckpointStore string        `env:"CHECKPOINT_STORE, default=postgres"`
	LogLevel        string        `env:"LOG_LEVEL, default=info"`
	LogFormat       string        `env:"LOG_FORMAT, default=auto"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT, default=30s"`
	RateLimit       float64       `env:"MICRO_RATE_LIMIT, default=10"`
	PollMin         time.Duration `env:"MICRO_POLL_MIN, default=2s"`
	PollMax         time.Duration `env:"MICRO_POLL_MAX, default=30s"`
	MaxJobAttempts  int           `env:"MAX_JOB_ATTEMPTS, default=3"`
	HTTPAddr        string        `env:"HTTP_ADDR, default=127.0.0.1:9464"`
	MaxInflight     int           `env:"MAX_INFLIGHT, default=4"`
	MonthlyRequests int           `env:"MICRO_MONTHLY_REQUESTS, default=1000"`
	BudgetReserve   string        `env:"MICRO_BUDGET_RESERVE, default=5%"`
	Lag             time.Duration `env:"SYNC_LAG, default=0s"`
	MaxRejectShare  float64       `env:"MAX_REJECT_SHARE, default=0.5"`
	MaxDeleteShare  float64       `env:"MAX_DELETE_SHARE, default=0.1"`
	MaxDelay        time.Duration `env:"MAX_DELAY"`
	Fingerprints    bool          `env:"FINGERPRINTS, default=true"`
	HistoryKeep     int           `env:"HISTORY_KEEP, default=1000"`
	AlertWebhookURL string        `env:"ALERT_WEBHOOK_URL"`
	DeferWarnAfter  time.Duration `env:"DEFER_WARN_AFTER, default=24h"`
	ScanMaxSnapshot time.Duration `env:"SCAN_MAX_SNAPSHOT, default=5m"`
}

// newBudget is the request budget the configuration describes, over store.
func (c *Config) newBudget(store budget.Store, log *slog.Logger) *budget.Budget {
	reserve, _ := budget.ParseReserve(c.BudgetReserve) // validated by loadConfig
	return budget.New(store, budget.Config{Limit: c.MonthlyRequests, Reserve: reserve, MaxDelay: c.MaxDelay, Logger: log})
}

// needs says which variables a command requires: validate and preview work
// without API credentials.
type needs struct{ db, api bool }

// loadConfig reads the environment through lookup and reports every missing
// or malformed variable in one error, so an operator fixes them all at once.
func loadConfig(ctx context.Context, lookup envconfig.Lookuper, n needs) (*Config, error) {
	// go-envconfig stops at the first variable it cannot parse and names
	// it by its Go field; check each variable alone first, so the error
	// lists every one by its name, and read the rest over the defaults.
	problems, bad := checkVariables(ctx, lookup)
	var cfg Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &cfg, Lookuper: without(lookup, bad)}); err != nil {
		return nil, &usageError{fmt.Errorf("environment: %w", err)}
	}
	fromFile := func(name string, val *string, file string) {
		if file == "" {
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s_FILE: %v", name, err))
			return
		}
		*val = strings.TrimSpace(string(b))
	}
	fromFile("DATABASE_URL", &cfg.DatabaseURL, cfg.DatabaseURLFile)
	fromFile("MICRO_API_KEY", &cfg.APIKey, cfg.APIKeyFile)

	var missing []string
	if n.db && cfg.DatabaseURL == "" {
		missing = append(missing, "DATABASE_URL")
	}
	if n.api {
		if cfg.APIKey == "" {
			missing = append(missing, "MICRO_API_KEY")
		}
		if cfg.TeamID == "" {
			missing = append(missing, "MICRO_TEAM_ID")
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "missing "+strings.Join(missing, ", ")+" (see config.example.env)")
	}
	if cfg.TeamID != "" {
		if _, err := uuid.Parse(cfg.TeamID); err != nil {
			problems = append(problems, fmt.Sprintf("MICRO_TEAM_ID %q is not a UUID (copy it from Settings → API)", cfg.TeamID))
		}
	}
	if cs := cfg.CheckpointStore; cs != "postgres" && !(strings.HasPrefix(cs, "file:") && len(cs) > len("file:")) {
		problems = append(problems, fmt.Sprintf("CHECKPOINT_STORE %q: want postgres or file:PATH", cs))
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		problems = append(problems, err.Error())
	}
	switch cfg.LogFormat {
	case "auto", "text", "json":
	default:
		problems = append(problems, fmt.Sprintf("LOG_FORMAT %q: want auto, text or json", cfg.LogFormat))
	}
	if _, err := cron.ParseStandard(cfg.Schedule); err != nil {
		problems = append(problems, fmt.Sprintf("SYNC_SCHEDULE %q: %v", cfg.Schedule, err))
	}
	if cfg.MaxInflight < 1 {
		problems = append(problems, "MAX_INFLIGHT must be at least 1")
	}
	if cfg.MonthlyRequests < 0 {
		problems = append(problems, "MICRO_MONTHLY_REQUESTS must not be negative (0 disables the budget)")
	}
	if _, err := budget.ParseReserve(cfg.BudgetReserve); err != nil {
		problems = append(problems, "MICRO_BUDGET_RESERVE: "+err.Error())
	}
	if cfg.MaxDelay < 0 {
		problems = append(problems, "MAX_DELAY must not be negative (unset: no cap)")
	}
	if cfg.MaxRejectShare <= 0 || cfg.MaxRejectShare > 1 {
		problems = append(problems, "MAX_REJECT_SHARE must be in (0, 1]")
	}
	if cfg.MaxDeleteShare <= 0 || cfg.MaxDeleteShare > 1 {
		problems = append(problems, "MAX_DELETE_SHARE must be in (0, 1]")
	}
	if cfg.MaxJobAttempts < 1 {
		problems = append(problems, "MAX_JOB_ATTEMPTS must be at least 1")
	}
	if err := checkWebhook(cfg.AlertWebhookURL); err != nil {
		problems = append(problems, err.Error())
	}
	if cfg.HistoryKeep < 1 {
		problems = append(problems, "HISTORY_KEEP must be at least 1 (the last pass is what status shows)")
	}
	if cfg.DeferWarnAfter <= 0 {
		problems = append(problems, "DEFER_WARN_AFTER must be a positive duration (e.g. 24h)")
	}
	if cfg.ScanMaxSnapshot <= 0 {
		problems = append(problems, "SCAN_MAX_SNAPSHOT must be positive")
	}
	if len(problems) > 0 {
		return nil, &usageError{errors.New("configuration: " + strings.Join(problems, "; "))}
	}
	return &cfg, nil
}

// checkVariables parses each variable of Config on its own, with
// go-envconfig itself (a struct of that one field), and describes every
// one it cannot parse by its environment name; bad lists those names.
func checkVariables(ctx context.Context, lookup envconfig.Lookuper) (problems []string, bad map[string]bool) {
	bad = map[string]bool{}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}}))
		if envconfig.ProcessWith(ctx, &envconfig.Config{Target: one.Interface(), Lookuper: lookup}) == nil {
			continue
		}
		bad[name] = true
		val, _ := lookup.Lookup(name)
		problems = append(problems, fmt.Sprintf("%s=%q: want %s", name, val, kindOf(f.Type)))
	}
	return problems, bad
}

// kindOf says what a variable of type t must hold.
func kindOf(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration with a unit, such as 30s, 5m or 1h"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "a whole number"
	case t.Kind() == reflect.Float64:
		return "a number"
	default:
		return "a " + t.String()
	}
}

// without hides the variables in names from lookup, so they take their
// defaults while the others are checked.
func without(lookup envconfig.Lookuper, names map[string]bool) envconfig.Lookuper {
	if len(names) == 0 {
		return lookup
	}
	return envconfig.LookuperFunc(func(key string) (string, bool) {
		if names[key] {
			return "", false
		}
		return lookup.Lookup(key)
	})
}

// explain adds to an engine or API error the variables the operator sets to
// fix it: the lower packages speak of their own settings and of the API's
// answers, cmd knows the variables. It is safe to apply more than once.
func explain(err error) error {
	var done *explained
	var share *connector.RejectShareError
	hint := ""
	switch {
	case err == nil || errors.As(err, &done):
		return err
	case errors.Is(err, budget.ErrExhausted):
		hint = "or raise MICRO_MONTHLY_REQUESTS"
	case errors.As(err, &share):
		hint = fmt.Sprintf("MAX_REJECT_SHARE=%g; see `prismsync rejects` for the reasons", share.MaxShare)
	case prism.IsUnauthorized(err):
		hint = "check MICRO_API_KEY / MICRO_TEAM_ID"
	case prism.IsEndpointNotFound(err):
		hint = "check MICRO_BASE_URL, MICRO_TEAM_ID and the sync's target object"
	default:
		return err
	}
	return &explained{err: err, hint: hint}
}

// explained is an error with the variables to check appended.
type explained struct {
	err  error
	hint string
}

func (e *explained) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *explained) Unwrap() error { return e.err }

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger builds the logger LOG_FORMAT asks for: tint for a person at a
// terminal, JSON for log collectors.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	lvl, _ := parseLevel(level)
	if format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationSeconds}))
}

// durationSeconds writes durations as seconds (41.2), which log collectors
// can compute with, instead of slog's nanoseconds.
func durationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.Float64Value(a.Value.Duration().Seconds())
	}
	return a
}

// isTerminal reports whether w is a terminal (a character device such as
// /dev/null is not).
func isTerminal(w any) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
