package connector

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// rowDecoder turns the raw column values of one query's rows into the same Go
// values pgx's rows.Values() returns, for a fraction of the cost.
//
// Values asks the type map for a codec and plans a scan for every value of
// every row; for numeric and array columns that planning (reflection over the
// scan wrappers) costs more than the decoding itself. The encoder in mapping
// type-switches on exactly what Values produces, so this decoder must not
// differ by a dynamic type, a nil-versus-empty slice or a time.Location. It
// therefore decides once per column, from the field's OID, format and the
// codec the connection's type map holds for it, how to decode:
//
//   - the common scalar types in binary format are decoded here, by the same
//     arithmetic as pgx's scan plans;
//   - numeric, and arrays, use a scan plan made once per column, with a
//     direct path for numerics that fit an int64 and for one-dimensional
//     binary arrays of the scalar types above;
//   - anything else, and any value a direct path does not like the look of,
//     goes through the codec's DecodeValue exactly as Values does, so odd
//     types and malformed input give Values' result or Values' error.
//
// A rowDecoder belongs to one query on one connection; like the type map it
// reads, it is not safe for concurrent use.
type rowDecoder struct {
	m    *pgtype.Map
	cols []colDecoder
	slab []any // backing store carved into rows, to allocate once per slabRows rows
}

// slabRows is how many rows' worth of []any one allocation backs.
const slabRows = 64

type decodeKind uint8

const (
	decodeCodec         decodeKind = iota // Codec.DecodeValue, as Values does
	decodeUnknownText                     // OID unknown to the type map, text format
	decodeUnknownBinary                   // OID unknown to the type map, binary format
	decodeUnknownFormat                   // OID unknown and a format Values rejects
	decodeText                            // any codec pgx returns strings from
	decodeInt2
	decodeInt4
	decodeInt8
	decodeFloat4
	decodeFloat8
	decodeBool
	decodeUUID
	decodeDate
	decodeTimestamp
	decodeTimestamptz
	decodeNumeric // scan plan made once, int64 shortcut in binary
	decodeArray   // scan plan made once, direct path for 1-D binary arrays
)

// colDecoder is the decision made for one column.
type colDecoder struct {
	name   string
	oid    uint32
	format int16
	kind   decodeKind
	codec  pgtype.Codec
	loc    *time.Location  // ScanLocation of a timestamp or timestamptz codec
	plan   pgtype.ScanPlan // numeric and array columns
	elem   *colDecoder     // array elements with a direct path, or nil
}

// newRowDecoder decides how to decode each field of a result. m must be the
// type map of the connection the rows come from (rows.Conn().TypeMap()).
func newRowDecoder(m *pgtype.Map, fds []pgconn.FieldDescription) *rowDecoder {
	d := &rowDecoder{m: m, cols: make([]colDecoder, len(fds))}
	for i, fd := range fds {
		d.cols[i] = planColumn(m, fd.Name, fd.DataTypeOID, fd.Format)
	}
	return d
}

func planColumn(m *pgtype.Map, name string, oid uint32, format int16) colDecoder {
	c := colDecoder{name: name, oid: oid, format: format}
	dt, ok := m.TypeForOID(oid)
	if !ok {
		// What Values does for a type it has no codec for.
		switch format {
		case pgtype.TextFormatCode:
			c.kind = decodeUnknownText
		case pgtype.BinaryFormatCode:
			c.kind = decodeUnknownBinary
		default:
			c.kind = decodeUnknownFormat
		}
		return c
	}
	c.codec = dt.Codec
	switch codec := dt.Codec.(type) {
	case pgtype.NumericCodec:
		// NumericCodec.DecodeValue is codecScan into a Numeric: the same
		// plan, made once. Without one, DecodeValue reports the failure.
		if plan := codec.PlanScan(m, oid, format, new(pgtype.Numeric)); plan != nil {
			c.kind, c.plan = decodeNumeric, plan
		}
	case *pgtype.ArrayCodec:
		// ArrayCodec.DecodeValue plans a scan into a []any every time;
		// the plan itself does not depend on the value.
		c.kind, c.plan = decodeArray, m.PlanScan(oid, format, new([]any))
		if format == pgtype.BinaryFormatCode {
			c.elem = elemDecoder(m, codec)
		}
	default:
		c.kind, c.loc = scalarKind(dt.Codec, format)
	}
	return c
}

