// Package apierror is the error shape the Stream SDK understands, used for
// every error a client sees, over REST and over the WebSocket.
package apierror

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/presencehq/presence/pkg/token"
)

// Codes the SDK knows (stream-chat src/errors.ts).
const (
	CodeInternal             = -1
	CodeAccessKey            = 2
	CodeAuthFailed           = 3
	CodeInput                = 4
	CodeRateLimit            = 9
	CodeDoesNotExist         = 16
	CodeNotAllowed           = 17
	CodePayloadTooBig        = 22
	CodeTokenExpired         = 40
	CodeTokenNotValidYet     = 41
	CodeTokenBeforeIssuedAt  = 42
	CodeTokenSignature       = 43
	CodeConnectionIDNotFound = 46
	CodeTooManyConnections   = 71
)

// Error is an error as the SDK reads it.
type Error struct {
	Code       int    `json:"code"`
	Message    string `json:"message"`
	StatusCode int    `json:"StatusCode"`
	Duration   string `json:"duration"`
	MoreInfo   string `json:"more_info"`
}

func (e *Error) Error() string { return fmt.Sprintf("code %d: %s", e.Code, e.Message) }

// New returns an error with code, HTTP status and message.
func New(code, status int, format string, args ...any) *Error {
	return &Error{Code: code, StatusCode: status, Message: fmt.Sprintf(format, args...)}
}

// Input is a 400 for bad input.
func Input(format string, args ...any) *Error {
	return New(CodeInput, http.StatusBadRequest, format, args...)
}

// NotFound is a 404.
func NotFound(format string, args ...any) *Error {
	return New(CodeDoesNotExist, http.StatusNotFound, format, args...)
}

// NotAllowed is a 403.
func NotAllowed(format string, args ...any) *Error {
	return New(CodeNotAllowed, http.StatusForbidden, format, args...)
}

// Internal is a 500; its message never carries internal details.
func Internal() *Error {
	return New(CodeInternal, http.StatusInternalServerError, "internal error, please try again")
}

// As returns err as an *Error, or Internal if it is not one.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal()
}

// FromToken maps a token check failure to the SDK's code for it.
func FromToken(err error) *Error {
	code := CodeAuthFailed
	switch {
	case errors.Is(err, token.ErrExpired):
		code = CodeTokenExpired
	case errors.Is(err, token.ErrNotValidYet):
		code = CodeTokenNotValidYet
	case errors.Is(err, token.ErrIssuedInFuture):
		code = CodeTokenBeforeIssuedAt
	case errors.Is(err, token.ErrSignature), errors.Is(err, token.ErrDevDisabled):
		code = CodeTokenSignature
	}
	return New(code, http.StatusUnauthorized, "%v", err)
}
