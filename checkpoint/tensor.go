package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/rwkv-go/rwkv-go/arch"
)

// Sentinel errors that callers can test with errors.Is.
var (
	ErrDType     = errors.New("unsupported dtype")
	ErrShape     = errors.New("shape does not match data")
	ErrNonFinite = errors.New("non-finite value")
	ErrMalformed = errors.New("malformed file")
	ErrTensors   = arch.ErrTensors // the same error as arch's: a wrong tensor set
)

// Tensor is a named, dense, row-major tensor. Data holds the elements in
// little-endian byte order, len(Data) == NumElements()*DType.Size().
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// numElements multiplies the shape, failing on negative dims or overflow
// beyond limit elements.
func numElements(shape []int, limit int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in %v: %w", shape, ErrShape)
		}
		if d != 0 && n > limit/int64(d) {
			return 0, fmt.Errorf("shape %v too large: %w", shape, ErrShape)
		}
		n *= int64(d)
	}
	return n, nil
}

// NumElements is the product of the shape (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Validate checks the dtype and that len(Data) matches dtype × shape.
func (t Tensor) Validate() error {
	es := t.DType.Size()
	if es == 0 {
		return fmt.Errorf("tensor %q: dtype %q: %w", t.Name, t.DType, ErrDType)
	}
	n, err := numElements(t.Shape, math.MaxInt64/8)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if int64(len(t.Data)) != n*int64(es) {
		return fmt.Errorf("tensor %q: %d bytes for %s%v: %w", t.Name, len(t.Data), t.DType, t.Shape, ErrShape)
	}
	return nil
}

// FromFloat32 encodes v as dt (F64, F32, F16 or BF16; narrowing rounds to
// nearest, ties to even). It panics if len(v) does not match shape or dt is
// not a float type: both are programming errors.
func FromFloat32(name string, shape []int, v []float32, dt DType) Tensor {
	n, err := numElements(shape, math.MaxInt64/8)
	if err != nil || n != int64(len(v)) {
		panic(fmt.Sprintf("checkpoint.FromFloat32(%q): %d values for shape %v", name, len(v), shape))
	}
	if !dt.IsFloat() {
		panic(fmt.Sprintf("checkpoint.FromFloat32(%q): dtype %q is not a float type", name, dt))
	}
	data := make([]byte, len(v)*dt.Size())
	for i, f := range v {
		switch dt {
		case F64:
			binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(float64(f)))
		case F32:
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(f))
		case F16:
			binary.LittleEndian.PutUint16(data[2*i:], float32ToF16(f))
		case BF16:
			binary.LittleEndian.PutUint16(data[2*i:], float32ToBF16(f))
		}
	}
	return Tensor{Name: name, DType: dt, Shape: append([]int{}, shape...), Data: data}
}

// FromFloat64 encodes v as dt like FromFloat32; F64 keeps full precision.
func FromFloat64(name string, shape []int, v []float64, dt DType) Tensor {
	if dt != F64 {
		f := make([]float32, len(v))
		for i, x := range v {
			f[i] = float32(x)
		}
		return FromFloat32(name, shape, f, dt)
	}
	n, err := numElements(shape, math.MaxInt64/8)
	if err != nil || n != int64(len(v)) {
		panic(fmt.Sprintf("checkpoint.FromFloat64(%q): %d values for shape %v", name, len(v), shape))
	}
	data := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(x))
	}
	return Tensor{Name: name, DType: F64, Shape: append([]int{}, shape...), Data: data}
}

// Float32s decodes a float tensor of any float dtype (F64 is rounded).
func (t Tensor) Float32s() ([]float32, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	n := len(t.Data) / t.DType.Size()
	out := make([]float32, n)
	d := t.Data
	switch t.DType {
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		}
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = f16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = bf16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	default:
		return nil, fmt.Errorf("tensor %q: %s is not a float type: %w", t.Name, t.DType, ErrDType)
	}
	return out, nil
}

// Float64s decodes a float tensor of any float dtype exactly.
func (t Tensor) Float64s() ([]float64, error) {
	if t.DType == F64 {
		if err := t.Validate(); err != nil {
			return nil, err
		}
		out := make([]float64, len(t.Data)/8)
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return out, nil
	}
	f, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(f))
	for i, x := range f {
		out[i] = float64(x)
	}
	return out, nil
}

// Convert returns t re-encoded as dt (a float type). Converting to the same
// dtype returns t unchanged.
func (t Tensor) Convert(dt DType) (Tensor, error) {
	if t.DType == dt {
		return t, t.Validate()
	}
	if !dt.IsFloat() {
		return Tensor{}, fmt.Errorf("tensor %q: convert to %q: %w", t.Name, dt, ErrDType)
	}
	if t.DType == F64 {
		v, err := t.Float64s()
		if err != nil {
			return Tensor{}, err
		}
		return FromFloat64(t.Name, t.Shape, v, dt), nil
	}
	v, err := t.Float32s()
	if err != nil {
		return Tensor{}, err
	}
	return FromFloat32(t.Name, t.Shape, v, dt), nil
}

// CheckFinite returns an error naming the tensor and the first index whose
// value is NaN or ±Inf. Non-float tensors are always finite.
func (t Tensor) CheckFinite() error {
	if err := t.Validate(); err != nil {
		return err
	}
	d := t.Data
	bad := -1
	switch t.DType {
	case F64:
		for i := 0; i < len(d)/8 && bad < 0; i++ {
			if binary.LittleEndian.Uint64(d[8*i:])&0x7ff0000000000000 == 0x7ff0000000000000 {
				bad = i
			}
		}
	case F32:
		for i := 0; i < len(d)/4 && bad < 0; i++ {
			if binary.LittleEndian.Uint32(d[4*i:])&0x7f800000 == 0x7f800000 {
				bad = i
			}
		}
	case F16:
		for i := 0; i < len(d)/2 && bad < 0; i++ {
			if binary.LittleEndian.Uint16(d[2*i:])&0x7c00 == 0x7c00 {
				bad = i
			}
		}
	case BF16:
		for i := 0; i < len(d)/2 && bad < 0; i++ {
			if binary.LittleEndian.Uint16(d[2*i:])&0x7f80 == 0x7f80 {
				bad = i
			}
		}
	}
	if bad >= 0 {
		return fmt.Errorf("tensor %q: element %d is not finite: %w", t.Name, bad, ErrNonFinite)
	}
	return nil
}
