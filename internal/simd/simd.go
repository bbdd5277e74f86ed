// Package simd says whether the C kernels of model and optim may use AVX2: one rule for both.
package simd

import (
	"os"

	"golang.org/x/sys/cpu"
)

// AVX2 is true when the CPU (and the OS, which must save the YMM registers) supports AVX2 and
// FMA, and RWKV_KERNELS is not "go". RWKV_KERNELS=go forces the Go kernels, as on a CPU
// without AVX2 (the tests run both ways in CI). The packages' C kernels are built only with
// cgo on amd64; elsewhere they ignore this.
var AVX2 = enabled(cpu.X86.HasAVX2, cpu.X86.HasFMA, os.Getenv("RWKV_KERNELS"))

func enabled(avx2, fma bool, kernels string) bool { return avx2 && fma && kernels != "go" }
