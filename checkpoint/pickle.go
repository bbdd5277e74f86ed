package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// ErrForbidden reports a pickle that names a global outside the allow list.
var ErrForbidden = errors.New("forbidden pickle global")

// This is a minimal pickle reader for the opcodes torch.save emits
// (protocol 2, plus the protocol 3/4 framing ops for files saved by newer
// code). It is our own rather than gopickle's because gopickle v0.2.0 panics
// on malformed input and resolves classes through an open lookup; here
// nothing runs: a global is a name checked against an allow list, and
// calling one (REDUCE) builds only the few values torch.save needs.

type (
	pyGlobal struct{ module, name string }
	pyTuple  []any
	pyList   struct{ items []any }
	pyDict   struct {
		keys  []any
		vals  []any
		index map[any]int
	}
	pyNone struct{}
	mark   struct{}
)

func newDict() *pyDict { return &pyDict{index: map[any]int{}} }

func (d *pyDict) set(k, v any) error {
	switch k.(type) {
	case string, int64, bool, float64, pyNone:
	default:
		return fmt.Errorf("unhashable dict key of type %T", k)
	}
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// unpickler holds the machine state; globals and calls are delegated.
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint32]any
	// global resolves module.name or fails; persistent resolves BINPERSID;
	// call applies a resolved global to its arguments (REDUCE).
	global     func(module, name string) (any, error)
	persistent func(pid any) (any, error)
	call       func(fn any, args pyTuple) (any, error)
}

