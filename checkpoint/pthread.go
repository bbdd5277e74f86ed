package checkpoint

import (
	"archive/zip"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/rwkv-go/rwkv-go/internal/fsutil"
)

// pthStorage is a persistent_load(('storage', cls, key, location, numel)).
type pthStorage struct {
	dtype DType
	key   string
	numel int64
}

// pthTensor is a _rebuild_tensor_v2 call, its storage not yet read.
type pthTensor struct {
	storage pthStorage
	offset  int64
	shape   []int
	stride  []int
}

var storageDType = func() map[string]DType {
	m := map[string]DType{}
	for dt, cls := range storageClass {
		m[cls] = dt
	}
	return m
}()

// pthGlobal is the allow list: the OrderedDict class, the tensor rebuild
// functions and the storage classes. Anything else fails, naming it.
func pthGlobal(module, name string) (any, error) {
	ok := false
	switch module {
	case "collections":
		ok = name == "OrderedDict"
	case "torch._utils":
		ok = name == "_rebuild_tensor_v2" || name == "_rebuild_tensor" || name == "_rebuild_parameter"
	case "torch":
		_, ok = storageDType[name]
	}
	if !ok {
		return nil, fmt.Errorf("pickle: global %s.%s: %w", sanitize(module), sanitize(name), ErrForbidden)
	}
	return pyGlobal{module, name}, nil
}

func pthPersistent(pid any) (any, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return nil, fmt.Errorf("pickle: persistent id %T is not ('storage', class, key, location, numel): %w", pid, ErrMalformed)
	}
	cls, ok1 := t[1].(pyGlobal)
	key, ok2 := t[2].(string)
	_, ok3 := t[3].(string)
	numel, ok4 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 || numel < 0 || cls.module != "torch" {
		return nil, fmt.Errorf("pickle: bad storage persistent id: %w", ErrMalformed)
	}
	dt, ok := storageDType[cls.name]
	if !ok {
		return nil, fmt.Errorf("pickle: storage class %s: %w", cls, ErrForbidden)
	}
	return pthStorage{dtype: dt, key: key, numel: numel}, nil
}

func intTuple(v any) ([]int, bool) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, false
	}
	out := make([]int, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 || n > math.MaxInt32*int64(1<<16) {
			return nil, false
		}
		out[i] = int(n)
	}
	return out, true
}

func pthCall(fn any, args pyTuple) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, fmt.Errorf("pickle: call of %T: %w", fn, ErrMalformed)
	}
	switch g.String() {
	case "collections.OrderedDict":
		if len(args) != 0 {
			return nil, fmt.Errorf("pickle: OrderedDict with %d arguments: %w", len(args), ErrMalformed)
		}
		return newDict(), nil
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		if len(args) < 4 {
			return nil, fmt.Errorf("pickle: %s with %d arguments: %w", g, len(args), ErrMalformed)
		}
		st, ok1 := args[0].(pthStorage)
		off, ok2 := args[1].(int64)
		shape, ok3 := intTuple(args[2])
		stride, ok4 := intTuple(args[3])
		if !ok1 || !ok2 || !ok3 || !ok4 || off < 0 || len(shape) != len(stride) {
			return nil, fmt.Errorf("pickle: bad %s arguments: %w", g, ErrMalformed)
		}
		if err := checkView(st.numel, off, shape, stride); err != nil {
			return nil, err
		}
		return &pthTensor{storage: st, offset: off, shape: shape, stride: stride}, nil
	case "torch._utils._rebuild_parameter":
		if len(args) < 1 {
			return nil, fmt.Errorf("pickle: %s without data: %w", g, ErrMalformed)
		}
		t, ok := args[0].(*pthTensor)
		if !ok {
			return nil, fmt.Errorf("pickle: %s of %T: %w", g, args[0], ErrMalformed)
		}
		return t, nil
	}
	return nil, fmt.Errorf("pickle: %s is not callable: %w", g, ErrForbidden)
}

// checkView requires every element the view addresses to lie inside the
// storage, without overflow.
func checkView(numel, off int64, shape, stride []int) error {
	n, err := numElements(shape, math.MaxInt64/8)
	if err != nil {
		return fmt.Errorf("pickle: %v: %w", err, ErrMalformed)
	}
	if n == 0 {
		return nil
	}
	// A view larger than its storage (stride 0, expand) never occurs in a
	// saved state dict, and allowing it would let a tiny file ask for a
	// huge allocation in gather.
	if n > numel {
		return fmt.Errorf("pickle: view %v of %d elements exceeds its storage of %d: %w", shape, n, numel, ErrMalformed)
	}
	last := off
	for i := range shape {
		step := int64(shape[i]-1) * int64(stride[i])
		if stride[i] != 0 && int64(shape[i]-1) > (math.MaxInt64/2)/int64(stride[i]) {
			return fmt.Errorf("pickle: stride overflow: %w", ErrMalformed)
		}
		last += step
		if last > math.MaxInt64/2 {
			return fmt.Errorf("pickle: stride overflow: %w", ErrMalformed)
		}
	}
	if last >= numel {
		return fmt.Errorf("pickle: view %v stride %v offset %d past a storage of %d elements: %w", shape, stride, off, numel, ErrMalformed)
	}
	return nil
}

// pthEntry is one name → tensor reference of a state dict.
type pthEntry struct {
	name string
	t    *pthTensor
}

