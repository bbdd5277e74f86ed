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
	// memo holds keys 0..len-1 when they come in order, as picklers write
	// them; memoMap holds any others.
	memo    []any
	memoMap map[uint32]any
	// cells counts the values made so far (stack pushes, marks, container
	// items, memo entries); it may not pass maxCells, a budget
	// proportional to the pickle's size, and the stack and marks may not
	// hold more than pickleMaxDepth values, so a small file cannot make the
	// machine allocate without bound.
	cells, maxCells int
	// global resolves module.name or fails; persistent resolves BINPERSID;
	// call applies a resolved global to its arguments (REDUCE).
	global     func(module, name string) (any, error)
	persistent func(pid any) (any, error)
	call       func(fn any, args pyTuple) (any, error)
}

func (u *unpickler) errf(format string, a ...any) error {
	return fmt.Errorf("pickle: at byte %d: %s: %w", u.pos, fmt.Sprintf(format, a...), ErrMalformed)
}

// spend counts n more values against the budget and checks the depth of
// the stack and marks.
func (u *unpickler) spend(n int) error {
	u.cells += n
	if u.cells > u.maxCells {
		return fmt.Errorf("pickle: at byte %d: more than %d values made by a %d-byte pickle (the limit is %d plus one per byte; a state dict makes at most about 2 per 3 bytes): %w",
			u.pos, u.maxCells, len(u.data), pickleBaseValues, ErrMalformed)
	}
	if len(u.stack)+len(u.marks) >= pickleMaxDepth {
		return fmt.Errorf("pickle: at byte %d: more than %d values on the stack (a state dict needs a few thousand at most): %w",
			u.pos, pickleMaxDepth, ErrMalformed)
	}
	return nil
}

// The unpickler's limits: at most pickleBaseValues values plus one per byte
// of pickle made in all, and at most pickleMaxDepth on the stack at once.
// torch.save's state dicts make 0.2 to 0.65 values per byte (names, storage
// tuples, sizes and strides, memo entries) and keep at most 2,000 on the
// stack (pickle batches SETITEMS by 1,000 pairs).
const (
	pickleBaseValues = 1 << 12
	pickleMaxDepth   = 1 << 16
)

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

// popMark returns the items above the last MARK and removes them. The
// items alias the stack: use them before the next push.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errf("no mark")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := u.stack[m:]
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

// run executes the pickle and returns the value at STOP. Each opcode group
// has its own method; each returns the value to push, or nil.
func (u *unpickler) run() (any, error) {
	u.memo, u.memoMap = nil, map[uint32]any{}
	u.maxCells = pickleBaseValues + len(u.data)
	for {
		if u.pos >= len(u.data) {
			return nil, u.errf("no STOP opcode")
		}
		op := u.data[u.pos]
		u.pos++
		var push any
		var err error
		switch op {
		case opStop:
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			if len(u.stack) != 0 || len(u.marks) != 0 {
				return nil, u.errf("%d values left on the stack at STOP", len(u.stack))
			}
			return v, nil
		case opProto, opFrame, opNone, opNewTrue, opNewFalse, opBinInt, opBinInt1, opBinInt2, opLong1, opBinFloat:
			push, err = u.scalar(op)
		case opBinUnicode, opShortBinUni, opBinUnicode8, opBinString, opShortBinStr, opShortBinByte, opBinBytes:
			push, err = u.stringOp(op)
		case opMark, opEmptyTuple, opTuple1, opTuple2, opTuple3, opTuple, opEmptyList, opEmptyDict:
			push, err = u.build(op)
		case opAppend, opAppends:
			err = u.appendOp(op)
		case opSetItem, opSetItems:
			err = u.setItemsOp(op)
		case opBinPut, opLongBinPut, opMemoize:
			err = u.putOp(op)
		case opBinGet, opLongBinGet:
			push, err = u.getOp(op)
		case opGlobal, opStackGlobal, opBinPersID, opReduce:
			push, err = u.callOp(op)
		case opBuild:
			err = u.buildOp()
		default:
			return nil, u.errf("unsupported opcode 0x%02x", op)
		}
		if err != nil {
			return nil, err
		}
		if push != nil {
			if err := u.spend(1); err != nil {
				return nil, err
			}
			u.stack = append(u.stack, push)
		}
	}
}

// scalar handles protocol framing, None, booleans, integers and floats.
func (u *unpickler) scalar(op byte) (any, error) {
	switch op {
	case opProto:
		v, err := u.uint(1)
		if err == nil && v > 5 {
			err = u.errf("unsupported protocol %d", v)
		}
		return nil, err
	case opFrame:
		_, err := u.uint(8) // framing only; the frame's contents follow inline
		return nil, err
	case opNone:
		return pyNone{}, nil
	case opNewTrue:
		return true, nil
	case opNewFalse:
		return false, nil
	case opBinInt:
		v, err := u.uint(4)
		return int64(int32(uint32(v))), err
	case opBinInt1:
		v, err := u.uint(1)
		return int64(v), err
	case opBinInt2:
		v, err := u.uint(2)
		return int64(v), err
	case opLong1:
		n, err := u.uint(1)
		if err != nil {
			return nil, err
		}
		if n > 8 {
			return nil, u.errf("LONG1 of %d bytes does not fit int64", n)
		}
		v, err := u.uint(int(n))
		if n > 0 && n < 8 && v&(1<<(8*n-1)) != 0 {
			v |= ^uint64(0) << (8 * n) // sign-extend
		}
		return int64(v), err
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	}
	return nil, u.errf("opcode 0x%02x is not a scalar", op)
}

