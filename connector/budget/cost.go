package budget

import (
	"math"
	"math/bits"
)

// defaultPolls is what an asynchronous job is assumed to need before any
// job of its size was seen: prismsync's poll schedule usually finds a job
// done on the first or second poll.
const defaultPolls = 2

// costs learns what a send costs from the API's answers. Micro answers small
// imports at once (200) and runs large ones as jobs (202 + polls); where the
// line lies it does not say, so the largest batch seen answered at once and
// the smallest seen run as a job bound it, and the polls jobs needed are
// averaged per size class (powers of two).
type costs struct {
	syncMax  int             // largest batch answered synchronously
	asyncMin int             // smallest batch run as a job; 0: none yet
	polls    map[int]float64 // size class -> mean polls per job
}

// estimate is the requests a batch of rows is expected to cost: 1 when a
// batch that large was answered at once, else its POST plus the polls jobs
// of its size needed. A size on neither side of what was seen counts as a
// job (the safe side).
func (c *costs) estimate(rows int) int {
	if rows <= c.syncMax && (c.asyncMin == 0 || rows < c.asyncMin) {
		return 1
	}
	return 1 + int(math.Ceil(c.meanPolls(rows)))
}

func (c *costs) meanPolls(rows int) float64 {
	class := bits.Len(uint(rows))
	if p, ok := c.polls[class]; ok {
		return p
	}
	// The nearest size class seen, else the default.
	best, bestDist := float64(defaultPolls), -1
	for cl, p := range c.polls {
		d := cl - class
		if d < 0 {
			d = -d
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = p, d
		}
	}
	return best
}

// learn records how a batch of rows was answered.
func (c *costs) learn(rows int, async bool, polls int) {
	if rows <= 0 {
		return
	}
	if !async {
		c.syncMax = max(c.syncMax, rows)
		if c.asyncMin != 0 && c.asyncMin <= rows {
			c.asyncMin = 0 // the threshold moved up: forget the old bound
		}
		return
	}
	if c.asyncMin == 0 || rows < c.asyncMin {
		c.asyncMin = rows
	}
	if c.syncMax >= rows {
		c.syncMax = rows - 1 // the threshold moved down
	}
	if c.polls == nil {
		c.polls = make(map[int]float64)
	}
	class := bits.Len(uint(rows))
	if p, ok := c.polls[class]; ok {
		// Recent jobs weigh more: the poll schedule learns too.
		c.polls[class] = (3*p + float64(polls)) / 4
	} else {
		c.polls[class] = float64(polls)
	}
}