func (u *unpickler) errf(format string, a ...any) error {
	return fmt.Errorf("pickle: at byte %d: %s: %w", u.pos, fmt.Sprintf(format, a...), ErrMalformed)
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, u.errf("truncated (need %d bytes)", n)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) line() (string, error) {
	for i := u.pos; i < len(u.data); i++ {
		if u.data[i] == '\n' {
			s := string(u.data[u.pos:i])
			u.pos = i + 1
			return s, nil
		}
	}
	return "", u.errf("unterminated line")
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1]) {
		return nil, u.errf("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1]) {
		return nil, u.errf("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items above the last MARK and removes them.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errf("no mark")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any{}, u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) uint(n int) (uint64, error) {
	b, err := u.read(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (u *unpickler) text(n uint64) (string, error) {
	if n > uint64(len(u.data)-u.pos) {
		return "", u.errf("truncated: string of %d bytes", n)
	}
	b, err := u.read(int(n))
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", u.errf("invalid UTF-8 string")
	}
	return string(b), nil
}

// run executes the pickle and returns the value at STOP.
func (u *unpickler) run() (any, error) {
	u.memo = map[uint32]any{}
	for {
		if u.pos >= len(u.data) {
			return nil, u.errf("no STOP opcode")
		}
		op := u.data[u.pos]
		u.pos++
		var err error
		var push any
		switch op {
		case opProto:
			var v uint64
			if v, err = u.uint(1); err == nil && v > 5 {
				err = u.errf("unsupported protocol %d", v)
			}
		case opFrame:
			_, err = u.uint(8) // framing only; the frame contents follow inline
		case opStop:
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			if len(u.stack) != 0 || len(u.marks) != 0 {
				return nil, u.errf("%d values left on the stack at STOP", len(u.stack))
			}
			return v, nil
		case opMark:
			u.marks = append(u.marks, len(u.stack))
		case opNone:
			push = pyNone{}
		case opNewTrue:
			push = true
		case opNewFalse:
			push = false
		case opBinInt:
			var v uint64
			v, err = u.uint(4)
			push = int64(int32(uint32(v)))
		case opBinInt1:
			var v uint64
			v, err = u.uint(1)
			push = int64(v)
		case opBinInt2:
			var v uint64
			v, err = u.uint(2)
			push = int64(v)
		case opLong1:
			var n uint64
			if n, err = u.uint(1); err != nil {
				break
			}
			if n > 8 {
				err = u.errf("LONG1 of %d bytes does not fit int64", n)
				break
			}
			var v uint64
			if v, err = u.uint(int(n)); err == nil && n > 0 && n < 8 && v&(1<<(8*n-1)) != 0 {
				v |= ^uint64(0) << (8 * n) // sign-extend
			}
			push = int64(v)
		case opBinFloat:
			var b []byte
			if b, err = u.read(8); err == nil {
				push = math.Float64frombits(binary.BigEndian.Uint64(b))
			}
		case opBinUnicode, opShortBinUni, opBinUnicode8, opBinString, opShortBinStr:
			size := map[byte]int{opBinUnicode: 4, opShortBinUni: 1, opBinUnicode8: 8, opBinString: 4, opShortBinStr: 1}[op]
			var n uint64
			if n, err = u.uint(size); err == nil {
				push, err = u.text(n)
			}
		case opShortBinByte, opBinBytes:
			size := map[byte]int{opShortBinByte: 1, opBinBytes: 4}[op]
			var n uint64
			if n, err = u.uint(size); err == nil {
				if n > uint64(len(u.data)-u.pos) {
					err = u.errf("truncated: bytes of %d", n)
					break
				}
				var b []byte
				b, err = u.read(int(n))
				push = append([]byte{}, b...)
			}
		case opEmptyTuple:
			push = pyTuple{}
		case opTuple1, opTuple2, opTuple3:
			n := int(op-opTuple1) + 1
			t := make(pyTuple, n)
			for i := n - 1; i >= 0 && err == nil; i-- {
				t[i], err = u.pop()
			}
			push = t
		case opTuple:
			var items []any
			items, err = u.popMark()
			push = pyTuple(items)
		case opEmptyList:
			push = &pyList{}
		case opEmptyDict:
			push = newDict()
		case opAppend, opAppends:
			err = u.appendOp(op)
		case opSetItem, opSetItems:
			err = u.setItemsOp(op)
		case opBinPut, opLongBinPut, opMemoize:
			err = u.putOp(op)
		case opBinGet, opLongBinGet:
			var k uint64
			k, err = u.uint(map[byte]int{opBinGet: 1, opLongBinGet: 4}[op])
			if err == nil {
				v, ok := u.memo[uint32(k)]
				if !ok {
					err = u.errf("memo key %d not set", k)
				}
				push = v
			}
		case opGlobal:
			var mod, name string
			if mod, err = u.line(); err == nil {
				if name, err = u.line(); err == nil {
					push, err = u.global(mod, name)
				}
			}
		case opStackGlobal:
			var mod, name any
			if name, err = u.pop(); err == nil {
				if mod, err = u.pop(); err == nil {
					ms, ok1 := mod.(string)
					ns, ok2 := name.(string)
					if !ok1 || !ok2 {
						err = u.errf("STACK_GLOBAL of non-strings")
						break
					}
					push, err = u.global(ms, ns)
				}
			}
		case opBinPersID:
			var pid any
			if pid, err = u.pop(); err == nil {
				push, err = u.persistent(pid)
			}
		case opReduce:
			var fn, args any
			if args, err = u.pop(); err == nil {
				if fn, err = u.pop(); err == nil {
					t, ok := args.(pyTuple)
					if !ok {
						err = u.errf("REDUCE arguments are %T, not a tuple", args)
						break
					}
					push, err = u.call(fn, t)
				}
			}
		case opBuild:
			// Only an OrderedDict's attribute dict (state_dict()._metadata)
			// is accepted, and ignored.
			var state, obj any
			if state, err = u.pop(); err == nil {
				if obj, err = u.top(); err == nil {
					if _, ok := obj.(*pyDict); !ok {
						err = u.errf("BUILD on %T", obj)
					} else if _, ok := state.(*pyDict); !ok {
						if _, ok := state.(pyNone); !ok {
							err = u.errf("BUILD with %T state", state)
						}
					}
				}
			}
		default:
			return nil, u.errf("unsupported opcode 0x%02x", op)
		}
		if err != nil {
			return nil, err
		}
		if push != nil {
			u.stack = append(u.stack, push)
		}
	}
}

func (u *unpickler) appendOp(op byte) error {
	var items []any
	if op == opAppend {
		v, err := u.pop()
		if err != nil {
			return err
		}
		items = []any{v}
	} else {
		var err error
		if items, err = u.popMark(); err != nil {
			return err
		}
	}
	top, err := u.top()
	if err != nil {
		return err
	}
	l, ok := top.(*pyList)
	if !ok {
		return u.errf("APPEND to %T", top)
	}
	l.items = append(l.items, items...)
	return nil
}

func (u *unpickler) setItemsOp(op byte) error {
	var items []any
	if op == opSetItem {
		v, err := u.pop()
		if err != nil {
			return err
		}
		k, err := u.pop()
		if err != nil {
			return err
		}
		items = []any{k, v}
	} else {
		var err error
		if items, err = u.popMark(); err != nil {
			return err
		}
		if len(items)%2 != 0 {
			return u.errf("SETITEMS with an odd number of items")
		}
	}
	top, err := u.top()
	if err != nil {
		return err
	}
	d, ok := top.(*pyDict)
	if !ok {
		return u.errf("SETITEM on %T", top)
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return u.errf("%v", err)
		}
	}
	return nil
}

func (u *unpickler) putOp(op byte) error {
	var k uint64
	var err error
	switch op {
	case opBinPut:
		k, err = u.uint(1)
	case opLongBinPut:
		k, err = u.uint(4)
	default:
		k = uint64(len(u.memo))
	}
	if err != nil {
		return err
	}
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[uint32(k)] = v
	return nil
}

// qualName is module.name, for error messages.
func (g pyGlobal) String() string { return g.module + "." + g.name }

// sanitize makes a name from a hostile file safe to print.
func sanitize(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.ToValidUTF8(fmt.Sprintf("%q", s), "?")
}
