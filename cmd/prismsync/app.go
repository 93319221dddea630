package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
	"github.com/prismsync/prismsync/internal/telemetry"
	"github.com/prismsync/prismsync/mapping"
)

// app holds what the sync commands share: configuration, the database pool,
// the checkpoint store, the API client and the mapping, and the metrics and
// observer the engine and the client report to. newApp builds all of it
// before a command runs; startOps only reads it to start the ops goroutines.
type app struct {
	cfg      *Config
	log      *slog.Logger
	pool     *pgxpool.Pool
	store    checkpoint.Store
	api      *prism.Client
	syncs    []*mapping.Sync
	budget   *budget.Budget
	metrics  *telemetry.Metrics
	observer *opsObserver
}

func newApp(ctx context.Context, env envconfig.Lookuper, stderr io.Writer) (*app, error) {
	cfg, err := loadConfig(ctx, env, needs{db: true, api: true})
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: newLogger(stderr, cfg.LogLevel, cfg.LogFormat)}
	a.metrics = telemetry.New(telemetry.Options{Version: version(), Commit: commit()})
	a.observer = newOpsObserver(a.metrics)
	a.observer.alerts = a.newAlerts()
	mf, err := mapping.Load(cfg.MappingFile)
	if err != nil {
		return nil, &usageError{err}
	}
	for _, s := range mf.Syncs {
		if s.Schedule == "" {
			s.Schedule = cfg.Schedule
		}
		a.metrics.AddSyncs(s.Name) // every per-sync series exists from the start
	}
	a.syncs = mf.Syncs
	if a.pool, err = openPool(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	dsn := ""
	if cfg.CheckpointStore == "postgres" {
		dsn = cfg.DatabaseURL
	}
	if a.store, err = checkpoint.Open(ctx, cfg.CheckpointStore, dsn); err != nil {
		a.pool.Close()
		return nil, &unreachableError{fmt.Errorf("checkpoint store: %w", err)}
	}
	a.budget = cfg.newBudget(a.store, a.log)
	a.api, err = prism.New(prism.Config{
		BaseURL:         cfg.BaseURL,
		APIKey:          cfg.APIKey,
		TeamID:          cfg.TeamID,
		RateLimit:       cfg.RateLimit,
		FirstPoll:       cfg.PollMin,
		MaxPollInterval: cfg.PollMax,
		Logger:          a.log,
		UserAgent:       "prismsync/" + version(),
		// Every attempt, polls included, is metered against the monthly
		// budget (kept in the checkpoint store, so restarts and replicas
		// share the count) and counted in the request metrics.
		Meter:     countingMeter(a.budget.Meter),
		OnRequest: a.metrics.ObserveRequest,
	})
	if err != nil {
		a.close()
		return nil, &usageError{err}
	}
	return a, nil
}

