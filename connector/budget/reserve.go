package budget

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Reserve is the part of the month's budget the daemon leaves for retries,
// polls beyond the expected ones, and explicit runs: a count of requests or
// a share of the limit. The zero Reserve keeps nothing back.
type Reserve struct {
	count int
	share float64 // 0..1; used when count is 0
}

// DefaultReserve is 5% of the limit.
var DefaultReserve = Reserve{share: 0.05}

// ParseReserve reads a reserve written as a count ("50") or as a share of the
// limit ("5%", "2.5%").
func ParseReserve(s string) (Reserve, error) {
	s = strings.TrimSpace(s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
			return Reserve{}, fmt.Errorf("reserve %q: want a share from 0%% to 100%%", s)
		}
		return Reserve{share: f / 100}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return Reserve{}, fmt.Errorf("reserve %q: want a count of requests (50) or a share of the budget (5%%)", s)
	}
	return Reserve{count: n}, nil
}

// Of is the reserve in requests for a month of limit requests, never more
// than the limit.
func (r Reserve) Of(limit int) int {
	if limit <= 0 {
		return 0
	}
	n := r.count
	if n == 0 {
		n = int(math.Ceil(r.share * float64(limit)))
	}
	return min(n, limit)
}

func (r Reserve) String() string {
	if r.count > 0 || r.share == 0 {
		return strconv.Itoa(r.count)
	}
	return strconv.FormatFloat(r.share*100, 'f', -1, 64) + "%"
}
