package connector

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Positions are kept as PostgreSQL's own text of the cursor and key values.
// For the common cursor and key types the text is made here from the binary
// value, exactly as PostgreSQL prints it in the engine's sessions (TimeZone
// UTC, DateStyle ISO): casting every row's timestamp to text in the query
// cost PostgreSQL about 0.5 µs per row, a sixth of the scan. Other types
// are cast in the query (positionCasts), and their text is taken as sent.

// formattedHere reports whether the position text of a column of type oid
// is made by positionText rather than by a cast in the query.
func formattedHere(oid uint32) bool {
	switch oid {
	case pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID,
		pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		return true
	}
	return false
}

// positionText is the PostgreSQL text of one position value as it arrived
// in fd's format; ok is false for a value it cannot read (then the row is
// refused, as a malformed value would be).
func positionText(fd pgconn.FieldDescription, raw []byte) (string, bool) {
	if fd.Format != pgtype.BinaryFormatCode || !formattedHere(fd.DataTypeOID) {
		return string(raw), true // PostgreSQL's text already: a cast, or a text result
	}
	switch fd.DataTypeOID {
	case pgtype.Int2OID:
		if len(raw) == 2 {
			return strconv.FormatInt(int64(int16(binary.BigEndian.Uint16(raw))), 10), true
		}
	case pgtype.Int4OID:
		if len(raw) == 4 {
			return strconv.FormatInt(int64(int32(binary.BigEndian.Uint32(raw))), 10), true
		}
	case pgtype.Int8OID:
		if len(raw) == 8 {
			return strconv.FormatInt(int64(binary.BigEndian.Uint64(raw)), 10), true
		}
	case pgtype.TimestamptzOID, pgtype.TimestampOID:
		if len(raw) == 8 {
			return pgTimestamp(int64(binary.BigEndian.Uint64(raw)), fd.DataTypeOID == pgtype.TimestamptzOID), true
		}
	case pgtype.DateOID:
		if len(raw) == 4 {
			return pgDate(int32(binary.BigEndian.Uint32(raw))), true
		}
	}
	return "", false
}

// pgEpoch is where PostgreSQL counts timestamps and dates from, in Unix
// seconds: 2000-01-01 00:00:00 UTC.
const pgEpoch = 946684800

// pgTimestamp prints microseconds since 2000-01-01 as PostgreSQL prints a
// timestamp (zone: a timestamptz, in UTC): "2026-01-02 03:04:05.5+00", the
// fraction without trailing zeros, years before 1 as "0044-03-15 ... BC".
func pgTimestamp(us int64, zone bool) string {
	switch us {
	case math.MaxInt64:
		return "infinity"
	case math.MinInt64:
		return "-infinity"
	}
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	t := time.Unix(sec+pgEpoch, 0).UTC()
	b := appendDate(make([]byte, 0, 32), t)
	h, m, s := t.Clock()
	b = append(b, ' ')
	b = append2(b, h)
	b = append(b, ':')
	b = append2(b, m)
	b = append(b, ':')
	b = append2(b, s)
	if frac != 0 {
		digits := strconv.AppendInt(nil, frac+1e6, 10)[1:] // six digits, leading zeros kept
		for digits[len(digits)-1] == '0' {
			digits = digits[:len(digits)-1]
		}
		b = append(append(b, '.'), digits...)
	}
	if zone {
		b = append(b, "+00"...)
	}
	if t.Year() <= 0 {
		b = append(b, " BC"...)
	}
	return string(b)
}

// pgDate prints days since 2000-01-01 as PostgreSQL prints a date.
func pgDate(days int32) string {
	switch days {
	case math.MaxInt32:
		return "infinity"
	case math.MinInt32:
		return "-infinity"
	}
	t := time.Unix(pgEpoch+int64(days)*86400, 0).UTC()
	b := appendDate(make([]byte, 0, 16), t)
	if t.Year() <= 0 {
		b = append(b, " BC"...)
	}
	return string(b)
}

// appendDate appends YYYY-MM-DD, the year at least four digits, counted as
// PostgreSQL does before year 1 (year 0 is 1 BC).
func appendDate(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	if y <= 0 {
		y = 1 - y
	}
	ys := strconv.Itoa(y)
	for i := len(ys); i < 4; i++ {
		b = append(b, '0')
	}
	b = append(b, ys...)
	b = append(b, '-')
	b = append2(b, int(mo))
	b = append(b, '-')
	return append2(b, d)
}

func append2(b []byte, n int) []byte {
	return append(b, byte('0'+n/10), byte('0'+n%10))
}
