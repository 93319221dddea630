package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/prismsync/prismsync/checkpoint"
	"github.com/prismsync/prismsync/internal/alert"
)

// newAlerts is the webhook notifier ALERT_WEBHOOK_URL asks for; nil when
// it is unset.
func (a *app) newAlerts() *alert.Notifier {
	if a.cfg.AlertWebhookURL == "" {
		return nil
	}
	host, _ := os.Hostname()
	return alert.New(alert.Options{URL: a.cfg.AlertWebhookURL, Logger: a.log, Redact: a.cfg.redactor(), Host: host, Version: version()})
}

// alertPass is what the alerts are told of a pass.
func alertPass(p passRecord) alert.Pass {
	ap := alert.Pass{Sync: p.sync, At: p.run.Finished}
	if p.err != nil {
		ap.Error = p.err.Error()
	}
	switch {
	case p.run.Budget:
		ap.State = alert.Budget
		ap.Message = fmt.Sprintf("sync %s waits for the month's request budget: its rows are held until the month turns or MICRO_MONTHLY_REQUESTS is raised; nothing is lost", p.sync)
	case !p.run.OK:
		ap.State = alert.Failing
		ap.Message = fmt.Sprintf("sync %s is failing: %s", p.sync, oneLine(ap.Error, 300))
	default:
		ap.State = alert.Healthy
		ap.Message = fmt.Sprintf("sync %s is healthy: its pass read %d rows and sent %d", p.sync, p.run.Rows, p.run.Sent)
	}
	return ap
}

// runState is the alert state a recorded run left its sync in.
func runState(r checkpoint.Run) string {
	switch {
	case r.Budget:
		return alert.Budget
	case r.OK:
		return alert.Healthy
	default:
		return alert.Failing
	}
}

// seedAlerts tells the alerts the state each sync's last recorded pass left
// it in, so a restart neither repeats a failure nor misses the recovery.
func seedAlerts(ctx context.Context, a *app, n *alert.Notifier) {
	for _, s := range a.syncs {
		if r, ok, err := a.store.LastRun(ctx, s.Name); err == nil && ok {
			n.Seed(s.Name, runState(r))
		}
	}
}

// redactor replaces the configuration's secrets in text bound for people
// outside the process (webhook, status page). The errors are redacted where
// they arise already; this is the belt to those braces.
func (c *Config) redactor() func(string) string {
	var secrets []string
	add := func(s string) {
		if len(s) >= 4 {
			secrets = append(secrets, s)
		}
	}
	add(c.APIKey)
	add(c.DatabaseURL)
	add(c.AlertWebhookURL)
	if pc, err := pgconn.ParseConfig(c.DatabaseURL); err == nil {
		add(pc.Password)
	}
	if u, err := url.Parse(c.AlertWebhookURL); err == nil && (u.Path != "" || u.RawQuery != "") {
		add(strings.TrimPrefix(u.RequestURI(), "/"))
	}
	return func(s string) string {
		for _, sec := range secrets {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
		return s
	}
}

// checkWebhook validates ALERT_WEBHOOK_URL without echoing it: its path or
// query may hold a token.
func checkWebhook(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("ALERT_WEBHOOK_URL is not an http:// or https:// URL")
	}
	return nil
}
