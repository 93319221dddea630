package connector

import (
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// sessionSettings are the settings every session of Syncer.DB must run
// with. Positions are kept as PostgreSQL text and cast back to the column
// types, and the commit horizon is compared with timestamp cursors in the
// session time zone: a checkpoint written under one TimeZone or DateStyle
// would not read back the same under another.
var sessionSettings = [...][2]string{
	{"TimeZone", "UTC"},
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "iso_8601"},
}

// ConfigurePool sets the session settings the engine depends on in the
// config of the pool that becomes Syncer.DB, overriding the connection
// string's and the environment's (PGTZ).
func ConfigurePool(c *pgxpool.Config) {
	rp := c.ConnConfig.RuntimeParams
	if rp == nil {
		rp = make(map[string]string)
		c.ConnConfig.RuntimeParams = rp
	}
	for _, s := range sessionSettings {
		// PostgreSQL names are case-insensitive (PGTZ arrives as
		// "timezone"); two spellings would race in the startup message.
		for k := range rp {
			if strings.EqualFold(k, s[0]) {
				delete(rp, k)
			}
		}
		rp[s[0]] = s[1]
	}
}
