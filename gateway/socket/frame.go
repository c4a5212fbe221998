package socket

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// Opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// StatusCode is a close code (RFC 6455 §7.4).
type StatusCode uint16

// The close codes Presence sends; the SDK reconnects on all but 1000.
const (
	StatusNormal          StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusInvalidData     StatusCode = 1007
	StatusPolicyViolation StatusCode = 1008
	StatusTooBig          StatusCode = 1009
	// StatusAbnormal is never sent: it stands for a connection that ended
	// without a close frame (§7.1.5).
	StatusAbnormal       StatusCode = 1006
	StatusServiceRestart StatusCode = 1012
	StatusTryAgainLater  StatusCode = 1013
)

// header is a frame header as a client sent it.
type header struct {
	fin    bool
	op     byte
	mask   [4]byte
	length int
}

// Reasons a client frame is refused; each closes the socket.
var (
	errProtocol    = errors.New("websocket protocol error")
	errTooBig      = errors.New("frame larger than allowed")
	errInvalidUTF8 = errors.New("text message is not valid UTF-8")
	errTooFast     = errors.New("frames sent faster than allowed")
)

// parseHeader reads a client frame's header from the front of b. It returns
// the header and its size, or size 0 when b holds only part of it. A frame
// whose payload is longer than max is refused before any of it is read.
func parseHeader(b []byte, max int) (header, int, error) {
	if len(b) < 2 {
		return header{}, 0, nil
	}
	h := header{fin: b[0]&0x80 != 0, op: b[0] & 0x0F}
	if b[0]&0x70 != 0 {
		return h, 0, errProtocol // RSV bits: no extension was negotiated
	}
	if b[1]&0x80 == 0 {
		return h, 0, errProtocol // clients must mask (§5.1)
	}
	n := 2
	length := uint64(b[1] & 0x7F)
	switch length {
	case 126:
		if len(b) < n+2 {
			return header{}, 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[n:]))
		n += 2
	case 127:
		if len(b) < n+8 {
			return header{}, 0, nil
		}
		length = binary.BigEndian.Uint64(b[n:])
		n += 8
	}
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin || length > 125 {
			return h, 0, errProtocol // control frames are short and whole (§5.5)
		}
	default:
		return h, 0, errProtocol
	}
	if length > uint64(max) {
		return h, 0, errTooBig
	}
	if len(b) < n+4 {
		return header{}, 0, nil
	}
	copy(h.mask[:], b[n:n+4])
	h.length = int(length)
	return h, n + 4, nil
}

// unmask XORs payload with the mask in place.
func unmask(payload []byte, mask [4]byte) {
	for i := range payload {
		payload[i] ^= mask[i&3]
	}
}

// appendHeader appends an unmasked, final server frame header.
func appendHeader(dst []byte, op byte, length int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case length <= 125:
		return append(dst, byte(length))
	case length <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(length))
	}
}

// maxHeader is the longest server frame header appendHeader writes.
const maxHeader = 10

// closePayload is a close frame's body: the code, then the reason (cut to
// fit the 125 bytes a control frame may carry).
func closePayload(code StatusCode, reason string) []byte {
	for len(reason) > 123 || !utf8.ValidString(reason) {
		_, n := utf8.DecodeLastRuneInString(reason)
		reason = reason[:len(reason)-n] // whole characters only
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// parseClose reads a close frame's code; a frame without one is 1005
// (§7.1.5). A code a client may not send, or a reason that is not UTF-8,
// is a protocol error.
func parseClose(payload []byte) (StatusCode, error) {
	switch {
	case len(payload) == 0:
		return 1005, nil
	case len(payload) == 1 || !utf8.Valid(payload[2:]):
		return 0, errProtocol
	}
	code := StatusCode(binary.BigEndian.Uint16(payload))
	switch {
	case code < 1000, code == 1004, code == 1005, code == 1006, code == 1015,
		code > 1014 && code < 3000, code >= 5000:
		return 0, errProtocol
	}
	return code, nil
}
