// Package logs builds the structured logger every Presence process uses:
// JSON lines when the output is not a terminal (for log collectors), text
// when a person is watching, with the process's name on every line.
package logs

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Options are the logging flags every binary shares.
type Options struct {
	Level  string
	Format string
}

// RegisterFlags binds the options to flags (PRESENCE_LOG_LEVEL, PRESENCE_LOG_FORMAT).
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.Format, "log-format", "auto", "log format: json, text, or auto (text on a terminal, JSON otherwise)")
}

// New returns a logger writing to w, with attrs (such as the node name) on
// every line.
func (o Options) New(w io.Writer, attrs ...any) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", o.Level)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(o.Format) {
	case "json":
		h = slog.NewJSONHandler(w, hopts)
	case "text":
		h = slog.NewTextHandler(w, hopts)
	case "", "auto":
		if isTerminal(w) {
			h = slog.NewTextHandler(w, hopts)
		} else {
			h = slog.NewJSONHandler(w, hopts)
		}
	default:
		return nil, fmt.Errorf("log format %q: want json, text or auto", o.Format)
	}
	return slog.New(h).With(attrs...), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