// stringOp reads a length-prefixed text or bytes value.
func (u *unpickler) stringOp(op byte) (any, error) {
	size := map[byte]int{opBinUnicode: 4, opShortBinUni: 1, opBinUnicode8: 8, opBinString: 4,
		opShortBinStr: 1, opShortBinByte: 1, opBinBytes: 4}[op]
	n, err := u.uint(size)
	if err != nil {
		return nil, err
	}
	if op != opShortBinByte && op != opBinBytes {
		return u.text(n)
	}
	if n > uint64(len(u.data)-u.pos) {
		return nil, u.errf("truncated: bytes of %d", n)
	}
	b, err := u.read(int(n))
	return append([]byte{}, b...), err
}

// build handles MARK and the opcodes that make tuples, lists and dicts.
func (u *unpickler) build(op byte) (any, error) {
	switch op {
	case opMark:
		if err := u.spend(1); err != nil {
			return nil, err
		}
		u.marks = append(u.marks, len(u.stack))
		return nil, nil
	case opEmptyTuple:
		return pyTuple{}, nil
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if err := u.spend(n); err != nil {
			return nil, err
		}
		t := make(pyTuple, n)
		for i := n - 1; i >= 0; i-- {
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			t[i] = v
		}
		return t, nil
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return nil, err
		}
		if err := u.spend(len(items)); err != nil {
			return nil, err
		}
		return append(pyTuple{}, items...), nil
	case opEmptyList:
		return &pyList{}, nil
	case opEmptyDict:
		return newDict(), nil
	}
	return nil, u.errf("opcode 0x%02x builds nothing", op)
}

func (u *unpickler) getOp(op byte) (any, error) {
	k, err := u.uint(map[byte]int{opBinGet: 1, opLongBinGet: 4}[op])
	if err != nil {
		return nil, err
	}
	var v any
	ok := false
	if k < uint64(len(u.memo)) {
		v, ok = u.memo[k], true
	} else {
		v, ok = u.memoMap[uint32(k)]
	}
	if !ok {
		return nil, u.errf("memo key %d not set", k)
	}
	return v, nil
}

// callOp resolves globals and persistent ids and applies REDUCE, all
// through the hooks, so what may be named or called is decided there.
func (u *unpickler) callOp(op byte) (any, error) {
	switch op {
	case opGlobal:
		mod, err := u.line()
		if err != nil {
			return nil, err
		}
		name, err := u.line()
		if err != nil {
			return nil, err
		}
		return u.global(mod, name)
	case opStackGlobal:
		name, err := u.pop()
		if err != nil {
			return nil, err
		}
		mod, err := u.pop()
		if err != nil {
			return nil, err
		}
		ms, ok1 := mod.(string)
		ns, ok2 := name.(string)
		if !ok1 || !ok2 {
			return nil, u.errf("STACK_GLOBAL of non-strings")
		}
		return u.global(ms, ns)
	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return nil, err
		}
		return u.persistent(pid)
	case opReduce:
		args, err := u.pop()
		if err != nil {
			return nil, err
		}
		fn, err := u.pop()
		if err != nil {
			return nil, err
		}
		t, ok := args.(pyTuple)
		if !ok {
			return nil, u.errf("REDUCE arguments are %T, not a tuple", args)
		}
		return u.call(fn, t)
	}
	return nil, u.errf("opcode 0x%02x calls nothing", op)
}

// buildOp accepts only BUILD of a dict's attribute dict (the _metadata of
// a module's state_dict()), which it ignores.
func (u *unpickler) buildOp() error {
	state, err := u.pop()
	if err != nil {
		return err
	}
	obj, err := u.top()
	if err != nil {
		return err
	}
	if _, ok := obj.(*pyDict); !ok {
		return u.errf("BUILD on %T", obj)
	}
	switch state.(type) {
	case *pyDict, pyNone:
		return nil
	}
	return u.errf("BUILD with %T state", state)
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
	if err := u.spend(len(items)); err != nil {
		return err
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
	if err := u.spend(len(items)); err != nil {
		return err
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
		k = uint64(len(u.memo) + len(u.memoMap))
	}
	if err != nil {
		return err
	}
	v, err := u.top()
	if err != nil {
		return err
	}
	if err := u.spend(1); err != nil {
		return err
	}
	switch {
	case k < uint64(len(u.memo)):
		u.memo[k] = v
	case k == uint64(len(u.memo)) && len(u.memoMap) == 0:
		if len(u.memo) == cap(u.memo) { // double: append grows large slices by 1.25
			u.memo = append(make([]any, 0, 2*cap(u.memo)+64), u.memo...)
		}
		u.memo = append(u.memo, v)
	default:
		u.memoMap[uint32(k)] = v
	}
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