// scalarKind picks a direct path for a codec whose DecodeValue we reproduce
// here. The codec, not the OID, decides: a type map with a custom codec for
// an OID keeps that codec's behaviour.
func scalarKind(codec pgtype.Codec, format int16) (decodeKind, *time.Location) {
	if _, ok := codec.(pgtype.TextCodec); ok {
		return decodeText, nil // string(src) in either format
	}
	if format != pgtype.BinaryFormatCode {
		return decodeCodec, nil
	}
	switch c := codec.(type) {
	case pgtype.Int2Codec:
		return decodeInt2, nil
	case pgtype.Int4Codec:
		return decodeInt4, nil
	case pgtype.Int8Codec:
		return decodeInt8, nil
	case pgtype.Float4Codec:
		return decodeFloat4, nil
	case pgtype.Float8Codec:
		return decodeFloat8, nil
	case pgtype.BoolCodec:
		return decodeBool, nil
	case pgtype.UUIDCodec:
		return decodeUUID, nil
	case pgtype.DateCodec:
		return decodeDate, nil
	case *pgtype.TimestampCodec:
		return decodeTimestamp, c.ScanLocation
	case *pgtype.TimestamptzCodec:
		return decodeTimestamptz, c.ScanLocation
	case pgtype.NumericCodec:
		return decodeNumeric, nil // array elements only: columns get a plan too
	}
	return decodeCodec, nil
}

// elemDecoder returns the direct path for the elements of a binary array, or
// nil when the array has to go through its scan plan. It mirrors how
// ArrayCodec decodes elements: the element type's codec is asked for a plan
// into *any and, when it has none (true of every codec with a direct path),
// the type map plans one, which ends in its own codec for the element OID
// (possibly not the element type's: see TestRowDecoderScanLocation) decoding
// each element with DecodeValue.
func elemDecoder(m *pgtype.Map, ac *pgtype.ArrayCodec) *colDecoder {
	et := ac.ElementType
	if et == nil || et.Codec == nil {
		return nil
	}
	dt, ok := m.TypeForOID(et.OID)
	if !ok {
		return nil
	}
	for _, codec := range []pgtype.Codec{et.Codec, dt.Codec} {
		if codec.PlanScan(m, et.OID, pgtype.BinaryFormatCode, new(any)) != nil {
			return nil
		}
	}
	kind, loc := scalarKind(dt.Codec, pgtype.BinaryFormatCode)
	if kind == decodeCodec {
		return nil
	}
	return &colDecoder{oid: et.OID, format: pgtype.BinaryFormatCode, kind: kind, codec: dt.Codec, loc: loc}
}

// decode returns one row's values. raw is rows.RawValues(): nothing of it is
// kept, so it may be reused by the next rows.Next().
func (d *rowDecoder) decode(raw [][]byte) ([]any, error) {
	n := len(d.cols)
	if len(raw) != n {
		return nil, fmt.Errorf("row has %d values for %d columns", len(raw), n)
	}
	if len(d.slab) < n {
		d.slab = make([]any, n*slabRows)
	}
	vals := d.slab[:n:n]
	d.slab = d.slab[n:]
	// The row's strings share one allocation, sized from the raw values
	// that can become strings (an array's raw size bounds its elements').
	var text arena
	size := 0
	for i := range d.cols {
		if d.cols[i].texty() {
			size += len(raw[i])
		}
	}
	text.Grow(size)
	for i := range d.cols {
		v, err := d.value(&d.cols[i], raw[i], &text)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", d.cols[i].name, err)
		}
		vals[i] = v
	}
	return vals, nil
}

// texty reports whether the column's values or elements become strings on a
// direct path.
func (c *colDecoder) texty() bool {
	return c.kind == decodeText || c.elem != nil && c.elem.kind == decodeText
}

// arena hands out strings that share one buffer, one allocation per row
// instead of one per string. A strings.Builder only ever appends, so a string
// taken from it stays valid and unchanged while later ones are written. The
// buffer lives as long as any of its strings: a row's worth of text.
type arena struct{ strings.Builder }

func (a *arena) string(src []byte) string {
	start := a.Len()
	a.Write(src)
	return a.String()[start:]
}

