package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/presencehq/presence/pkg/apierror"
)

// MaxBodyBytes bounds every request body (I7).
const MaxBodyBytes = 64 << 10

const startKey = "presence.start"

// stamp records when a request started, for the duration every answer carries.
func stamp(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Set(startKey, time.Now())
		return next(c)
	}
}

func duration(c echo.Context) string {
	start, ok := c.Get(startKey).(time.Time)
	if !ok {
		return "0.00ms"
	}
	return fmt.Sprintf("%.2fms", float64(time.Since(start).Microseconds())/1000)
}

// reply answers 200 with body plus duration.
func reply(c echo.Context, body map[string]any) error {
	if body == nil {
		body = map[string]any{}
	}
	body["duration"] = duration(c)
	return c.JSON(http.StatusOK, body)
}

// decode reads a JSON body of at most MaxBodyBytes into v. An empty body
// leaves v as it is.
func decode(c echo.Context, v any) error {
	b, err := io.ReadAll(io.LimitReader(c.Request().Body, MaxBodyBytes+1))
	if err != nil {
		return apierror.Input("cannot read the request body")
	}
	if len(b) > MaxBodyBytes {
		return apierror.New(apierror.CodePayloadTooBig, http.StatusRequestEntityTooLarge,
			"request body is larger than %d bytes", MaxBodyBytes)
	}
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return apierror.Input("invalid JSON body: %v", jsonError(err))
	}
	return nil
}

// jsonError makes a decoding error readable without Go type names.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %s has the wrong type (%s)", te.Field, te.Value)
		}
		return fmt.Sprintf("wrong type (%s)", te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	return err.Error()
}

// errorHandler answers every error in the SDK's shape (PROTOCOL.md §7).
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var ae *apierror.Error
		var he *echo.HTTPError
		switch {
		case errors.As(err, &ae):
		case errors.As(err, &he):
			switch he.Code {
			case http.StatusNotFound:
				ae = apierror.NotFound("%s %s does not exist", c.Request().Method, c.Request().URL.Path)
			case http.StatusMethodNotAllowed:
				ae = apierror.New(apierror.CodeInput, he.Code, "method %s is not allowed on %s", c.Request().Method, c.Request().URL.Path)
			case http.StatusRequestEntityTooLarge:
				ae = apierror.New(apierror.CodePayloadTooBig, he.Code, "request body is too large")
			default:
				if he.Code >= 500 {
					ae = apierror.Internal()
				} else {
					ae = apierror.New(apierror.CodeInput, he.Code, "%v", he.Message)
				}
			}
		default:
			log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
			ae = apierror.Internal()
		}
		out := *ae
		out.Duration = duration(c)
		if out.StatusCode == 0 {
			out.StatusCode = http.StatusBadRequest
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(out.StatusCode)
			return
		}
		_ = c.JSON(out.StatusCode, out)
	}
}

// opError is bad input to one SDK call, worded as Stream words it:
// `QueryUsers failed with error: "..."`.
func opError(op, format string, args ...any) *apierror.Error {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), `"`, `'`)
	return apierror.Input("%s failed with error: \"%s\"", op, msg)
}

// param is a path parameter, unescaped: the SDK escapes ids with
// encodeURIComponent (an '@' arrives as %40) and echo keeps the raw form.
func param(c echo.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}
