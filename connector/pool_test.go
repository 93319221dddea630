package connector_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/internal/pgtest"
)

// The engine's sessions print times in UTC and dates as ISO whatever the
// connection string asks for, in any spelling of the setting's name.
func TestConfigurePoolOverridesTheConnectionString(t *testing.T) {
	ctx := context.Background()
	pc, err := pgxpool.ParseConfig(pgtest.NewDB(t) + "&timezone=Asia/Kathmandu&datestyle=German&IntervalStyle=postgres")
	if err != nil {
		t.Fatal(err)
	}
	connector.ConfigurePool(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var tz, dateStyle, intervalStyle, ts, iv string
	if err := pool.QueryRow(ctx, `SELECT current_setting('TimeZone'), current_setting('DateStyle'), current_setting('IntervalStyle'),
		(timestamptz '2026-01-02 03:04:05.123456+00')::text, (interval '1 day 2 hours')::text`).Scan(&tz, &dateStyle, &intervalStyle, &ts, &iv); err != nil {
		t.Fatal(err)
	}
	if tz != "UTC" || dateStyle != "ISO, YMD" || intervalStyle != "iso_8601" {
		t.Errorf("session settings TimeZone=%q DateStyle=%q IntervalStyle=%q, want UTC, \"ISO, YMD\", iso_8601", tz, dateStyle, intervalStyle)
	}
	if ts != "2026-01-02 03:04:05.123456+00" || iv != "P1DT2H" {
		t.Errorf("positions would be kept as %q and %q, want 2026-01-02 03:04:05.123456+00 and P1DT2H", ts, iv)
	}
}