func (d *rowDecoder) value(c *colDecoder, src []byte, text *arena) (any, error) {
	if src == nil {
		return nil, nil
	}
	switch c.kind {
	case decodeCodec:
		return c.codec.DecodeValue(d.m, c.oid, c.format, src)
	case decodeUnknownText:
		return string(src), nil
	case decodeUnknownBinary:
		buf := make([]byte, len(src))
		copy(buf, src)
		return buf, nil
	case decodeUnknownFormat:
		return nil, fmt.Errorf("unknown format code %d", c.format)
	case decodeNumeric:
		if c.format == pgtype.BinaryFormatCode {
			if n, ok := numericInt64(src); ok {
				return n, nil
			}
		}
		var n pgtype.Numeric
		if err := c.plan.Scan(src, &n); err != nil {
			return nil, err
		}
		return n, nil
	case decodeArray:
		if c.elem != nil {
			if a, ok := arrayDirect(c.elem, src, text); ok {
				return a, nil
			}
		}
		var a []any
		if err := c.plan.Scan(src, &a); err != nil {
			return nil, err
		}
		return a, nil
	}
	if v, ok := scalar(c, src, text); ok {
		return v, nil
	}
	// Wrong length or out of range: let the codec say so, in its words.
	return c.codec.DecodeValue(d.m, c.oid, c.format, src)
}

// These mirror unexported constants of pgtype (date.go, timestamptz.go,
// datetime_text.go, numeric.go).
const (
	usFromUnixEpochToY2K = 946_684_800 * 1_000_000
	dateInfinity         = math.MaxInt32
	dateNegInfinity      = math.MinInt32
	numericNaN           = 0xc000
	numericPosInf        = 0xd000
	numericNegInf        = 0xf000
)

var (
	minDateTime  = time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC)
	endDate      = time.Date(5874898, 1, 1, 0, 0, 0, 0, time.UTC)
	endTimestamp = time.Date(294277, 1, 1, 0, 0, 0, 0, time.UTC)
)

// scalar decodes a non-NULL value of a scalar kind. ok is false when the
// bytes are not what PostgreSQL sends for the type; the caller then lets
// pgx's codec produce its error.
func scalar(c *colDecoder, src []byte, text *arena) (v any, ok bool) {
	switch c.kind {
	case decodeText:
		return text.string(src), true
	case decodeInt2:
		if len(src) == 2 {
			return int16(binary.BigEndian.Uint16(src)), true
		}
	case decodeInt4:
		if len(src) == 4 {
			return int32(binary.BigEndian.Uint32(src)), true
		}
	case decodeInt8:
		if len(src) == 8 {
			return int64(binary.BigEndian.Uint64(src)), true
		}
	case decodeFloat4:
		if len(src) == 4 {
			return math.Float32frombits(binary.BigEndian.Uint32(src)), true
		}
	case decodeFloat8:
		if len(src) == 8 {
			return math.Float64frombits(binary.BigEndian.Uint64(src)), true
		}
	case decodeBool:
		if len(src) == 1 {
			return src[0] == 1, true
		}
	case decodeUUID:
		if len(src) == 16 {
			return [16]byte(src), true
		}
	case decodeDate:
		if len(src) == 4 {
			return date(int32(binary.BigEndian.Uint32(src)))
		}
	case decodeTimestamp, decodeTimestamptz:
		if len(src) == 8 {
			return timestamp(int64(binary.BigEndian.Uint64(src)), c.kind == decodeTimestamptz, c.loc)
		}
	case decodeNumeric:
		// Only as an array element; a numeric column has its own case.
		if n, ok := numericInt64(src); ok {
			return n, true
		}
	}
	return nil, false
}

// date is DateCodec.DecodeValue for a binary day count from 2000-01-01.
func date(days int32) (any, bool) {
	switch days {
	case dateInfinity:
		return pgtype.Infinity, true
	case dateNegInfinity:
		return pgtype.NegativeInfinity, true
	}
	t := time.Date(2000, 1, int(1+days), 0, 0, 0, 0, time.UTC)
	if t.Before(minDateTime) || !t.Before(endDate) {
		return nil, false
	}
	return t, true
}

// timestamp is the DecodeValue of TimestampCodec (tz false) or
// TimestamptzCodec (tz true) for binary microseconds from 2000-01-01: a
// timestamptz comes back in time.Local or the codec's ScanLocation, a
// timestamp in UTC or, with a ScanLocation, as the same wall clock there.
func timestamp(us int64, tz bool, loc *time.Location) (any, bool) {
	switch us {
	case math.MaxInt64:
		return pgtype.Infinity, true
	case math.MinInt64:
		return pgtype.NegativeInfinity, true
	}
	t := time.Unix(
		usFromUnixEpochToY2K/1_000_000+us/1_000_000,
		(usFromUnixEpochToY2K%1_000_000*1_000)+(us%1_000_000*1_000),
	)
	if !tz {
		t = t.UTC()
	}
	if t.Before(minDateTime) || !t.Before(endTimestamp) {
		return nil, false
	}
	switch {
	case loc == nil:
	case tz:
		t = t.In(loc)
	default:
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), loc)
	}
	return t, true
}