// decodeStateDict runs a data.pkl under the allow list and returns the
// state dict's entries in order. Its top level must be a dict of string →
// tensor.
func decodeStateDict(pkl []byte) ([]pthEntry, error) {
	u := &unpickler{data: pkl, global: pthGlobal, persistent: pthPersistent, call: pthCall}
	v, err := u.run()
	if err != nil {
		return nil, err
	}
	d, ok := v.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("pickle: top level is %T, not a state dict: %w", v, ErrMalformed)
	}
	out := make([]pthEntry, len(d.keys))
	for i, k := range d.keys {
		name, ok1 := k.(string)
		t, ok2 := d.vals[i].(*pthTensor)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("pickle: state dict entry %v is %T, not a tensor: %w", k, d.vals[i], ErrMalformed)
		}
		out[i] = pthEntry{name, t}
	}
	return out, nil
}

// ReadPTH reads a PyTorch zip checkpoint (torch.save of a state dict) without
// running any code: only collections.OrderedDict, the torch._utils tensor
// rebuild functions and torch storage classes may appear in the pickle.
func ReadPTH(path string) ([]Tensor, error) {
	f, st, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ts, err := readPTH(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ts, nil
}

func readPTH(r io.ReaderAt, size int64) ([]Tensor, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("pth: not a zip archive (legacy pre-1.6 torch.save files are not supported): %v: %w", err, ErrMalformed)
	}
	entries := map[string]*zip.File{}
	var pklName string
	for _, zf := range zr.File {
		entries[zf.Name] = zf
		if strings.HasSuffix(zf.Name, "/data.pkl") && strings.Count(zf.Name, "/") == 1 {
			pklName = zf.Name
		}
	}
	if pklName == "" {
		return nil, fmt.Errorf("pth: no <archive>/data.pkl entry: %w", ErrMalformed)
	}
	prefix := strings.TrimSuffix(pklName, "data.pkl")
	if zf := entries[prefix+"byteorder"]; zf != nil { // written by torch >= 2.1
		b, err := readEntry(zf, size)
		if err != nil {
			return nil, err
		}
		if string(b) != "little" {
			return nil, fmt.Errorf("pth: byteorder %s: only little-endian files are supported: %w", sanitize(string(b)), ErrMalformed)
		}
	}
	pkl, err := readEntry(entries[pklName], size)
	if err != nil {
		return nil, err
	}
	refs, err := decodeStateDict(pkl)
	if err != nil {
		return nil, fmt.Errorf("pth: %w", err)
	}
	storages := map[string][]byte{}
	out := make([]Tensor, 0, len(refs))
	for _, e := range refs {
		s := e.t.storage
		data, ok := storages[s.key]
		if !ok {
			zf := entries[prefix+"data/"+s.key]
			if zf == nil {
				return nil, fmt.Errorf("pth: tensor %s: no storage entry %s: %w", sanitize(e.name), sanitize("data/"+s.key), ErrMalformed)
			}
			want := s.numel * int64(s.dtype.Size())
			if zf.UncompressedSize64 != uint64(want) {
				return nil, fmt.Errorf("pth: tensor %s: storage %s holds %d bytes, %s × %d needs %d: %w",
					sanitize(e.name), sanitize(s.key), zf.UncompressedSize64, s.dtype, s.numel, want, ErrMalformed)
			}
			if data, err = readEntry(zf, size); err != nil {
				return nil, err
			}
			storages[s.key] = data
		}
		if int64(len(data)) != s.numel*int64(s.dtype.Size()) {
			return nil, fmt.Errorf("pth: tensor %s: storage %s used with two dtypes or sizes: %w", sanitize(e.name), sanitize(s.key), ErrMalformed)
		}
		out = append(out, Tensor{Name: e.name, DType: s.dtype, Shape: e.t.shape, Data: gather(data, s.dtype.Size(), e.t)})
	}
	return out, nil
}

// readEntry reads a stored (uncompressed) zip entry whose size was checked
// against the archive size, so nothing is allocated from an unchecked size.
func readEntry(zf *zip.File, archiveSize int64) ([]byte, error) {
	if zf.Method != zip.Store {
		return nil, fmt.Errorf("pth: entry %s is compressed (method %d); torch.save stores entries: %w", sanitize(zf.Name), zf.Method, ErrMalformed)
	}
	if zf.UncompressedSize64 > uint64(archiveSize) || zf.CompressedSize64 != zf.UncompressedSize64 {
		return nil, fmt.Errorf("pth: entry %s claims %d bytes in a %d-byte archive: %w", sanitize(zf.Name), zf.UncompressedSize64, archiveSize, ErrMalformed)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("pth: entry %s: %v: %w", sanitize(zf.Name), err, ErrMalformed)
	}
	defer rc.Close()
	buf := make([]byte, zf.UncompressedSize64)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("pth: entry %s: %v: %w", sanitize(zf.Name), err, ErrMalformed)
	}
	if _, err := rc.Read(make([]byte, 1)); err != io.EOF { // EOF verifies the CRC
		return nil, fmt.Errorf("pth: entry %s: %v: %w", sanitize(zf.Name), err, ErrMalformed)
	}
	return buf, nil
}

// gather copies the view's elements into a dense row-major buffer; checkView
// has bounded every index.
func gather(storage []byte, es int, t *pthTensor) []byte {
	n := 1
	for _, d := range t.shape {
		n *= d
	}
	if n == 0 {
		return []byte{}
	}
	contiguous := true
	for i, s := range contiguousStride(t.shape) {
		if t.shape[i] > 1 && t.stride[i] != s {
			contiguous = false
		}
	}
	if contiguous {
		start := int(t.offset) * es
		return append([]byte{}, storage[start:start+n*es]...)
	}
	out := make([]byte, n*es)
	idx := make([]int, len(t.shape))
	for i := 0; i < n; i++ {
		src := int(t.offset)
		for d, x := range idx {
			src += x * t.stride[d]
		}
		copy(out[i*es:(i+1)*es], storage[src*es:(src+1)*es])
		for d := len(idx) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < t.shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out
}
