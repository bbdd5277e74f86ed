package data

import "errors"

// Sentinel errors, for callers that test with errors.Is. Every error returned
// by this package wraps one of them where one applies, with the file named.
var (
	ErrBadMagic      = errors.New("bad magic number")
	ErrBadVersion    = errors.New("unsupported version")
	ErrBadDtype      = errors.New("unsupported dtype")
	ErrIndexSize     = errors.New("index size does not match its header")
	ErrPointers      = errors.New("bad pointers")
	ErrDocIndex      = errors.New("bad document index")
	ErrBinSize       = errors.New("bin size does not match the index")
	ErrMissingBin    = errors.New("missing .bin file")
	ErrEmpty         = errors.New("empty dataset")
	ErrTooShort      = errors.New("fewer tokens than ctx_len+1")
	ErrTokenRange    = errors.New("token id out of range")
	ErrBadHeader     = errors.New("bad header")
	ErrBadVocab      = errors.New("bad vocabulary")
	ErrBadState      = errors.New("bad sampler state")
	ErrBadInput      = errors.New("bad input")
	ErrBadConfig     = errors.New("bad data config")
	ErrUnknownFormat = errors.New("unknown format")
	ErrTruncated     = errors.New("truncated or changed while in use")
)
