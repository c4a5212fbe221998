package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/presencehq/presence/pkg/apierror"
)

// maxLimitedKeys bounds the keys a window counts at once (a user and an
// endpoint: about 150 bytes each). Past it a new key goes uncounted, and
// the API key's limit is what bounds that many users' requests together.
const maxLimitedKeys = 100_000

// window counts requests per key in fixed one-minute windows, as Stream
// counts them (X-RateLimit-Reset is when the minute ends). The counts are
// dropped whole when the minute turns: memory is one minute's distinct
// keys, and at most max of them.
type window struct {
	mu     sync.Mutex
	limit  int
	max    int
	start  time.Time // of the minute counted
	counts map[string]int
	now    func() time.Time
}

func newWindow(limit, max int) *window {
	return &window{limit: limit, max: max, now: time.Now}
}

// quota is where a request leaves its key in the window.
type quota struct {
	limit, remaining int
	reset            time.Time
	// counted is false for a key past the window's max.
	counted bool
}

// take counts a request of key and says whether it is within the limit. A
// refused request is not counted: a caller that keeps knocking does not
// push its own reset further away, and the count stays an int.
func (w *window) take(key string) (quota, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if start := w.now().Truncate(time.Minute); !start.Equal(w.start) {
		w.start, w.counts = start, map[string]int{}
	}
	q := quota{limit: w.limit, remaining: w.limit, reset: w.start.Add(time.Minute)}
	n, seen := w.counts[key]
	if !seen && len(w.counts) >= w.max {
		return q, true
	}
	q.counted = true
	if n >= w.limit {
		q.remaining = 0
		return q, false
	}
	w.counts[key] = n + 1
	q.remaining = w.limit - n - 1
	return q, true
}

// charge counts n more requests of key in the current minute, as far as
// the limit (see chargeReads). A key the window does not count is left
// alone.
func (w *window) charge(key string, n int) quota {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := quota{limit: w.limit, remaining: w.limit, reset: w.start.Add(time.Minute)}
	c, seen := w.counts[key]
	if !seen || !w.start.Equal(w.now().Truncate(time.Minute)) {
		return q
	}
	c = min(w.limit, c+n)
	w.counts[key] = c
	q.counted, q.remaining = true, w.limit-c
	return q
}

// readsPerRequest is the work one request may do for its price: a request
// that reads more members than this (a sort no index has, over a channel of
// thousands) counts as one request more per readsPerRequest against the
// caller's limit for the endpoint. A member of a 10,000-member channel thus
// spends its minute ten times as fast with queries that read every member
// (about 170 ms each) as with those the index answers (a few ms).
const readsPerRequest = 1000

// chargeReads charges a client-side request that read reads records (see
// readsPerRequest) and tells the caller where it now stands.
func (s *Server) chargeReads(c echo.Context, reads int) {
	key, ok := c.Get(userLimitKey).(string)
	if !ok || s.userLimit == nil || reads <= readsPerRequest {
		return
	}
	if q := s.userLimit.charge(key, (reads-1)/readsPerRequest); q.counted {
		setRateHeaders(c, q)
	}
}

// userLimitKey holds, in a request's context, its key in the user limit.
const userLimitKey = "presence.user-limit-key"

// rateLimit applies the rate limits to an authenticated request, and every
// answer tells the caller where it stands in X-RateLimit-* headers, as
// Stream's do: on the limit closest to refusing it.
//
// A client-side caller's request counts against the user's limit for the
// endpoint (method and route) first, and only what that lets through counts
// against the API key: one user's flood cannot use up everyone's minute.
// Server-side callers count against the API key only.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		cl, ok := c.Get(callerKey).(caller)
		if !ok {
			return next(c) // a preflight: nothing was asked
		}
		var shown quota
		if s.userLimit != nil && !cl.server {
			key := c.Request().Method + " " + c.Path() + "\x00" + cl.user
			c.Set(userLimitKey, key)
			q, ok := s.userLimit.take(key)
			if !ok {
				setRateHeaders(c, q)
				s.metrics.rateLimited.WithLabelValues("user").Inc()
				return apierror.New(apierror.CodeRateLimit, http.StatusTooManyRequests,
					"Too many requests from user %s to %s %s (%d a minute on this node), check the X-RateLimit-* response headers",
					cl.user, c.Request().Method, c.Path(), q.limit)
			}
			shown = q
		}
		if s.keyLimit != nil {
			q, ok := s.keyLimit.take("")
			if !ok {
				setRateHeaders(c, q)
				s.metrics.rateLimited.WithLabelValues("api_key").Inc()
				return apierror.New(apierror.CodeRateLimit, http.StatusTooManyRequests,
					"Too many requests with this API key (%d a minute on this node), check the X-RateLimit-* response headers", q.limit)
			}
			if !shown.counted || q.remaining < shown.remaining {
				shown = q
			}
		}
		if shown.counted {
			setRateHeaders(c, shown)
		}
		return next(c)
	}
}

// The headers, as Stream names them; browsers may read them (CORS).
var rateHeaders = []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}

func setRateHeaders(c echo.Context, q quota) {
	h := c.Response().Header()
	h.Set(rateHeaders[0], strconv.Itoa(q.limit))
	h.Set(rateHeaders[1], strconv.Itoa(q.remaining))
	h.Set(rateHeaders[2], strconv.FormatInt(q.reset.Unix(), 10))
}