// numericInt64 decodes a binary numeric whose digits fit an int64 into the
// pgtype.Numeric that NumericCodec produces, without big.Int arithmetic per
// digit group. It follows pgx's algorithm step by step (scale to dscale, then
// strip trailing zeros of an integer) and gives up (ok false) on anything
// larger and on malformed input, leaving those to pgx. A zero reached by
// arithmetic is left to pgx too: its big.Int has a different (empty rather
// than nil) shape, which reflect.DeepEqual would tell apart.
func numericInt64(src []byte) (pgtype.Numeric, bool) {
	if len(src) < 8 {
		return pgtype.Numeric{}, false
	}
	ndigits := int(binary.BigEndian.Uint16(src))
	weight := int32(int16(binary.BigEndian.Uint16(src[2:])))
	sign := binary.BigEndian.Uint16(src[4:])
	dscale := int(int16(binary.BigEndian.Uint16(src[6:])))
	switch sign {
	case numericNaN:
		return pgtype.Numeric{NaN: true, Valid: true}, true
	case numericPosInf:
		return pgtype.Numeric{InfinityModifier: pgtype.Infinity, Valid: true}, true
	case numericNegInf:
		return pgtype.Numeric{InfinityModifier: pgtype.NegativeInfinity, Valid: true}, true
	}
	if ndigits == 0 {
		return pgtype.Numeric{Int: big.NewInt(0), Valid: true}, true
	}
	// Four base-10000 digits stay below 65536*10^12 < 2^63 even when
	// malformed (a digit above 9999).
	if ndigits > 4 || len(src) != 8+2*ndigits {
		return pgtype.Numeric{}, false
	}
	var acc int64
	for i := range ndigits {
		acc = acc*10_000 + int64(binary.BigEndian.Uint16(src[8+2*i:]))
	}
	exp := (weight - int32(ndigits) + 1) * 4
	if dscale > 0 {
		frac := (ndigits - int(weight) - 1) * 4
		for ; dscale > frac; frac++ {
			if acc > math.MaxInt64/10 {
				return pgtype.Numeric{}, false
			}
			acc *= 10
			exp--
		}
		for ; dscale < frac && acc != 0; frac-- {
			acc /= 10
			exp++
		}
	}
	if acc == 0 {
		return pgtype.Numeric{}, false
	}
	if exp >= 0 {
		for acc%10 == 0 {
			acc /= 10
			exp++
		}
	}
	return pgtype.Numeric{Int: newBigInt(uint64(acc), sign != 0), Exp: exp, Valid: true}, true
}

// newBigInt is big.NewInt with the Int and its digits in one allocation
// rather than two.
func newBigInt(abs uint64, neg bool) *big.Int {
	b := new(struct {
		i big.Int
		w [2]big.Word // 64 bits in one word, or in two 32-bit ones
	})
	// On 64-bit platforms hi is 0 and lo holds everything.
	lo, hi := big.Word(abs), big.Word(abs>>32>>(bits.UintSize-32))
	b.w = [2]big.Word{lo, hi}
	n := 0
	switch {
	case hi != 0:
		n = 2
	case lo != 0:
		n = 1
	}
	b.i.SetBits(b.w[:n:n])
	if neg {
		b.i.Neg(&b.i)
	}
	return &b.i
}

// arrayDirect decodes a binary array of zero or one dimension whose elements
// have a direct path into the []any ArrayCodec produces: one element per
// entry, nil for NULL, non-nil and empty for an empty array, lower bounds
// ignored. ok is false for anything else, which then takes the scan plan.
func arrayDirect(elem *colDecoder, src []byte, text *arena) ([]any, bool) {
	if len(src) < 12 {
		return nil, false
	}
	switch ndims := int32(binary.BigEndian.Uint32(src)); {
	case ndims == 0 && len(src) == 12:
		return []any{}, true
	case ndims != 1 || len(src) < 20:
		return nil, false
	}
	count := int32(binary.BigEndian.Uint32(src[12:]))
	rest := src[20:]
	if count < 0 || int(count) > len(rest)/4 {
		return nil, false
	}
	out := make([]any, count)
	for i := range out {
		if len(rest) < 4 {
			return nil, false
		}
		size := int32(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if size == -1 {
			continue
		}
		if size < 0 || int(size) > len(rest) {
			return nil, false
		}
		v, ok := scalar(elem, rest[:size], text)
		if !ok {
			return nil, false
		}
		out[i] = v
		rest = rest[size:]
	}
	if len(rest) != 0 {
		return nil, false
	}
	return out, true
}