func (a *app) close() {
	if a.budget != nil && a.store != nil {
		// Counts the store could not take during an outage, one last try.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if !a.budget.Flush(ctx) {
			a.log.Warn("some API requests could not be counted in the checkpoint store; the month's count is that much low")
		}
		cancel()
	}
	if a.store != nil {
		a.store.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

func (a *app) syncer(s *mapping.Sync) *connector.Syncer {
	return &connector.Syncer{
		Sync:           s,
		DB:             a.pool,
		Store:          a.store,
		API:            a.api,
		Logger:         a.log.With("sync", s.Name),
		MaxJobAttempts: a.cfg.MaxJobAttempts,
		MaxInflight:    a.cfg.MaxInflight,
		Lag:            a.cfg.Lag,
		MaxRejectShare: a.cfg.MaxRejectShare,
		Observer:       a.observer,
		Budget:         a.budget,
		Fingerprints:   a.fingerprints(),
		DeferWarnAfter: a.cfg.DeferWarnAfter,
		MaxSnapshot:    a.cfg.ScanMaxSnapshot,
		MaxDeleteShare: a.cfg.MaxDeleteShare,
	}
}

// fingerprints returns the store's change fingerprints unless FINGERPRINTS
// turned them off.
func (a *app) fingerprints() connector.Fingerprints {
	if !a.cfg.Fingerprints {
		return nil // a nil interface, not a nil store: the engine checks for nil
	}
	return a.store
}

// runPass runs one pass of sy under its lease, so that two replicas never
// run the same sync at once. held is false when another process holds the
// lease (then nothing was done). A lease that cannot be taken (the
// database is down) is a failed pass like any other: the observer counts
// it under the sync's name.
func (a *app) runPass(ctx context.Context, sy *connector.Syncer) (sum connector.Summary, held bool, err error) {
	if sy.Interval > 0 {
		a.metrics.SetSchedule(sy.Sync.Name, sy.Interval)
	}
	name := sy.Sync.Name
	if sy.StateName != "" {
		name = sy.StateName
	}
	start := time.Now()
	release, ok, err := a.store.TryLock(ctx, name)
	if err != nil {
		sum = connector.Summary{Sync: sy.Sync.Name, Duration: time.Since(start)}
		err = fmt.Errorf("sync %s: take lease: %w", name, err)
		if sy.Observer != nil {
			sy.Observer.PassFinished(sum, err)
		}
		a.observer.recordPass(newPassRecord(name, start, time.Now(), sum, 0, err))
		return sum, false, err
	}
	if !ok {
		return sum, false, nil
	}
	defer release()
	pctx, requests := countRequests(ctx)
	sum, err = sy.Once(pctx)
	err = explain(err)
	a.observer.recordPass(newPassRecord(name, start, time.Now(), sum, requests.load(), err))
	return sum, true, err
}

// runReconcile reconciles sy under its lease, as runPass passes it; a
// reconcile that sends (not a dry run) is recorded in the run history.
func (a *app) runReconcile(ctx context.Context, sy *connector.Syncer, o connector.ReconcileOptions) (sum connector.Summary, held bool, err error) {
	start := time.Now()
	release, ok, err := a.store.TryLock(ctx, sy.Sync.Name)
	if err != nil {
		return sum, false, fmt.Errorf("sync %s: take lease: %w", sy.Sync.Name, err)
	}
	if !ok {
		return sum, false, nil
	}
	defer release()
	pctx, requests := countRequests(ctx)
	sum, err = sy.Reconcile(pctx, o)
	err = explain(err)
	if !o.DryRun {
		a.observer.recordPass(newPassRecord(sy.Sync.Name, start, time.Now(), sum, requests.load(), err))
	}
	return sum, true, err
}

// selectSyncs returns the syncs a --sync flag names: all of them when name
// is empty, in the mapping file's order.
func selectSyncs(all []*mapping.Sync, name string) ([]*mapping.Sync, error) {
	if name == "" {
		return all, nil
	}
	for _, s := range all {
		if s.Name == name {
			return []*mapping.Sync{s}, nil
		}
	}
	return nil, &usageError{fmt.Errorf("no sync named %q in the mapping file", name)}
}

// logSummary writes the one info line per pass per sync that operators read.
func logSummary(log *slog.Logger, s connector.Summary, err error) {
	attrs := []any{
		"sync", s.Sync, "rows", s.Rows, "sent", s.Sent, "created", s.Created, "updated", s.Updated,
		"existing", s.Existing, "unchanged", s.Unchanged, "invalid", s.Invalid, "rejected", s.Rejected, "batches", s.Batches,
		"resumed", s.Resumed, "checkpoint", positionText(s), "duration", s.Duration.Round(time.Millisecond),
	}
	if s.Deleted+s.Archived+s.Restored > 0 {
		attrs = append(attrs, "deleted", s.Deleted, "archived", s.Archived, "restored", s.Restored)
	}
	if s.Deferred+s.Revisited+s.Waiting > 0 {
		// Only syncs with links have these; the others' line stays as it was.
		attrs = append(attrs, "deferred", s.Deferred, "revisited", s.Revisited, "waiting_too_long", s.Waiting)
	}
	if err != nil {
		log.Error("pass failed", append(attrs, "err", explain(err))...)
		return
	}
	log.Info("pass done", attrs...)
}

// positionText is a summary's checkpoint as the pass line and demo print it.
func positionText(s connector.Summary) string {
	if s.Position.IsZero() {
		return "start"
	}
	return fmt.Sprintf("%s %v", s.Position.Cursor, s.Position.Key)
}

// openPool connects to the source database, with the session settings the
// engine needs (connector.ConfigurePool).
func openPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can echo the DSN; say only what is wrong.
		return nil, &usageError{errors.New("DATABASE_URL is not a valid PostgreSQL connection string")}
	}
	rp := pc.ConnConfig.RuntimeParams
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = "prismsync"
	}
	if _, ok := rp["statement_timeout"]; !ok {
		rp["statement_timeout"] = "300000" // 5 min: a page read should never take longer
	}
	connector.ConfigurePool(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, &unreachableError{fmt.Errorf("database %s: %w", redactDSN(dsn), err)}
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, &unreachableError{fmt.Errorf("database %s unreachable: %w", redactDSN(dsn), err)}
	}
	return pool, nil
}

// redactDSN names the database for messages without its password.
func redactDSN(dsn string) string {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return "(unparseable DSN)"
	}
	c := pc.ConnConfig
	u := url.URL{Scheme: "postgres", Host: fmt.Sprintf("%s:%d", c.Host, c.Port), Path: "/" + c.Database}
	if c.User != "" {
		u.User = url.User(c.User)
	}
	return u.String()
}

// Set by the linker: -ldflags "-X main.buildVersion=v1.2.3 -X main.buildCommit=abc".
var (
	buildVersion = ""
	buildCommit  = ""
)

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// commit is the linker-stamped commit, else the one go build recorded,
// else "unknown".
func commit() string {
	if buildCommit != "" {
		return buildCommit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func versionString() string {
	return fmt.Sprintf("prismsync %s (commit %s)", version(), commit())
}
