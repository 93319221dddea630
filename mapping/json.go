package mapping

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// maxSafeInt is 2^53: integers beyond it do not survive a float64 round trip,
// which is how JavaScript and many JSON decoders read numbers.
const maxSafeInt = 1 << 53

// maxNumberDigits is the number of significant decimal digits that always
// survive a round trip through float64 (DBL_DIG).
const maxNumberDigits = 15

// appendInt writes an integer as a JSON number, or as a string beyond ±2^53.
func appendInt(dst []byte, i int64) []byte {
	if i > maxSafeInt || i < -maxSafeInt {
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, i, 10)
		return append(dst, '"')
	}
	return strconv.AppendInt(dst, i, 10)
}

func appendUint(dst []byte, u uint64) []byte {
	if u > maxSafeInt {
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, u, 10)
		return append(dst, '"')
	}
	return strconv.AppendUint(dst, u, 10)
}

// appendFloat writes a finite float the way encoding/json does: shortest
// representation that round-trips, exponent form only for very small or
// large magnitudes.
func appendFloat(dst []byte, f float64, bits int) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Turn e-09 into e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// numericText renders a finite pgtype.Numeric in plain decimal notation and
// reports whether it may go on the wire as a JSON number: at most 15
// significant digits and a magnitude within 1e-300..1e300, so any JSON reader
// that parses into float64 gets the same decimal value back.
func numericText(dst []byte, n pgtype.Numeric) ([]byte, bool) {
	var buf [40]byte
	digits := buf[:0]
	switch {
	case n.Int == nil:
		digits = append(digits, '0')
	case n.Int.IsInt64():
		// big.Int.Append allocates; most numerics fit an int64.
		digits = strconv.AppendInt(digits, n.Int.Int64(), 10)
	default:
		digits = n.Int.Append(digits, 10)
	}
	if digits[0] == '-' {
		dst = append(dst, '-')
		digits = digits[1:]
	}
	exp := int(n.Exp)
	switch {
	case exp >= 0:
		dst = append(dst, digits...)
		if !(len(digits) == 1 && digits[0] == '0') {
			for i := 0; i < exp; i++ {
				dst = append(dst, '0')
			}
		}
	case len(digits) > -exp:
		point := len(digits) + exp
		dst = append(dst, digits[:point]...)
		dst = append(dst, '.')
		dst = append(dst, digits[point:]...)
	default:
		dst = append(dst, '0', '.')
		for i := 0; i < -exp-len(digits); i++ {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	}
	sig := len(digits)
	for sig > 0 && digits[sig-1] == '0' {
		sig--
	}
	if sig == 0 {
		return dst, true // zero, in whatever scale
	}
	// Trailing zeros are not significant for the value, but they do sit in
	// the exponent of the most significant digit.
	msd := len(digits) - 1 + exp
	ok := sig <= maxNumberDigits && msd >= -300 && msd <= 300
	return dst, ok
}

func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i >= len(s) {
		return false
	}
	if s[i] == '0' {
		i++
	} else if s[i] >= '1' && s[i] <= '9' {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	} else {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(s)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 is replaced by
// U+FFFD (reported through bad) so it never reaches the wire; U+2028 and
// U+2029 are escaped because some JavaScript consumers choke on them.
func appendString(dst []byte, s string, bad *bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			*bad = true
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendUUID(dst []byte, u [16]byte) []byte {
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

const dateLayout = "2006-01-02"

// timeInRange reports whether t can be written in RFC 3339, which only has
// four-digit years. PostgreSQL dates reach 4713 BC and 5874897 AD.
func timeInRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

func appendDate(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, dateLayout)
	return append(dst, '"')
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}
